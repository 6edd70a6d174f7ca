#include "services/fees/fee_store.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/invariant.h"
#include "common/proto_time.h"
#include "common/status_macros.h"

namespace safeharbor::fees {
namespace {

std::string Day(absl::CivilDay d) {
  return absl::StrFormat("%04d-%02d-%02d", d.year(), d.month(), d.day());
}

absl::CivilDay ParseDay(absl::string_view text) {
  absl::CivilDay d;
  if (!absl::ParseCivilTime(text, &d)) return absl::CivilDay(1970, 1, 1);
  return d;
}

std::vector<Share> ParseShares(absl::string_view json) {
  std::vector<Share> out;
  auto doc = nlohmann::json::parse(json, nullptr, false);
  if (!doc.is_array()) return out;
  for (const auto& s : doc) {
    if (!s.is_object() || !s.contains("kind") || !s.contains("bp")) continue;
    out.push_back({static_cast<v1::RecipientKind>(s["kind"].get<int>()), s["bp"].get<int32_t>()});
  }
  return out;
}

std::string SharesJson(const google::protobuf::RepeatedPtrField<v1::PolicyShare>& shares) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& s : shares)
    arr.push_back({{"kind", int{s.recipient_kind()}}, {"bp", s.basis_points()}});
  return arr.dump();
}

constexpr char kAssessmentColumns[] =
    "a.id, a.court_org, a.case_number, a.jurisdiction, a.statute, a.fee_type, a.priors, "
    "a.offense_count, a.scheduled_cents, a.ordered_cents, a.finding, a.hosting_agency, "
    "a.offense_date::text AS offense_date, a.assessed_date::text AS assessed_date, a.created_at";

StoredAssessment AssessmentFromRow(const PgResult& r) {
  StoredAssessment out;
  v1::Assessment& a = out.assessment;
  a.set_id(r.String(0, "id"));
  a.set_court_organization_id(r.String(0, "court_org"));
  a.set_case_number(r.String(0, "case_number"));
  a.set_jurisdiction_fips(r.String(0, "jurisdiction"));
  a.set_statute(static_cast<v1::Statute>(r.Int32(0, "statute")));
  a.set_priors(r.Int32(0, "priors"));
  a.set_offense_count(r.Int32(0, "offense_count"));
  a.set_scheduled_cents(r.Int64(0, "scheduled_cents"));
  a.set_ordered_cents(r.Int64(0, "ordered_cents"));
  a.set_inability_to_pay_finding(r.Bool(0, "finding"));
  a.set_hosting_agency_organization_id(r.String(0, "hosting_agency"));
  *a.mutable_offense_date() = ToDate(ParseDay(r.Text(0, "offense_date")));
  *a.mutable_assessed_date() = ToDate(ParseDay(r.Text(0, "assessed_date")));
  *a.mutable_create_time() = ToProtoTime(r.Time(0, "created_at"));
  out.fee_type = r.String(0, "fee_type");
  return out;
}

}  // namespace

absl::StatusOr<ScheduleRow> FeeStore::Schedule(PgTx& tx, v1::Statute statute, absl::CivilDay on) {
  auto r = tx.Exec(
      "SELECT citation, fee_type, tier0_cents, tier1_cents, tier2_cents FROM fee_schedules "
      "WHERE statute = $1 AND effective_from <= $2::date ORDER BY effective_from DESC LIMIT 1",
      {int32_t{statute}, Day(on)});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) {
    return absl::InvalidArgumentError(absl::StrCat("no fee schedule for ",
                                                   v1::Statute_Name(statute), " on ", Day(on),
                                                   " (the statute did not provide a fee then)"));
  }
  return ScheduleRow{
      r->String(0, "citation"),
      r->String(0, "fee_type"),
      {r->Int64(0, "tier0_cents"), r->Int64(0, "tier1_cents"), r->Int64(0, "tier2_cents")}};
}

PgPendingAs<PolicyRow> FeeStore::SendPolicyFor(PgTx& tx, absl::string_view assessment_id,
                                               absl::CivilDay on) {
  return {tx.Send("SELECT a.fee_type, p.id, p.shares::text AS shares FROM assessments a "
                  "LEFT JOIN LATERAL (SELECT id, shares FROM disbursement_policies "
                  "WHERE fee_type = a.fee_type AND jurisdiction IN (a.jurisdiction, '') "
                  "AND effective_from <= $2::date "
                  "ORDER BY (jurisdiction = '') ASC, effective_from DESC LIMIT 1) p ON true "
                  "WHERE a.id = $1",
                  {assessment_id, Day(on)}),
          [on](const PgResult& r) -> absl::StatusOr<PolicyRow> {
            if (r.rows() == 0 || r.IsNull(0, "id")) {
              return absl::FailedPreconditionError(absl::StrCat(
                  "no disbursement policy for ", r.rows() == 0 ? "" : r.Text(0, "fee_type"),
                  " fees in effect on ", Day(on)));
            }
            return PolicyRow{r.String(0, "id"), ParseShares(r.Text(0, "shares"))};
          }};
}

absl::StatusOr<std::vector<v1::FeeSchedule>> FeeStore::Schedules(PgTx& tx) {
  auto r = tx.Exec(
      "SELECT statute, effective_from::text AS d, citation, fee_type, tier0_cents, tier1_cents, "
      "tier2_cents FROM fee_schedules ORDER BY statute, effective_from");
  if (!r.ok()) return r.status();
  std::vector<v1::FeeSchedule> out;
  for (int i = 0; i < r->rows(); ++i) {
    v1::FeeSchedule s;
    s.set_statute(static_cast<v1::Statute>(r->Int32(i, "statute")));
    s.set_citation(r->String(i, "citation"));
    s.set_fee_type(r->String(i, "fee_type"));
    *s.mutable_effective_from() = ToDate(ParseDay(r->Text(i, "d")));
    for (const char* c : {"tier0_cents", "tier1_cents", "tier2_cents"}) {
      s.add_tier_amounts_cents(r->Int64(i, c));
    }
    out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<std::vector<v1::DisbursementPolicy>> FeeStore::Policies(PgTx& tx) {
  auto r = tx.Exec(
      "SELECT id, fee_type, jurisdiction, effective_from::text AS d, shares::text AS shares "
      "FROM disbursement_policies ORDER BY fee_type, jurisdiction, effective_from");
  if (!r.ok()) return r.status();
  std::vector<v1::DisbursementPolicy> out;
  for (int i = 0; i < r->rows(); ++i) {
    v1::DisbursementPolicy p;
    p.set_id(r->String(i, "id"));
    p.set_fee_type(r->String(i, "fee_type"));
    p.set_jurisdiction_fips(r->String(i, "jurisdiction"));
    *p.mutable_effective_from() = ToDate(ParseDay(r->Text(i, "d")));
    for (const auto& s : ParseShares(r->Text(i, "shares"))) {
      auto* ps = p.add_shares();
      ps->set_recipient_kind(s.kind);
      ps->set_basis_points(s.basis_points);
    }
    out.push_back(std::move(p));
  }
  return out;
}

absl::Status FeeStore::InsertPolicy(PgTx& tx, const v1::DisbursementPolicy& p) {
  auto day = ToCivilDay(p.effective_from(), "policy.effective_from");
  if (!day.ok()) return day.status();
  auto r = tx.Exec(
      "INSERT INTO disbursement_policies (id, fee_type, jurisdiction, effective_from, shares) "
      "VALUES ($1, $2, $3, $4::date, $5::jsonb)",
      {p.id(), p.fee_type(), p.jurisdiction_fips(), Day(*day), SharesJson(p.shares())});
  if (r.status().code() == absl::StatusCode::kAlreadyExists) {
    return absl::AlreadyExistsError(
        "a policy for this fee type, jurisdiction and effective date already exists");
  }
  return r.status();
}

absl::Status FeeStore::InsertAssessment(PgTx& tx, const v1::Assessment& a,
                                        absl::string_view fee_type) {
  auto offense = ToCivilDay(a.offense_date(), "assessment.offense_date");
  auto assessed = ToCivilDay(a.assessed_date(), "assessment.assessed_date");
  if (!offense.ok()) return offense.status();
  if (!assessed.ok()) return assessed.status();
  auto r = tx.Exec(
      "INSERT INTO assessments (id, court_org, case_number, jurisdiction, statute, fee_type, "
      "priors, offense_count, scheduled_cents, ordered_cents, finding, hosting_agency, "
      "offense_date, assessed_date) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
      "$13::date, $14::date)",
      {a.id(), a.court_organization_id(), a.case_number(), a.jurisdiction_fips(),
       int32_t{a.statute()}, fee_type, int32_t{a.priors()}, int32_t{a.offense_count()},
       a.scheduled_cents(), a.ordered_cents(), a.inability_to_pay_finding(),
       a.hosting_agency_organization_id(), Day(*offense), Day(*assessed)});
  if (!r.ok()) return r.status();
  auto txn = tx.Exec(
      "INSERT INTO ledger_txns (kind, assessment_id, jurisdiction, court_org, effective_date) "
      "VALUES ('assessment', $1, $2, $3, $4::date) RETURNING id",
      {a.id(), a.jurisdiction_fips(), a.court_organization_id(), Day(*assessed)});
  if (!txn.ok()) return txn.status();
  const int64_t txn_id = txn->Int64(0, "id");
  return tx
      .Exec(
          "INSERT INTO ledger_entries (txn_id, account, recipient_kind, amount_cents) VALUES "
          "($1, $2, 0, $3), ($1, $4, 0, $5)",
          {txn_id, absl::StrCat("receivable:", a.id()), a.ordered_cents(),
           absl::StrCat("assessed:", a.court_organization_id()), -a.ordered_cents()})
      .status();
}

absl::StatusOr<StoredAssessment> FeeStore::GetAssessment(PgTx& tx, absl::string_view id,
                                                         bool for_update) {
  return SendGetAssessment(tx, id, for_update).Get();
}

PgPendingAs<StoredAssessment> FeeStore::SendGetAssessment(PgTx& tx, absl::string_view id,
                                                          bool for_update) {
  std::vector<PgPending> sent;
  sent.push_back(
      tx.Send(absl::StrCat("SELECT ", kAssessmentColumns, " FROM assessments a WHERE a.id = $1",
                           for_update ? " FOR UPDATE" : ""),
              {id}));
  sent.push_back(
      tx.Send("SELECT coalesce((SELECT amount_cents FROM receivable_balances WHERE account = $1), "
              "0) AS s",
              {absl::StrCat("receivable:", id)}));
  return {
      std::move(sent),
      [id = std::string(id)](const std::vector<PgResult>& r) -> absl::StatusOr<StoredAssessment> {
        if (r[0].rows() == 0) {
          return absl::NotFoundError(absl::StrCat("assessment '", id, "' not found"));
        }
        StoredAssessment out = AssessmentFromRow(r[0]);
        v1::Assessment& a = out.assessment;
        a.set_outstanding_cents(r[1].Int64(0, "s"));
        a.set_collected_cents(a.ordered_cents() - a.outstanding_cents());
        return out;
      }};
}

PgPendingAs<std::string> FeeStore::SendJurisdiction(PgTx& tx, absl::string_view id) {
  return {tx.Send("SELECT jurisdiction FROM assessments WHERE id = $1", {id}),
          [id = std::string(id)](const PgResult& r) -> absl::StatusOr<std::string> {
            if (r.rows() == 0) {
              return absl::NotFoundError(absl::StrCat("assessment '", id, "' not found"));
            }
            return r.String(0, "jurisdiction");
          }};
}

absl::Status FeeStore::InsertMoneyTxn(PgTx& tx, absl::string_view kind, const StoredAssessment& a,
                                      absl::string_view payment_id, absl::CivilDay date,
                                      int64_t amount, const std::vector<v1::Disbursement>& parts) {
  const int sign = kind == "reversal" ? -1 : 1;
  int64_t parts_sum = 0;
  for (const auto& d : parts) parts_sum += d.amount_cents();
  // The receivable entry (-amount) and the parts balance: a ledger transaction sums to zero.
  SH_INVARIANT(parts_sum == amount, "fees.ledger_txn_balances");
  std::vector<std::string> accounts = {absl::StrCat("receivable:", a.assessment.id())};
  std::vector<std::string> kinds = {"0"};
  std::vector<std::string> amounts = {absl::StrCat(-sign * amount)};
  for (const auto& d : parts) {
    accounts.push_back(d.account());
    kinds.push_back(absl::StrCat(int{d.recipient_kind()}));
    amounts.push_back(absl::StrCat(sign * d.amount_cents()));
  }
  // The entries in order (the receivable first), after their transaction.
  (void)tx.Send(
      "WITH txn AS (INSERT INTO ledger_txns (kind, assessment_id, payment_id, jurisdiction, "
      "court_org, effective_date) VALUES ($1, $2, $3, $4, $5, $6::date) RETURNING id) "
      "INSERT INTO ledger_entries (txn_id, account, recipient_kind, amount_cents) "
      "SELECT txn.id, e.account, e.kind, e.amount FROM txn, "
      "unnest($7::text[], $8::smallint[], $9::bigint[]) WITH ORDINALITY AS e(account, kind, "
      "amount, n) ORDER BY e.n",
      {kind, a.assessment.id(), payment_id, a.assessment.jurisdiction_fips(),
       a.assessment.court_organization_id(), Day(date), PgTextArray(accounts), PgTextArray(kinds),
       PgTextArray(amounts)});
  return absl::OkStatus();
}

absl::Status FeeStore::InsertPayment(PgTx& tx, const v1::Payment& p) {
  SH_ASSIGN_OR_RETURN(const absl::CivilDay day, ToCivilDay(p.paid_date(), "paid_date"));
  (void)tx.Send(
      "INSERT INTO payments (id, assessment_id, amount_cents, paid_date, policy_id, txn_id) "
      "VALUES ($1, $2, $3, $4::date, $5, currval('ledger_txns_id_seq'))",
      {p.id(), p.assessment_id(), p.amount_cents(), Day(day), p.policy_id()});
  return absl::OkStatus();
}

absl::StatusOr<v1::Payment> FeeStore::GetPayment(PgTx& tx, absl::string_view id) {
  auto r = tx.Exec(
      "SELECT p.id, p.assessment_id, p.amount_cents, p.paid_date::text AS d, p.policy_id, "
      "p.txn_id, p.created_at, (r.payment_id IS NOT NULL) AS reversed FROM payments p "
      "LEFT JOIN reversals r ON r.payment_id = p.id WHERE p.id = $1",
      {id});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return absl::NotFoundError(absl::StrCat("payment '", id, "' not found"));
  v1::Payment p;
  p.set_id(r->String(0, "id"));
  p.set_assessment_id(r->String(0, "assessment_id"));
  p.set_amount_cents(r->Int64(0, "amount_cents"));
  *p.mutable_paid_date() = ToDate(ParseDay(r->Text(0, "d")));
  p.set_policy_id(r->String(0, "policy_id"));
  p.set_reversed(r->Bool(0, "reversed"));
  *p.mutable_create_time() = ToProtoTime(r->Time(0, "created_at"));
  auto parts = tx.Exec(
      "SELECT account, recipient_kind, amount_cents FROM ledger_entries WHERE txn_id = $1 "
      "AND recipient_kind > 0 ORDER BY id",
      {r->Int64(0, "txn_id")});
  if (!parts.ok()) return parts.status();
  for (int i = 0; i < parts->rows(); ++i) {
    auto* d = p.add_disbursements();
    d->set_account(parts->String(i, "account"));
    d->set_recipient_kind(static_cast<v1::RecipientKind>(parts->Int32(i, "recipient_kind")));
    d->set_amount_cents(parts->Int64(i, "amount_cents"));
  }
  return p;
}

absl::StatusOr<std::vector<v1::Payment>> FeeStore::PaymentsOf(PgTx& tx,
                                                              absl::string_view assessment_id) {
  auto r =
      tx.Exec("SELECT id FROM payments WHERE assessment_id = $1 ORDER BY created_at, id LIMIT 1000",
              {assessment_id});
  if (!r.ok()) return r.status();
  std::vector<v1::Payment> out;
  for (int i = 0; i < r->rows(); ++i) {
    auto p = GetPayment(tx, r->Text(i, "id"));
    if (!p.ok()) return p.status();
    out.push_back(*std::move(p));
  }
  return out;
}

absl::Status FeeStore::InsertReversal(PgTx& tx, absl::string_view payment_id, absl::CivilDay date) {
  auto r = tx.Exec(
      "INSERT INTO reversals (payment_id, reversed_date, txn_id) "
      "VALUES ($1, $2::date, currval('ledger_txns_id_seq'))",
      {payment_id, Day(date)});
  if (r.status().code() == absl::StatusCode::kAlreadyExists) {
    return absl::FailedPreconditionError(
        absl::StrCat("payment '", payment_id, "' was already reversed"));
  }
  return r.status();
}

absl::StatusOr<int64_t> FeeStore::SuspenseBalance(PgTx& tx) {
  auto r = tx.Exec(
      "SELECT coalesce(sum(amount_cents), 0) AS s FROM ledger_entries WHERE account LIKE "
      "'suspense:%'");
  if (!r.ok()) return r.status();
  return r->Int64(0, "s");
}

}  // namespace safeharbor::fees
