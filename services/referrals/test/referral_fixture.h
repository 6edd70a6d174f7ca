// The referral tests' fixture: the referral service through real gRPC over mTLS, routing
// against a real directory service and a real beds service (in process, each on its own
// PostgreSQL database), with an injected clock shared by beds and referrals so deadlines can pass
// without waiting. Shared by the referral test files (each TEST_F in its own file).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/idempotency.h"
#include "common/metrics.h"
#include "common/proto_time.h"
#include "common/server.h"
#include "common/testing/harness.h"
#include "common/testing/hosted.h"
#include "services/beds/beds_service.h"
#include "services/directory/directory_service.h"
#include "services/referrals/referral_service.h"

namespace safeharbor::directory {
const std::vector<Migration>& Migrations();
}
namespace safeharbor::beds {
const std::vector<Migration>& Migrations();
}
namespace safeharbor::referrals {
const std::vector<Migration>& Migrations();

using safeharbor::testing::Hosted;
using safeharbor::testing::TestServers;
namespace dir = directory::v1;
using Stub = v1::ReferralService::Stub;

inline constexpr char kKing[] = "53033";
inline constexpr char kSnohomish[] = "53061";
inline constexpr char kPierce[] = "53053";

inline std::unique_ptr<grpc::ClientContext> Ctx(int seconds = 10) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return ctx;
}

// The real network, with switches for outages and for options the real services would never
// return (to prove routing refuses them on its own).
class SwitchableNetwork final : public Network {
 public:
  explicit SwitchableNetwork(std::unique_ptr<Network> real) : real_(std::move(real)) {}
  std::atomic<bool> beds_down{false};
  // The hold is taken, then the call "fails" as if the process died before recording it.
  std::atomic<bool> lose_next_hold{false};
  std::vector<Option> extra_beds;           // set before routing starts
  std::atomic<bool> directory_down{false};  // hand-off lookups fail
  // Runs once, after the next hold is taken and before routing goes on (set before routing).
  std::function<void()> after_hold;

  absl::StatusOr<std::vector<Option>> FindServices(const v1::Referral& r, absl::Time now) override {
    return real_->FindServices(r, now);
  }
  absl::StatusOr<std::vector<Option>> FindBeds(const v1::Referral& r) override {
    if (beds_down) return absl::UnavailableError("beds is down (test)");
    auto found = real_->FindBeds(r);
    if (found.ok()) found->insert(found->end(), extra_beds.begin(), extra_beds.end());
    return found;
  }
  absl::StatusOr<std::string> HoldBed(const std::string& request_id, const v1::Candidate& c,
                                      const std::string& referral_id, const std::string& for_org,
                                      absl::Duration ttl) override {
    if (beds_down) return absl::UnavailableError("beds is down (test)");
    auto hold = real_->HoldBed(request_id, c, referral_id, for_org, ttl);
    if (hold.ok() && lose_next_hold.exchange(false)) return absl::UnavailableError("crash (test)");
    if (hold.ok() && after_hold) std::exchange(after_hold, nullptr)();
    return hold;
  }
  absl::Status ReleaseHold(const std::string& hold_id) override {
    if (beds_down) return absl::UnavailableError("beds is down (test)");
    return real_->ReleaseHold(hold_id);
  }
  absl::StatusOr<absl::Time> ExtendHold(const std::string& rid, const std::string& hold_id,
                                        absl::Time expire_time) override {
    if (beds_down) return absl::UnavailableError("beds is down (test)");
    return real_->ExtendHold(rid, hold_id, expire_time);
  }
  absl::Status ConfirmPlacement(const std::string& rid, const std::string& hold_id) override {
    if (beds_down) return absl::UnavailableError("beds is down (test)");
    return real_->ConfirmPlacement(rid, hold_id);
  }
  absl::StatusOr<v1::Handoff> HandoffFor(const Option& o) override {
    if (directory_down) return absl::UnavailableError("directory is down (test)");
    return real_->HandoffFor(o);
  }
  absl::StatusOr<v1::Handoff> OnCallOffice(const std::string& county) override {
    return real_->OnCallOffice(county);
  }
  absl::StatusOr<std::vector<std::string>> OrganizationCounties(const std::string& org) override {
    return real_->OrganizationCounties(org);
  }

 private:
  std::unique_ptr<Network> real_;
};

inline dir::Organization Org(const std::string& id, dir::OrganizationKind kind,
                             const std::string& county, double lat, double lng) {
  dir::Organization o;
  o.set_id(id);
  o.set_kind(kind);
  o.set_name("Org " + id);
  o.set_county_fips(county);
  auto* l = o.add_locations();
  l->set_id("main");
  l->set_name("Main site");
  l->set_address_1("1 Main St");
  l->set_city("City of " + id);
  l->set_latitude(lat);
  l->set_longitude(lng);
  l->set_county_fips(county);
  o.add_phones()->set_number("+1 206-555-" + std::to_string(1000 + id.size()));
  return o;
}

class ReferralTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& s = TestServers::Get();
    // Directory.
    directory_.Connect("refdir", directory::Migrations());
    directory::DirectoryOptions dopts;
    dopts.cache_namespace = absl::StrCat("refdir", ++counter_, absl::ToUnixNanos(absl::Now()));
    directory_.service = std::make_unique<directory::DirectoryServiceImpl>(
        directory_.env.get(), directory_.pg.get(), directory_.redis.get(), *directory_.registry,
        WashingtonCounties(), dopts);
    directory_.Serve("directory");
    // Beds.
    beds_.Connect("refbeds", beds::Migrations());
    beds::BedsOptions bopts;
    bopts.key_namespace = absl::StrCat("refbeds", counter_, absl::ToUnixNanos(absl::Now()));
    bopts.max_active_holds_per_org = HoldCap();
    beds_.service = std::make_unique<beds::BedsServiceImpl>(
        beds_.env.get(), beds_.pg.get(), beds_.redis.get(), *beds_.registry, WashingtonCounties(),
        &clock_, nullptr, bopts);
    beds_.Serve("beds");
    SeedNetwork();
    // Referrals, calling the two with its own service certificate.
    auto peer = [&](const std::string& name, const std::string& address) {
      PeerOptions p;
      p.name = name;
      p.address = address;
      p.tls = s.ServerTls("referrals");
      p.deadline = absl::Seconds(2);
      auto connected = Peer::Connect(p);
      EXPECT_TRUE(connected.ok());
      return *std::move(connected);
    };
    network_ = new SwitchableNetwork(
        std::make_unique<GrpcNetwork>(peer("directory", directory_.address()),
                                      peer("beds", beds_.address()), WashingtonCounties()));
    network_owner_.reset(network_);
    referrals_.Connect("ref", Migrations());
    ReferralOptions ropts;
    ropts.key_namespace = absl::StrCat("ref", counter_, absl::ToUnixNanos(absl::Now()));
    ropts.watch.poll_interval = absl::Milliseconds(100);
    referrals_.service = std::make_unique<ReferralServiceImpl>(
        referrals_.env.get(), referrals_.pg.get(), referrals_.redis.get(), *referrals_.registry,
        WashingtonCounties(), &clock_, &sealer_, network_, ropts);
    referrals_.service->StartBackground(/*timers=*/false);
    referrals_.Serve("referrals");
    officer_ = Stub_("le-seattle", "law_enforcement");
  }

  void TearDown() override {
    referrals_.service->StopBackground();
    referrals_.host->Shutdown();
    beds_.host->Shutdown();
    directory_.host->Shutdown();
  }

  // Active bed holds one agency may have (the beds service's cap).
  virtual int64_t HoldCap() const { return 25; }

  std::unique_ptr<Stub> Stub_(const std::string& org, const std::string& role) {
    return v1::ReferralService::NewStub(
        TestServers::Get().Channel(referrals_.host->port(), org, role));
  }

  void SeedNetwork() {
    auto& s = TestServers::Get();
    auto admin = dir::DirectoryService::NewStub(
        s.Channel(directory_.host->port(), "state-directory", "directory_admin"));
    const std::vector<dir::Organization> orgs = {
        Org("prov-a", dir::ORGANIZATION_KIND_SERVICE_PROVIDER, kKing, 47.61, -122.33),
        Org("prov-b", dir::ORGANIZATION_KIND_SERVICE_PROVIDER, kSnohomish, 47.98, -122.20),
        Org("prov-c", dir::ORGANIZATION_KIND_SERVICE_PROVIDER, kPierce, 47.25, -122.44),
        Org("cw-king", dir::ORGANIZATION_KIND_CHILD_WELFARE_OFFICE, kKing, 47.60, -122.32),
        Org("cw-pierce", dir::ORGANIZATION_KIND_CHILD_WELFARE_OFFICE, kPierce, 47.25, -122.44),
    };
    for (const auto& o : orgs) {
      dir::CreateOrganizationRequest req;
      req.set_request_id("org-" + o.id());
      *req.mutable_organization() = o;
      dir::CreateOrganizationResponse resp;
      grpc::Status st = admin->CreateOrganization(Ctx().get(), req, &resp);
      ASSERT_TRUE(st.ok()) << st.error_message();
    }
    for (const char* p : {"prov-a", "prov-b", "prov-c"}) {
      AddService(p, absl::StrCat("adv-", p), dir::SERVICE_CATEGORY_CSEC_ADVOCACY);
    }
    auto beds_admin = beds::v1::BedsService::NewStub(
        s.Channel(beds_.host->port(), "state-directory", "directory_admin"));
    struct F {
      const char* id;
      const char* org;
      const char* county;
      double lat, lng;
      beds::v1::PlacementType type;
    };
    for (const F& f :
         {F{"fac-a", "prov-a", kKing, 47.61, -122.33, beds::v1::PLACEMENT_TYPE_HOPE_CENTER},
          F{"fac-b", "prov-b", kSnohomish, 47.98, -122.20,
            beds::v1::PLACEMENT_TYPE_CRISIS_RESIDENTIAL_CENTER},
          F{"fac-det", "prov-c", kKing, 47.60, -122.33, beds::v1::PLACEMENT_TYPE_DETENTION},
          F{"fac-scrc", "prov-c", kKing, 47.60, -122.33,
            beds::v1::PLACEMENT_TYPE_SECURE_CRISIS_RESIDENTIAL_CENTER}}) {
      beds::v1::CreateFacilityRequest req;
      req.set_request_id(absl::StrCat("fac-", f.id));
      beds::v1::Facility* fac = req.mutable_facility();
      fac->set_id(f.id);
      fac->set_organization_id(f.org);
      fac->set_name(absl::StrCat("Facility ", f.id));
      fac->set_placement_type(f.type);
      fac->set_county_fips(f.county);
      fac->set_latitude(f.lat);
      fac->set_longitude(f.lng);
      fac->set_minimum_age(10);
      fac->set_maximum_age(20);
      fac->set_csec_specialized(true);
      auto* b = fac->add_bed_types();
      b->set_bed_type(beds::v1::BED_TYPE_GENERAL);
      b->set_licensed_capacity(1);
      beds::v1::CreateFacilityResponse resp;
      grpc::Status st = beds_admin->CreateFacility(Ctx().get(), req, &resp);
      ASSERT_TRUE(st.ok()) << f.id << ": " << st.error_message();
      auto owner = beds::v1::BedsService::NewStub(s.Channel(beds_.host->port(), f.org, "provider"));
      beds::v1::ReportCensusRequest census;
      census.set_request_id(absl::StrCat("census-", f.id));
      census.set_facility_id(f.id);
      *census.mutable_confirmed_time() = ToProtoTime(clock_.Now());
      auto* e = census.add_entries();
      e->set_bed_type(beds::v1::BED_TYPE_GENERAL);
      beds::v1::ReportCensusResponse cresp;
      st = owner->ReportCensus(Ctx().get(), census, &cresp);
      ASSERT_TRUE(st.ok()) << f.id << ": " << st.error_message();
    }
  }

  // A CSEC-specialized service `id` of `category` at `org`, open 24/7 to youth 10 to 24 in King,
  // Snohomish and Pierce.
  void AddService(const std::string& org, const std::string& id, dir::ServiceCategory category) {
    auto admin = dir::DirectoryService::NewStub(
        TestServers::Get().Channel(directory_.host->port(), "state-directory", "directory_admin"));
    dir::CreateServiceRequest req;
    req.set_request_id(absl::StrCat("svc-", id));
    dir::Service* svc = req.mutable_service();
    svc->set_id(id);
    svc->set_organization_id(org);
    svc->set_name(category == dir::SERVICE_CATEGORY_CSEC_ADVOCACY ? "Survivor advocacy"
                                                                  : "Youth services");
    svc->set_category(category);
    svc->set_csec_specialized(true);
    svc->set_minimum_age(10);
    svc->set_maximum_age(24);
    svc->mutable_schedule()->set_open_24_7(true);
    svc->mutable_schedule()->set_time_zone("America/Los_Angeles");
    for (const char* c : {kKing, kSnohomish, kPierce}) svc->add_service_area_county_fips(c);
    svc->set_status(dir::SERVICE_STATUS_ACTIVE);
    svc->set_accepting_referrals(true);
    svc->set_location_id("main");
    dir::CreateServiceResponse resp;
    grpc::Status st = admin->CreateService(Ctx().get(), req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }

  v1::CreateReferralRequest Request(bool placement, const std::string& rid = "r-1") {
    v1::CreateReferralRequest req;
    req.set_request_id(rid);
    req.mutable_referrer_contact()->set_name("Officer Lee");
    req.mutable_referrer_contact()->set_phone("+1 206-555-0142");
    auto* y = req.mutable_youth();
    y->set_youth_reference("SPD-2026-0042");
    y->set_age(15);
    y->set_gender(dir::GENDER_FEMALE);
    y->add_languages("en");
    y->mutable_identifying()->set_name("Jane Q");
    y->mutable_identifying()->set_contact("call aunt 206-555-0177");
    y->mutable_consent()->set_giver(v1::Consent::GIVER_YOUTH);  // 15: for themselves
    y->mutable_consent()->add_scopes(v1::Consent::SCOPE_ACCEPTING_PROVIDER);
    req.set_county_fips(kKing);
    req.mutable_location()->set_latitude(47.6062);
    req.mutable_location()->set_longitude(-122.3321);
    if (placement) {
      req.mutable_needs()->set_placement_tonight(true);
    } else {
      req.mutable_needs()->add_service_categories(dir::SERVICE_CATEGORY_CSEC_ADVOCACY);
    }
    req.set_urgency(v1::URGENCY_ROUTINE);
    return req;
  }

  std::string Create(const v1::CreateReferralRequest& req) {
    v1::CreateReferralResponse resp;
    grpc::Status st = officer_->CreateReferral(Ctx().get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(resp.referral().stage(), v1::ReferrerView::STAGE_ROUTING);
    return resp.referral().id();
  }

  int Timers() {
    auto n = referrals_.service->RunTimers();
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? *n : -1;
  }

  // The full record, as the county's child-welfare office sees it.
  v1::Referral AsChildWelfare(const std::string& id) {
    v1::GetReferralResponse resp;
    grpc::Status st = Stub_("cw-king", "child_welfare")->GetReferral(Ctx().get(), Get(id), &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp.referral();
  }

  v1::ReferrerView AsOfficer(const std::string& id) {
    v1::GetReferralResponse resp;
    grpc::Status st = officer_->GetReferral(Ctx().get(), Get(id), &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    EXPECT_TRUE(resp.has_referrer_view());
    return resp.referrer_view();
  }

  static v1::GetReferralRequest Get(const std::string& id) {
    v1::GetReferralRequest req;
    req.set_id(id);
    return req;
  }

  grpc::Status Accept(const std::string& org, const std::string& id, v1::Referral* out = nullptr) {
    v1::AcceptReferralRequest req;
    req.set_id(id);
    req.set_request_id("accept-" + id);
    v1::AcceptReferralResponse resp;
    grpc::Status st = Stub_(org, "provider")->AcceptReferral(Ctx().get(), req, &resp);
    if (out != nullptr) *out = resp.referral();
    return st;
  }

  int64_t Count(PgPool* pg, const std::string& sql) {
    auto r = pg->Query(sql);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->Int64(0, "n") : -1;
  }

  double Metric(const std::string& name) {
    double total = 0;
    for (const auto& family : referrals_.registry->Collect()) {
      if (family.name != name) continue;
      for (const auto& m : family.metric) total += m.counter.value + m.gauge.value;
    }
    return total;
  }

  // One series of a family by its one label's value (a gauge or a counter).
  double Gauge(const std::string& name, const std::string& label_value) {
    for (const auto& family : referrals_.registry->Collect()) {
      if (family.name != name) continue;
      for (const auto& m : family.metric) {
        if (!m.label.empty() && m.label[0].value == label_value) {
          return m.counter.value + m.gauge.value;
        }
      }
    }
    return -1;
  }

  // Issue 14: the bed hold's expiry as the beds service stores it (seconds since the epoch).
  int64_t HoldExpiry(const std::string& hold) {
    auto r = beds_.pg->Query(
        "SELECT extract(epoch FROM expire_time)::bigint AS n FROM holds WHERE id = $1", {hold});
    EXPECT_TRUE(r.ok() && r->rows() == 1);
    return r.ok() && r->rows() == 1 ? r->Int64(0, "n") : -1;
  }

  grpc::Status Handoff(const std::string& org, const std::string& id) {
    v1::ConfirmHandoffRequest req;
    req.set_id(id);
    v1::ConfirmHandoffResponse resp;
    return Stub_(org, "provider")->ConfirmHandoff(Ctx().get(), req, &resp);
  }

  static inline int counter_ = 0;
  FakeClock clock_{absl::FromUnixSeconds(1795000000)};
  Sealer sealer_ = *Sealer::Create({{1, std::string(32, 'k')}}, 1, std::string(32, 'f'));
  Hosted<directory::DirectoryServiceImpl> directory_;
  Hosted<beds::BedsServiceImpl> beds_;
  Hosted<ReferralServiceImpl> referrals_;
  SwitchableNetwork* network_ = nullptr;
  std::unique_ptr<Network> network_owner_;
  std::unique_ptr<Stub> officer_;
};

}  // namespace safeharbor::referrals
