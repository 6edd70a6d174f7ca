// A fee service over real gRPC/mTLS with real PostgreSQL, reading recipients from a real
// directory service, both in process.
#pragma once

#include <gtest/gtest.h>

#include <tuple>

#include "common/clock.h"
#include "common/metrics.h"
#include "common/server.h"
#include "common/testing/harness.h"
#include "common/testing/hosted.h"
#include "services/directory/directory_service.h"
#include "services/fees/fee_service.h"

namespace safeharbor::directory {
const std::vector<Migration>& Migrations();
}
namespace safeharbor::fees {
const std::vector<Migration>& Migrations();

constexpr char kKing[] = "53033";    // three providers
constexpr char kPierce[] = "53053";  // no provider: shares go to suspense

inline std::unique_ptr<grpc::ClientContext> Ctx(int seconds = 20) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return ctx;
}

inline v1::Date D(int y, int m, int d) {
  v1::Date out;
  out.set_year(y);
  out.set_month(m);
  out.set_day(d);
  return out;
}

class FeeFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& s = safeharbor::testing::TestServers::Get();
    // The directory, with providers in King County and none in Pierce.
    directory_.Connect("fdir", directory::Migrations(), 2, 8, /*with_redis=*/false);
    directory_.service = std::make_unique<directory::DirectoryServiceImpl>(
        directory_.env.get(), directory_.pg.get(), nullptr, *directory_.registry,
        WashingtonCounties());
    directory_.Serve("directory");
    auto admin = directory::v1::DirectoryService::NewStub(
        s.Channel(directory_.port(), "state-directory", "directory_admin"));
    // The courts (their county is the jurisdiction they serve) and the hosting agency.
    using K = directory::v1::OrganizationKind;
    const std::tuple<const char*, K, const char*> orgs[] = {
        {"prov-c", directory::v1::ORGANIZATION_KIND_SERVICE_PROVIDER, kKing},
        {"prov-a", directory::v1::ORGANIZATION_KIND_SERVICE_PROVIDER, kKing},
        {"prov-b", directory::v1::ORGANIZATION_KIND_SERVICE_PROVIDER, kKing},
        {"court-king", directory::v1::ORGANIZATION_KIND_COURT, kKing},
        {"court-pierce", directory::v1::ORGANIZATION_KIND_COURT, kPierce},
        {"seattle-pd", directory::v1::ORGANIZATION_KIND_LAW_ENFORCEMENT_AGENCY, kKing},
        {"king-finance", directory::v1::ORGANIZATION_KIND_STATE_AGENCY, kKing}};
    for (const auto& [id, kind, county] : orgs) {
      directory::v1::CreateOrganizationRequest req;
      req.set_request_id(id);
      auto* o = req.mutable_organization();
      o->set_id(id);
      o->set_kind(kind);
      o->set_name(id);
      o->set_county_fips(county);
      directory::v1::CreateOrganizationResponse resp;
      ASSERT_TRUE(admin->CreateOrganization(Ctx().get(), req, &resp).ok());
    }
    // The fee service.
    fees_.Connect("fees", Migrations(), 16, 16, /*with_redis=*/false);
    db_url_ = fees_.db_url;
    PeerOptions peer;
    peer.name = "directory";
    peer.address = directory_.address();
    peer.tls = s.ServerTls("fees");
    recipients_ = std::make_unique<DirectoryRecipients>(*Peer::Connect(peer), absl::Seconds(60));
    FeeOptions fo;
    fo.commerce_organization_id = "state-commerce";
    fees_.service =
        std::make_unique<FeeServiceImpl>(fees_.env.get(), fees_.pg.get(), recipients_.get(),
                                         *fees_.registry, WashingtonCounties(), &clock_, fo);
    fees_.Serve("fees");
    pg_ = fees_.pg.get();
    service_ = fees_.service.get();
    registry_ = fees_.registry.get();
    clerk_ = Stub("court-king", "court_clerk");
    pierce_clerk_ = Stub("court-pierce", "court_clerk");
  }

  void TearDown() override {
    // After every test: the report totals kept by the trigger agree with the ledger, row by row.
    EXPECT_EQ(Sql(R"sql(
      SELECT count(*) AS n FROM (
        SELECT t.effective_date, t.jurisdiction, t.court_org, t.kind, e.account, e.recipient_kind,
               sum(e.amount_cents) AS amount, count(*) AS entries
        FROM ledger_entries e JOIN ledger_txns t ON t.id = e.txn_id GROUP BY 1, 2, 3, 4, 5, 6) l
      FULL JOIN (
        SELECT effective_date, jurisdiction, court_org, kind, account, recipient_kind,
               sum(amount_cents) AS amount, sum(entries) AS entries
        FROM ledger_daily_totals GROUP BY 1, 2, 3, 4, 5, 6) d
      USING (effective_date, jurisdiction, court_org, kind, account, recipient_kind)
      WHERE l.amount IS DISTINCT FROM d.amount OR l.entries IS DISTINCT FROM d.entries)sql"),
              0);
    // ... and so do the outstanding balances, account by account.
    EXPECT_EQ(Sql(R"sql(
      SELECT count(*) AS n FROM (
        SELECT account, sum(amount_cents) AS amount, count(*) AS entries FROM ledger_entries
        WHERE account LIKE 'receivable:%' GROUP BY 1) l
      FULL JOIN receivable_balances b USING (account)
      WHERE l.amount IS DISTINCT FROM b.amount_cents OR l.entries IS DISTINCT FROM b.entries)sql"),
              0);
    fees_.Shutdown();
    directory_.Shutdown();
  }

  std::unique_ptr<v1::FeeService::Stub> Stub(const std::string& org, const std::string& role) {
    return fees_.Stub<v1::FeeService>(org, role);
  }

  static v1::Assessment Assessment(v1::Statute statute, int priors, int64_t ordered,
                                   const std::string& jurisdiction = kKing,
                                   const std::string& agency = "seattle-pd") {
    v1::Assessment a;
    a.set_case_number("26-1-00001-1 SEA");
    a.set_jurisdiction_fips(jurisdiction);
    a.set_statute(statute);
    a.set_priors(priors);
    a.set_ordered_cents(ordered);
    a.set_hosting_agency_organization_id(agency);
    *a.mutable_offense_date() = D(2026, 3, 1);
    *a.mutable_assessed_date() = D(2026, 4, 1);
    return a;
  }

  grpc::Status Assess(const v1::Assessment& a, const std::string& rid,
                      v1::RecordAssessmentResponse* resp, v1::FeeService::Stub* stub = nullptr) {
    v1::RecordAssessmentRequest req;
    req.set_request_id(rid);
    *req.mutable_assessment() = a;
    return (stub ? stub : clerk_.get())->RecordAssessment(Ctx().get(), req, resp);
  }

  grpc::Status Pay(const std::string& assessment, int64_t cents, const v1::Date& date,
                   const std::string& rid, v1::RecordPaymentResponse* resp,
                   v1::FeeService::Stub* stub = nullptr) {
    v1::RecordPaymentRequest req;
    req.set_request_id(rid);
    req.set_assessment_id(assessment);
    req.set_amount_cents(cents);
    *req.mutable_paid_date() = date;
    return (stub ? stub : clerk_.get())->RecordPayment(Ctx().get(), req, resp);
  }

  int64_t Sql(const std::string& sql) {
    auto r = pg_->Query(sql);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->Int64(0, "n") : -1;
  }

  FakeClock clock_{absl::FromCivil(absl::CivilSecond(2026, 11, 22, 12, 0, 0), absl::UTCTimeZone())};
  safeharbor::testing::Hosted<directory::DirectoryServiceImpl> directory_;
  std::unique_ptr<DirectoryRecipients> recipients_;
  safeharbor::testing::Hosted<FeeServiceImpl> fees_;
  PgPool* pg_ = nullptr;                      // fees_'s
  FeeServiceImpl* service_ = nullptr;         // fees_'s
  prometheus::Registry* registry_ = nullptr;  // fees_'s
  std::unique_ptr<v1::FeeService::Stub> clerk_;
  // King County's court (clerk_) records only King's assessments; Pierce's court, Pierce's.
  std::unique_ptr<v1::FeeService::Stub> pierce_clerk_;
  std::string db_url_;
};

}  // namespace safeharbor::fees
