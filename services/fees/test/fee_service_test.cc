// The fee service through real gRPC over mTLS against real PostgreSQL and a real directory.
#include <gtest/gtest.h>

#include <iostream>

#include "absl/strings/str_split.h"
#include "services/fees/test/fee_fixture.h"

namespace safeharbor::fees {
namespace {

using FeeTest = FeeFixture;

TEST_F(FeeTest, EachTierAndStatuteIsScheduledFromData) {
  struct Case {
    v1::Statute statute;
    int priors;
    int offenses;
    int64_t scheduled;
  };
  const Case cases[] = {
      {v1::STATUTE_PATRONIZING, 0, 1, 150000},
      {v1::STATUTE_PATRONIZING, 1, 1, 250000},
      {v1::STATUTE_PATRONIZING, 2, 1, 500000},
      {v1::STATUTE_PERMITTING_PROSTITUTION, 3, 1, 500000},
      {v1::STATUTE_PROMOTING_PROSTITUTION, 0, 1, 300000},
      {v1::STATUTE_PROMOTING_PROSTITUTION, 1, 1, 600000},
      {v1::STATUTE_PROMOTING_PROSTITUTION, 2, 1, 1000000},
      {v1::STATUTE_COMMERCIAL_SEXUAL_ABUSE_OF_MINOR, 0, 1, 500000},
      {v1::STATUTE_INTERNET_ADVERTISEMENT, 0, 3, 1500000},
      {v1::STATUTE_TRAFFICKING, 0, 1, 1000000},
      {v1::STATUTE_VEHICLE_IMPOUND, 0, 1, 50000},
      {v1::STATUTE_VEHICLE_IMPOUND, 1, 1, 250000},
  };
  int n = 0;
  for (const auto& c : cases) {
    v1::Assessment a = Assessment(c.statute, c.priors, c.scheduled);
    a.set_offense_count(c.offenses);
    v1::RecordAssessmentResponse resp;
    grpc::Status st = Assess(a, absl::StrCat("tier-", ++n), &resp);
    ASSERT_TRUE(st.ok()) << v1::Statute_Name(c.statute) << ": " << st.error_message();
    EXPECT_EQ(resp.assessment().scheduled_cents(), c.scheduled) << v1::Statute_Name(c.statute);
    EXPECT_EQ(resp.assessment().outstanding_cents(), c.scheduled);
  }
  // The trafficking fee did not exist before 2024.
  v1::Assessment old = Assessment(v1::STATUTE_TRAFFICKING, 0, 1000000);
  *old.mutable_offense_date() = D(2023, 5, 1);
  *old.mutable_assessed_date() = D(2023, 6, 1);
  v1::RecordAssessmentResponse resp;
  grpc::Status st = Assess(old, "tier-old", &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("no fee schedule"), std::string::npos);
  // One fee per case except per-offense RCW 9.68A.106.
  v1::Assessment many = Assessment(v1::STATUTE_PATRONIZING, 0, 150000);
  many.set_offense_count(2);
  EXPECT_EQ(Assess(many, "tier-many", &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(FeeTest, ReductionsNeedAFindingAndKeepOneThird) {
  v1::RecordAssessmentResponse resp;
  v1::Assessment a = Assessment(v1::STATUTE_PATRONIZING, 0, 100000);
  grpc::Status st = Assess(a, "r-1", &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("inability_to_pay_finding"), std::string::npos);
  a.set_inability_to_pay_finding(true);
  a.set_ordered_cents(49999);
  EXPECT_EQ(Assess(a, "r-2", &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  a.set_ordered_cents(50000);
  ASSERT_TRUE(Assess(a, "r-3", &resp).ok());
  EXPECT_EQ(resp.assessment().ordered_cents(), 50000);
  EXPECT_EQ(resp.assessment().scheduled_cents(), 150000);
  EXPECT_EQ(Sql("SELECT count(*) AS n FROM assessments"), 1);
}

TEST_F(FeeTest, PaymentsSplitExactlyReversalsCompensateAndNothingIsOverCollected) {
  v1::RecordAssessmentResponse a;
  ASSERT_TRUE(Assess(Assessment(v1::STATUTE_PATRONIZING, 0, 150000), "a-1", &a).ok());
  const std::string id = a.assessment().id();
  v1::RecordPaymentResponse p1;
  ASSERT_TRUE(Pay(id, 100001, D(2026, 5, 1), "p-1", &p1).ok());
  int64_t sum = 0;
  std::map<std::string, int64_t> got;
  for (const auto& d : p1.payment().disbursements()) {
    sum += d.amount_cents();
    got[d.account()] += d.amount_cents();
  }
  EXPECT_EQ(sum, 100001);
  EXPECT_EQ(got["org:prov-a"] + got["org:prov-b"] + got["org:prov-c"], 50001);  // 50%, rounded up
  EXPECT_EQ(got["org:seattle-pd"], 48000);
  EXPECT_EQ(got["org:state-commerce"], 2000);
  EXPECT_EQ(p1.payment().policy_id(), "default-sex-buyer");
  EXPECT_EQ(p1.outstanding_cents(), 49999);

  v1::RecordPaymentResponse over;
  grpc::Status st = Pay(id, 50000, D(2026, 5, 2), "p-2", &over);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(st.error_message().find("outstanding"), std::string::npos);

  v1::ReversePaymentRequest rev;
  rev.set_request_id("rev-1");
  rev.set_payment_id(p1.payment().id());
  *rev.mutable_reversed_date() = D(2026, 5, 3);
  v1::ReversePaymentResponse reversed;
  ASSERT_TRUE(clerk_->ReversePayment(Ctx().get(), rev, &reversed).ok());
  EXPECT_EQ(reversed.outstanding_cents(), 150000);
  rev.set_request_id("rev-2");
  EXPECT_EQ(clerk_->ReversePayment(Ctx().get(), rev, &reversed).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  v1::RecordPaymentResponse full;
  ASSERT_TRUE(Pay(id, 150000, D(2026, 5, 4), "p-3", &full).ok());
  EXPECT_EQ(full.outstanding_cents(), 0);
  // Every ledger transaction balances; the original entries are still there.
  EXPECT_EQ(Sql("SELECT count(*) AS n FROM (SELECT txn_id FROM ledger_entries GROUP BY txn_id "
                "HAVING sum(amount_cents) <> 0) x"),
            0);
  EXPECT_EQ(Sql("SELECT count(*) AS n FROM ledger_txns"), 4);
  EXPECT_EQ(Sql("SELECT coalesce(sum(amount_cents), 0) AS n FROM ledger_entries"), 0);
}

TEST_F(FeeTest, ThePolicyInEffectOnThePaymentDateIsUsed) {
  auto fiscal = Stub("state-commerce", "fiscal");
  v1::AdoptDisbursementPolicyRequest adopt;
  adopt.set_request_id("adopt-1");
  auto* p = adopt.mutable_policy();
  p->set_fee_type("sex_buyer");
  p->set_jurisdiction_fips(kKing);
  *p->mutable_effective_from() = D(2026, 7, 1);
  for (auto [kind, bp] : {std::pair{v1::RECIPIENT_KIND_LOCAL_PROVIDERS, 6000},
                          {v1::RECIPIENT_KIND_HOSTING_AGENCY, 3800},
                          {v1::RECIPIENT_KIND_COMMERCE, 200}}) {
    auto* s = p->add_shares();
    s->set_recipient_kind(kind);
    s->set_basis_points(bp);
  }
  v1::AdoptDisbursementPolicyResponse adopted;
  const absl::Duration back =
      clock_.Now() - absl::FromCivil(absl::CivilSecond(2026, 7, 1, 0, 0, 0), absl::UTCTimeZone());
  clock_.Advance(-back);
  ASSERT_TRUE(fiscal->AdoptDisbursementPolicy(Ctx().get(), adopt, &adopted).ok());
  clock_.Advance(back);
  // Below the statutory floor: refused.
  adopt.set_request_id("adopt-2");
  p->mutable_shares(0)->set_basis_points(4000);
  p->mutable_shares(1)->set_basis_points(5800);
  EXPECT_EQ(fiscal->AdoptDisbursementPolicy(Ctx().get(), adopt, &adopted).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  v1::RecordAssessmentResponse a;
  ASSERT_TRUE(Assess(Assessment(v1::STATUTE_PATRONIZING, 0, 150000), "a-1", &a).ok());
  v1::RecordPaymentResponse before, after;
  ASSERT_TRUE(Pay(a.assessment().id(), 10000, D(2026, 6, 30), "p-before", &before).ok());
  ASSERT_TRUE(Pay(a.assessment().id(), 10000, D(2026, 7, 1), "p-after", &after).ok());
  EXPECT_EQ(before.payment().policy_id(), "default-sex-buyer");
  EXPECT_EQ(after.payment().policy_id(), "policy-53033-2026-07-01");
  auto agency = [](const v1::RecordPaymentResponse& r) {
    for (const auto& d : r.payment().disbursements()) {
      if (d.account() == "org:seattle-pd") return d.amount_cents();
    }
    return int64_t{-1};
  };
  EXPECT_EQ(agency(before), 4800);
  EXPECT_EQ(agency(after), 3800);
}

TEST_F(FeeTest, SharesWithoutRecipientsAreHeldInSuspense) {
  v1::RecordAssessmentResponse a;
  ASSERT_TRUE(Assess(Assessment(v1::STATUTE_PATRONIZING, 0, 150000, kPierce, ""), "a-p", &a,
                     pierce_clerk_.get())
                  .ok());
  v1::RecordPaymentResponse paid;
  ASSERT_TRUE(
      Pay(a.assessment().id(), 150000, D(2026, 5, 1), "p-p", &paid, pierce_clerk_.get()).ok());
  std::map<std::string, int64_t> got;
  for (const auto& d : paid.payment().disbursements()) got[d.account()] = d.amount_cents();
  EXPECT_EQ(got["suspense:local_providers:53053"], 75000);
  EXPECT_EQ(got["suspense:hosting_agency:53053"], 72000);
  EXPECT_EQ(got["org:state-commerce"], 3000);
  ASSERT_TRUE(service_->RefreshGauges().ok());
  EXPECT_EQ(SumCounter(*registry_, "safeharbor_fees_suspense_cents"), 147000);
}

std::vector<std::vector<std::string>> ParseCsv(const std::string& csv) {
  std::vector<std::vector<std::string>> rows;
  for (absl::string_view line : absl::StrSplit(csv, "\r\n", absl::SkipEmpty())) {
    rows.push_back(absl::StrSplit(line, ','));
  }
  return rows;
}

TEST_F(FeeTest, ReportsReconcileWithTheLedgerAndExportCsv) {
  v1::RecordAssessmentResponse k, p;
  ASSERT_TRUE(Assess(Assessment(v1::STATUTE_PATRONIZING, 1, 250000), "a-k", &k).ok());
  ASSERT_TRUE(Assess(Assessment(v1::STATUTE_PATRONIZING, 0, 150000, kPierce, ""), "a-p", &p,
                     pierce_clerk_.get())
                  .ok());
  v1::RecordPaymentResponse r1, r2, r3;
  ASSERT_TRUE(Pay(k.assessment().id(), 100000, D(2026, 4, 10), "k1", &r1).ok());
  ASSERT_TRUE(Pay(k.assessment().id(), 33333, D(2026, 5, 10), "k2", &r2).ok());
  ASSERT_TRUE(Pay(p.assessment().id(), 50000, D(2026, 5, 11), "p1", &r3, pierce_clerk_.get()).ok());
  v1::ReversePaymentRequest rev;
  rev.set_request_id("rv");
  rev.set_payment_id(r2.payment().id());
  *rev.mutable_reversed_date() = D(2026, 5, 20);
  v1::ReversePaymentResponse reversed;
  ASSERT_TRUE(clerk_->ReversePayment(Ctx().get(), rev, &reversed).ok());
  const int64_t net = 100000 + 50000;

  auto fiscal = Stub("state-commerce", "fiscal");
  v1::ReportPeriod q2;
  *q2.mutable_from() = D(2026, 4, 1);
  *q2.mutable_to() = D(2026, 7, 1);
  v1::GetDisbursementReportRequest dreq;
  *dreq.mutable_period() = q2;
  v1::GetDisbursementReportResponse drep;
  ASSERT_TRUE(fiscal->GetDisbursementReport(Ctx().get(), dreq, &drep).ok());
  EXPECT_EQ(drep.total_cents(), net);
  int64_t sum = 0;
  for (const auto& r : drep.recipients()) sum += r.amount_cents();
  EXPECT_EQ(sum, net);
  EXPECT_EQ(sum, Sql("SELECT sum(amount_cents) AS n FROM ledger_entries WHERE recipient_kind > 0"));
  auto rows = ParseCsv(drep.csv());
  ASSERT_EQ(rows.size(), static_cast<size_t>(drep.recipients_size()) + 2);  // header + total
  EXPECT_EQ(rows[0][0], "account");
  EXPECT_EQ(rows.back()[2], "1500.00");

  v1::GetCollectionReportRequest creq;
  *creq.mutable_period() = q2;
  v1::GetCollectionReportResponse crep;
  ASSERT_TRUE(fiscal->GetCollectionReport(Ctx().get(), creq, &crep).ok());
  std::map<std::string, v1::CollectionRow> by;
  for (const auto& r : crep.rows()) by[r.group_kind() + ":" + r.group_id()] = r;
  const auto& king = by["jurisdiction:53033"];
  EXPECT_EQ(king.ordered_cents(), 250000);
  EXPECT_EQ(king.collected_cents(), 100000);
  EXPECT_EQ(king.collection_rate_bp(), 4000);
  const auto& pierce = by["jurisdiction:53053"];
  EXPECT_EQ(pierce.collected_cents(), 50000);
  EXPECT_EQ(pierce.suspense_cents(), 49000);
  EXPECT_EQ(pierce.disbursed_cents(), 1000);
  EXPECT_EQ(by["court:court-king"].collected_cents() + by["court:court-pierce"].collected_cents(),
            net);
  EXPECT_EQ(by["court:court-pierce"].collected_cents(), 50000);
  EXPECT_EQ(ParseCsv(crep.csv()).size(), static_cast<size_t>(crep.rows_size()) + 1);

  v1::GetCommerceRemittanceRequest rreq;
  rreq.set_year(2026);
  rreq.set_quarter(2);
  v1::GetCommerceRemittanceResponse rrep;
  ASSERT_TRUE(fiscal->GetCommerceRemittance(Ctx().get(), rreq, &rrep).ok());
  EXPECT_EQ(rrep.commerce_total_cents(), 3000);  // 2% of 1,500.00 net
  EXPECT_EQ(rrep.commerce_total_cents(),
            Sql("SELECT sum(amount_cents) AS n FROM ledger_entries WHERE account = "
                "'org:state-commerce'"));
  int64_t revenue = 0;
  for (const auto& r : rrep.rows()) revenue += r.revenue_received_cents();
  EXPECT_EQ(revenue, net);

  auto provider = Stub("prov-a", "provider");
  v1::GetRecipientStatementRequest sreq;
  *sreq.mutable_period() = q2;
  v1::GetRecipientStatementResponse srep;
  ASSERT_TRUE(provider->GetRecipientStatement(Ctx().get(), sreq, &srep).ok());
  EXPECT_EQ(srep.organization_id(), "prov-a");
  EXPECT_EQ(srep.lines_size(), 3);  // two payments and one reversal
  EXPECT_EQ(srep.total_cents(),
            Sql("SELECT sum(amount_cents) AS n FROM ledger_entries WHERE account = 'org:prov-a'"));
  v1::GetDisbursementReportResponse denied;
  EXPECT_EQ(provider->GetDisbursementReport(Ctx().get(), dreq, &denied).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(FeeTest, ClerksActOnlyForTheirOwnCourt) {
  v1::RecordAssessmentResponse a;
  ASSERT_TRUE(Assess(Assessment(v1::STATUTE_PATRONIZING, 0, 150000), "a-1", &a).ok());
  auto other = Stub("court-pierce", "court_clerk");
  v1::RecordPaymentResponse paid;
  EXPECT_EQ(Pay(a.assessment().id(), 100, D(2026, 5, 1), "x", &paid, other.get()).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::Assessment forged = Assessment(v1::STATUTE_PATRONIZING, 0, 150000);
  forged.set_court_organization_id("court-king");
  EXPECT_EQ(Assess(forged, "y", &a, other.get()).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  auto officer = Stub("seattle-pd", "law_enforcement");
  EXPECT_EQ(
      Assess(Assessment(v1::STATUTE_PATRONIZING, 0, 150000), "z", &a, officer.get()).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Sql("SELECT count(*) AS n FROM payments"), 0);
  EXPECT_EQ(Sql("SELECT count(*) AS n FROM assessments"), 1);
}

TEST_F(FeeTest, BadInputIsRefusedAndStoresNothing) {
  struct Case {
    std::function<void(v1::Assessment*)> mutate;
    const char* field;
  };
  const std::vector<Case> cases = {
      {[](v1::Assessment* a) { a->set_case_number(""); }, "case_number"},
      {[](v1::Assessment* a) { a->set_jurisdiction_fips("00000"); }, "jurisdiction_fips"},
      {[](v1::Assessment* a) { a->set_statute(v1::STATUTE_UNSPECIFIED); }, "statute"},
      {[](v1::Assessment* a) { a->set_priors(-1); }, "priors"},
      {[](v1::Assessment* a) { *a->mutable_assessed_date() = D(2026, 2, 30); }, "assessed_date"},
      {[](v1::Assessment* a) { *a->mutable_offense_date() = D(2026, 5, 1); }, "offense_date"},
      {[](v1::Assessment* a) { a->set_hosting_agency_organization_id("Bad Agency"); },
       "hosting_agency_organization_id"},
      {[](v1::Assessment* a) { a->set_ordered_cents(-5); }, "ordered_cents"},
  };
  v1::RecordAssessmentResponse resp;
  int n = 0;
  for (const auto& c : cases) {
    v1::Assessment a = Assessment(v1::STATUTE_PATRONIZING, 0, 150000);
    c.mutate(&a);
    grpc::Status st = Assess(a, absl::StrCat("bad-", ++n), &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_NE(st.error_message().find(c.field), std::string::npos) << st.error_message();
  }
  ASSERT_TRUE(Assess(Assessment(v1::STATUTE_PATRONIZING, 0, 150000), "good", &resp).ok());
  v1::RecordPaymentResponse paid;
  EXPECT_EQ(Pay(resp.assessment().id(), 0, D(2026, 5, 1), "p0", &paid).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Pay(resp.assessment().id(), 100, D(2026, 3, 1), "p1", &paid).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // before the assessment
  EXPECT_EQ(Pay(resp.assessment().id(), 100, D(2027, 3, 1), "p2", &paid).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // in the future
  EXPECT_EQ(Sql("SELECT count(*) AS n FROM assessments"), 1);
  EXPECT_EQ(Sql("SELECT count(*) AS n FROM payments"), 0);
  EXPECT_EQ(Sql("SELECT count(*) AS n FROM ledger_txns"), 1);
}

TEST_F(FeeTest, TheApplicationCannotUpdateOrDeleteLedgerRows) {
  v1::RecordAssessmentResponse a;
  ASSERT_TRUE(Assess(Assessment(v1::STATUTE_PATRONIZING, 0, 150000), "a-1", &a).ok());
  v1::RecordPaymentResponse paid;
  ASSERT_TRUE(Pay(a.assessment().id(), 1000, D(2026, 5, 1), "p", &paid).ok());
  // Through the service's own connection pool and role.
  for (const char* sql :
       {"UPDATE ledger_entries SET amount_cents = amount_cents + 1", "DELETE FROM ledger_entries",
        "TRUNCATE ledger_entries CASCADE", "UPDATE payments SET amount_cents = 1",
        "DELETE FROM assessments", "UPDATE ledger_txns SET effective_date = '2020-01-01'",
        "UPDATE receivable_balances SET amount_cents = 0", "DELETE FROM receivable_balances",
        "TRUNCATE receivable_balances"}) {
    auto r = pg_->Query(sql);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << sql << r.status();
  }
  // An unbalanced transaction is refused at commit.
  absl::Status st = pg_->Transact([](PgTx& tx) -> absl::Status {
    auto t = tx.Exec(
        "INSERT INTO ledger_txns (kind, assessment_id, jurisdiction, court_org, effective_date) "
        "SELECT 'payment', id, jurisdiction, court_org, assessed_date FROM assessments LIMIT 1 "
        "RETURNING id");
    if (!t.ok()) return t.status();
    return tx
        .Exec(
            "INSERT INTO ledger_entries (txn_id, account, recipient_kind, amount_cents) "
            "VALUES ($1, 'org:thief', 1, 100)",
            {t->Int64(0, "id")})
        .status();
  });
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(Sql("SELECT count(*) AS n FROM ledger_entries WHERE account = 'org:thief'"), 0);
}

// Issue 11: the court's jurisdiction and the hosting agency are the directory's facts.
TEST_F(FeeTest, ClerksAssessOnlyTheirCourtsJurisdictionWithALawEnforcementHost) {
  v1::RecordAssessmentResponse a;
  grpc::Status st =
      Assess(Assessment(v1::STATUTE_PATRONIZING, 0, 150000, kPierce, "seattle-pd"), "j-1", &a);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  EXPECT_NE(st.error_message().find("jurisdiction"), std::string::npos) << st.error_message();
  for (const char* agency : {"prov-a", "court-king", "made-up-pd"}) {
    st = Assess(Assessment(v1::STATUTE_PATRONIZING, 0, 150000, kKing, agency),
                absl::StrCat("h-", agency), &a);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << agency;
    EXPECT_NE(st.error_message().find("hosting_agency_organization_id"), std::string::npos)
        << st.error_message();
  }
  // A court_clerk certificate of an organization that is not a court in the directory.
  for (const char* org : {"prov-a", "not-listed"}) {
    auto clerk = Stub(org, "court_clerk");
    v1::Assessment forged = Assessment(v1::STATUTE_PATRONIZING, 0, 150000);
    forged.set_court_organization_id(org);
    st = Assess(forged, "f-1", &a, clerk.get());
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << org;
  }
  EXPECT_EQ(Sql("SELECT count(*) AS n FROM assessments"), 0);
  ASSERT_TRUE(Assess(Assessment(v1::STATUTE_PATRONIZING, 0, 150000), "ok-k", &a).ok());
  ASSERT_TRUE(Assess(Assessment(v1::STATUTE_PATRONIZING, 0, 150000, kPierce, "seattle-pd"), "ok-p",
                     &a, pierce_clerk_.get())
                  .ok());
  EXPECT_EQ(Sql("SELECT count(*) AS n FROM assessments"), 2);
}

TEST_F(FeeTest, FiscalOfficesAdoptOnlyForTheirJurisdictionAndNeverBeforeToday) {
  auto adopt = [&](const std::string& org, const std::string& county, v1::Date from) {
    v1::AdoptDisbursementPolicyRequest req;
    req.set_request_id(absl::StrCat(org, county, from.year(), from.month(), from.day()));
    auto* p = req.mutable_policy();
    p->set_fee_type("sex_buyer");
    p->set_jurisdiction_fips(county);
    *p->mutable_effective_from() = from;
    for (auto [kind, bp] : {std::pair{v1::RECIPIENT_KIND_LOCAL_PROVIDERS, 6000},
                            {v1::RECIPIENT_KIND_HOSTING_AGENCY, 3800},
                            {v1::RECIPIENT_KIND_COMMERCE, 200}}) {
      auto* share = p->add_shares();
      share->set_recipient_kind(kind);
      share->set_basis_points(bp);
    }
    v1::AdoptDisbursementPolicyResponse resp;
    return Stub(org, "fiscal")->AdoptDisbursementPolicy(Ctx().get(), req, &resp);
  };
  // The clock says 2026-11-22.
  EXPECT_TRUE(adopt("king-finance", kKing, D(2026, 11, 22)).ok());
  EXPECT_EQ(adopt("king-finance", kPierce, D(2026, 12, 1)).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(adopt("not-listed", kKing, D(2026, 12, 1)).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(adopt("state-commerce", kPierce, D(2026, 11, 23)).ok());  // the state office
  for (v1::Date past : {D(2020, 1, 1), D(2026, 11, 21)}) {
    grpc::Status st = adopt("state-commerce", kKing, past);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << past.year();
    EXPECT_NE(st.error_message().find("effective_from"), std::string::npos);
    EXPECT_EQ(adopt("king-finance", kKing, past).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  EXPECT_EQ(Sql("SELECT count(*) AS n FROM disbursement_policies WHERE jurisdiction <> ''"), 2);
}

// Issue 13: a payment makes three round trips to PostgreSQL: its assessment's jurisdiction
// (before the recipients are looked up, no connection held meanwhile); then BEGIN, the
// request_id claim, the assessment locked with its balance and the policy together; then the
// ledger transaction, the payment, the stored response and COMMIT. The ledger still balances.
TEST_F(FeeTest, APaymentMakesThreeRoundTripsToPostgres) {
  v1::RecordAssessmentResponse a;
  ASSERT_TRUE(Assess(Assessment(v1::STATUTE_PATRONIZING, 0, 150000), "a-rt", &a).ok());
  v1::RecordPaymentResponse p1, p2;
  ASSERT_TRUE(Pay(a.assessment().id(), 100001, D(2026, 5, 1), "p-rt-1", &p1).ok());
  ASSERT_TRUE(Pay(a.assessment().id(), 30000, D(2026, 5, 2), "p-rt-2", &p2).ok());
  const HistogramTotals trips = SumHistogram(*registry_, "safeharbor_rpc_postgres_round_trips",
                                             {{"grpc_method", "RecordPayment"}}, 3);
  EXPECT_EQ(trips.count, 2u);
  EXPECT_EQ(trips.at_most, 2u) << "every payment within 3 round trips";
  EXPECT_EQ(p2.outstanding_cents(), 150000 - 100001 - 30000);
  EXPECT_GT(p1.payment().disbursements_size(), 2);
  EXPECT_EQ(Sql("SELECT count(*) AS n FROM (SELECT txn_id FROM ledger_entries GROUP BY txn_id "
                "HAVING sum(amount_cents) <> 0) x"),
            0);
  EXPECT_EQ(Sql("SELECT count(*) AS n FROM ledger_entries e JOIN payments p "
                "ON p.txn_id = e.txn_id"),
            2 + p1.payment().disbursements_size() + p2.payment().disbursements_size());
  std::cout << "RecordPayment round trips to PostgreSQL: " << trips.sum / trips.count
            << " per payment (" << p1.payment().disbursements_size() << " disbursements)\n";
}

TEST_F(FeeTest, ReplaysReturnTheOriginalAndConflictsAreRefused) {
  v1::RecordAssessmentResponse a;
  ASSERT_TRUE(Assess(Assessment(v1::STATUTE_PATRONIZING, 0, 150000), "a-1", &a).ok());
  v1::RecordPaymentResponse first, again, conflict;
  ASSERT_TRUE(Pay(a.assessment().id(), 1000, D(2026, 5, 1), "same", &first).ok());
  ASSERT_TRUE(Pay(a.assessment().id(), 1000, D(2026, 5, 1), "same", &again).ok());
  EXPECT_EQ(first.payment().id(), again.payment().id());
  EXPECT_EQ(first.outstanding_cents(), again.outstanding_cents());
  grpc::Status st = Pay(a.assessment().id(), 2000, D(2026, 5, 1), "same", &conflict);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_NE(st.error_message().find("amount_cents"), std::string::npos);
  EXPECT_EQ(Sql("SELECT count(*) AS n FROM payments"), 1);
}

}  // namespace
}  // namespace safeharbor::fees
