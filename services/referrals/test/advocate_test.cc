// Issue 14, advocate response (services/referrals/advocate.h): an urgent or emergency referral
// asking for CSEC advocacy alone goes only to 24/7 advocacy services, carries a response target
// (90 minutes from the call), has its advocate's arrival recorded by the accepting provider, and
// a missed target is marked once across replicas, told to the county's child welfare by a webhook
// event and counted. The pure rules first, then the service through real gRPC (referral_fixture.h).
#include "services/referrals/advocate.h"

#include <optional>

#include "services/referrals/routing.h"
#include "services/referrals/test/referral_fixture.h"

namespace safeharbor::referrals {
namespace {

constexpr absl::Duration kTarget = absl::Seconds(5400);  // the default

v1::Referral AdvocacyRow(v1::Urgency urgency) {
  v1::Referral r;
  r.set_id("ref-adv");
  r.mutable_needs()->add_service_categories(dir::SERVICE_CATEGORY_CSEC_ADVOCACY);
  r.set_urgency(urgency);
  r.set_status(v1::REFERRAL_STATUS_ACCEPTED);
  *r.mutable_create_time() = ToProtoTime(absl::FromUnixSeconds(1795000000));
  return r;
}

TEST(AdvocateRules, OnlyAnUrgentOrEmergencyRowAskingForAdvocacyAloneHasATarget) {
  v1::Referral urgent = AdvocacyRow(v1::URGENCY_URGENT);
  EXPECT_TRUE(IsAdvocacyRow(urgent));
  EXPECT_TRUE(HasAdvocateTarget(urgent));
  EXPECT_TRUE(HasAdvocateTarget(AdvocacyRow(v1::URGENCY_EMERGENCY)));
  EXPECT_TRUE(IsAdvocacyRow(AdvocacyRow(v1::URGENCY_ROUTINE)));
  EXPECT_FALSE(HasAdvocateTarget(AdvocacyRow(v1::URGENCY_ROUTINE)));
  v1::Referral two = urgent;  // advocacy and something else: not an advocacy row
  two.mutable_needs()->add_service_categories(dir::SERVICE_CATEGORY_MENTAL_HEALTH);
  EXPECT_FALSE(IsAdvocacyRow(two));
  v1::Referral bed = urgent;
  bed.mutable_needs()->set_placement_tonight(true);
  EXPECT_FALSE(HasAdvocateTarget(bed));

  StampAdvocateTarget(urgent, kTarget);
  EXPECT_EQ(FromProtoTime(urgent.advocate_response_due()),
            FromProtoTime(urgent.create_time()) + kTarget);
  v1::Referral routine = AdvocacyRow(v1::URGENCY_ROUTINE);
  StampAdvocateTarget(routine, kTarget);
  EXPECT_FALSE(routine.has_advocate_response_due());
}

TEST(AdvocateRules, ArrivalChecksNameTheField) {
  const absl::Time now = absl::FromUnixSeconds(1795003600);
  v1::RecordAdvocateArrivalRequest req;
  EXPECT_NE(ValidateAdvocateArrival(req, now).message().find("id"), absl::string_view::npos);
  req.set_id("ref-adv");
  EXPECT_TRUE(ValidateAdvocateArrival(req, now).ok());
  *req.mutable_arrival_time() = ToProtoTime(now + absl::Seconds(1));
  EXPECT_EQ(ValidateAdvocateArrival(req, now).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ValidateAdvocateArrival(req, now).message().find("arrival_time"),
            absl::string_view::npos);
  req.mutable_arrival_time()->set_nanos(-1);
  EXPECT_EQ(ValidateAdvocateArrival(req, now).code(), absl::StatusCode::kInvalidArgument);

  v1::Referral r = AdvocacyRow(v1::URGENCY_URGENT);
  const absl::Time created = FromProtoTime(r.create_time());
  EXPECT_TRUE(CheckArrival(r, created).ok());
  EXPECT_EQ(CheckArrival(r, created - absl::Seconds(1)).code(), absl::StatusCode::kInvalidArgument);
  r.set_status(v1::REFERRAL_STATUS_COMPLETED);
  EXPECT_EQ(CheckArrival(r, created).code(), absl::StatusCode::kFailedPrecondition);
  r.set_status(v1::REFERRAL_STATUS_OFFERED);
  EXPECT_EQ(CheckArrival(r, created).code(), absl::StatusCode::kFailedPrecondition);
  r = AdvocacyRow(v1::URGENCY_URGENT);
  r.mutable_needs()->set_placement_tonight(true);
  EXPECT_EQ(CheckArrival(r, created).code(), absl::StatusCode::kFailedPrecondition);

  r = AdvocacyRow(v1::URGENCY_URGENT);
  r.mutable_handoff()->set_provider_organization_id("prov-a");
  *r.mutable_accepted_time() = r.create_time();
  EXPECT_TRUE(CanRecordArrival(Caller{"prov-a", Role::kProvider, ""}, r).ok());
  EXPECT_EQ(CanRecordArrival(Caller{"prov-b", Role::kProvider, ""}, r).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(CanRecordArrival(Caller{"prov-a", Role::kChildWelfare, ""}, r).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(AdvocateRules, OverdueOnlyPastTheTargetWithoutArrivalWhileOpen) {
  v1::Referral r = AdvocacyRow(v1::URGENCY_EMERGENCY);
  StampAdvocateTarget(r, kTarget);
  const absl::Time due = FromProtoTime(r.advocate_response_due());
  EXPECT_FALSE(AdvocateOverdue(r, due - absl::Seconds(1)));
  EXPECT_TRUE(AdvocateOverdue(r, due));
  r.set_status(v1::REFERRAL_STATUS_CANCELLED);
  EXPECT_FALSE(AdvocateOverdue(r, due));
  r.set_status(v1::REFERRAL_STATUS_ESCALATED);  // nobody arrived: still overdue
  EXPECT_TRUE(AdvocateOverdue(r, due));
  *r.mutable_advocate_arrival_time() = ToProtoTime(due + absl::Minutes(5));
  EXPECT_FALSE(AdvocateOverdue(r, due + absl::Hours(1)));
  EXPECT_FALSE(AdvocateOverdue(AdvocacyRow(v1::URGENCY_ROUTINE), due + absl::Hours(9)));

  const WebhookEvent e = AdvocateResponseMissedEvent("ref-adv", due, due + absl::Minutes(1));
  EXPECT_EQ(e.type, v1::WEBHOOK_EVENT_TYPE_ADVOCATE_RESPONSE_MISSED);
  EXPECT_EQ(e.deadline, due);
  EXPECT_EQ(e.event_id, AdvocateResponseMissedEvent("ref-adv", due, due + absl::Hours(1)).event_id);
  EXPECT_EQ(WebhookEventName(e.type), "advocate_response_missed");
}

// Routing: with open_24_7_only, a service not open around the clock is not a candidate at all
// (however near), and the explanation says why the others are.
TEST(AdvocateRouting, RankKeepsOnlyAroundTheClockServicesWhenAsked) {
  v1::YouthProfile youth;
  Option day;
  day.provider_organization_id = "day-office";
  day.service_id = "day-adv";
  day.category = dir::SERVICE_CATEGORY_CSEC_ADVOCACY;
  day.csec_specialized = true;
  day.distance_meters = 100;
  Option night = day;
  night.provider_organization_id = "hotline";
  night.service_id = "hotline-adv";
  night.distance_meters = 30000;
  night.open_24_7 = true;
  RoutingRequest routine{&youth, nullptr, kKing, v1::URGENCY_ROUTINE};
  auto ranked = Rank(routine, {day, night});
  ASSERT_EQ(ranked.size(), 2u);
  EXPECT_EQ(ranked[0].provider_organization_id(), "day-office");
  RoutingRequest urgent{&youth, nullptr, kKing, v1::URGENCY_URGENT, /*open_24_7_only=*/true};
  ranked = Rank(urgent, {day, night});
  ASSERT_EQ(ranked.size(), 1u);
  EXPECT_EQ(ranked[0].provider_organization_id(), "hotline");
  EXPECT_NE(ranked[0].explanation().find("open 24/7"), std::string::npos);
}

// The service, with a fourth advocacy provider nearest the youth that is not open 24/7.
class AdvocateTest : public ReferralTest {
 protected:
  void SetUp() override {
    ReferralTest::SetUp();
    auto admin = dir::DirectoryService::NewStub(
        TestServers::Get().Channel(directory_.host->port(), "state-directory", "directory_admin"));
    dir::CreateOrganizationRequest org;
    org.set_request_id("org-prov-day");
    *org.mutable_organization() =
        Org("prov-day", dir::ORGANIZATION_KIND_SERVICE_PROVIDER, kKing, 47.6062, -122.3321);
    dir::CreateOrganizationResponse org_resp;
    grpc::Status st = admin->CreateOrganization(Ctx().get(), org, &org_resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    dir::CreateServiceRequest req;
    req.set_request_id("svc-prov-day");
    dir::Service* svc = req.mutable_service();
    svc->set_id("adv-prov-day");
    svc->set_organization_id("prov-day");
    svc->set_name("Survivor advocacy (until 22:00)");
    svc->set_category(dir::SERVICE_CATEGORY_CSEC_ADVOCACY);
    svc->set_csec_specialized(true);
    svc->set_minimum_age(10);
    svc->set_maximum_age(24);
    svc->mutable_schedule()->set_time_zone("America/Los_Angeles");
    for (int day = dir::DAY_OF_WEEK_MONDAY; day <= dir::DAY_OF_WEEK_SUNDAY; ++day) {
      auto* h = svc->mutable_schedule()->add_weekly_hours();
      h->set_day(static_cast<dir::DayOfWeek>(day));
      h->set_opens_at("00:00");  // open now (03:06 on a Wednesday, Pacific), not 24/7
      h->set_closes_at("22:00");
    }
    svc->add_service_area_county_fips(kKing);
    svc->set_status(dir::SERVICE_STATUS_ACTIVE);
    svc->set_accepting_referrals(true);
    svc->set_location_id("main");
    dir::CreateServiceResponse resp;
    st = admin->CreateService(Ctx().get(), req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  void TearDown() override {
    replicas_.clear();
    ReferralTest::TearDown();
  }

  // An advocacy-only referral of this urgency, routed; returns its id.
  std::string Routed(v1::Urgency urgency, const std::string& rid) {
    v1::CreateReferralRequest req = Request(/*placement=*/false, rid);
    req.set_urgency(urgency);
    const std::string id = Create(req);
    EXPECT_EQ(Timers(), 1);
    return id;
  }
  static std::set<std::string> Offered(const v1::Referral& r) {
    std::set<std::string> out;
    for (const auto& o : r.offers()) out.insert(o.provider_organization_id());
    return out;
  }
  grpc::Status Arrive(const std::string& org, const std::string& role, const std::string& id,
                      std::optional<absl::Time> at, v1::Referral* out = nullptr) {
    v1::RecordAdvocateArrivalRequest req;
    req.set_id(id);
    req.set_request_id(absl::StrCat("arrive-", id, "-", org));
    if (at) *req.mutable_arrival_time() = ToProtoTime(*at);
    v1::RecordAdvocateArrivalResponse resp;
    grpc::Status st = Stub_(org, role)->RecordAdvocateArrival(Ctx().get(), req, &resp);
    if (out != nullptr) *out = resp.referral();
    return st;
  }
  v1::Referral AsProvider(const std::string& org, const std::string& id) {
    v1::GetReferralResponse resp;
    grpc::Status st = Stub_(org, "provider")->GetReferral(Ctx().get(), Get(id), &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp.referral();
  }
  // One series of the referral service's registry (or a replica's) by its labels.
  static const prometheus::ClientMetric* Series(prometheus::Registry& registry,
                                                std::vector<prometheus::MetricFamily>& keep,
                                                const std::string& name,
                                                const std::map<std::string, std::string>& labels) {
    keep = registry.Collect();
    for (const auto& family : keep) {
      if (family.name != name) continue;
      for (const auto& m : family.metric) {
        std::map<std::string, std::string> have;
        for (const auto& l : m.label) have[l.name] = l.value;
        if (have == labels) return &m;
      }
    }
    return nullptr;
  }
  double Value(prometheus::Registry& registry, const std::string& name,
               const std::map<std::string, std::string>& labels) {
    std::vector<prometheus::MetricFamily> keep;
    const prometheus::ClientMetric* m = Series(registry, keep, name, labels);
    return m == nullptr ? -1 : m->counter.value + m->gauge.value;
  }
  void Subscribe(const std::string& org, const std::string& role) {
    v1::CreateWebhookSubscriptionRequest req;
    req.set_organization_id(org);
    req.set_url(absl::StrCat("https://hooks.example.org/", org));
    req.add_events(v1::WEBHOOK_EVENT_TYPE_ADVOCATE_RESPONSE_MISSED);
    v1::CreateWebhookSubscriptionResponse resp;
    grpc::Status st = Stub_(org, role)->CreateWebhookSubscription(Ctx().get(), req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  // Two "replicas" of the advocate task: each with its own PostgreSQL pool, registry, change
  // path and task, on the referral service's database, with the injected clock.
  struct TaskReplica {
    prometheus::Registry registry;
    std::unique_ptr<PgPool> pg;
    std::unique_ptr<ReferralMetrics> metrics;
    std::unique_ptr<ReferralChanges> changes;
    WebhookOptions hooks;
    std::unique_ptr<AdvocateResponse> task;
  };
  void StartReplicas() {
    for (int i = 0; i < 2; ++i) {
      auto r = std::make_unique<TaskReplica>();
      PgOptions o = TestServers::Get().PgOptionsFor(referrals_.db_url);
      o.pool_size = 4;
      auto pool = PgPool::Connect(o, &r->registry);
      ASSERT_TRUE(pool.ok()) << pool.status();
      r->pg = *std::move(pool);
      r->metrics = std::make_unique<ReferralMetrics>(r->registry);
      r->changes = std::make_unique<ReferralChanges>(
          r->pg.get(), &clock_, &sealer_, network_, r->metrics.get(), [] {}, [] {});
      r->task = std::make_unique<AdvocateResponse>(r->pg.get(), &clock_, r->changes.get(), r->hooks,
                                                   r->registry);
      replicas_.push_back(std::move(r));
    }
  }
  // Each replica's pass, `passes` times, both at once.
  void RunBothReplicas(int passes) {
    std::vector<std::thread> threads;
    for (auto& r : replicas_) {
      threads.emplace_back([&r, passes] {
        for (int i = 0; i < passes; ++i) EXPECT_TRUE(r->task->MarkMissed(20).ok());
      });
    }
    for (auto& t : threads) t.join();
  }
  double Overdue(const std::string& urgency) {
    EXPECT_TRUE(replicas_[0]
                    ->pg
                    ->Transact([&](PgTx& tx) {
                      return replicas_[0]->task->RefreshGauges(tx, clock_.Now());
                    })
                    .ok());
    return Value(replicas_[0]->registry, "safeharbor_referrals_advocate_responses_overdue",
                 {{"urgency", urgency}});
  }
  double Missed(size_t replica, const std::string& urgency) {
    return Value(replicas_[replica]->registry,
                 "safeharbor_referrals_advocate_responses_missed_total", {{"urgency", urgency}});
  }
  double MissedAcrossReplicas(const std::string& urgency) {
    return Missed(0, urgency) + Missed(1, urgency);
  }
  std::vector<std::unique_ptr<TaskReplica>> replicas_;
};

TEST_F(AdvocateTest, UrgentAdvocacyGoesOnlyToAroundTheClockProviders) {
  // Routine: the nearest service, open now but not 24/7, is offered first as today.
  const std::string routine = Routed(v1::URGENCY_ROUTINE, "adv-routine");
  const v1::Referral r = AsChildWelfare(routine);
  EXPECT_EQ(Offered(r).count("prov-day"), 1u);
  ASSERT_FALSE(r.candidates().empty());
  EXPECT_EQ(r.candidates(0).provider_organization_id(), "prov-day");
  EXPECT_FALSE(r.has_advocate_response_due());  // no target for a routine referral

  // Urgent and emergency: only the three 24/7 services; the target is 90 minutes from the call.
  for (v1::Urgency u : {v1::URGENCY_URGENT, v1::URGENCY_EMERGENCY}) {
    const std::string id = Routed(u, absl::StrCat("adv-", u));
    const v1::Referral urgent = AsChildWelfare(id);
    EXPECT_EQ(Offered(urgent), (std::set<std::string>{"prov-a", "prov-b", "prov-c"}));
    for (const auto& c : urgent.candidates()) {
      EXPECT_NE(c.provider_organization_id(), "prov-day");
      EXPECT_NE(c.explanation().find("open 24/7"), std::string::npos) << c.explanation();
    }
    ASSERT_TRUE(urgent.has_advocate_response_due());
    EXPECT_EQ(FromProtoTime(urgent.advocate_response_due()),
              FromProtoTime(urgent.create_time()) + kTarget);
    EXPECT_EQ(FromProtoTime(AsProvider("prov-a", id).advocate_response_due()),
              FromProtoTime(urgent.advocate_response_due()));
    EXPECT_EQ(AsOfficer(id).stage(), v1::ReferrerView::STAGE_ROUTING);
  }
  // The officer's view has no such field.
  EXPECT_EQ(v1::ReferrerView::descriptor()->FindFieldByName("advocate_response_due"), nullptr);
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(*) AS n FROM referrals WHERE advocate_due IS NOT NULL"),
            2);
}

TEST_F(AdvocateTest, ArrivalWithinTheTargetIsRecordedOnceAndObserved) {
  const std::string id = Routed(v1::URGENCY_URGENT, "adv-on-time");
  ASSERT_TRUE(Accept("prov-a", id).ok());
  const absl::Time created = FromProtoTime(AsChildWelfare(id).create_time());
  clock_.Advance(absl::Minutes(40));
  v1::Referral first;
  grpc::Status st = Arrive("prov-a", "provider", id, std::nullopt, &first);
  ASSERT_TRUE(st.ok()) << st.error_message();
  const absl::Time arrived = created + absl::Minutes(40);
  EXPECT_EQ(FromProtoTime(first.advocate_arrival_time()), arrived);
  EXPECT_FALSE(first.advocate_response_missed());

  // A replay, even naming another time, answers with the first arrival; nothing counted twice.
  clock_.Advance(absl::Minutes(5));
  v1::Referral again;
  ASSERT_TRUE(Arrive("prov-a", "provider", id, created + absl::Minutes(1), &again).ok());
  EXPECT_EQ(FromProtoTime(again.advocate_arrival_time()), arrived);
  EXPECT_EQ(FromProtoTime(AsChildWelfare(id).advocate_arrival_time()), arrived);
  EXPECT_EQ(FromProtoTime(AsProvider("prov-a", id).advocate_arrival_time()), arrived);

  std::vector<prometheus::MetricFamily> keep;
  const prometheus::ClientMetric* h =
      Series(*referrals_.registry, keep, "safeharbor_referrals_advocate_response_seconds",
             {{"urgency", "urgent"}});
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->histogram.sample_count, 1u);
  EXPECT_DOUBLE_EQ(h->histogram.sample_sum, 2400);
  EXPECT_EQ(Value(*referrals_.registry, "safeharbor_referrals_advocate_arrivals_total",
                  {{"urgency", "urgent"}, {"timing", "on_time"}}),
            1);

  // Past the target: nothing to mark, nothing told, nothing overdue.
  clock_.Advance(absl::Hours(2));
  Timers();
  ASSERT_TRUE(referrals_.service->RefreshGauges().ok());
  EXPECT_FALSE(AsChildWelfare(id).advocate_response_missed());
  EXPECT_EQ(Metric("safeharbor_referrals_advocate_responses_missed_total"), 0);
  EXPECT_EQ(Metric("safeharbor_referrals_advocate_responses_overdue"), 0);
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(*) AS n FROM webhook_deliveries WHERE event_type = 6"),
            0);
}

TEST_F(AdvocateTest, AMissedTargetIsMarkedAndToldOnceAcrossReplicas) {
  Subscribe("cw-king", "child_welfare");
  Subscribe("prov-b", "provider");  // a provider's subscription is not told of it
  const std::string id = Routed(v1::URGENCY_EMERGENCY, "adv-missed");
  ASSERT_TRUE(Accept("prov-b", id).ok());
  const v1::Referral accepted = AsChildWelfare(id);
  const absl::Time due = FromProtoTime(accepted.advocate_response_due());

  StartReplicas();
  clock_.Advance(absl::Minutes(89));
  RunBothReplicas(2);
  EXPECT_EQ(MissedAcrossReplicas("emergency"), 0);
  clock_.Advance(absl::Minutes(2));  // 91 minutes after the call
  RunBothReplicas(3);
  RunBothReplicas(2);  // and again: a marked row is never marked or told again
  EXPECT_EQ(MissedAcrossReplicas("emergency"), 1);
  EXPECT_EQ(Timers(), 0);  // the service's own pass (a third replica) finds nothing to mark
  EXPECT_EQ(Metric("safeharbor_referrals_advocate_responses_missed_total"), 0);
  std::printf("missed target marked by task replica one %.0f, by replica two %.0f\n",
              Missed(0, "emergency"), Missed(1, "emergency"));
  EXPECT_TRUE(AsChildWelfare(id).advocate_response_missed());
  EXPECT_TRUE(AsProvider("prov-b", id).advocate_response_missed());
  auto row = referrals_.pg->Query(
      "SELECT count(*) AS n, count(DISTINCT event_id) AS events, min(deadline) AS deadline, "
      "string_agg(org_id, ',') AS orgs FROM webhook_deliveries WHERE event_type = 6");
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->Int64(0, "n"), 1);
  EXPECT_EQ(row->Int64(0, "events"), 1);
  EXPECT_EQ(row->Time(0, "deadline"), due);
  EXPECT_EQ(row->String(0, "orgs"), "cw-king");
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM referrals WHERE advocate_missed"),
            1);
  // The payload names the row and the target, nothing about the youth.
  const std::string payload =
      WebhookPayload(AdvocateResponseMissedEvent(id, due, clock_.Now()), "cw-king");
  EXPECT_EQ(payload.find("SPD-2026-0042"), std::string::npos);
  EXPECT_NE(payload.find("\"event_type\":\"advocate_response_missed\""), std::string::npos);

  EXPECT_EQ(Overdue("emergency"), 1);
  EXPECT_EQ(Overdue("urgent"), 0);
  EXPECT_EQ(AsOfficer(id).stage(), v1::ReferrerView::STAGE_READY_FOR_HANDOFF);

  // The advocate arrives late: recorded all the same, counted as late, no longer overdue.
  clock_.Advance(absl::Minutes(20));
  v1::Referral late;
  ASSERT_TRUE(Arrive("prov-b", "provider", id, std::nullopt, &late).ok());
  EXPECT_EQ(FromProtoTime(late.advocate_arrival_time()), due + absl::Minutes(21));
  EXPECT_TRUE(late.advocate_response_missed());
  EXPECT_EQ(Value(*referrals_.registry, "safeharbor_referrals_advocate_arrivals_total",
                  {{"urgency", "emergency"}, {"timing", "late"}}),
            1);
  EXPECT_EQ(Overdue("emergency"), 0);
  RunBothReplicas(2);
  EXPECT_EQ(MissedAcrossReplicas("emergency"), 1);
}

TEST_F(AdvocateTest, ArrivalIsRefusedToAnyoneButTheAcceptingProviderAndStoresNothing) {
  const std::string id = Routed(v1::URGENCY_URGENT, "adv-refused");
  // Offered to three, accepted by none yet: an offered provider may not record it.
  EXPECT_EQ(Arrive("prov-a", "provider", id, std::nullopt).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(Accept("prov-a", id).ok());
  clock_.Advance(absl::Minutes(10));
  struct Case {
    std::string org, role, id;
    std::optional<absl::Time> at;
    grpc::StatusCode code;
    std::string field;  // named in the message
  };
  const absl::Time created = FromProtoTime(AsChildWelfare(id).create_time());
  const std::vector<Case> cases = {
      {"prov-b", "provider", id, std::nullopt, grpc::StatusCode::PERMISSION_DENIED, ""},
      {"prov-day", "provider", id, std::nullopt, grpc::StatusCode::PERMISSION_DENIED, ""},
      {"le-seattle", "law_enforcement", id, std::nullopt, grpc::StatusCode::PERMISSION_DENIED, ""},
      {"cw-king", "child_welfare", id, std::nullopt, grpc::StatusCode::PERMISSION_DENIED, ""},
      {"prov-a", "provider", id, clock_.Now() + absl::Minutes(1),
       grpc::StatusCode::INVALID_ARGUMENT, "arrival_time"},
      {"prov-a", "provider", id, created - absl::Minutes(1), grpc::StatusCode::INVALID_ARGUMENT,
       "arrival_time"},
      {"prov-a", "provider", "", std::nullopt, grpc::StatusCode::INVALID_ARGUMENT, "id"},
      {"prov-a", "provider", "ref bad id!", std::nullopt, grpc::StatusCode::INVALID_ARGUMENT, "id"},
      {"prov-a", "provider", "ref-nope", std::nullopt, grpc::StatusCode::NOT_FOUND, ""},
  };
  for (const Case& c : cases) {
    grpc::Status st = Arrive(c.org, c.role, c.id, c.at);
    EXPECT_EQ(st.error_code(), c.code) << c.org << " " << c.id << ": " << st.error_message();
    EXPECT_NE(st.error_message().find(c.field), std::string::npos) << st.error_message();
  }
  // Without a request_id (the method table's idempotency).
  v1::RecordAdvocateArrivalRequest bare;
  bare.set_id(id);
  v1::RecordAdvocateArrivalResponse resp;
  grpc::Status st = Stub_("prov-a", "provider")->RecordAdvocateArrival(Ctx().get(), bare, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("request_id"), std::string::npos) << st.error_message();

  // A row that does not ask for advocacy alone: a placement, accepted by its provider.
  const std::string bed = Create(Request(/*placement=*/true, "adv-bed"));
  EXPECT_EQ(Timers(), 1);
  const v1::Referral offered = AsChildWelfare(bed);
  ASSERT_EQ(offered.offers_size(), 1);
  const std::string bed_provider = offered.offers(0).provider_organization_id();
  ASSERT_TRUE(Accept(bed_provider, bed).ok());
  st = Arrive(bed_provider, "provider", bed, std::nullopt);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();

  // Nothing stored by any of them.
  EXPECT_FALSE(AsChildWelfare(id).has_advocate_arrival_time());
  EXPECT_FALSE(AsChildWelfare(bed).has_advocate_arrival_time());
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(*) AS n FROM referrals WHERE advocate_arrived IS NOT NULL"),
            0);
  EXPECT_EQ(Metric("safeharbor_referrals_advocate_arrivals_total"), 0);
  // The accepting provider then records it.
  ASSERT_TRUE(Arrive("prov-a", "provider", id, created + absl::Minutes(9)).ok());
}

// A closed row is neither recorded nor marked: cancelled after acceptance, past its target.
TEST_F(AdvocateTest, AClosedRowIsNeitherRecordedNorMarkedMissed) {
  const std::string id = Routed(v1::URGENCY_URGENT, "adv-closed");
  ASSERT_TRUE(Accept("prov-a", id).ok());
  v1::CancelReferralRequest cancel;
  cancel.set_id(id);
  cancel.set_reason("reunited with family");
  v1::CancelReferralResponse cancelled;
  grpc::Status st = officer_->CancelReferral(Ctx().get(), cancel, &cancelled);
  ASSERT_TRUE(st.ok()) << st.error_message();
  clock_.Advance(absl::Minutes(91));
  Timers();
  ASSERT_TRUE(referrals_.service->RefreshGauges().ok());
  EXPECT_EQ(Metric("safeharbor_referrals_advocate_responses_missed_total"), 0);
  EXPECT_EQ(Metric("safeharbor_referrals_advocate_responses_overdue"), 0);
  EXPECT_FALSE(AsChildWelfare(id).advocate_response_missed());
  st = Arrive("prov-a", "provider", id, std::nullopt);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
  EXPECT_FALSE(AsChildWelfare(id).has_advocate_arrival_time());
}

}  // namespace
}  // namespace safeharbor::referrals
