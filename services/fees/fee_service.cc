#include "services/fees/fee_service.h"

#include <functional>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/idempotency.h"
#include "common/ids.h"
#include "common/invariant.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/validate.h"

namespace safeharbor::fees {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;

std::string Day(absl::CivilDay d) {
  return absl::StrFormat("%04d-%02d-%02d", d.year(), d.month(), d.day());
}

struct Period {
  absl::CivilDay from, to;
};

absl::StatusOr<Period> ToPeriod(const v1::ReportPeriod& p) {
  auto from = ToCivilDay(p.from(), "period.from");
  if (!from.ok()) return from.status();
  auto to = ToCivilDay(p.to(), "period.to");
  if (!to.ok()) return to.status();
  if (*to <= *from) return InvalidArgumentError("period.to must be after period.from");
  if (*to - *from > 3700) return InvalidArgumentError("period may span at most ten years");
  return Period{*from, *to};
}

const char* KindName(int kind) {
  switch (kind) {
    case v1::RECIPIENT_KIND_LOCAL_PROVIDERS:
      return "local_providers";
    case v1::RECIPIENT_KIND_HOSTING_AGENCY:
      return "hosting_agency";
    case v1::RECIPIENT_KIND_COMMERCE:
      return "commerce";
    case v1::RECIPIENT_KIND_COURT:
      return "court";
  }
  return "unknown";
}

std::vector<Share> Shares(const google::protobuf::RepeatedPtrField<v1::PolicyShare>& in) {
  std::vector<Share> out;
  for (const auto& s : in) out.push_back({s.recipient_kind(), s.basis_points()});
  return out;
}

int32_t RateBp(int64_t part, int64_t whole) {
  return whole <= 0 ? 0 : static_cast<int32_t>((static_cast<__int128>(part) * 10000) / whole);
}

// Assessed and ordered cents per court and per jurisdiction.
absl::Status AddAssessed(
    PgTx& tx, const Period& period,
    const std::function<v1::CollectionRow&(const char*, const std::string&)>& row) {
  SH_ASSIGN_OR_RETURN(
      PgResult a,
      tx.Exec("SELECT court_org, jurisdiction, sum(scheduled_cents) AS assessed, "
              "sum(ordered_cents) AS ordered FROM assessments WHERE assessed_date >= $1::date "
              "AND assessed_date < $2::date GROUP BY court_org, jurisdiction",
              {Day(period.from), Day(period.to)}));
  for (int i = 0; i < a.rows(); ++i) {
    for (auto [kind, col] : {std::pair{"court", "court_org"}, {"jurisdiction", "jurisdiction"}}) {
      auto& r = row(kind, a.String(i, col));
      r.set_assessed_cents(r.assessed_cents() + a.Int64(i, "assessed"));
      r.set_ordered_cents(r.ordered_cents() + a.Int64(i, "ordered"));
    }
  }
  return absl::OkStatus();
}

// Collected and suspense cents per court and per jurisdiction.
absl::Status AddCollected(
    PgTx& tx, const Period& period,
    const std::function<v1::CollectionRow&(const char*, const std::string&)>& row) {
  SH_ASSIGN_OR_RETURN(
      PgResult m,
      tx.Exec("SELECT court_org, jurisdiction, sum(amount_cents) AS collected, "
              "sum(CASE WHEN account LIKE 'suspense:%' THEN amount_cents ELSE 0 END) AS suspense "
              "FROM ledger_daily_totals "
              "WHERE recipient_kind > 0 AND effective_date >= $1::date "
              "AND effective_date < $2::date GROUP BY court_org, jurisdiction",
              {Day(period.from), Day(period.to)}));
  for (int i = 0; i < m.rows(); ++i) {
    for (auto [kind, col] : {std::pair{"court", "court_org"}, {"jurisdiction", "jurisdiction"}}) {
      auto& r = row(kind, m.String(i, col));
      r.set_collected_cents(r.collected_cents() + m.Int64(i, "collected"));
      r.set_suspense_cents(r.suspense_cents() + m.Int64(i, "suspense"));
    }
  }
  return absl::OkStatus();
}

void AddToRemittance(v1::RemittanceRow& r, bool suspense, int kind, int64_t amount) {
  r.set_revenue_received_cents(r.revenue_received_cents() + amount);
  if (suspense) {
    r.set_suspense_cents(r.suspense_cents() + amount);
    return;
  }
  switch (kind) {
    case v1::RECIPIENT_KIND_COMMERCE:
      r.set_commerce_cents(r.commerce_cents() + amount);
      break;
    case v1::RECIPIENT_KIND_LOCAL_PROVIDERS:
      r.set_local_providers_cents(r.local_providers_cents() + amount);
      break;
    case v1::RECIPIENT_KIND_HOSTING_AGENCY:
      r.set_hosting_agency_cents(r.hosting_agency_cents() + amount);
      break;
    case v1::RECIPIENT_KIND_COURT:
      r.set_court_cents(r.court_cents() + amount);
      break;
  }
}

// Per jurisdiction: assessments and revenue by recipient kind in [from, to).
absl::StatusOr<std::map<std::string, v1::RemittanceRow>> RemittanceRows(PgTx& tx,
                                                                        absl::CivilDay from,
                                                                        absl::CivilDay to) {
  std::map<std::string, v1::RemittanceRow> rows;
  SH_ASSIGN_OR_RETURN(
      PgResult a,
      tx.Exec("SELECT jurisdiction, count(*) AS n, sum(ordered_cents) AS ordered FROM assessments "
              "WHERE assessed_date >= $1::date AND assessed_date < $2::date GROUP BY jurisdiction",
              {Day(from), Day(to)}));
  for (int i = 0; i < a.rows(); ++i) {
    auto& r = rows[a.String(i, "jurisdiction")];
    r.set_assessments(a.Int32(i, "n"));
    r.set_fees_assessed_cents(a.Int64(i, "ordered"));
  }
  SH_ASSIGN_OR_RETURN(
      PgResult m,
      tx.Exec("SELECT jurisdiction, recipient_kind, (account LIKE 'suspense:%') AS suspense, "
              "sum(amount_cents) AS amount FROM ledger_daily_totals "
              "WHERE recipient_kind > 0 AND effective_date >= $1::date "
              "AND effective_date < $2::date GROUP BY 1, 2, 3",
              {Day(from), Day(to)}));
  for (int i = 0; i < m.rows(); ++i) {
    AddToRemittance(rows[m.String(i, "jurisdiction")], m.Bool(i, "suspense"),
                    m.Int32(i, "recipient_kind"), m.Int64(i, "amount"));
  }
  return rows;
}

}  // namespace

FeeServiceImpl::FeeServiceImpl(RpcEnv* env, PgPool* pg, const RecipientSource* recipients,
                               prometheus::Registry& registry, const CountyTable& counties,
                               const Clock* clock, FeeOptions options)
    : RpcService("safeharbor.fees.v1.FeeService", KitDeps{env, pg, clock, &registry}),
      pg_(pg),
      recipients_(recipients),
      counties_(counties),
      clock_(clock),
      options_(std::move(options)),
      assessed_(prometheus::BuildCounter()
                    .Name("safeharbor_fees_assessed_cents_total")
                    .Help("Fees ordered by courts, in cents, by fee type.")
                    .Register(registry)),
      collected_(prometheus::BuildCounter()
                     .Name("safeharbor_fees_collected_cents_total")
                     .Help("Payments received (event=payment) and bounced (event=reversal), cents.")
                     .Register(registry)),
      disbursed_(prometheus::BuildCounter()
                     .Name("safeharbor_fees_disbursed_cents_total")
                     .Help("Cents disbursed by recipient kind (suspense counted as its own kind).")
                     .Register(registry)),
      suspense_(prometheus::BuildGauge()
                    .Name("safeharbor_fees_suspense_cents")
                    .Help("Cents held in suspense accounts: shares with no eligible recipient.")
                    .Register(registry)
                    .Add({})) {
  // Every series exists from start-up, so dashboards and alerts see zeros, not gaps.
  for (const char* t : {"sex_buyer", "trafficking", "internet_advertisement"}) {
    assessed_.Add({{"fee_type", t}});
  }
  for (const char* e : {"payment", "reversal"}) collected_.Add({{"event", e}});
  for (const char* k : {"local_providers", "hosting_agency", "commerce", "court", "suspense"}) {
    disbursed_.Add({{"recipient_kind", k}});
  }
  Methods();
}

// The fee service's method table: every RPC, who may call it, and how.
void FeeServiceImpl::Methods() {
  const RoleSet clerk = {Role::kCourtClerk};
  const MethodPolicy report{.roles = {Role::kFiscal, Role::kAuditor},
                            .isolation = Isolation::kRepeatableRead,
                            .read_only = true};
  const MethodPolicy court_money{
      .roles = clerk, .scope = Scope::kStored, .idempotency = Idempotency::kRecorded};
  const MethodPolicy read_all{.roles = RoleSet::Every(), .read_only = true};
  SAFEHARBOR_RPC(RecordAssessment, court_money);
  SAFEHARBOR_RPC(
      GetAssessment,
      (MethodPolicy{.roles = {Role::kCourtClerk, Role::kFiscal, Role::kAuditor},
                    .scope = Scope::kStored,
                    .isolation = Isolation::kRepeatableRead,
                    .read_only = true}),
      .validate = [](const auto& r) { return ValidateId(r.id(), "id"); });
  SAFEHARBOR_RPC(
      RecordPayment, court_money, .validate = [this](const auto& r) { return ValidatePayment(r); });
  SAFEHARBOR_RPC(
      ReversePayment, court_money, .validate = [](const auto& r) -> absl::Status {
        SH_RETURN_IF_ERROR(ValidateId(r.payment_id(), "payment_id"));
        return ToCivilDay(r.reversed_date(), "reversed_date").status();
      });
  SAFEHARBOR_RPC(ListFeeSchedules, read_all);
  SAFEHARBOR_RPC(ListDisbursementPolicies, read_all);
  SAFEHARBOR_RPC(
      AdoptDisbursementPolicy,
      (MethodPolicy{.roles = {Role::kFiscal},
                    .scope = Scope::kStored,
                    .idempotency = Idempotency::kRecorded}),
      .validate = [this](const auto& r) { return ValidatePolicyRequest(r); });
  SAFEHARBOR_RPC(
      GetDisbursementReport, report, .validate = [this](const auto& r) -> absl::Status {
        SH_RETURN_IF_ERROR(ToPeriod(r.period()).status());
        if (!r.jurisdiction_fips().empty() && counties_.Find(r.jurisdiction_fips()) == nullptr) {
          return InvalidArgumentError("jurisdiction_fips must be a known county FIPS code");
        }
        return absl::OkStatus();
      });
  SAFEHARBOR_RPC(
      GetCollectionReport, report,
      .validate = [](const auto& r) { return ToPeriod(r.period()).status(); });
  SAFEHARBOR_RPC(
      GetCommerceRemittance, report, .validate = [](const auto& r) -> absl::Status {
        if (r.year() < 2000 || r.year() > 2200 || r.quarter() < 1 || r.quarter() > 4) {
          return InvalidArgumentError("year must be 2000 to 2200 and quarter 1 to 4");
        }
        return absl::OkStatus();
      });
  // Any organization reads the money it received (its own account only).
  SAFEHARBOR_RPC(
      GetRecipientStatement,
      (MethodPolicy{
          .roles = RoleSet::Every(), .isolation = Isolation::kRepeatableRead, .read_only = true}),
      .validate = [](const auto& r) { return ToPeriod(r.period()).status(); });
  Seal();
}

absl::Status FeeServiceImpl::RefreshGauges() {
  return pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        auto s = FeeStore::SuspenseBalance(tx);
        if (!s.ok()) return s.status();
        suspense_.Set(static_cast<double>(*s));
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true);
}

absl::Status FeeServiceImpl::ValidateAssessment(const v1::Assessment& a) const {
  SH_RETURN_IF_ERROR(ValidateId(a.court_organization_id(), "assessment.court_organization_id"));
  if (a.case_number().empty() || a.case_number().size() > 64) {
    return InvalidArgumentError("assessment.case_number is required (at most 64 characters)");
  }
  if (counties_.Find(a.jurisdiction_fips()) == nullptr) {
    return InvalidArgumentError("assessment.jurisdiction_fips must be a known county FIPS code");
  }
  if (a.statute() == v1::STATUTE_UNSPECIFIED || !v1::Statute_IsValid(a.statute())) {
    return InvalidArgumentError("assessment.statute is required");
  }
  if (a.priors() < 0 || a.priors() > 100) {
    return InvalidArgumentError("assessment.priors must be between 0 and 100");
  }
  if (a.statute() == v1::STATUTE_INTERNET_ADVERTISEMENT) {
    if (a.offense_count() < 1 || a.offense_count() > 100) {
      return InvalidArgumentError(
          "assessment.offense_count must be 1 to 100: RCW 9.68A.106 is assessed per offense");
    }
  } else if (a.offense_count() > 1) {
    return InvalidArgumentError(StrCat("assessment.offense_count: ", v1::Statute_Name(a.statute()),
                                       " is one fee per case, not per offense"));
  }
  if (!a.hosting_agency_organization_id().empty()) {
    SH_RETURN_IF_ERROR(ValidateId(a.hosting_agency_organization_id(),
                                  "assessment.hosting_agency_organization_id"));
  }
  auto offense = ToCivilDay(a.offense_date(), "assessment.offense_date");
  if (!offense.ok()) return offense.status();
  auto assessed = ToCivilDay(a.assessed_date(), "assessment.assessed_date");
  if (!assessed.ok()) return assessed.status();
  if (*offense > *assessed) {
    return InvalidArgumentError("assessment.offense_date must not be after assessed_date");
  }
  const absl::CivilDay today = absl::ToCivilDay(clock_->Now(), absl::UTCTimeZone());
  if (*assessed > today + 1)
    return InvalidArgumentError("assessment.assessed_date is in the future");
  return absl::OkStatus();
}

absl::Status FeeServiceImpl::CheckCourt(const v1::Assessment& a) const {
  auto court = recipients_->Organization(a.court_organization_id());
  if (court.status().code() == absl::StatusCode::kNotFound ||
      (court.ok() && court->kind != directory::v1::ORGANIZATION_KIND_COURT)) {
    return absl::PermissionDeniedError(
        "your organization is not a court in the directory: only a court's clerk records "
        "assessments");
  }
  if (!court.ok()) return court.status();
  if (court->county_fips != a.jurisdiction_fips()) {
    return absl::PermissionDeniedError(
        StrCat("a court clerk records assessments only for its court's jurisdiction (county ",
               court->county_fips, " in the directory)"));
  }
  return absl::OkStatus();
}

absl::Status FeeServiceImpl::CheckHostingAgency(const v1::Assessment& a) const {
  if (a.hosting_agency_organization_id().empty()) return absl::OkStatus();  // share to suspense
  auto agency = recipients_->Organization(a.hosting_agency_organization_id());
  if (agency.status().code() == absl::StatusCode::kNotFound ||
      (agency.ok() && agency->kind != directory::v1::ORGANIZATION_KIND_LAW_ENFORCEMENT_AGENCY)) {
    return absl::FailedPreconditionError(
        StrCat("assessment.hosting_agency_organization_id: '", a.hosting_agency_organization_id(),
               "' is not a law-enforcement agency in the directory"));
  }
  return agency.status();
}

absl::Status FeeServiceImpl::CheckFiscalJurisdiction(const Caller& c,
                                                     absl::string_view jurisdiction) const {
  const std::string& state = options_.state_fiscal_organization_id.empty()
                                 ? options_.commerce_organization_id
                                 : options_.state_fiscal_organization_id;
  if (c.org_id == state) return absl::OkStatus();
  auto office = recipients_->Organization(c.org_id);
  if (office.status().code() == absl::StatusCode::kNotFound ||
      (office.ok() && office->county_fips != jurisdiction)) {
    return absl::PermissionDeniedError(
        "a fiscal office adopts policies only for its own jurisdiction (its county in the "
        "directory); the state's fiscal office for any");
  }
  return office.status();
}

absl::Status FeeServiceImpl::RecordAssessment(CallContext& ctx,
                                              const v1::RecordAssessmentRequest& req,
                                              v1::RecordAssessmentResponse* resp) {
  const Caller& c = ctx.caller();
  v1::Assessment a = req.assessment();
  if (a.court_organization_id().empty()) a.set_court_organization_id(c.org_id);
  if (a.court_organization_id() != c.org_id) {
    return ctx.Authorize(
        absl::PermissionDeniedError("a court clerk records assessments only for its own court"));
  }
  if (a.offense_count() == 0) a.set_offense_count(1);
  SH_RETURN_IF_ERROR(ValidateAssessment(a));
  SH_RETURN_IF_ERROR(ctx.Authorize(CheckCourt(a)));
  SH_RETURN_IF_ERROR(CheckHostingAgency(a));
  const absl::CivilDay assessed = *ToCivilDay(a.assessed_date(), "assessed_date");
  const std::string generated = NewId("asm");
  std::string fee_type;
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) -> absl::Status {
    SH_ASSIGN_OR_RETURN(auto schedule, FeeStore::Schedule(tx, a.statute(), assessed));
    fee_type = schedule.fee_type;
    v1::Assessment out = a;
    out.set_id(generated);
    out.set_scheduled_cents(ScheduledCents(schedule.tiers, a.priors(), a.offense_count()));
    SH_RETURN_IF_ERROR(CheckOrderedAmount(out.scheduled_cents(), out.ordered_cents(),
                                          out.inability_to_pay_finding()));
    SH_RETURN_IF_ERROR(FeeStore::InsertAssessment(tx, out, fee_type));
    out.set_outstanding_cents(out.ordered_cents());
    out.set_collected_cents(0);
    *resp->mutable_assessment() = std::move(out);
    return absl::OkStatus();
  }));
  if (ctx.replayed()) return absl::OkStatus();
  assessed_.Add({{"fee_type", fee_type}})
      .Increment(static_cast<double>(resp->assessment().ordered_cents()));
  log::Info("assessment_recorded", {{"id", generated}, {"court", c.org_id}});
  return absl::OkStatus();
}

absl::Status FeeServiceImpl::GetAssessment(CallContext& ctx, const v1::GetAssessmentRequest& req,
                                           v1::GetAssessmentResponse* resp) {
  const Caller& c = ctx.caller();
  return ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    SH_ASSIGN_OR_RETURN(auto a, FeeStore::GetAssessment(tx, req.id(), false));
    const bool own_court =
        c.role == Role::kCourtClerk && c.org_id == a.assessment.court_organization_id();
    SH_RETURN_IF_ERROR(ctx.Authorize(
        own_court || c.role == Role::kFiscal || c.role == Role::kAuditor
            ? absl::OkStatus()
            : absl::PermissionDeniedError(
                  "only the assessment's court clerk, fiscal and auditor may read it")));
    *resp->mutable_assessment() = a.assessment;
    SH_ASSIGN_OR_RETURN(auto payments, FeeStore::PaymentsOf(tx, req.id()));
    for (auto& p : payments) *resp->add_payments() = std::move(p);
    return absl::OkStatus();
  });
}

absl::Status FeeServiceImpl::ValidatePayment(const v1::RecordPaymentRequest& req) const {
  SH_RETURN_IF_ERROR(ValidateId(req.assessment_id(), "assessment_id"));
  if (req.amount_cents() <= 0) return InvalidArgumentError("amount_cents must be positive");
  SH_ASSIGN_OR_RETURN(const absl::CivilDay paid, ToCivilDay(req.paid_date(), "paid_date"));
  const absl::CivilDay today = absl::ToCivilDay(clock_->Now(), absl::UTCTimeZone());
  if (paid > today + 1) return InvalidArgumentError("paid_date is in the future");
  return absl::OkStatus();
}

absl::Status FeeServiceImpl::Pay(CallContext& ctx, PgTx& tx, const v1::RecordPaymentRequest& req,
                                 const std::vector<std::string>& providers,
                                 const std::string& payment_id, v1::RecordPaymentResponse* resp) {
  const absl::CivilDay paid = *ToCivilDay(req.paid_date(), "paid_date");
  // One round trip (with BEGIN and the request_id claim): the assessment, locked (the row lock
  // serializes payments on one assessment: never over-collected), its balance, and the policy.
  auto assessment = FeeStore::SendGetAssessment(tx, req.assessment_id(), /*for_update=*/true);
  auto policy_for = FeeStore::SendPolicyFor(tx, req.assessment_id(), paid);
  SH_ASSIGN_OR_RETURN(auto a, assessment.Get());
  if (a.assessment.court_organization_id() != ctx.caller().org_id) {
    return ctx.Authorize(
        absl::PermissionDeniedError("a court clerk records payments only for its own court"));
  }
  (void)ctx.Authorize(absl::OkStatus());
  if (paid < *ToCivilDay(a.assessment.assessed_date(), "assessed_date")) {
    return InvalidArgumentError("paid_date is before the assessment was ordered");
  }
  if (req.amount_cents() > a.assessment.outstanding_cents()) {
    return absl::FailedPreconditionError(StrCat("amount_cents ", FormatCents(req.amount_cents()),
                                                " exceeds the outstanding balance of ",
                                                FormatCents(a.assessment.outstanding_cents())));
  }
  SH_ASSIGN_OR_RETURN(auto policy, policy_for.Get());
  Recipients r{providers, a.assessment.hosting_agency_organization_id(),
               options_.commerce_organization_id, a.assessment.court_organization_id(),
               a.assessment.jurisdiction_fips()};
  const auto parts = Split(req.amount_cents(), policy.shares, r);
  int64_t sum = 0;
  for (const auto& d : parts) sum += d.amount_cents();
  SH_INVARIANT(sum == req.amount_cents(), "fees.split_sums_to_payment");
  // The ledger transaction and the payment go out with the commit, in one round trip.
  SH_RETURN_IF_ERROR(
      FeeStore::InsertMoneyTxn(tx, "payment", a, payment_id, paid, req.amount_cents(), parts));
  v1::Payment* p = resp->mutable_payment();
  p->set_id(payment_id);
  p->set_assessment_id(req.assessment_id());
  p->set_amount_cents(req.amount_cents());
  *p->mutable_paid_date() = req.paid_date();
  p->set_policy_id(policy.id);
  for (const auto& d : parts) *p->add_disbursements() = d;
  SH_RETURN_IF_ERROR(FeeStore::InsertPayment(tx, *p));
  resp->set_outstanding_cents(a.assessment.outstanding_cents() - req.amount_cents());
  return absl::OkStatus();
}

void FeeServiceImpl::CountPayment(const v1::Payment& p) {
  collected_.Add({{"event", "payment"}}).Increment(static_cast<double>(p.amount_cents()));
  for (const auto& d : p.disbursements()) {
    const bool suspense = d.account().rfind("suspense:", 0) == 0;
    disbursed_.Add({{"recipient_kind", suspense ? "suspense" : KindName(d.recipient_kind())}})
        .Increment(static_cast<double>(d.amount_cents()));
  }
}

absl::Status FeeServiceImpl::RecordPayment(CallContext& ctx, const v1::RecordPaymentRequest& req,
                                           v1::RecordPaymentResponse* resp) {
  // Recipients are looked up before the transaction: no connection is held during the call.
  SH_ASSIGN_OR_RETURN(const std::string where, JurisdictionOf(req.assessment_id()));
  SH_ASSIGN_OR_RETURN(const auto providers, recipients_->LocalProviders(where));
  const std::string payment_id = NewId("pay");
  SH_RETURN_IF_ERROR(
      ctx.Transact([&](PgTx& tx) { return Pay(ctx, tx, req, providers, payment_id, resp); }));
  if (!ctx.replayed()) CountPayment(resp->payment());
  return absl::OkStatus();
}

absl::StatusOr<std::string> FeeServiceImpl::JurisdictionOf(const std::string& assessment_id) {
  {
    std::lock_guard<std::mutex> lock(jurisdictions_mu_);
    if (auto it = jurisdictions_.find(assessment_id); it != jurisdictions_.end()) {
      return it->second;
    }
  }
  // One round trip: the statement goes out with BEGIN and COMMIT, its answer read after.
  std::optional<PgPendingAs<std::string>> jurisdiction;
  SH_RETURN_IF_ERROR(pg_->Transact(
      [&](PgTx& tx) {
        jurisdiction.emplace(FeeStore::SendJurisdiction(tx, assessment_id));
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true));
  SH_ASSIGN_OR_RETURN(std::string where, jurisdiction->Get());
  std::lock_guard<std::mutex> lock(jurisdictions_mu_);
  if (jurisdictions_.size() >= kMaxJurisdictions) jurisdictions_.clear();
  jurisdictions_[assessment_id] = where;
  return where;
}

absl::Status FeeServiceImpl::Reverse(CallContext& ctx, PgTx& tx,
                                     const v1::ReversePaymentRequest& req,
                                     v1::ReversePaymentResponse* resp) {
  const absl::CivilDay day = *ToCivilDay(req.reversed_date(), "reversed_date");
  SH_ASSIGN_OR_RETURN(v1::Payment p, FeeStore::GetPayment(tx, req.payment_id()));
  SH_ASSIGN_OR_RETURN(auto a, FeeStore::GetAssessment(tx, p.assessment_id(), /*for_update=*/true));
  SH_RETURN_IF_ERROR(ctx.Authorize(
      a.assessment.court_organization_id() == ctx.caller().org_id
          ? absl::OkStatus()
          : absl::PermissionDeniedError("a court clerk reverses payments only for its own court")));
  if (p.reversed()) {
    return absl::FailedPreconditionError(
        StrCat("payment '", req.payment_id(), "' was already reversed"));
  }
  if (day < *ToCivilDay(p.paid_date(), "paid_date")) {
    return InvalidArgumentError("reversed_date is before the payment");
  }
  std::vector<v1::Disbursement> parts(p.disbursements().begin(), p.disbursements().end());
  SH_RETURN_IF_ERROR(
      FeeStore::InsertMoneyTxn(tx, "reversal", a, p.id(), day, p.amount_cents(), parts));
  SH_RETURN_IF_ERROR(FeeStore::InsertReversal(tx, p.id(), day));
  p.set_reversed(true);
  *resp->mutable_payment() = std::move(p);
  resp->set_outstanding_cents(a.assessment.outstanding_cents() + resp->payment().amount_cents());
  return absl::OkStatus();
}

absl::Status FeeServiceImpl::ReversePayment(CallContext& ctx, const v1::ReversePaymentRequest& req,
                                            v1::ReversePaymentResponse* resp) {
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) { return Reverse(ctx, tx, req, resp); }));
  if (ctx.replayed()) return absl::OkStatus();
  collected_.Add({{"event", "reversal"}})
      .Increment(static_cast<double>(resp->payment().amount_cents()));
  log::Info("payment_reversed", {{"payment_id", req.payment_id()}, {"court", ctx.caller().org_id}});
  return absl::OkStatus();
}

absl::Status FeeServiceImpl::ListFeeSchedules(CallContext& ctx, const v1::ListFeeSchedulesRequest&,
                                              v1::ListFeeSchedulesResponse* resp) {
  return ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    SH_ASSIGN_OR_RETURN(auto schedules, FeeStore::Schedules(tx));
    for (auto& x : schedules) *resp->add_schedules() = std::move(x);
    return absl::OkStatus();
  });
}

absl::Status FeeServiceImpl::ListDisbursementPolicies(CallContext& ctx,
                                                      const v1::ListDisbursementPoliciesRequest&,
                                                      v1::ListDisbursementPoliciesResponse* resp) {
  return ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    SH_ASSIGN_OR_RETURN(auto policies, FeeStore::Policies(tx));
    for (auto& x : policies) *resp->add_policies() = std::move(x);
    return absl::OkStatus();
  });
}

absl::Status FeeServiceImpl::ValidatePolicyRequest(
    const v1::AdoptDisbursementPolicyRequest& req) const {
  const v1::DisbursementPolicy& p = req.policy();
  if (p.fee_type() != "sex_buyer") {
    return InvalidArgumentError(
        "policy.fee_type: only sex_buyer fees may have a jurisdiction's own policy; the "
        "trafficking split (45/45/10) and the internet-advertisement fee are fixed by statute");
  }
  if (counties_.Find(p.jurisdiction_fips()) == nullptr) {
    return InvalidArgumentError("policy.jurisdiction_fips must be a known county FIPS code");
  }
  SH_RETURN_IF_ERROR(ToCivilDay(p.effective_from(), "policy.effective_from").status());
  return ValidatePolicy(p.fee_type(), Shares(p.shares()));
}

absl::Status FeeServiceImpl::AdoptDisbursementPolicy(CallContext& ctx,
                                                     const v1::AdoptDisbursementPolicyRequest& req,
                                                     v1::AdoptDisbursementPolicyResponse* resp) {
  v1::DisbursementPolicy p = req.policy();
  const absl::CivilDay from = *ToCivilDay(p.effective_from(), "policy.effective_from");
  SH_RETURN_IF_ERROR(ctx.Authorize(CheckFiscalJurisdiction(ctx.caller(), p.jurisdiction_fips())));
  // Payments already recorded were split under the policy then in effect: never rewritten.
  if (from < absl::ToCivilDay(ctx.Now(), absl::UTCTimeZone())) {
    return InvalidArgumentError("policy.effective_from must be today or later (UTC)");
  }
  p.set_id(StrCat("policy-", p.jurisdiction_fips(), "-", Day(from)));
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) {
    *resp->mutable_policy() = p;
    return FeeStore::InsertPolicy(tx, p);
  }));
  log::Info("policy_adopted", {{"id", p.id()}, {"by", ctx.caller().org_id}});
  return absl::OkStatus();
}

absl::Status FeeServiceImpl::GetDisbursementReport(CallContext& ctx,
                                                   const v1::GetDisbursementReportRequest& req,
                                                   v1::GetDisbursementReportResponse* resp) {
  const Period period = *ToPeriod(req.period());
  return ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    SH_ASSIGN_OR_RETURN(PgResult r,
                        tx.Exec("SELECT account, recipient_kind, sum(amount_cents) AS amount "
                                "FROM ledger_daily_totals "
                                "WHERE kind IN ('payment', 'reversal') AND recipient_kind > 0 "
                                "AND effective_date >= $1::date AND effective_date < $2::date "
                                "AND ($3 = '' OR jurisdiction = $3) "
                                "GROUP BY account, recipient_kind HAVING sum(entries) > 0 "
                                "ORDER BY account, recipient_kind",
                                {Day(period.from), Day(period.to), req.jurisdiction_fips()}));
    std::string csv = CsvLine({"account", "recipient_kind", "amount", "amount_cents"});
    int64_t total = 0;
    for (int i = 0; i < r.rows(); ++i) {
      auto* row = resp->add_recipients();
      row->set_account(r.String(i, "account"));
      row->set_recipient_kind(static_cast<v1::RecipientKind>(r.Int32(i, "recipient_kind")));
      row->set_amount_cents(r.Int64(i, "amount"));
      total += row->amount_cents();
      absl::StrAppend(&csv,
                      CsvLine({row->account(), KindName(row->recipient_kind()),
                               FormatCents(row->amount_cents()), StrCat(row->amount_cents())}));
    }
    absl::StrAppend(&csv, CsvLine({"TOTAL", "", FormatCents(total), StrCat(total)}));
    resp->set_total_cents(total);
    resp->set_csv(csv);
    return absl::OkStatus();
  });
}

absl::Status FeeServiceImpl::GetCollectionReport(CallContext& ctx,
                                                 const v1::GetCollectionReportRequest& req,
                                                 v1::GetCollectionReportResponse* resp) {
  const Period period = *ToPeriod(req.period());
  return ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    std::map<std::pair<std::string, std::string>, v1::CollectionRow> rows;
    auto row = [&](const char* kind, const std::string& id) -> v1::CollectionRow& {
      auto& r = rows[{kind, id}];
      r.set_group_kind(kind);
      r.set_group_id(id);
      return r;
    };
    SH_RETURN_IF_ERROR(AddAssessed(tx, period, row));
    SH_RETURN_IF_ERROR(AddCollected(tx, period, row));
    std::string csv = CsvLine({"group", "id", "assessed", "ordered", "collected", "disbursed",
                               "suspense", "collection_rate_percent"});
    for (auto& [key, r] : rows) {
      r.set_disbursed_cents(r.collected_cents() - r.suspense_cents());
      r.set_collection_rate_bp(RateBp(r.collected_cents(), r.ordered_cents()));
      absl::StrAppend(&csv,
                      CsvLine({r.group_kind(), r.group_id(), FormatCents(r.assessed_cents()),
                               FormatCents(r.ordered_cents()), FormatCents(r.collected_cents()),
                               FormatCents(r.disbursed_cents()), FormatCents(r.suspense_cents()),
                               FormatCents(r.collection_rate_bp())}));
      *resp->add_rows() = r;
    }
    resp->set_csv(csv);
    return absl::OkStatus();
  });
}

absl::Status FeeServiceImpl::GetCommerceRemittance(CallContext& ctx,
                                                   const v1::GetCommerceRemittanceRequest& req,
                                                   v1::GetCommerceRemittanceResponse* resp) {
  const absl::CivilDay from(req.year(), 3 * (req.quarter() - 1) + 1, 1);
  const absl::CivilDay to(absl::CivilMonth(from) + 3);
  return ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    SH_ASSIGN_OR_RETURN(auto rows, RemittanceRows(tx, from, to));
    std::string csv =
        CsvLine({"jurisdiction_fips", "assessments", "fees_assessed", "revenue_received",
                 "commerce", "local_providers", "hosting_agency", "court", "suspense"});
    int64_t commerce = 0;
    for (auto& [j, r] : rows) {
      r.set_jurisdiction_fips(j);
      commerce += r.commerce_cents();
      absl::StrAppend(
          &csv,
          CsvLine({j, StrCat(r.assessments()), FormatCents(r.fees_assessed_cents()),
                   FormatCents(r.revenue_received_cents()), FormatCents(r.commerce_cents()),
                   FormatCents(r.local_providers_cents()), FormatCents(r.hosting_agency_cents()),
                   FormatCents(r.court_cents()), FormatCents(r.suspense_cents())}));
      *resp->add_rows() = r;
    }
    resp->set_commerce_total_cents(commerce);
    resp->set_csv(csv);
    return absl::OkStatus();
  });
}

absl::Status FeeServiceImpl::GetRecipientStatement(CallContext& ctx,
                                                   const v1::GetRecipientStatementRequest& req,
                                                   v1::GetRecipientStatementResponse* resp) {
  const Period period = *ToPeriod(req.period());
  const std::string& org = ctx.caller().org_id;
  return ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    resp->set_organization_id(org);
    SH_ASSIGN_OR_RETURN(
        PgResult r,
        tx.Exec("SELECT t.effective_date::text AS d, t.assessment_id, t.payment_id, "
                "e.amount_cents FROM ledger_entries e JOIN ledger_txns t ON t.id = e.txn_id "
                "WHERE e.account = $1 AND t.effective_date >= $2::date "
                "AND t.effective_date < $3::date ORDER BY t.effective_date, e.id LIMIT 100000",
                {StrCat("org:", org), Day(period.from), Day(period.to)}));
    std::string csv = CsvLine({"date", "assessment_id", "payment_id", "amount", "amount_cents"});
    int64_t total = 0;
    for (int i = 0; i < r.rows(); ++i) {
      auto* line = resp->add_lines();
      absl::CivilDay d;
      (void)absl::ParseCivilTime(r.Text(i, "d"), &d);
      *line->mutable_date() = ToDate(d);
      line->set_assessment_id(r.String(i, "assessment_id"));
      line->set_payment_id(r.String(i, "payment_id"));
      line->set_amount_cents(r.Int64(i, "amount_cents"));
      total += line->amount_cents();
      absl::StrAppend(&csv,
                      CsvLine({r.String(i, "d"), line->assessment_id(), line->payment_id(),
                               FormatCents(line->amount_cents()), StrCat(line->amount_cents())}));
    }
    resp->set_total_cents(total);
    resp->set_csv(csv);
    return absl::OkStatus();
  });
}

}  // namespace safeharbor::fees
