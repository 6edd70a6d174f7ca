// The beds service through real gRPC over mTLS against real PostgreSQL and Redis, with an
// injected clock; two replicas on one database where the issue asks for it.
#include "services/beds/beds_service.h"

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <iostream>
#include <thread>

#include "common/invariant.h"
#include "common/metrics.h"
#include "common/proto_time.h"
#include "common/server.h"
#include "common/testing/harness.h"
#include "common/testing/hosted.h"
#include "services/directory/directory_service.h"

namespace safeharbor::directory {
const std::vector<Migration>& Migrations();
}
namespace safeharbor::beds {
const std::vector<Migration>& Migrations();
namespace {

using safeharbor::testing::TestServers;
using Stub = v1::BedsService::Stub;

constexpr char kKing[] = "53033";
constexpr char kReferralService[] = "safeharbor-referrals";

std::unique_ptr<grpc::ClientContext> Ctx(int seconds = 10) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return ctx;
}

// One running replica of the service.
struct Replica : safeharbor::testing::Hosted<BedsServiceImpl> {
  Replica(const std::string& db_url, const std::string& ns, const Clock* clock,
          const ProviderCheck* providers = nullptr, int64_t max_holds_per_org = 25) {
    Connect("beds", Migrations(), 8, 8, /*with_redis=*/true, db_url);
    BedsOptions options;
    options.key_namespace = ns;
    options.max_active_holds_per_org = max_holds_per_org;
    options.watch_poll_interval = absl::Milliseconds(200);
    service = std::make_unique<BedsServiceImpl>(env.get(), pg.get(), redis.get(), *registry,
                                                WashingtonCounties(), clock, providers, options);
    service->StartBackground();
    Serve("beds");
  }
  ~Replica() {
    service->StopBackground();
    Shutdown();
  }
  std::unique_ptr<v1::BedsService::Stub> Stub_(const std::string& org, const std::string& role) {
    return this->template Stub<v1::BedsService>(org, role);
  }
};

v1::Facility Facility(const std::string& id, const std::string& org, int beds,
                      v1::PlacementType type = v1::PLACEMENT_TYPE_HOPE_CENTER) {
  v1::Facility f;
  f.set_id(id);
  f.set_organization_id(org);
  f.set_name("Facility " + id);
  f.set_placement_type(type);
  f.set_county_fips(kKing);
  f.set_latitude(47.61);
  f.set_longitude(-122.33);
  f.set_minimum_age(12);
  f.set_maximum_age(17);
  f.set_csec_specialized(true);
  auto* b = f.add_bed_types();
  b->set_bed_type(v1::BED_TYPE_GENERAL);
  b->set_licensed_capacity(beds);
  return f;
}

class BedsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_url_ = TestServers::Get().NewDatabase("beds");
    ns_ = db_url_.substr(db_url_.rfind('/') + 1);
    a_ = std::make_unique<Replica>(db_url_, ns_, &clock_);
    admin_ = a_->Stub_("state-directory", "directory_admin");
    provider_ = a_->Stub_("prov-a", "provider");
    // Beds are held by the referral service, for the referrals it routes (issue 11).
    intake_ = a_->Stub_(kReferralService, "service");
  }
  void TearDown() override { a_.reset(); }

  void CreateFacility(const v1::Facility& f) {
    v1::CreateFacilityRequest req;
    req.set_request_id("create-" + f.id());
    *req.mutable_facility() = f;
    v1::CreateFacilityResponse resp;
    grpc::Status st = admin_->CreateFacility(Ctx().get(), req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }

  grpc::Status Census(Stub* stub, const std::string& facility, int occupied, int oos = 0,
                      const std::string& rid = "") {
    v1::ReportCensusRequest req;
    req.set_request_id(rid.empty() ? absl::StrCat("census-", ++census_n_) : rid);
    req.set_facility_id(facility);
    *req.mutable_confirmed_time() = ToProtoTime(clock_.Now());
    auto* e = req.add_entries();
    e->set_bed_type(v1::BED_TYPE_GENERAL);
    e->set_occupied(occupied);
    e->set_out_of_service(oos);
    v1::ReportCensusResponse resp;
    return stub->ReportCensus(Ctx().get(), req, &resp);
  }

  grpc::Status Hold(Stub* stub, const std::string& facility, const std::string& rid,
                    v1::HoldBedResponse* resp, int ttl = 600,
                    const std::string& referral = "ref-1") {
    v1::HoldBedRequest req;
    req.set_request_id(rid);
    req.set_facility_id(facility);
    req.set_bed_type(v1::BED_TYPE_GENERAL);
    req.set_referral_id(referral);
    req.set_ttl_seconds(ttl);
    return stub->HoldBed(Ctx().get(), req, resp);
  }

  v1::BedAvailability Availability(const std::string& facility) {
    v1::GetFacilityRequest req;
    req.set_id(facility);
    v1::GetFacilityResponse resp;
    EXPECT_TRUE(admin_->GetFacility(Ctx().get(), req, &resp).ok());
    return resp.beds_size() > 0 ? resp.beds(0) : v1::BedAvailability();
  }

  int64_t Count(const std::string& sql) {
    auto r = a_->pg->Query(sql);
    return r.ok() ? r->Int64(0, "n") : -1;
  }

  grpc::Status Extend(Stub* stub, const std::string& hold, absl::Time expire,
                      const std::string& rid, v1::ExtendHoldResponse* resp) {
    v1::ExtendHoldRequest req;
    req.set_request_id(rid);
    req.set_hold_id(hold);
    *req.mutable_expire_time() = ToProtoTime(expire);
    return stub->ExtendHold(Ctx().get(), req, resp);
  }

  FakeClock clock_{absl::FromUnixSeconds(1795000000)};
  std::string db_url_, ns_;
  std::unique_ptr<Replica> a_;
  std::unique_ptr<Stub> admin_, provider_, intake_;
  int census_n_ = 0;
};

TEST_F(BedsTest, CensusThenHoldConfirmDischargeKeepTheArithmetic) {
  CreateFacility(Facility("fac-a", "prov-a", 4));
  EXPECT_EQ(Availability("fac-a").status(), v1::AVAILABILITY_STATUS_NEVER_REPORTED);
  ASSERT_TRUE(Census(provider_.get(), "fac-a", 2, 1).ok());
  auto a = Availability("fac-a");
  EXPECT_EQ(a.status(), v1::AVAILABILITY_STATUS_KNOWN);
  EXPECT_EQ(a.available_beds(), 1);
  EXPECT_EQ(FromProtoTime(a.confirmed_time()), clock_.Now());

  v1::HoldBedResponse hold;
  ASSERT_TRUE(Hold(intake_.get(), "fac-a", "h-1", &hold).ok());
  EXPECT_EQ(hold.hold().state(), v1::HOLD_STATE_ACTIVE);
  EXPECT_EQ(FromProtoTime(hold.hold().expire_time()), clock_.Now() + absl::Seconds(600));
  EXPECT_EQ(Availability("fac-a").available_beds(), 0);
  EXPECT_EQ(Availability("fac-a").held(), 1);

  v1::HoldBedResponse none;
  grpc::Status full = Hold(intake_.get(), "fac-a", "h-2", &none);
  EXPECT_EQ(full.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << full.error_message();

  v1::ConfirmPlacementRequest confirm;
  confirm.set_request_id("c-1");
  confirm.set_hold_id(hold.hold().id());
  v1::ConfirmPlacementResponse placed;
  ASSERT_TRUE(provider_->ConfirmPlacement(Ctx().get(), confirm, &placed).ok());
  a = Availability("fac-a");
  EXPECT_EQ(a.occupied(), 3);
  EXPECT_EQ(a.held(), 0);
  EXPECT_EQ(a.available_beds(), 0);

  v1::DischargePlacementRequest discharge;
  discharge.set_placement_id(placed.placement().id());
  v1::DischargePlacementResponse out;
  ASSERT_TRUE(provider_->DischargePlacement(Ctx().get(), discharge, &out).ok());
  ASSERT_TRUE(provider_->DischargePlacement(Ctx().get(), discharge, &out).ok());  // no double count
  EXPECT_EQ(Availability("fac-a").occupied(), 2);
  EXPECT_EQ(Availability("fac-a").available_beds(), 1);
  EXPECT_EQ(SumCounter(*a_->registry, "safeharbor_beds_holds_total", {{"event", "confirmed"}}), 1);
  EXPECT_EQ(SumCounter(*a_->registry, "safeharbor_beds_hold_conflicts_total"), 1);
}

TEST_F(BedsTest, FiftyConcurrentHoldsOverTwoReplicasForTheLastBedOneWins) {
  CreateFacility(Facility("fac-last", "prov-a", 3));
  ASSERT_TRUE(Census(provider_.get(), "fac-last", 2).ok());  // exactly one bed left
  // Widen the race window: every hold insert now takes 50 ms inside its transaction, so callers
  // that were not serialized by the bed-type row lock would all see the bed as free.
  ASSERT_TRUE(a_->pg
                  ->Query("CREATE FUNCTION slow_hold() RETURNS trigger LANGUAGE plpgsql AS "
                          "$$ BEGIN PERFORM pg_sleep(0.05); RETURN NEW; END $$")
                  .ok());
  ASSERT_TRUE(a_->pg
                  ->Query("CREATE TRIGGER slow_hold BEFORE INSERT ON holds FOR EACH ROW "
                          "EXECUTE FUNCTION slow_hold()")
                  .ok());
  Replica b(db_url_, ns_, &clock_);
  std::vector<std::unique_ptr<Stub>> stubs;
  stubs.push_back(a_->Stub_(kReferralService, "service"));
  stubs.push_back(b.Stub_(kReferralService, "service"));
  constexpr int kCallers = 50;
  std::atomic<int> ok{0}, refused{0}, other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([&, i] {
      v1::HoldBedResponse resp;
      grpc::Status st = Hold(stubs[i % 2].get(), "fac-last", absl::StrCat("race-", i), &resp, 600,
                             absl::StrCat("ref-", i));
      if (st.ok()) {
        ok.fetch_add(1);
      } else if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
        refused.fetch_add(1);
      } else {
        other.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 1);
  EXPECT_EQ(refused.load(), kCallers - 1);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(Count("SELECT count(*) AS n FROM holds WHERE state = 1"), 1);
  // Stored state is consistent: holds + occupied + out of service never exceed capacity.
  EXPECT_EQ(Count("SELECT count(*) AS n FROM bed_inventory b WHERE b.occupied + b.out_of_service "
                  "+ (SELECT count(*) FROM holds h WHERE h.facility_id = b.facility_id AND "
                  "h.bed_type = b.bed_type AND h.state = 1) > b.licensed_capacity"),
            0);
  EXPECT_EQ(Availability("fac-last").available_beds(), 0);
}

TEST_F(BedsTest, AnExpiredHoldReturnsTheBedButAConfirmedPlacementNeverExpires) {
  CreateFacility(Facility("fac-x", "prov-a", 2));
  ASSERT_TRUE(Census(provider_.get(), "fac-x", 0).ok());
  v1::HoldBedResponse first, second;
  ASSERT_TRUE(Hold(intake_.get(), "fac-x", "x-1", &first, 60).ok());
  ASSERT_TRUE(Hold(intake_.get(), "fac-x", "x-2", &second, 600).ok());
  v1::ConfirmPlacementRequest confirm;
  confirm.set_request_id("x-c");
  confirm.set_hold_id(second.hold().id());
  v1::ConfirmPlacementResponse placed;
  ASSERT_TRUE(intake_->ConfirmPlacement(Ctx().get(), confirm, &placed).ok());
  EXPECT_EQ(Availability("fac-x").available_beds(), 0);

  clock_.Advance(absl::Seconds(61));
  // The bed is free at expiry, before any sweep runs.
  EXPECT_EQ(Availability("fac-x").available_beds(), 1);
  auto swept = a_->service->SweepExpiredHolds();
  ASSERT_TRUE(swept.ok());
  EXPECT_EQ(*swept, 1);
  EXPECT_EQ(*a_->service->SweepExpiredHolds(), 0);  // Expired once.
  EXPECT_EQ(SumCounter(*a_->registry, "safeharbor_beds_holds_total", {{"event", "expired"}}), 1);
  confirm.set_request_id("x-late");
  confirm.set_hold_id(first.hold().id());
  EXPECT_EQ(intake_->ConfirmPlacement(Ctx().get(), confirm, &placed).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  clock_.Advance(absl::Hours(5));  // The placement stays.
  (void)a_->service->SweepExpiredHolds();
  EXPECT_EQ(Availability("fac-x").occupied(), 1);
}

TEST_F(BedsTest, ClockSkewBetweenReplicasNeverOverbooks) {
  CreateFacility(Facility("fac-skew", "prov-a", 1));
  ASSERT_TRUE(Census(provider_.get(), "fac-skew", 0).ok());
  v1::HoldBedResponse first;
  ASSERT_TRUE(Hold(intake_.get(), "fac-skew", "k-1", &first, 60).ok());
  // Replica B's clock runs 61 s ahead: by it the first hold has expired and the bed is free.
  FakeClock ahead(clock_.Now() + absl::Seconds(61));
  Replica b(db_url_, ns_, &ahead);
  auto intake_b = b.Stub_(kReferralService, "service");
  v1::HoldBedResponse second;
  ASSERT_TRUE(Hold(intake_b.get(), "fac-skew", "k-2", &second, 600).ok());
  // Replica A still sees its hold as live; confirming it now would put two youths in one bed.
  v1::ConfirmPlacementRequest confirm;
  confirm.set_request_id("k-c");
  confirm.set_hold_id(first.hold().id());
  v1::ConfirmPlacementResponse placed;
  grpc::Status st = intake_->ConfirmPlacement(Ctx().get(), confirm, &placed);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
  EXPECT_EQ(Count("SELECT count(*) AS n FROM placements"), 0);
  EXPECT_EQ(Count("SELECT occupied AS n FROM bed_inventory WHERE facility_id = 'fac-skew'"), 0);
}

TEST_F(BedsTest, StaleCensusIsUnknownAndExcludedWhenFreshnessIsAsked) {
  CreateFacility(Facility("fac-s", "prov-a", 5));
  ASSERT_TRUE(Census(provider_.get(), "fac-s", 1).ok());
  v1::SearchAvailabilityRequest search;
  search.set_county_fips(kKing);
  search.set_max_staleness_seconds(3600);
  v1::SearchAvailabilityResponse resp;
  ASSERT_TRUE(intake_->SearchAvailability(Ctx().get(), search, &resp).ok());
  ASSERT_EQ(resp.results_size(), 1);
  EXPECT_EQ(resp.results(0).beds(0).available_beds(), 4);

  clock_.Advance(absl::Hours(2));
  ASSERT_TRUE(intake_->SearchAvailability(Ctx().get(), search, &resp).ok());
  EXPECT_EQ(resp.results_size(), 0);  // Older than the hour asked for.

  clock_.Advance(absl::Hours(11));  // Past the 12 h window.
  EXPECT_EQ(Availability("fac-s").status(), v1::AVAILABILITY_STATUS_STALE);
  search.set_max_staleness_seconds(0);
  ASSERT_TRUE(intake_->SearchAvailability(Ctx().get(), search, &resp).ok());
  ASSERT_EQ(resp.results_size(), 1);
  EXPECT_EQ(resp.results(0).beds(0).status(), v1::AVAILABILITY_STATUS_STALE);
  v1::HoldBedResponse hold;
  grpc::Status st = Hold(intake_.get(), "fac-s", "s-1", &hold);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(st.error_message().find("stale"), std::string::npos);
  ASSERT_TRUE(a_->service->RefreshGauges().ok());
  EXPECT_EQ(SumCounter(*a_->registry, "safeharbor_beds_stale_census"), 1);
}

TEST_F(BedsTest, NeverRoutableFacilitiesAreRecordedButNeverSearchedOrHeld) {
  CreateFacility(Facility("fac-det", "prov-a", 10, v1::PLACEMENT_TYPE_DETENTION));
  CreateFacility(
      Facility("fac-scrc", "prov-a", 10, v1::PLACEMENT_TYPE_SECURE_CRISIS_RESIDENTIAL_CENTER));
  ASSERT_TRUE(Census(provider_.get(), "fac-det", 0).ok());
  ASSERT_TRUE(Census(provider_.get(), "fac-scrc", 0).ok());
  v1::SearchAvailabilityRequest search;
  search.set_county_fips(kKing);
  v1::SearchAvailabilityResponse resp;
  ASSERT_TRUE(intake_->SearchAvailability(Ctx().get(), search, &resp).ok());
  EXPECT_EQ(resp.results_size(), 0);
  v1::HoldBedResponse hold;
  EXPECT_EQ(Hold(intake_.get(), "fac-det", "d-1", &hold).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Count("SELECT count(*) AS n FROM holds"), 0);
}

TEST_F(BedsTest, WithRedisStoppedSearchesAndHoldsStayCorrect) {
  CreateFacility(Facility("fac-r", "prov-a", 2));
  ASSERT_TRUE(Census(provider_.get(), "fac-r", 0).ok());
  v1::SearchAvailabilityRequest search;
  search.set_county_fips(kKing);
  v1::SearchAvailabilityResponse resp;
  ASSERT_TRUE(intake_->SearchAvailability(Ctx().get(), search, &resp).ok());  // cached
  TestServers::Get().StopRedis();
  v1::HoldBedResponse h1, h2, h3;
  ASSERT_TRUE(Hold(intake_.get(), "fac-r", "r-1", &h1).ok());
  ASSERT_TRUE(intake_->SearchAvailability(Ctx().get(), search, &resp).ok());
  ASSERT_EQ(resp.results_size(), 1);
  EXPECT_EQ(resp.results(0).beds(0).available_beds(), 1);  // Not the cached 2.
  ASSERT_TRUE(Hold(intake_.get(), "fac-r", "r-2", &h2).ok());
  EXPECT_EQ(Hold(intake_.get(), "fac-r", "r-3", &h3).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  TestServers::Get().StartRedis();
  absl::SleepFor(absl::Milliseconds(200));
  ASSERT_TRUE(intake_->SearchAvailability(Ctx().get(), search, &resp).ok());
  EXPECT_EQ(resp.results(0).beds(0).available_beds(), 0);
  EXPECT_EQ(resp.results(0).beds(0).held(), 2);
}

// Issue 13: the other replicas' watchers are nudged after HoldBed's answer, but the search
// cache's generation is bumped before it: a search on another replica made after the answer
// never reads the answer cached before the hold.
TEST_F(BedsTest, AHoldIsSeenByAnotherReplicasCachedSearchOnceItIsAnswered) {
  Replica b(db_url_, ns_, &clock_);
  auto intake_b = b.Stub_(kReferralService, "service");
  CreateFacility(Facility("fac-x", "prov-a", 3));
  ASSERT_TRUE(Census(provider_.get(), "fac-x", 0).ok());
  v1::SearchAvailabilityRequest search;
  search.set_county_fips(kKing);
  for (int i = 1; i <= 3; ++i) {
    v1::SearchAvailabilityResponse before;
    ASSERT_TRUE(intake_b->SearchAvailability(Ctx().get(), search, &before).ok());  // cached
    ASSERT_EQ(before.results_size(), 1);
    EXPECT_EQ(before.results(0).beds(0).available_beds(), 4 - i);
    v1::HoldBedResponse hold;
    ASSERT_TRUE(Hold(intake_.get(), "fac-x", absl::StrCat("x-", i), &hold).ok());
    v1::SearchAvailabilityResponse after;
    ASSERT_TRUE(intake_b->SearchAvailability(Ctx().get(), search, &after).ok());
    ASSERT_EQ(after.results_size(), 1);
    EXPECT_EQ(after.results(0).beds(0).available_beds(), 3 - i) << "hold " << i;
  }
}

TEST_F(BedsTest, HoldBedIsIdempotentOnRequestId) {
  CreateFacility(Facility("fac-i", "prov-a", 3));
  ASSERT_TRUE(Census(provider_.get(), "fac-i", 0).ok());
  v1::HoldBedResponse a, b;
  ASSERT_TRUE(Hold(intake_.get(), "fac-i", "same", &a).ok());
  ASSERT_TRUE(Hold(intake_.get(), "fac-i", "same", &b).ok());
  EXPECT_EQ(a.hold().id(), b.hold().id());
  EXPECT_EQ(Count("SELECT count(*) AS n FROM holds"), 1);
  EXPECT_EQ(Availability("fac-i").held(), 1);
  grpc::Status st = Hold(intake_.get(), "fac-i", "same", &b, 900);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_NE(st.error_message().find("ttl_seconds"), std::string::npos) << st.error_message();
}

// Issue 13: a HoldBed's transaction makes two round trips to PostgreSQL — BEGIN, the request_id
// claim, the organization's cap, the facility and the bed type locked and counted together; then
// the hold, its event, the stored response and COMMIT — and its answers stay right: a replay
// returns the first hold, a hold with no bed left is refused.
TEST_F(BedsTest, AHoldMakesTwoRoundTripsToPostgres) {
  CreateFacility(Facility("fac-rt", "prov-a", 2));
  ASSERT_TRUE(Census(provider_.get(), "fac-rt", 0).ok());
  const auto trips = [&] {
    return SumHistogram(*a_->registry, "safeharbor_rpc_postgres_round_trips",
                        {{"grpc_method", "HoldBed"}}, 2);
  };
  v1::HoldBedResponse first, second, again, none;
  ASSERT_TRUE(Hold(intake_.get(), "fac-rt", "rt-1", &first).ok());
  ASSERT_TRUE(Hold(intake_.get(), "fac-rt", "rt-2", &second).ok());
  const HistogramTotals held = trips();
  EXPECT_EQ(held.count, 2u);
  EXPECT_EQ(held.at_most, 2u) << "every hold within 2 round trips";
  EXPECT_EQ(held.sum, 4);
  ASSERT_TRUE(Hold(intake_.get(), "fac-rt", "rt-1", &again).ok());
  EXPECT_EQ(again.hold().id(), first.hold().id());
  EXPECT_EQ(Hold(intake_.get(), "fac-rt", "rt-3", &none).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Count("SELECT count(*) AS n FROM holds"), 2);
  EXPECT_EQ(Availability("fac-rt").held(), 2);
  const HistogramTotals all = trips();
  std::cout << "HoldBed round trips to PostgreSQL: " << held.sum / held.count
            << " per hold; a replay and a refusal took " << all.sum - held.sum << " together\n";
}

// Release build included (scripts/build ships RelWithDebInfo with NDEBUG): a hold that would
// take a bed past its licensed capacity is refused with INTERNAL, counted, and stores nothing.
TEST_F(BedsTest, ABrokenCapacityInvariantRefusesTheHoldAndIsCounted) {
  CreateFacility(Facility("fac-inv", "prov-a", 2));
  ASSERT_TRUE(Census(provider_.get(), "fac-inv", 0).ok());
  ForceInvariantFailureForTest("beds.capacity", true);
  v1::HoldBedResponse resp;
  grpc::Status st = Hold(intake_.get(), "fac-inv", "inv-1", &resp);
  ForceInvariantFailureForTest("beds.capacity", false);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INTERNAL) << st.error_message();
  const std::string text = prometheus::TextSerializer().Serialize(a_->registry->Collect());
  EXPECT_NE(text.find("safeharbor_invariant_violations_total{invariant=\"beds.capacity\"} 1"),
            std::string::npos);
  // Nothing was stored: both beds are still free, and the same request_id now succeeds.
  v1::GetFacilityRequest get;
  get.set_id("fac-inv");
  v1::GetFacilityResponse got;
  ASSERT_TRUE(intake_->GetFacility(Ctx().get(), get, &got).ok());
  ASSERT_EQ(got.beds_size(), 1);
  EXPECT_EQ(got.beds(0).available_beds(), 2);
  EXPECT_EQ(got.beds(0).held(), 0);
  EXPECT_TRUE(Hold(intake_.get(), "fac-inv", "inv-1", &resp).ok());
}

// A census replayed by request_id is checked again before the record answers: a replay that
// arrives once the count it carries is stale is refused, as it was before the method table.
TEST_F(BedsTest, ACensusReplayIsValidatedAgain) {
  CreateFacility(Facility("fac-replay", "prov-a", 3));
  v1::ReportCensusRequest req;
  req.set_request_id("census-replay");
  req.set_facility_id("fac-replay");
  *req.mutable_confirmed_time() = ToProtoTime(clock_.Now());
  auto* e = req.add_entries();
  e->set_bed_type(v1::BED_TYPE_GENERAL);
  e->set_occupied(1);
  v1::ReportCensusResponse resp;
  ASSERT_TRUE(provider_->ReportCensus(Ctx().get(), req, &resp).ok());
  ASSERT_TRUE(provider_->ReportCensus(Ctx().get(), req, &resp).ok());  // A replay.
  auto other = a_->Stub_("prov-b", "provider");
  EXPECT_EQ(other->ReportCensus(Ctx().get(), req, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);  // Not the owner: refused, replay or not.
  clock_.Advance(absl::Hours(13));
  EXPECT_EQ(provider_->ReportCensus(Ctx().get(), req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(BedsTest, BadInputIsRefusedAndStoresNothing) {
  CreateFacility(Facility("fac-b", "prov-a", 3));
  v1::HoldBedResponse hold;
  struct Case {
    std::function<void(v1::HoldBedRequest*)> mutate;
    const char* field;
  };
  const std::vector<Case> cases = {
      {[](v1::HoldBedRequest* r) { r->set_request_id(""); }, "request_id"},
      {[](v1::HoldBedRequest* r) { r->set_facility_id("NOPE!"); }, "facility_id"},
      {[](v1::HoldBedRequest* r) { r->set_bed_type(v1::BED_TYPE_UNSPECIFIED); }, "bed_type"},
      {[](v1::HoldBedRequest* r) { r->set_referral_id(""); }, "referral_id"},
      {[](v1::HoldBedRequest* r) { r->set_ttl_seconds(5); }, "ttl_seconds"},
  };
  for (const auto& c : cases) {
    v1::HoldBedRequest req;
    req.set_request_id("bad");
    req.set_facility_id("fac-b");
    req.set_bed_type(v1::BED_TYPE_GENERAL);
    req.set_referral_id("ref-1");
    c.mutate(&req);
    grpc::Status st = intake_->HoldBed(Ctx().get(), req, &hold);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_NE(st.error_message().find(c.field), std::string::npos) << st.error_message();
  }
  v1::ReportCensusRequest census;
  census.set_request_id("c-bad");
  census.set_facility_id("fac-b");
  *census.mutable_confirmed_time() = ToProtoTime(clock_.Now());
  auto* e = census.add_entries();
  e->set_bed_type(v1::BED_TYPE_GENERAL);
  e->set_occupied(9);
  v1::ReportCensusResponse cr;
  EXPECT_EQ(provider_->ReportCensus(Ctx().get(), census, &cr).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::CreateFacilityRequest create;
  create.set_request_id("f-bad");
  *create.mutable_facility() = Facility("fac-bad", "prov-a", 3);
  create.mutable_facility()->set_county_fips("99999");
  v1::CreateFacilityResponse fr;
  EXPECT_EQ(admin_->CreateFacility(Ctx().get(), create, &fr).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Count("SELECT count(*) AS n FROM holds"), 0);
  EXPECT_EQ(Count("SELECT count(*) AS n FROM facilities"), 1);
  EXPECT_EQ(Count("SELECT count(*) AS n FROM bed_inventory WHERE confirmed_at IS NOT NULL"), 0);
}

// Issue 11: an officer's certificate held every free bed for made-up referral ids. Now only the
// referral service holds (for the referrals it routes), and each organization held for has a
// cap on active holds.
TEST_F(BedsTest, OnlyTheReferralServiceHoldsAndEachOrganizationHasACap) {
  CreateFacility(Facility("fac-cap", "prov-a", 8));
  ASSERT_TRUE(Census(provider_.get(), "fac-cap", 0).ok());
  v1::HoldBedResponse hold;
  for (auto [org, role] : {std::pair{"le-seattle", "law_enforcement"},
                           {"cw-king", "child_welfare"},
                           {"prov-a", "provider"}}) {
    auto person = a_->Stub_(org, role);
    EXPECT_EQ(Hold(person.get(), "fac-cap", absl::StrCat("made-up-", role), &hold, 14400,
                   "made-up-referral")
                  .error_code(),
              grpc::StatusCode::PERMISSION_DENIED)
        << role;
  }
  EXPECT_EQ(Availability("fac-cap").held(), 0);

  Replica capped(db_url_, ns_, &clock_, nullptr, /*max_holds_per_org=*/3);
  auto service = capped.Stub_(kReferralService, "service");
  auto hold_for = [&](const std::string& org, const std::string& rid) {
    v1::HoldBedRequest req;
    req.set_request_id(rid);
    req.set_facility_id("fac-cap");
    req.set_bed_type(v1::BED_TYPE_GENERAL);
    req.set_referral_id("ref-" + rid);
    req.set_for_organization_id(org);
    v1::HoldBedResponse resp;
    grpc::Status st = service->HoldBed(Ctx().get(), req, &resp);
    return std::make_pair(st, resp.hold().id());
  };
  std::vector<std::string> seattle;
  for (int i = 0; i < 3; ++i) {
    auto [st, id] = hold_for("le-seattle", absl::StrCat("s-", i));
    ASSERT_TRUE(st.ok()) << st.error_message();
    seattle.push_back(id);
  }
  auto [full, none] = hold_for("le-seattle", "s-3");
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(full.error_message().find("3 active bed holds"), std::string::npos)
      << full.error_message();
  EXPECT_TRUE(hold_for("le-seattle", "s-0").first.ok());  // a replay is not a new hold
  EXPECT_TRUE(hold_for("le-tacoma", "t-0").first.ok());   // another organization's own cap
  EXPECT_EQ(Availability("fac-cap").held(), 4);
  EXPECT_EQ(SumCounter(*capped.registry, "safeharbor_beds_hold_cap_refusals_total"), 1);
  // A released hold frees a place under the cap.
  v1::ReleaseHoldRequest release;
  release.set_hold_id(seattle[0]);
  v1::ReleaseHoldResponse released;
  ASSERT_TRUE(service->ReleaseHold(Ctx().get(), release, &released).ok());
  EXPECT_TRUE(hold_for("le-seattle", "s-4").first.ok());
  EXPECT_EQ(hold_for("le-seattle", "s-5").first.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Availability("fac-cap").held(), 4);
}

TEST_F(BedsTest, ProvidersManageOnlyTheirOwnFacilities) {
  CreateFacility(Facility("fac-a", "prov-a", 3));
  auto other = a_->Stub_("prov-b", "provider");
  EXPECT_EQ(Census(other.get(), "fac-a", 1).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::CreateFacilityRequest create;
  create.set_request_id("steal");
  *create.mutable_facility() = Facility("fac-b", "prov-a", 3);
  v1::CreateFacilityResponse resp;
  EXPECT_EQ(other->CreateFacility(Ctx().get(), create, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Census(provider_.get(), "fac-a", 1).ok());
  v1::HoldBedResponse hold;  // A provider does not place holds; intake does.
  EXPECT_EQ(Hold(provider_.get(), "fac-a", "p-1", &hold).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

std::vector<v1::WatchAvailabilityResponse> ReadEvents(
    grpc::ClientReader<v1::WatchAvailabilityResponse>* reader, size_t n) {
  std::vector<v1::WatchAvailabilityResponse> out;
  v1::WatchAvailabilityResponse r;
  while (out.size() < n && reader->Read(&r)) out.push_back(r);
  return out;
}

TEST_F(BedsTest, WatchReceivesChangesAndResumesFromItsCursorAfterARestart) {
  CreateFacility(Facility("fac-w", "prov-a", 5));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  v1::WatchAvailabilityRequest watch;
  watch.set_county_fips(kKing);
  auto reader = intake_->WatchAvailability(&ctx, watch);
  absl::SleepFor(absl::Milliseconds(300));  // Let the stream register before the changes.
  ASSERT_TRUE(Census(provider_.get(), "fac-w", 1).ok());
  v1::HoldBedResponse hold;
  ASSERT_TRUE(Hold(intake_.get(), "fac-w", "w-1", &hold).ok());
  auto first = ReadEvents(reader.get(), 2);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].reason(), "census");
  EXPECT_EQ(first[1].reason(), "hold");
  EXPECT_EQ(first[1].availability().available_beds(), 3);
  const std::string cursor = first[1].cursor();
  ctx.TryCancel();

  // The replica restarts; meanwhile changes land through another replica.
  a_.reset();
  {
    Replica b(db_url_, ns_, &clock_);
    auto intake_b = b.Stub_(kReferralService, "service");
    v1::HoldBedResponse h2;
    ASSERT_TRUE(Hold(intake_b.get(), "fac-w", "w-2", &h2).ok());
    v1::ReleaseHoldRequest release;
    release.set_hold_id(hold.hold().id());
    v1::ReleaseHoldResponse released;
    ASSERT_TRUE(intake_b->ReleaseHold(Ctx().get(), release, &released).ok());
  }
  a_ = std::make_unique<Replica>(db_url_, ns_, &clock_);
  intake_ = a_->Stub_(kReferralService, "service");
  grpc::ClientContext ctx2;
  ctx2.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  watch.set_cursor(cursor);
  auto resumed = intake_->WatchAvailability(&ctx2, watch);
  auto missed = ReadEvents(resumed.get(), 2);
  ASSERT_EQ(missed.size(), 2u);
  EXPECT_EQ(missed[0].reason(), "hold");
  EXPECT_EQ(missed[0].availability().held(), 2);
  EXPECT_EQ(missed[1].reason(), "release");
  EXPECT_EQ(missed[1].availability().held(), 1);
  int64_t c0 = 0, c1 = 0, c2 = 0;
  ASSERT_TRUE(absl::SimpleAtoi(cursor, &c0) && absl::SimpleAtoi(missed[0].cursor(), &c1) &&
              absl::SimpleAtoi(missed[1].cursor(), &c2));
  EXPECT_LT(c0, c1);
  EXPECT_LT(c1, c2);
  ctx2.TryCancel();
}

TEST_F(BedsTest, FacilityOwnersMustBeProvidersInTheDirectory) {
  // A real directory service, in process, on its own database.
  auto& s = TestServers::Get();
  safeharbor::testing::Hosted<directory::DirectoryServiceImpl> dir;
  dir.Connect("dirforbeds", directory::Migrations(), 2, 8, /*with_redis=*/false);
  dir.service = std::make_unique<directory::DirectoryServiceImpl>(
      dir.env.get(), dir.pg.get(), nullptr, *dir.registry, WashingtonCounties());
  dir.Serve("directory");
  auto dir_admin = directory::v1::DirectoryService::NewStub(
      s.Channel(dir.port(), "state-directory", "directory_admin"));
  for (auto [id, kind] : {std::pair{"prov-real", directory::v1::ORGANIZATION_KIND_SERVICE_PROVIDER},
                          {"le-agency", directory::v1::ORGANIZATION_KIND_LAW_ENFORCEMENT_AGENCY}}) {
    directory::v1::CreateOrganizationRequest req;
    req.set_request_id(id);
    req.mutable_organization()->set_id(id);
    req.mutable_organization()->set_kind(kind);
    req.mutable_organization()->set_name(id);
    directory::v1::CreateOrganizationResponse resp;
    ASSERT_TRUE(dir_admin->CreateOrganization(Ctx().get(), req, &resp).ok());
  }
  PeerOptions peer;
  peer.name = "directory";
  peer.address = dir.address();
  peer.tls = s.ServerTls("beds");    // The beds service's own identity: role "service".
  peer.deadline = absl::Seconds(3);  // a sanitizer build's first TLS handshake is slow
  auto connected = Peer::Connect(peer);
  ASSERT_TRUE(connected.ok());
  DirectoryProviderCheck check(*std::move(connected));
  Replica checked(db_url_, ns_, &clock_, &check);
  auto admin = checked.Stub_("state-directory", "directory_admin");
  auto create = [&](const std::string& id, const std::string& org) {
    v1::CreateFacilityRequest req;
    req.set_request_id("c-" + id);
    *req.mutable_facility() = Facility(id, org, 2);
    v1::CreateFacilityResponse resp;
    return admin->CreateFacility(Ctx().get(), req, &resp);
  };
  grpc::Status ok = create("fac-ok", "prov-real");
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  grpc::Status le = create("fac-le", "le-agency");
  EXPECT_EQ(le.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(le.error_message().find("not a service provider"), std::string::npos);
  grpc::Status ghost = create("fac-ghost", "ghost-org");
  EXPECT_EQ(ghost.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(ghost.error_message().find("not in the directory"), std::string::npos);
  dir.Shutdown();
  grpc::Status down = create("fac-down", "prov-real");
  EXPECT_EQ(down.error_code(), grpc::StatusCode::UNAVAILABLE) << down.error_message();
  EXPECT_EQ(Count("SELECT count(*) AS n FROM facilities"), 1);
}

TEST_F(BedsTest, WatchMissesNothingWhileRedisIsDown) {
  CreateFacility(Facility("fac-o", "prov-a", 5));
  ASSERT_TRUE(Census(provider_.get(), "fac-o", 0).ok());
  Replica b(db_url_, ns_, &clock_);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  v1::WatchAvailabilityRequest watch;
  watch.set_county_fips(kKing);
  auto reader = intake_->WatchAvailability(&ctx, watch);
  absl::SleepFor(absl::Milliseconds(300));
  TestServers::Get().StopRedis();
  // Made on the other replica: no Redis wake-up can reach this one; its poll must.
  auto intake_b = b.Stub_(kReferralService, "service");
  v1::HoldBedResponse h1, h2;
  ASSERT_TRUE(Hold(intake_b.get(), "fac-o", "o-1", &h1).ok());
  ASSERT_TRUE(Hold(intake_b.get(), "fac-o", "o-2", &h2).ok());
  auto events = ReadEvents(reader.get(), 2);
  TestServers::Get().StartRedis();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].availability().held(), 1);
  EXPECT_EQ(events[1].availability().held(), 2);
  ctx.TryCancel();
}

// Issue 14: an accepted referral's hold follows it to the hand-off deadline.
TEST_F(BedsTest, ExtendHoldMovesTheExpiryLaterAndTheBedOutlivesTheOldOne) {
  CreateFacility(Facility("fac-e", "prov-a", 1));
  ASSERT_TRUE(Census(provider_.get(), "fac-e", 0).ok());
  v1::HoldBedResponse hold;
  ASSERT_TRUE(Hold(intake_.get(), "fac-e", "e-1", &hold, 3600).ok());
  const absl::Time target = clock_.Now() + absl::Hours(5);
  v1::ExtendHoldResponse extended;
  grpc::Status st = Extend(intake_.get(), hold.hold().id(), target, "x-1", &extended);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(FromProtoTime(extended.hold().expire_time()), target);
  EXPECT_EQ(extended.hold().state(), v1::HOLD_STATE_ACTIVE);
  // A retry answers the same and changes nothing; the same expiry again is no change either.
  v1::ExtendHoldResponse again;
  ASSERT_TRUE(Extend(intake_.get(), hold.hold().id(), target, "x-1", &again).ok());
  EXPECT_EQ(FromProtoTime(again.hold().expire_time()), target);
  ASSERT_TRUE(Extend(intake_.get(), hold.hold().id(), target, "x-2", &again).ok());
  EXPECT_EQ(SumCounter(*a_->registry, "safeharbor_beds_holds_total", {{"event", "extended"}}), 1);

  clock_.Advance(absl::Hours(2));  // Past the old expiry: still held, nobody else gets the bed.
  EXPECT_EQ(*a_->service->SweepExpiredHolds(), 0);
  EXPECT_EQ(Availability("fac-e").held(), 1);
  v1::HoldBedResponse other;
  EXPECT_EQ(Hold(intake_.get(), "fac-e", "e-2", &other, 600, "ref-2").error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  v1::ConfirmPlacementRequest confirm;
  confirm.set_request_id("e-c");
  confirm.set_hold_id(hold.hold().id());
  v1::ConfirmPlacementResponse placed;
  st = intake_->ConfirmPlacement(Ctx().get(), confirm, &placed);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(Availability("fac-e").occupied(), 1);
}

TEST_F(BedsTest, ExtendHoldRefusesGoneHoldsShorterOrTooFarExpiriesAndOtherCallers) {
  CreateFacility(Facility("fac-r", "prov-a", 3));
  ASSERT_TRUE(Census(provider_.get(), "fac-r", 0).ok());
  v1::HoldBedResponse live, released, lapsed;
  ASSERT_TRUE(Hold(intake_.get(), "fac-r", "r-1", &live, 3600, "ref-1").ok());
  ASSERT_TRUE(Hold(intake_.get(), "fac-r", "r-2", &released, 3600, "ref-2").ok());
  ASSERT_TRUE(Hold(intake_.get(), "fac-r", "r-3", &lapsed, 60, "ref-3").ok());
  v1::ReleaseHoldRequest release;
  release.set_hold_id(released.hold().id());
  v1::ReleaseHoldResponse out;
  ASSERT_TRUE(intake_->ReleaseHold(Ctx().get(), release, &out).ok());
  const absl::Time now = clock_.Now();
  const absl::Time expiry = FromProtoTime(live.hold().expire_time());
  const auto code = [&](Stub* stub, const std::string& hold, absl::Time t, const std::string& rid) {
    v1::ExtendHoldResponse resp;
    grpc::Status st = Extend(stub, hold, t, rid, &resp);
    std::cout << rid << ": " << st.error_message() << "\n";
    return st.error_code();
  };
  EXPECT_EQ(code(intake_.get(), released.hold().id(), now + absl::Hours(4), "f-1"),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(code(intake_.get(), live.hold().id(), expiry - absl::Minutes(1), "f-2"),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(code(intake_.get(), live.hold().id(), now + absl::Hours(8) + absl::Seconds(1), "f-3"),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Another service identity, the facility's provider, an officer: not the hold's placer.
  auto other_service = a_->Stub_("safeharbor-fees", "service");
  auto officer = a_->Stub_("le-seattle", "law_enforcement");
  EXPECT_EQ(code(other_service.get(), live.hold().id(), now + absl::Hours(4), "f-4"),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(code(provider_.get(), live.hold().id(), now + absl::Hours(4), "f-5"),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(code(officer.get(), live.hold().id(), now + absl::Hours(4), "f-6"),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(code(intake_.get(), "hold-nope", now + absl::Hours(4), "f-7"),
            grpc::StatusCode::NOT_FOUND);
  v1::ExtendHoldRequest bad;
  bad.set_request_id("f-8");
  bad.set_hold_id(live.hold().id());
  v1::ExtendHoldResponse resp;
  EXPECT_EQ(intake_->ExtendHold(Ctx().get(), bad, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // no expire_time
  clock_.Advance(absl::Seconds(61));              // r-3 lapsed (not yet swept).
  EXPECT_EQ(code(intake_.get(), lapsed.hold().id(), clock_.Now() + absl::Hours(4), "f-9"),
            grpc::StatusCode::FAILED_PRECONDITION);
  // Nothing changed: the live hold keeps its expiry, none was counted as extended.
  EXPECT_EQ(
      Count(absl::StrCat("SELECT count(*) AS n FROM holds WHERE id = '", live.hold().id(),
                         "' AND expire_time = to_timestamp(", absl::ToUnixSeconds(expiry), ")")),
      1);
  EXPECT_EQ(SumCounter(*a_->registry, "safeharbor_beds_holds_total", {{"event", "extended"}}), 0);
}

}  // namespace
}  // namespace safeharbor::beds
