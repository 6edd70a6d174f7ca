// The directory through a real in-process gRPC round trip over mTLS, against real PostgreSQL
// and Redis started by the test harness.
#include "services/directory/directory_service.h"

#include <gtest/gtest.h>

#include <functional>
#include <iostream>
#include <set>

#include "absl/strings/match.h"
#include "common/geo.h"
#include "common/metrics.h"
#include "common/proto_time.h"
#include "common/server.h"
#include "common/testing/harness.h"
#include "common/testing/hosted.h"
#include "common/tls.h"
#include "services/directory/hsds.h"

namespace safeharbor::directory {
const std::vector<Migration>& Migrations();
namespace {

using safeharbor::testing::TestServers;
using Stub = v1::DirectoryService::Stub;
using Hosted = safeharbor::testing::Hosted<DirectoryServiceImpl>;

constexpr char kAdminOrg[] = "state-directory";
constexpr char kSeattle[] = "53033";  // King County

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return ctx;
}

v1::Organization Provider(const std::string& id, const std::string& county, double lat,
                          double lng) {
  v1::Organization o;
  o.set_id(id);
  o.set_kind(v1::ORGANIZATION_KIND_SERVICE_PROVIDER);
  o.set_name("Provider " + id);
  o.set_county_fips(county);
  auto* l = o.add_locations();
  l->set_id("main");
  l->set_name("Main site");
  l->set_latitude(lat);
  l->set_longitude(lng);
  l->set_county_fips(county);
  auto* p = o.add_phones();
  p->set_number("+1 206-555-0100");
  return o;
}

v1::Service Svc(const std::string& id, const std::string& org, v1::ServiceCategory category) {
  v1::Service s;
  s.set_id(id);
  s.set_organization_id(org);
  s.set_name("Service " + id);
  s.set_category(category);
  s.set_csec_specialized(false);
  s.set_minimum_age(12);
  s.set_maximum_age(17);
  s.add_languages("en");
  s.mutable_schedule()->set_open_24_7(true);
  s.mutable_schedule()->set_time_zone("America/Los_Angeles");
  s.add_service_area_county_fips(kSeattle);
  s.set_status(v1::SERVICE_STATUS_ACTIVE);
  s.set_accepting_referrals(true);
  s.set_location_id("main");
  return s;
}

class DirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_url_ = TestServers::Get().NewDatabase("dir");
    cache_namespace_ = db_url_.substr(db_url_.rfind('/') + 1);
    StartService();
    admin_ = Stub_(kAdminOrg, "directory_admin");
  }
  void TearDown() override { StopService(); }

  // A directory on this test's database and Redis namespace (another replica when called
  // again), with the in-process search cache or without it.
  std::unique_ptr<Hosted> HostDirectory(bool local_cache, const QuotaLimits& quotas = {}) {
    auto h = std::make_unique<Hosted>();
    h->Connect("dir", Migrations(), 4, 8, /*with_redis=*/true, db_url_);
    h->env->SetQuotaLimits(quotas);
    DirectoryOptions options;
    options.cache_namespace = cache_namespace_;
    options.search_local_cache.heartbeat = absl::Milliseconds(200);
    if (!local_cache) options.search_local_cache.max_entries = 0;
    h->service = std::make_unique<DirectoryServiceImpl>(
        h->env.get(), h->pg.get(), h->redis.get(), *h->registry, WashingtonCounties(), options);
    h->Serve("directory");
    return h;
  }

  void StartService() {
    hosted_ = HostDirectory(local_cache_);
    registry_ = hosted_->registry;
    host_ = hosted_->host.get();
  }

  // For the tests that observe the Redis level: no in-process level answers before it.
  void UseRedisLevelOnly() {
    local_cache_ = false;
    StopService();
    StartService();
    admin_ = Stub_(kAdminOrg, "directory_admin");
  }

  void StopService() {
    if (hosted_) hosted_->Shutdown();
    hosted_.reset();
    host_ = nullptr;
  }

  std::unique_ptr<Stub> Stub_(const std::string& org, const std::string& role) {
    return v1::DirectoryService::NewStub(TestServers::Get().Channel(host_->port(), org, role));
  }

  v1::Organization CreateOrg(const v1::Organization& org) {
    v1::CreateOrganizationRequest req;
    req.set_request_id("create-" + org.id());
    *req.mutable_organization() = org;
    v1::CreateOrganizationResponse resp;
    grpc::Status st = admin_->CreateOrganization(Ctx().get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp.organization();
  }

  v1::Service CreateSvc(const v1::Service& s) {
    v1::CreateServiceRequest req;
    req.set_request_id("create-" + s.id());
    *req.mutable_service() = s;
    v1::CreateServiceResponse resp;
    grpc::Status st = admin_->CreateService(Ctx().get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp.service();
  }

  std::vector<std::string> SearchIds(const v1::SearchServicesRequest& req) {
    v1::SearchServicesResponse resp;
    grpc::Status st = admin_->SearchServices(Ctx().get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    std::vector<std::string> ids;
    for (const auto& m : resp.matches()) ids.push_back(m.service().id());
    return ids;
  }

  int64_t Rows(const std::string& table) {
    auto r = hosted_->pg->Query("SELECT count(*) AS n FROM " + table);
    return r.ok() ? r->Int64(0, "n") : -1;
  }

  double Cache(const std::string& result) {
    return SumCounter(*registry_, "safeharbor_cache_requests_total",
                      {{"cache", "directory_search"}, {"result", result}});
  }

  std::string db_url_;
  std::string cache_namespace_;
  bool local_cache_ = true;
  std::unique_ptr<Hosted> hosted_;
  std::shared_ptr<prometheus::Registry> registry_;
  ServiceHost* host_ = nullptr;
  std::unique_ptr<Stub> admin_;
};

TEST_F(DirectoryTest, CreateGetUpdateListAnOrganization) {
  v1::Organization created = CreateOrg(Provider("prov-a", kSeattle, 47.61, -122.33));
  EXPECT_EQ(created.id(), "prov-a");
  EXPECT_FALSE(created.etag().empty());
  EXPECT_TRUE(created.has_create_time());

  v1::GetOrganizationRequest get;
  get.set_id("prov-a");
  v1::GetOrganizationResponse got;
  auto reader = Stub_("some-sheriff", "law_enforcement");
  ASSERT_TRUE(reader->GetOrganization(Ctx().get(), get, &got).ok());
  EXPECT_EQ(got.organization().name(), "Provider prov-a");
  EXPECT_EQ(got.organization().locations(0).latitude(), 47.61);

  v1::UpdateOrganizationRequest upd;
  *upd.mutable_organization() = got.organization();
  upd.mutable_organization()->set_name("Renamed");
  v1::UpdateOrganizationResponse updated;
  ASSERT_TRUE(admin_->UpdateOrganization(Ctx().get(), upd, &updated).ok());
  EXPECT_EQ(updated.organization().name(), "Renamed");
  EXPECT_NE(updated.organization().etag(), got.organization().etag());

  v1::ListOrganizationsRequest list;
  v1::ListOrganizationsResponse listed;
  ASSERT_TRUE(admin_->ListOrganizations(Ctx().get(), list, &listed).ok());
  ASSERT_EQ(listed.organizations_size(), 1);
  EXPECT_EQ(listed.organizations(0).name(), "Renamed");

  get.set_id("no-such-org");
  EXPECT_EQ(admin_->GetOrganization(Ctx().get(), get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(DirectoryTest, StaleEtagIsAborted) {
  v1::Organization org = CreateOrg(Provider("prov-a", kSeattle, 47.61, -122.33));
  v1::UpdateOrganizationRequest first;
  *first.mutable_organization() = org;
  first.mutable_organization()->set_name("First writer");
  v1::UpdateOrganizationResponse resp;
  ASSERT_TRUE(admin_->UpdateOrganization(Ctx().get(), first, &resp).ok());
  v1::UpdateOrganizationRequest second = first;  // Still carries the old etag.
  second.mutable_organization()->set_name("Second writer");
  grpc::Status st = admin_->UpdateOrganization(Ctx().get(), second, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::ABORTED) << st.error_message();
  v1::GetOrganizationRequest get;
  get.set_id("prov-a");
  v1::GetOrganizationResponse got;
  ASSERT_TRUE(admin_->GetOrganization(Ctx().get(), get, &got).ok());
  EXPECT_EQ(got.organization().name(), "First writer");
}

TEST_F(DirectoryTest, CreateIsIdempotentOnRequestId) {
  v1::CreateOrganizationRequest req;
  req.set_request_id("req-1");
  *req.mutable_organization() = Provider("", kSeattle, 47.6, -122.3);  // Server picks the id.
  v1::CreateOrganizationResponse a, b;
  ASSERT_TRUE(admin_->CreateOrganization(Ctx().get(), req, &a).ok());
  ASSERT_TRUE(admin_->CreateOrganization(Ctx().get(), req, &b).ok());
  EXPECT_EQ(a.organization().id(), b.organization().id());
  EXPECT_EQ(Rows("organizations"), 1);

  req.mutable_organization()->set_name("Different");
  grpc::Status st = admin_->CreateOrganization(Ctx().get(), req, &b);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_NE(st.error_message().find("organization.name"), std::string::npos) << st.error_message();
  EXPECT_EQ(Rows("organizations"), 1);
}

TEST_F(DirectoryTest, PagingWalksEveryItemExactlyOnce) {
  for (int i = 0; i < 23; ++i) {
    CreateOrg(Provider(absl::StrCat("prov-", 100 + i), kSeattle, 47.5 + i * 0.01, -122.3));
  }
  std::set<std::string> seen;
  int pages = 0;
  v1::ListOrganizationsRequest req;
  req.set_page_size(5);
  do {
    v1::ListOrganizationsResponse resp;
    ASSERT_TRUE(admin_->ListOrganizations(Ctx().get(), req, &resp).ok());
    for (const auto& o : resp.organizations()) EXPECT_TRUE(seen.insert(o.id()).second) << o.id();
    req.set_page_token(resp.next_page_token());
    ++pages;
  } while (!req.page_token().empty() && pages < 20);
  EXPECT_EQ(seen.size(), 23u);
  EXPECT_EQ(pages, 5);

  // A token from one query is refused by another.
  v1::ListOrganizationsRequest first;
  first.set_page_size(5);
  v1::ListOrganizationsResponse resp;
  ASSERT_TRUE(admin_->ListOrganizations(Ctx().get(), first, &resp).ok());
  v1::ListOrganizationsRequest other;
  other.set_kind(v1::ORGANIZATION_KIND_COURT);
  other.set_page_token(resp.next_page_token());
  EXPECT_EQ(admin_->ListOrganizations(Ctx().get(), other, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

class SearchTest : public DirectoryTest {
 protected:
  void SetUp() override {
    DirectoryTest::SetUp();
    // Near downtown Seattle, 5 km south, 20 km north, and in Spokane.
    CreateOrg(Provider("prov-near", kSeattle, 47.6062, -122.3321));
    CreateOrg(Provider("prov-south", kSeattle, 47.5613, -122.3321));
    CreateOrg(Provider("prov-north", kSeattle, 47.7860, -122.3321));
    CreateOrg(Provider("prov-spokane", "53063", 47.6588, -117.4260));

    v1::Service shelter =
        Svc("shelter-near", "prov-near", v1::SERVICE_CATEGORY_EMERGENCY_YOUTH_SHELTER);
    shelter.set_csec_specialized(true);
    CreateSvc(shelter);

    v1::Service advocacy = Svc("advocacy-south", "prov-south", v1::SERVICE_CATEGORY_CSEC_ADVOCACY);
    advocacy.add_languages("es");
    advocacy.add_genders_served(v1::GENDER_FEMALE);
    advocacy.set_csec_specialized(true);
    CreateSvc(advocacy);

    v1::Service counseling = Svc("mh-north", "prov-north", v1::SERVICE_CATEGORY_MENTAL_HEALTH);
    counseling.set_minimum_age(16);
    counseling.set_maximum_age(24);
    counseling.set_accepting_referrals(false);
    counseling.mutable_schedule()->set_open_24_7(false);
    auto* h = counseling.mutable_schedule()->add_weekly_hours();
    h->set_day(v1::DAY_OF_WEEK_MONDAY);
    h->set_opens_at("09:00");
    h->set_closes_at("17:00");
    CreateSvc(counseling);

    v1::Service secure =
        Svc("secure-near", "prov-near", v1::SERVICE_CATEGORY_SECURE_CRISIS_RESIDENTIAL_CENTER);
    CreateSvc(secure);

    v1::Service spokane = Svc("hope-spokane", "prov-spokane", v1::SERVICE_CATEGORY_HOPE_CENTER);
    spokane.set_service_area_county_fips(0, "53063");
    CreateSvc(spokane);
  }

  // The counselor north of Seattle closes for a while: searches no longer find it.
  void CloseTheCounselor() {
    v1::GetServiceRequest get;
    get.set_id("mh-north");
    v1::GetServiceResponse got;
    ASSERT_TRUE(admin_->GetService(Ctx().get(), get, &got).ok());
    v1::UpdateServiceRequest upd;
    *upd.mutable_service() = got.service();
    upd.mutable_service()->set_status(v1::SERVICE_STATUS_TEMPORARILY_CLOSED);
    v1::UpdateServiceResponse updated;
    ASSERT_TRUE(admin_->UpdateService(Ctx().get(), upd, &updated).ok());
  }

  v1::SearchServicesRequest NearSeattle(int radius_m = 50000) {
    v1::SearchServicesRequest r;
    r.mutable_near()->set_latitude(47.6062);
    r.mutable_near()->set_longitude(-122.3321);
    r.set_radius_meters(radius_m);
    return r;
  }
};

TEST_F(SearchTest, ResultsAreOrderedByDistanceAndNeverSecure) {
  v1::SearchServicesResponse resp;
  ASSERT_TRUE(admin_->SearchServices(Ctx().get(), NearSeattle(), &resp).ok());
  std::vector<std::string> ids;
  int64_t last = -1;
  for (const auto& m : resp.matches()) {
    ids.push_back(m.service().id());
    EXPECT_GE(m.distance_meters(), last);
    last = m.distance_meters();
    EXPECT_NE(m.service().category(), v1::SERVICE_CATEGORY_SECURE_CRISIS_RESIDENTIAL_CENTER);
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"shelter-near", "advocacy-south", "mh-north"}));
  EXPECT_EQ(resp.matches(1).organization_name(), "Provider prov-south");
  EXPECT_NEAR(static_cast<double>(resp.matches(1).distance_meters()),
              static_cast<double>(HaversineMeters(47.6062, -122.3321, 47.5613, -122.3321)), 1.0);
}

TEST_F(SearchTest, EachFilterNarrowsTheAnswer) {
  using Ids = std::vector<std::string>;
  auto r = NearSeattle(10000);  // radius: excludes the north site (~20 km)
  EXPECT_EQ(SearchIds(r), (Ids{"shelter-near", "advocacy-south"}));

  r = NearSeattle();
  r.add_categories(v1::SERVICE_CATEGORY_CSEC_ADVOCACY);
  EXPECT_EQ(SearchIds(r), (Ids{"advocacy-south"}));

  r = NearSeattle();
  r.set_age(20);
  EXPECT_EQ(SearchIds(r), (Ids{"mh-north"}));

  r = NearSeattle();
  r.set_gender(v1::GENDER_MALE);  // advocacy serves only girls
  EXPECT_EQ(SearchIds(r), (Ids{"shelter-near", "mh-north"}));

  r = NearSeattle();
  r.set_language("es");
  EXPECT_EQ(SearchIds(r), (Ids{"advocacy-south"}));

  r = NearSeattle();
  r.set_csec_specialized_only(true);
  EXPECT_EQ(SearchIds(r), (Ids{"shelter-near", "advocacy-south"}));

  r = NearSeattle();
  r.set_accepting_referrals_only(true);
  EXPECT_EQ(SearchIds(r), (Ids{"shelter-near", "advocacy-south"}));

  // Monday 2026-11-23 10:00 Pacific (18:00 UTC): the counselor is open; at 20:00 it is not.
  r = NearSeattle();
  *r.mutable_open_at() =
      ToProtoTime(absl::FromCivil(absl::CivilSecond(2026, 11, 23, 18, 0, 0), absl::UTCTimeZone()));
  EXPECT_EQ(SearchIds(r), (Ids{"shelter-near", "advocacy-south", "mh-north"}));
  *r.mutable_open_at() =
      ToProtoTime(absl::FromCivil(absl::CivilSecond(2026, 11, 24, 4, 0, 0), absl::UTCTimeZone()));
  EXPECT_EQ(SearchIds(r), (Ids{"shelter-near", "advocacy-south"}));

  v1::SearchServicesRequest county;
  county.set_county_fips("53063");
  EXPECT_EQ(SearchIds(county), (Ids{"hope-spokane"}));
  county.set_county_fips(kSeattle);
  EXPECT_EQ(SearchIds(county).size(), 3u);
}

TEST_F(SearchTest, SearchPagesWalkEveryMatchOnce) {
  std::set<std::string> seen;
  auto r = NearSeattle();
  r.set_page_size(1);
  int pages = 0;
  do {
    v1::SearchServicesResponse resp;
    ASSERT_TRUE(admin_->SearchServices(Ctx().get(), r, &resp).ok());
    for (const auto& m : resp.matches()) EXPECT_TRUE(seen.insert(m.service().id()).second);
    r.set_page_token(resp.next_page_token());
    ++pages;
  } while (!r.page_token().empty() && pages < 10);
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_EQ(pages, 3);
}

TEST_F(SearchTest, RepeatedSearchIsACacheHitAndAWriteInvalidatesIt) {
  UseRedisLevelOnly();
  auto r = NearSeattle();
  EXPECT_EQ(SearchIds(r).size(), 3u);
  const double misses = Cache("miss"), hits = Cache("hit");
  EXPECT_EQ(SearchIds(r).size(), 3u);
  EXPECT_EQ(Cache("hit"), hits + 1);
  EXPECT_EQ(Cache("miss"), misses);

  CloseTheCounselor();

  EXPECT_EQ(SearchIds(r), (std::vector<std::string>{"shelter-near", "advocacy-south"}));
  EXPECT_EQ(Cache("miss"), misses + 1);
}

// Cached answers carry a MAC under a key from configuration: whoever reaches Redis (even with
// its password) cannot steer searches by writing answers of their own.
TEST_F(SearchTest, ACachedAnswerThatFailsItsCheckIsIgnoredCountedAndReplaced) {
  UseRedisLevelOnly();
  auto r = NearSeattle();
  EXPECT_EQ(SearchIds(r).size(), 3u);  // cached now
  RedisClient raw(TestServers::Get().redis_options(), nullptr);
  auto keys = raw.Command({"KEYS", cache_namespace_ + ":directory_search:*"});
  ASSERT_TRUE(keys.ok()) << keys.status();
  v1::SearchServicesResponse forged;
  forged.add_matches()->mutable_service()->set_id("forged-service");
  int written = 0;
  for (const auto& k : keys->elements) {
    if (absl::EndsWith(k.str, ":gen")) continue;
    const std::string value = written % 2 == 0 ? std::string(32, '\0') + forged.SerializeAsString()
                                               : std::string("short");
    ASSERT_TRUE(raw.SetWithTtl(k.str, value, absl::Minutes(1)).ok());
    ++written;
  }
  ASSERT_GE(written, 1);
  const double rejected = Cache("rejected"), hits = Cache("hit");
  EXPECT_EQ(SearchIds(r).size(), 3u);
  EXPECT_EQ(Cache("rejected"), rejected + 1);
  EXPECT_EQ(SearchIds(r).size(), 3u);  // the answer was stored again, authenticated
  EXPECT_EQ(Cache("hit"), hits + 1);
  std::cout << "forged cache values: " << written << " written, " << Cache("rejected") - rejected
            << " rejected, 0 served\n";
}

TEST_F(SearchTest, WithRedisStoppedSearchesStillSucceedAndTheOutageIsCounted) {
  UseRedisLevelOnly();
  auto r = NearSeattle();
  EXPECT_EQ(SearchIds(r).size(), 3u);
  TestServers::Get().StopRedis();
  const double errors = Cache("error");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(SearchIds(r).size(), 3u);
  // A write during the outage cannot bump the generation: the cache must not be trusted later.
  CreateSvc(Svc("shelter-two", "prov-near", v1::SERVICE_CATEGORY_EMERGENCY_YOUTH_SHELTER));
  EXPECT_EQ(SearchIds(r).size(), 4u);
  EXPECT_GE(Cache("error"), errors + 3);
  EXPECT_EQ(SumCounter(*registry_, "safeharbor_redis_up"), 0);
  EXPECT_GE(SumCounter(*registry_, "safeharbor_redis_errors_total"), 1);
  TestServers::Get().StartRedis();
  absl::SleepFor(absl::Milliseconds(200));  // The client's fail-fast window (100 ms in tests).
  EXPECT_EQ(SearchIds(r).size(), 4u);
  const double hits = Cache("hit");
  EXPECT_EQ(SearchIds(r).size(), 4u);
  EXPECT_EQ(Cache("hit"), hits + 1);
  EXPECT_EQ(SumCounter(*registry_, "safeharbor_redis_up"), 1);
}

// Waits (at most 10 s) until `pred` holds.
bool Eventually(const std::function<bool()>& pred) {
  for (int i = 0; i < 1000; ++i) {
    if (pred()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return pred();
}

double Local(const Hosted& h, const std::string& metric,
             const std::map<std::string, std::string>& labels = {}) {
  std::map<std::string, std::string> all = labels;
  all["cache"] = "directory_search";
  return SumCounter(*h.registry, metric, all);
}

bool LocalTrusted(const Hosted& h) { return Local(h, "safeharbor_cache_local_trusted") == 1; }

double LocalResult(const Hosted& h, const std::string& result) {
  return Local(h, "safeharbor_cache_local_requests_total", {{"result", result}});
}

std::vector<std::string> SearchOn(Stub& stub, const v1::SearchServicesRequest& req) {
  v1::SearchServicesResponse resp;
  grpc::Status st = stub.SearchServices(Ctx().get(), req, &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  std::vector<std::string> ids;
  for (const auto& m : resp.matches()) ids.push_back(m.service().id());
  return ids;
}

// Two replicas sharing PostgreSQL and Redis: repeated searches are answered in process (no Redis
// round trip, no hand-off); a write drops the writer's in-process level at once and the other's
// when the invalidation message arrives.
TEST_F(SearchTest, AWriteOnOneReplicaReachesTheOthersInProcessCacheByPubSub) {
  using Ids = std::vector<std::string>;
  std::unique_ptr<Hosted> other = HostDirectory(true);
  auto other_admin = other->Stub<v1::DirectoryService>(kAdminOrg, "directory_admin");
  ASSERT_TRUE(Eventually([&] { return LocalTrusted(*hosted_) && LocalTrusted(*other); }));
  const auto r = NearSeattle();
  const Ids all = {"shelter-near", "advocacy-south", "mh-north"};
  for (Stub* stub : {admin_.get(), other_admin.get()}) {
    EXPECT_EQ(SearchOn(*stub, r), all);  // computed (or from Redis), kept in process
  }
  auto redis_requests = [&] {
    return SumCounter(*other->registry, "safeharbor_cache_requests_total");
  };
  const double redis = redis_requests(), local_hits = LocalResult(*other, "hit");
  const double fast = SumCounter(*other->registry, "safeharbor_rpc_fast_path_total");
  EXPECT_EQ(SearchOn(*other_admin, r), all);
  EXPECT_EQ(LocalResult(*other, "hit"), local_hits + 1);
  EXPECT_EQ(SumCounter(*other->registry, "safeharbor_rpc_fast_path_total"), fast + 1);
  EXPECT_EQ(redis_requests(), redis);  // no Redis round trip

  const double messages =
      Local(*other, "safeharbor_cache_local_drops_total", {{"cause", "message"}});
  const absl::Time written = absl::Now();
  CloseTheCounselor();
  const Ids open = {"shelter-near", "advocacy-south"};
  EXPECT_EQ(SearchIds(r), open);  // the writer's replica: at once, no waiting
  ASSERT_TRUE(Eventually([&] {
    return Local(*other, "safeharbor_cache_local_drops_total", {{"cause", "message"}}) > messages;
  }));
  const absl::Duration delay = absl::Now() - written;
  EXPECT_EQ(SearchOn(*other_admin, r), open);
  EXPECT_EQ(SearchOn(*other_admin, r), open);  // and kept in process again
  std::cout << "invalidation reached the other replica within " << absl::FormatDuration(delay)
            << "; local hits there: " << LocalResult(*other, "hit") << "\n";
  other->Shutdown();
}

// Redis stopped: the subscription is lost, the in-process level is dropped and bypassed (every
// search goes the Redis path, which fails open to PostgreSQL), and trusted again only after
// Redis is back and the subscription renewed.
TEST_F(SearchTest, RedisStoppedDropsTheInProcessCacheAndSearchesFallBack) {
  std::unique_ptr<Hosted> reader = HostDirectory(true);  // searches here, writes on hosted_
  auto stub = reader->Stub<v1::DirectoryService>("spd", "law_enforcement");
  ASSERT_TRUE(Eventually([&] { return LocalTrusted(*reader); }));
  const auto r = NearSeattle();
  EXPECT_EQ(SearchOn(*stub, r).size(), 3u);
  const double hits = LocalResult(*reader, "hit");
  EXPECT_EQ(SearchOn(*stub, r).size(), 3u);
  EXPECT_EQ(LocalResult(*reader, "hit"), hits + 1);

  TestServers::Get().StopRedis();
  ASSERT_TRUE(Eventually([&] { return !LocalTrusted(*reader); }));
  EXPECT_EQ(Local(*reader, "safeharbor_cache_local_entries"), 0);
  const double untrusted = LocalResult(*reader, "untrusted");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(SearchOn(*stub, r).size(), 3u);
  CreateSvc(Svc("shelter-two", "prov-near", v1::SERVICE_CATEGORY_EMERGENCY_YOUTH_SHELTER));
  EXPECT_EQ(SearchOn(*stub, r).size(), 4u);
  EXPECT_EQ(LocalResult(*reader, "untrusted"), untrusted + 4);
  EXPECT_EQ(LocalResult(*reader, "hit"), hits + 1);

  TestServers::Get().StartRedis();
  ASSERT_TRUE(Eventually([&] { return LocalTrusted(*reader); }));
  const double hits_after = LocalResult(*reader, "hit");
  int searches = 0;
  while (LocalResult(*reader, "hit") == hits_after && searches < 10) {
    EXPECT_EQ(SearchOn(*stub, r).size(), 4u);
    ++searches;
  }
  EXPECT_GT(LocalResult(*reader, "hit"), hits_after);
  std::cout << "redis stopped: " << LocalResult(*reader, "untrusted") - untrusted
            << " searches bypassed the in-process cache, 0 failed; after restart " << searches
            << " searches until one was answered in process\n";
  reader->Shutdown();
}

// The fast path answers only what the method table admits: a bad request and an organization
// over its quota are refused as before, even while the in-process level holds the answer (the
// kit's own test, RpcKit.AFastPathAnswersOnlyAdmittedCallsAndIsCounted, covers roles and scope).
TEST_F(SearchTest, TheFastPathStillRefusesBadRequestsAndOrganizationsOverQuota) {
  std::unique_ptr<Hosted> limited =
      HostDirectory(true, {.max_concurrent_calls = 0, .calls_per_second = 0.01, .burst = 4});
  ASSERT_TRUE(Eventually([&] { return LocalTrusted(*limited); }));
  auto officer = limited->Stub<v1::DirectoryService>("spd", "law_enforcement");
  const auto r = NearSeattle();
  EXPECT_EQ(SearchOn(*officer, r).size(), 3u);
  EXPECT_EQ(SearchOn(*officer, r).size(), 3u);  // in process now
  const double fast = SumCounter(*limited->registry, "safeharbor_rpc_fast_path_total");
  EXPECT_EQ(fast, 1);
  auto bad = r;
  bad.set_radius_meters(-5);
  v1::SearchServicesResponse resp;
  EXPECT_EQ(officer->SearchServices(Ctx().get(), bad, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(resp.matches_size(), 0);
  EXPECT_EQ(SearchOn(*officer, r).size(), 3u);  // its last call of the burst
  EXPECT_EQ(officer->SearchServices(Ctx().get(), r, &resp).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(resp.matches_size(), 0);
  EXPECT_EQ(SumCounter(*limited->registry, "safeharbor_rpc_fast_path_total"), fast + 1);
  auto other_org = limited->Stub<v1::DirectoryService>("kcso", "law_enforcement");
  EXPECT_EQ(SearchOn(*other_org, r).size(), 3u);  // another organization's quota is its own
  limited->Shutdown();
}

TEST_F(SearchTest, DataSurvivesAServiceRestart) {
  StopService();
  StartService();
  admin_ = Stub_(kAdminOrg, "directory_admin");
  EXPECT_EQ(SearchIds(NearSeattle()).size(), 3u);
  v1::GetOrganizationRequest get;
  get.set_id("prov-south");
  v1::GetOrganizationResponse got;
  EXPECT_TRUE(admin_->GetOrganization(Ctx().get(), get, &got).ok());
}

TEST_F(DirectoryTest, InvalidInputIsRefusedNamingTheFieldAndStoresNothing) {
  struct Case {
    v1::Organization org;
    const char* field;
  };
  std::vector<Case> cases;
  auto base = Provider("prov-x", kSeattle, 47.6, -122.3);
  auto c = base;
  c.set_name("");
  cases.push_back({c, "organization.name"});
  c = base;
  c.set_kind(v1::ORGANIZATION_KIND_UNSPECIFIED);
  cases.push_back({c, "organization.kind"});
  c = base;
  c.set_id("UPPER");
  cases.push_back({c, "organization.id"});
  c = base;
  c.mutable_locations(0)->set_latitude(123);
  cases.push_back({c, "organization.locations[0].latitude"});
  c = base;
  c.set_county_fips("12345");
  cases.push_back({c, "organization.county_fips"});
  c = base;
  c.mutable_phones(0)->set_number("call me");
  cases.push_back({c, "organization.phones[0].number"});
  c = base;
  c.set_email("not-an-email");
  cases.push_back({c, "organization.email"});
  for (const auto& tc : cases) {
    v1::CreateOrganizationRequest req;
    req.set_request_id("bad");
    *req.mutable_organization() = tc.org;
    v1::CreateOrganizationResponse resp;
    grpc::Status st = admin_->CreateOrganization(Ctx().get(), req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << tc.field;
    EXPECT_NE(st.error_message().find(tc.field), std::string::npos) << st.error_message();
  }
  v1::CreateOrganizationRequest no_id;
  *no_id.mutable_organization() = base;
  v1::CreateOrganizationResponse resp;
  EXPECT_EQ(admin_->CreateOrganization(Ctx().get(), no_id, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  CreateOrg(base);
  v1::CreateServiceRequest svc;
  svc.set_request_id("bad-svc");
  *svc.mutable_service() = Svc("svc-x", "prov-x", v1::SERVICE_CATEGORY_HOPE_CENTER);
  svc.mutable_service()->set_maximum_age(99);
  v1::CreateServiceResponse sresp;
  grpc::Status st = admin_->CreateService(Ctx().get(), svc, &sresp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("service.maximum_age"), std::string::npos);
  svc.mutable_service()->set_maximum_age(17);
  svc.mutable_service()->set_location_id("elsewhere");
  EXPECT_EQ(admin_->CreateService(Ctx().get(), svc, &sresp).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  v1::SearchServicesRequest search;
  v1::SearchServicesResponse sr;
  EXPECT_EQ(admin_->SearchServices(Ctx().get(), search, &sr).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  search.set_county_fips(kSeattle);
  search.set_page_token("garbage!");
  EXPECT_EQ(admin_->SearchServices(Ctx().get(), search, &sr).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  EXPECT_EQ(Rows("organizations"), 1);  // Only the good one.
  EXPECT_EQ(Rows("services"), 0);
  EXPECT_EQ(Rows("idempotency_keys"), 1);
}

TEST_F(DirectoryTest, CallWithoutClientCertificateIsRefused) {
  auto stub =
      v1::DirectoryService::NewStub(TestServers::Get().ChannelWithoutClientCert(host_->port()));
  v1::ListCountiesRequest req;
  v1::ListCountiesResponse resp;
  grpc::Status st = stub->ListCounties(Ctx().get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(resp.counties_size(), 0);
}

TEST_F(DirectoryTest, RolesAndOwnershipAreEnforced) {
  CreateOrg(Provider("prov-a", kSeattle, 47.6, -122.3));
  CreateOrg(Provider("prov-b", kSeattle, 47.7, -122.3));
  auto provider_a = Stub_("prov-a", "provider");
  auto officer = Stub_("seattle-pd", "law_enforcement");

  // Only directory_admin creates organizations.
  v1::CreateOrganizationRequest create;
  create.set_request_id("x");
  *create.mutable_organization() = Provider("prov-c", kSeattle, 47.6, -122.3);
  v1::CreateOrganizationResponse cresp;
  EXPECT_EQ(provider_a->CreateOrganization(Ctx().get(), create, &cresp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(officer->CreateOrganization(Ctx().get(), create, &cresp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // A provider adds a service to its own organization, not to another's.
  v1::CreateServiceRequest own;
  own.set_request_id("own");
  *own.mutable_service() = Svc("svc-a", "prov-a", v1::SERVICE_CATEGORY_CSEC_ADVOCACY);
  v1::CreateServiceResponse sresp;
  EXPECT_TRUE(provider_a->CreateService(Ctx().get(), own, &sresp).ok());
  v1::CreateServiceRequest theirs;
  theirs.set_request_id("theirs");
  *theirs.mutable_service() = Svc("svc-b", "prov-b", v1::SERVICE_CATEGORY_CSEC_ADVOCACY);
  EXPECT_EQ(provider_a->CreateService(Ctx().get(), theirs, &sresp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // ... and edits its own organization but not another's.
  v1::GetOrganizationRequest get;
  get.set_id("prov-b");
  v1::GetOrganizationResponse b;
  ASSERT_TRUE(provider_a->GetOrganization(Ctx().get(), get, &b).ok());
  v1::UpdateOrganizationRequest upd;
  *upd.mutable_organization() = b.organization();
  upd.mutable_organization()->set_name("Hijacked");
  v1::UpdateOrganizationResponse uresp;
  EXPECT_EQ(provider_a->UpdateOrganization(Ctx().get(), upd, &uresp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // Every authenticated role may search.
  v1::SearchServicesRequest search;
  search.set_county_fips(kSeattle);
  v1::SearchServicesResponse found;
  ASSERT_TRUE(officer->SearchServices(Ctx().get(), search, &found).ok());
  EXPECT_EQ(found.matches_size(), 1);
  EXPECT_EQ(Rows("services"), 1);
}

// Issue 11: a provider moved itself into the county with the most fees. Kind, county and
// locations (and a service's area) decide fees and reach: only directory_admin changes them,
// and every change is recorded for auditors (who, when, old, new).
TEST_F(DirectoryTest, OnlyDirectoryAdminChangesDecidingFactsAndEveryChangeIsRecorded) {
  CreateOrg(Provider("prov-a", kSeattle, 47.6, -122.3));
  auto provider = Stub_("prov-a", "provider");
  auto own = [&]() {
    v1::GetOrganizationRequest get;
    get.set_id("prov-a");
    v1::GetOrganizationResponse got;
    EXPECT_TRUE(provider->GetOrganization(Ctx().get(), get, &got).ok());
    return got.organization();
  };
  auto update = [&](Stub* stub, const v1::Organization& o) {
    v1::UpdateOrganizationRequest req;
    *req.mutable_organization() = o;
    v1::UpdateOrganizationResponse resp;
    return stub->UpdateOrganization(Ctx().get(), req, &resp);
  };
  const struct {
    std::function<void(v1::Organization*)> change;
    const char* field;
  } deciding[] = {
      {[](v1::Organization* o) { o->set_county_fips("53053"); }, "county_fips"},
      {[](v1::Organization* o) { o->set_kind(v1::ORGANIZATION_KIND_COURT); }, "kind"},
      {[](v1::Organization* o) { o->mutable_locations(0)->set_latitude(47.2); }, "locations[main]"},
      {[](v1::Organization* o) { o->mutable_locations(0)->set_county_fips("53053"); },
       "locations[main]"},
      {[](v1::Organization* o) {
         *o->add_locations() = o->locations(0);
         o->mutable_locations(1)->set_id("second");
       },
       "locations[second]"},
  };
  for (const auto& c : deciding) {
    v1::Organization o = own();
    c.change(&o);
    grpc::Status st = update(provider.get(), o);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << c.field;
    EXPECT_NE(st.error_message().find(c.field), std::string::npos) << st.error_message();
  }
  EXPECT_EQ(own().county_fips(), kSeattle);
  // The rest of its own organization a provider still edits.
  v1::Organization o = own();
  o.set_name("Harbor Youth Services");
  o.mutable_locations(0)->set_name("Front door");
  o.mutable_phones(0)->set_number("+1 206-555-0111");
  ASSERT_TRUE(update(provider.get(), o).ok());
  // A service only for the counties its organization serves; its area changed by the admin.
  v1::CreateServiceRequest create;
  create.set_request_id("svc-a");
  *create.mutable_service() = Svc("svc-a", "prov-a", v1::SERVICE_CATEGORY_CSEC_ADVOCACY);
  create.mutable_service()->add_service_area_county_fips("53053");
  v1::CreateServiceResponse created;
  EXPECT_EQ(provider->CreateService(Ctx().get(), create, &created).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  create.mutable_service()->clear_service_area_county_fips();
  create.mutable_service()->add_service_area_county_fips(kSeattle);
  create.set_request_id("svc-a-king");
  ASSERT_TRUE(provider->CreateService(Ctx().get(), create, &created).ok());
  v1::UpdateServiceRequest widen;
  *widen.mutable_service() = created.service();
  widen.mutable_service()->add_service_area_county_fips("53053");
  v1::UpdateServiceResponse widened;
  grpc::Status st = provider->UpdateService(Ctx().get(), widen, &widened);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find("service_area_county_fips"), std::string::npos);
  ASSERT_TRUE(admin_->UpdateService(Ctx().get(), widen, &widened).ok());
  // The directory_admin moves the organization: allowed, and recorded.
  o = own();
  o.set_county_fips("53053");
  ASSERT_TRUE(update(admin_.get(), o).ok());

  auto auditor = Stub_("state-auditor", "auditor");
  std::vector<v1::FactChange> changes;
  v1::ListFactChangesRequest list;
  list.set_organization_id("prov-a");
  list.set_page_size(2);
  for (int pages = 0; pages < 10; ++pages) {
    v1::ListFactChangesResponse page;
    ASSERT_TRUE(auditor->ListFactChanges(Ctx().get(), list, &page).ok());
    changes.insert(changes.end(), page.changes().begin(), page.changes().end());
    if (page.next_page_token().empty()) break;
    list.set_page_token(page.next_page_token());
  }
  // Created (kind, county, location), the service's area twice, the move.
  ASSERT_EQ(changes.size(), 6u);
  EXPECT_EQ(changes[0].field(), "kind");
  EXPECT_EQ(changes[0].actor_role(), "directory_admin");
  EXPECT_EQ(changes[3].field(), "service_area_county_fips");
  EXPECT_EQ(changes[3].new_value(), kSeattle);
  EXPECT_EQ(changes[3].actor_organization_id(), "prov-a");
  EXPECT_EQ(changes[4].old_value(), kSeattle);
  EXPECT_EQ(changes[4].new_value(), "53033,53053");
  const v1::FactChange& moved = changes[5];
  EXPECT_EQ(moved.field(), "county_fips");
  EXPECT_EQ(moved.old_value(), kSeattle);
  EXPECT_EQ(moved.new_value(), "53053");
  EXPECT_EQ(moved.actor_organization_id(), kAdminOrg);
  EXPECT_EQ(moved.actor_role(), "directory_admin");
  EXPECT_TRUE(moved.has_change_time());
  EXPECT_EQ(Rows("fact_changes"), 6);
  // Auditors and directory_admin read the log; a provider does not.
  v1::ListFactChangesResponse refused;
  EXPECT_EQ(
      provider->ListFactChanges(Ctx().get(), v1::ListFactChangesRequest(), &refused).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(DirectoryTest, OrganizationLocationsInUseCannotBeRemoved) {
  CreateOrg(Provider("prov-a", kSeattle, 47.6, -122.3));
  CreateSvc(Svc("svc-a", "prov-a", v1::SERVICE_CATEGORY_CSEC_ADVOCACY));
  v1::GetOrganizationRequest get;
  get.set_id("prov-a");
  v1::GetOrganizationResponse got;
  ASSERT_TRUE(admin_->GetOrganization(Ctx().get(), get, &got).ok());
  v1::UpdateOrganizationRequest upd;
  *upd.mutable_organization() = got.organization();
  upd.mutable_organization()->mutable_locations(0)->set_id("moved");
  v1::UpdateOrganizationResponse resp;
  grpc::Status st = admin_->UpdateOrganization(Ctx().get(), upd, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(st.error_message().find("svc-a"), std::string::npos);

  // Moving the location moves the service in search.
  *upd.mutable_organization() = got.organization();
  upd.mutable_organization()->mutable_locations(0)->set_latitude(47.0);
  ASSERT_TRUE(admin_->UpdateOrganization(Ctx().get(), upd, &resp).ok());
  v1::SearchServicesRequest search;
  search.mutable_near()->set_latitude(47.0);
  search.mutable_near()->set_longitude(-122.3);
  search.set_radius_meters(1000);
  EXPECT_EQ(SearchIds(search), std::vector<std::string>{"svc-a"});
}

}  // namespace
}  // namespace safeharbor::directory

namespace safeharbor::directory {
namespace {

// Issue 11: an HSDS import changes deciding facts too; they are recorded like any
// directory_admin change, and an import that changes nothing records nothing.
TEST_F(DirectoryTest, AnHsdsImportRecordsTheFactsItChanges) {
  auto sample = ReadFileToString(
      safeharbor::testing::SourceDir() + "/services/directory/test/data/hsds_sample.json", 1 << 20);
  ASSERT_TRUE(sample.ok());
  auto changes = [&] {
    v1::ListFactChangesRequest req;
    req.set_page_size(500);
    v1::ListFactChangesResponse resp;
    EXPECT_TRUE(admin_->ListFactChanges(Ctx().get(), req, &resp).ok());
    return resp;
  };
  for (const char* rid : {"import-1", "import-again"}) {
    v1::ImportHsdsRequest imp;
    imp.set_request_id(rid);
    imp.set_hsds_json(*sample);
    v1::ImportHsdsResponse imported;
    grpc::Status st = admin_->ImportHsds(Ctx().get(), imp, &imported);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  const v1::ListFactChangesResponse got = changes();
  std::set<std::string> resources;
  for (const auto& c : got.changes()) {
    EXPECT_EQ(c.actor_role(), "directory_admin");
    EXPECT_TRUE(c.old_value().empty()) << c.field() << ": the second import changed nothing";
    resources.insert(c.resource() + ":" + c.resource_id());
  }
  EXPECT_EQ(resources.size(), 4u);  // two organizations and two services, each recorded once
  EXPECT_EQ(Rows("fact_changes"), got.changes_size());
}

// The export is for directory_admin and auditor, in pages of organizations (each page an HSDS
// document with the organizations' services), so that no call holds the whole directory.
TEST_F(DirectoryTest, HsdsExportIsPagedAndOnlyForAdminAndAuditor) {
  for (int i = 0; i < 5; ++i) {
    const std::string org = absl::StrCat("export-org-", i);
    CreateOrg(Provider(org, kSeattle, 47.61, -122.33));
    CreateSvc(Svc(absl::StrCat("export-svc-", i), org, v1::SERVICE_CATEGORY_CSEC_ADVOCACY));
  }
  for (const char* role : {"provider", "law_enforcement", "child_welfare", "fiscal"}) {
    v1::ExportHsdsResponse r;
    EXPECT_EQ(Stub_("some-org", role)->ExportHsds(Ctx().get(), {}, &r).error_code(),
              grpc::StatusCode::PERMISSION_DENIED)
        << role;
  }
  auto auditor = Stub_("state-auditor", "auditor");
  v1::ExportHsdsRequest req;
  req.set_page_size(2);
  std::set<std::string> orgs, services;
  int pages = 0;
  do {
    v1::ExportHsdsResponse page;
    grpc::Status st = auditor->ExportHsds(Ctx().get(), req, &page);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ++pages;
    EXPECT_LE(page.organizations_exported(), 2);
    auto parsed = ParseHsds(page.hsds_json(), WashingtonCounties());
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    for (const auto& o : parsed->organizations) EXPECT_TRUE(orgs.insert(o.id()).second) << o.id();
    for (const auto& sv : parsed->services) {
      EXPECT_TRUE(services.insert(sv.id()).second) << sv.id();
      EXPECT_TRUE(orgs.count(sv.organization_id()) > 0);  // with its organization's page
    }
    req.set_page_token(page.next_page_token());
  } while (!req.page_token().empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(orgs.size(), 5u);
  EXPECT_EQ(services.size(), 5u);
  // A token belongs to its query; a bad one is refused naming the field.
  v1::ExportHsdsResponse r;
  req.set_page_size(3);
  req.set_page_token("garbage");
  grpc::Status st = admin_->ExportHsds(Ctx().get(), req, &r);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("page_token"), std::string::npos) << st.error_message();
}

TEST_F(DirectoryTest, HsdsImportedThenExportedKeepsItsContent) {
  auto sample = ReadFileToString(
      safeharbor::testing::SourceDir() + "/services/directory/test/data/hsds_sample.json", 1 << 20);
  ASSERT_TRUE(sample.ok());
  v1::ImportHsdsRequest imp;
  imp.set_request_id("import-1");
  imp.set_hsds_json(*sample);
  v1::ImportHsdsResponse imported;
  grpc::Status st = admin_->ImportHsds(Ctx().get(), imp, &imported);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(imported.organizations_imported(), 2);
  EXPECT_EQ(imported.services_imported(), 2);

  v1::ExportHsdsResponse exported;
  ASSERT_TRUE(admin_->ExportHsds(Ctx().get(), v1::ExportHsdsRequest(), &exported).ok());
  EXPECT_EQ(exported.services_exported(), 2);
  auto original = ParseHsds(*sample, WashingtonCounties());
  auto round = ParseHsds(exported.hsds_json(), WashingtonCounties());
  ASSERT_TRUE(original.ok() && round.ok()) << round.status();
  // Records come back sorted by id; compare by id, ignoring server-set times and etags.
  auto strip = [](auto m) {
    m.clear_create_time();
    m.clear_update_time();
    m.clear_etag();
    return m.SerializeAsString();
  };
  std::map<std::string, std::string> want, got;
  for (const auto& o : original->organizations) want[o.id()] = strip(o);
  for (const auto& s : original->services) want[s.id()] = strip(s);
  for (const auto& o : round->organizations) got[o.id()] = strip(o);
  for (const auto& s : round->services) got[s.id()] = strip(s);
  EXPECT_EQ(want, got);

  // Importing its own export changes nothing and keeps the same export.
  imp.set_request_id("import-2");
  imp.set_hsds_json(exported.hsds_json());
  ASSERT_TRUE(admin_->ImportHsds(Ctx().get(), imp, &imported).ok());
  v1::ExportHsdsResponse again;
  ASSERT_TRUE(admin_->ExportHsds(Ctx().get(), v1::ExportHsdsRequest(), &again).ok());
  EXPECT_EQ(again.hsds_json(), exported.hsds_json());

  // A broken file is refused whole.
  imp.set_request_id("import-3");
  imp.set_hsds_json("[{\"id\": \"x-org\", \"name\": \"\"}]");
  EXPECT_EQ(admin_->ImportHsds(Ctx().get(), imp, &imported).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Rows("organizations"), 2);
}

// The Open Referral organization example: all or nothing refuses it at its first problem; the
// validate-only mode lists every problem and stores nothing; the partial mode stores what is
// valid (normalized) and reports the rest.
TEST_F(DirectoryTest, HsdsImportModesValidateEverythingOrStoreWhatIsValid) {
  auto text = ReadFileToString(
      safeharbor::testing::SourceDir() + "/data/hsds-3.1/organization_full.json", 1 << 20);
  ASSERT_TRUE(text.ok()) << text.status();
  v1::ImportHsdsRequest req;
  req.set_request_id("hsds-default");
  req.set_hsds_json(*text);
  v1::ImportHsdsResponse resp;
  grpc::Status st = admin_->ImportHsds(Ctx().get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("organization.locations[0].latitude"), std::string::npos)
      << st.error_message();
  EXPECT_EQ(Rows("organizations"), 0);

  req.set_request_id("hsds-validate");
  req.set_mode(v1::HSDS_IMPORT_MODE_VALIDATE_ONLY);
  st = admin_->ImportHsds(Ctx().get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(resp.validated_only());
  EXPECT_GE(resp.problems_size(), 4);
  EXPECT_GE(resp.normalizations_size(), 2);
  EXPECT_EQ(resp.organizations_imported(), 1);
  EXPECT_EQ(resp.services_skipped(), 1);
  EXPECT_EQ(resp.locations_skipped(), 1);
  EXPECT_EQ(Rows("organizations"), 0);  // validated only
  const int problems = resp.problems_size();

  req.set_request_id("hsds-partial");
  req.set_mode(v1::HSDS_IMPORT_MODE_PARTIAL);
  st = admin_->ImportHsds(Ctx().get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_FALSE(resp.validated_only());
  EXPECT_EQ(resp.problems_size(), problems);
  EXPECT_EQ(resp.organizations_imported(), 1);
  EXPECT_EQ(resp.services_imported(), 0);
  EXPECT_EQ(Rows("organizations"), 1);
  v1::GetOrganizationRequest get;
  get.set_id("d9d5e0f5-d3ce-4f73-9a2f-4dd0ecc6c610");
  v1::GetOrganizationResponse got;
  ASSERT_TRUE(admin_->GetOrganization(Ctx().get(), get, &got).ok());
  EXPECT_EQ(got.organization().phones(0).number(), "+44 1234 234567");  // unquoted
  v1::ImportHsdsResponse again;  // a replay answers what the import answered
  ASSERT_TRUE(admin_->ImportHsds(Ctx().get(), req, &again).ok());
  EXPECT_EQ(again.problems_size(), problems);
  EXPECT_EQ(Rows("organizations"), 1);
  for (const auto& p : resp.problems()) std::cout << "  " << p.message() << "\n";
}

}  // namespace
}  // namespace safeharbor::directory
