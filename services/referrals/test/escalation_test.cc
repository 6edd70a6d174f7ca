// Escalation keeps the loop closed (issue 14, branch escalation): the on-call child-welfare
// office an escalated referral is with is told when a bed routing could offer appears, routes it
// again, or accepts it itself and carries it to an outcome. Pure rules first, then the service
// through real gRPC (referral_fixture.h: real directory and beds services, an injected clock).
#include "services/referrals/escalation.h"

#include "services/referrals/test/referral_fixture.h"

namespace safeharbor::referrals {
namespace {

v1::Offer OfferOf(const std::string& org, v1::OfferState state,
                  v1::ReasonCode code = v1::REASON_CODE_UNSPECIFIED) {
  v1::Offer o;
  o.set_provider_organization_id(org);
  o.set_state(state);
  o.set_decline_code(code);
  return o;
}

TEST(EscalationLifecycleTest, TheOnCallOfficeCarriesAnEscalatedReferralOn) {
  const auto ok = [](v1::ReferralStatus from, v1::ReferralStatus to, Actor a) {
    return CheckTransition(from, to, a).ok();
  };
  using A = Actor;
  const auto E = v1::REFERRAL_STATUS_ESCALATED;
  // Routed again, or taken by the office itself: only by the office it is with.
  EXPECT_TRUE(ok(E, v1::REFERRAL_STATUS_REQUESTED, A::kEscalationOffice));
  EXPECT_TRUE(ok(E, v1::REFERRAL_STATUS_ACCEPTED, A::kEscalationOffice));
  EXPECT_TRUE(ok(E, v1::REFERRAL_STATUS_CANCELLED, A::kEscalationOffice));
  EXPECT_TRUE(ok(E, v1::REFERRAL_STATUS_CANCELLED, A::kChildWelfare));
  for (A a : {A::kChildWelfare, A::kReferrer, A::kOfferedProvider, A::kAcceptedProvider, A::kSystem,
              A::kAcceptedOffice}) {
    EXPECT_FALSE(ok(E, v1::REFERRAL_STATUS_REQUESTED, a));
    EXPECT_FALSE(ok(E, v1::REFERRAL_STATUS_ACCEPTED, a));
  }
  EXPECT_FALSE(ok(E, v1::REFERRAL_STATUS_OFFERED, A::kEscalationOffice));
  EXPECT_FALSE(ok(E, v1::REFERRAL_STATUS_HANDED_OFF, A::kEscalationOffice));
  EXPECT_FALSE(ok(E, v1::REFERRAL_STATUS_CANCELLED, A::kReferrer));
  // Once it accepted, the office is the accepted party, as a provider would be.
  EXPECT_TRUE(ok(v1::REFERRAL_STATUS_ACCEPTED, v1::REFERRAL_STATUS_HANDED_OFF, A::kAcceptedOffice));
  EXPECT_TRUE(ok(v1::REFERRAL_STATUS_ACCEPTED, v1::REFERRAL_STATUS_CANCELLED, A::kAcceptedOffice));
  EXPECT_TRUE(
      ok(v1::REFERRAL_STATUS_HANDED_OFF, v1::REFERRAL_STATUS_IN_PROGRESS, A::kAcceptedOffice));
  EXPECT_TRUE(
      ok(v1::REFERRAL_STATUS_HANDED_OFF, v1::REFERRAL_STATUS_COMPLETED, A::kAcceptedOffice));
  EXPECT_TRUE(
      ok(v1::REFERRAL_STATUS_IN_PROGRESS, v1::REFERRAL_STATUS_YOUTH_DECLINED, A::kAcceptedOffice));
  // Child welfare that did not accept still does not hand off or record outcomes.
  EXPECT_FALSE(ok(v1::REFERRAL_STATUS_ACCEPTED, v1::REFERRAL_STATUS_HANDED_OFF, A::kChildWelfare));
  EXPECT_FALSE(
      ok(v1::REFERRAL_STATUS_HANDED_OFF, v1::REFERRAL_STATUS_COMPLETED, A::kEscalationOffice));
  // After an outcome nothing moves.
  EXPECT_FALSE(
      ok(v1::REFERRAL_STATUS_COMPLETED, v1::REFERRAL_STATUS_REQUESTED, A::kAcceptedOffice));
}

TEST(EscalationRulesTest, RoutingAgainAsksAgainOnlyThoseWhoMayHaveABedNow) {
  v1::Referral r;
  *r.add_offers() = OfferOf("no-answer", v1::OFFER_STATE_EXPIRED);
  *r.add_offers() = OfferOf("full", v1::OFFER_STATE_DECLINED, v1::REASON_CODE_AT_CAPACITY);
  *r.add_offers() = OfferOf("waitlisted", v1::OFFER_STATE_WITHDRAWN);
  *r.add_offers() = OfferOf("ineligible", v1::OFFER_STATE_DECLINED, v1::REASON_CODE_NOT_ELIGIBLE);
  *r.add_offers() = OfferOf("unsafe", v1::OFFER_STATE_DECLINED, v1::REASON_CODE_SAFETY_CONCERN);
  *r.add_offers() = OfferOf("declined", v1::OFFER_STATE_DECLINED, v1::REASON_CODE_YOUTH_DECLINED);
  *r.add_offers() = OfferOf("other", v1::OFFER_STATE_DECLINED, v1::REASON_CODE_OTHER);
  // Never routed again: nobody asked is asked again (today's rule).
  EXPECT_EQ(NotAskedAgain(r).size(), 7u);
  r.set_status(v1::REFERRAL_STATUS_ESCALATED);
  *r.mutable_handoff()->mutable_provider_organization_id() = "cw-king";
  ASSERT_TRUE(*RouteAgain(r, Actor::kEscalationOffice, "again-1"));
  EXPECT_EQ(NotAskedAgain(r), (std::set<std::string>{"ineligible", "unsafe", "declined", "other"}));
  EXPECT_EQ(r.escalation_office().provider_organization_id(), "cw-king");
  EXPECT_TRUE(r.handoff().provider_organization_id().empty());
  EXPECT_EQ(r.routed_again(), 1);
  EXPECT_EQ(r.offers_before_routed_again(), 7);
  // Asked in this round: not asked again in it (one that lets it lapse again included).
  *r.add_offers() = OfferOf("no-answer", v1::OFFER_STATE_EXPIRED);
  EXPECT_EQ(NotAskedAgain(r).count("no-answer"), 1u);
  EXPECT_EQ(NotAskedAgain(r).count("full"), 0u);
  // The bed check asks who routing would offer if routed again now: the one that lapsed in this
  // round too.
  std::vector<Option> options(4);
  options[0].provider_organization_id = "full";
  options[1].provider_organization_id = "unsafe";
  options[2].provider_organization_id = "new";
  options[3].provider_organization_id = "no-answer";
  const std::vector<Option> askable = AskableIfRoutedAgain(r, options);
  ASSERT_EQ(askable.size(), 3u);
  EXPECT_EQ(askable[0].provider_organization_id, "full");
  EXPECT_EQ(askable[1].provider_organization_id, "new");
  EXPECT_EQ(askable[2].provider_organization_id, "no-answer");
}

TEST(EscalationRulesTest, RoutingAgainIsForTheOfficeOfAnEscalatedReferralOnce) {
  v1::Referral r;
  r.set_status(v1::REFERRAL_STATUS_OFFERED);
  EXPECT_EQ(RouteAgain(r, Actor::kEscalationOffice, "a").status().code(),
            absl::StatusCode::kFailedPrecondition);
  r.set_status(v1::REFERRAL_STATUS_ESCALATED);
  for (Actor a : {Actor::kChildWelfare, Actor::kReferrer, Actor::kOfferedProvider}) {
    EXPECT_EQ(RouteAgain(r, a, "a").status().code(), absl::StatusCode::kPermissionDenied);
  }
  EXPECT_EQ(r.routed_again(), 0);
  ASSERT_TRUE(*RouteAgain(r, Actor::kEscalationOffice, "a"));
  // A retry of the same request changes nothing, whatever the referral's state.
  r.set_status(v1::REFERRAL_STATUS_ESCALATED);
  EXPECT_FALSE(*RouteAgain(r, Actor::kEscalationOffice, "a"));
  EXPECT_EQ(r.routed_again(), 1);
  EXPECT_EQ(r.reroutes(), 1);
}

TEST(EscalationRulesTest, TheOfficeIsToldOncePerAppearance) {
  EXPECT_EQ(NextBedNotice(false, true), BedNotice::kTell);
  EXPECT_EQ(NextBedNotice(true, true), BedNotice::kNone);
  EXPECT_EQ(NextBedNotice(true, false), BedNotice::kGone);
  EXPECT_EQ(NextBedNotice(false, false), BedNotice::kNone);
}

TEST(EscalationRulesTest, OneAcceptedByCheck) {
  v1::Referral r;
  r.mutable_handoff()->set_provider_organization_id("cw-king");
  EXPECT_FALSE(AcceptedBy(r, "cw-king"));  // escalated to it, not accepted
  *r.mutable_accepted_time() = ToProtoTime(absl::UnixEpoch());
  EXPECT_TRUE(AcceptedBy(r, "cw-king"));
  EXPECT_FALSE(AcceptedBy(r, "prov-a"));
  EXPECT_FALSE(AcceptedBy(v1::Referral(), ""));
}

class EscalationTest : public ReferralTest {
 protected:
  // The facility's one bed taken (1) or free (0), confirmed now.
  void Census(const std::string& facility, const std::string& org, int occupied) {
    auto owner = beds::v1::BedsService::NewStub(
        TestServers::Get().Channel(beds_.host->port(), org, "provider"));
    beds::v1::ReportCensusRequest req;
    req.set_request_id(absl::StrCat("census-", facility, "-", ++census_));
    req.set_facility_id(facility);
    *req.mutable_confirmed_time() = ToProtoTime(clock_.Now());
    auto* e = req.add_entries();
    e->set_bed_type(beds::v1::BED_TYPE_GENERAL);
    e->set_occupied(occupied);
    beds::v1::ReportCensusResponse resp;
    grpc::Status st = owner->ReportCensus(Ctx().get(), req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }

  // Every bed taken: a placement referral is escalated at once.
  std::string Escalated() {
    Census("fac-a", "prov-a", 1);
    Census("fac-b", "prov-b", 1);
    const std::string id = Create(Request(/*placement=*/true, absl::StrCat("esc-", ++census_)));
    EXPECT_EQ(Timers(), 1);
    const v1::Referral r = AsChildWelfare(id);
    EXPECT_EQ(r.status(), v1::REFERRAL_STATUS_ESCALATED) << r.routing_explanation();
    EXPECT_EQ(r.handoff().provider_organization_id(), "cw-king");
    return id;
  }

  grpc::Status RouteAgain(const std::string& org, const std::string& role, const std::string& id,
                          const std::string& rid, v1::Referral* out = nullptr) {
    v1::RouteReferralAgainRequest req;
    req.set_id(id);
    req.set_request_id(rid);
    v1::RouteReferralAgainResponse resp;
    grpc::Status st = Stub_(org, role)->RouteReferralAgain(Ctx().get(), req, &resp);
    if (out != nullptr) *out = resp.referral();
    return st;
  }

  grpc::Status OfficeAccept(const std::string& org, const std::string& id,
                            v1::Referral* out = nullptr) {
    v1::AcceptReferralRequest req;
    req.set_id(id);
    req.set_request_id("office-accept-" + id);
    v1::AcceptReferralResponse resp;
    grpc::Status st = Stub_(org, "child_welfare")->AcceptReferral(Ctx().get(), req, &resp);
    if (out != nullptr) *out = resp.referral();
    return st;
  }

  grpc::Status Outcome(const std::string& org, const std::string& role, const std::string& id) {
    v1::RecordOutcomeRequest req;
    req.set_id(id);
    req.set_outcome(v1::REFERRAL_STATUS_COMPLETED);
    v1::RecordOutcomeResponse resp;
    return Stub_(org, role)->RecordOutcome(Ctx().get(), req, &resp);
  }

  void SubscribeOffice(const std::string& org) {
    v1::CreateWebhookSubscriptionRequest req;
    req.set_organization_id(org);
    req.set_url(absl::StrCat("https://hooks.example.org/", org));
    req.add_events(v1::WEBHOOK_EVENT_TYPE_BED_AVAILABLE);
    v1::CreateWebhookSubscriptionResponse resp;
    grpc::Status st =
        Stub_(org, "child_welfare")->CreateWebhookSubscription(Ctx().get(), req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }

  int64_t BedNotices(const std::string& id) {
    return Count(referrals_.pg.get(),
                 absl::StrCat("SELECT count(*) AS n FROM webhook_deliveries WHERE event_type = 7 "
                              "AND org_id = 'cw-king' AND referral_id = '",
                              id, "'"));
  }

  int census_ = 0;
};

TEST_F(EscalationTest, ABedFreedIsToldOnceThenRoutedAgainToAProviderAndAnOutcome) {
  SubscribeOffice("cw-king");
  const std::string id = Escalated();  // The same pass checked for a bed: none.
  EXPECT_FALSE(AsChildWelfare(id).has_bed_available_time());
  EXPECT_EQ(BedNotices(id), 0);

  Census("fac-a", "prov-a", 0);  // A bed frees at a facility routing may offer.
  Timers();
  EXPECT_EQ(BedNotices(id), 0) << "checked at most every --escalation_bed_check_s";
  clock_.Advance(absl::Seconds(61));
  Timers();
  v1::Referral told = AsChildWelfare(id);
  ASSERT_EQ(told.status(), v1::REFERRAL_STATUS_ESCALATED);
  ASSERT_TRUE(told.has_bed_available_time());
  EXPECT_EQ(FromProtoTime(told.bed_available_time()), clock_.Now());
  EXPECT_EQ(BedNotices(id), 1);
  EXPECT_EQ(Metric("safeharbor_referrals_bed_available_notices_total"), 1);
  // The payload's columns: the event and the referral id, no youth data.
  EXPECT_EQ(Count(referrals_.pg.get(),
                  absl::StrCat("SELECT count(*) AS n FROM webhook_deliveries WHERE event_type = 7 "
                               "AND deadline IS NULL AND referral_id = '",
                               id, "'")),
            1);
  clock_.Advance(absl::Seconds(61));  // Still there on the next check: not told again.
  Timers();
  EXPECT_EQ(BedNotices(id), 1);
  EXPECT_EQ(Metric("safeharbor_referrals_bed_available_notices_total"), 1);
  EXPECT_EQ(FromProtoTime(AsChildWelfare(id).bed_available_time()),
            FromProtoTime(told.bed_available_time()));

  // The office routes it again; a retry of the request routes nothing more.
  v1::Referral again;
  ASSERT_TRUE(RouteAgain("cw-king", "child_welfare", id, "again-1", &again).ok());
  EXPECT_EQ(again.status(), v1::REFERRAL_STATUS_REQUESTED);
  EXPECT_EQ(again.escalation_office().provider_organization_id(), "cw-king");
  EXPECT_EQ(AsOfficer(id).stage(), v1::ReferrerView::STAGE_ROUTING);
  v1::Referral replay;
  ASSERT_TRUE(RouteAgain("cw-king", "child_welfare", id, "again-1", &replay).ok());
  EXPECT_EQ(replay.routed_again(), 1);
  EXPECT_EQ(replay.etag(), again.etag());
  EXPECT_EQ(Timers(), 1);
  v1::Referral offered = AsChildWelfare(id);
  ASSERT_EQ(offered.status(), v1::REFERRAL_STATUS_OFFERED) << offered.routing_explanation();
  ASSERT_EQ(offered.offers_size(), 1);
  EXPECT_EQ(offered.offers(0).facility_id(), "fac-a");
  ASSERT_FALSE(offered.bed_hold_id().empty());
  // No longer watched once it left ESCALATED.
  EXPECT_EQ(
      Count(referrals_.pg.get(), absl::StrCat("SELECT count(*) AS n FROM referrals WHERE id = '",
                                              id, "' AND bed_watch_after IS NULL")),
      1);

  // A provider accepts: the hold follows the referral to the hand-off deadline.
  ASSERT_TRUE(Accept("prov-a", id).ok());
  Timers();
  v1::Referral accepted = AsChildWelfare(id);
  ASSERT_EQ(accepted.status(), v1::REFERRAL_STATUS_ACCEPTED);
  ASSERT_TRUE(accepted.has_bed_hold_expire_time());
  EXPECT_EQ(accepted.bed_hold_expire_time().seconds(), accepted.handoff_deadline().seconds());
  EXPECT_EQ(HoldExpiry(offered.bed_hold_id()), accepted.handoff_deadline().seconds());
  const v1::ReferrerView ready = AsOfficer(id);
  EXPECT_EQ(ready.stage(), v1::ReferrerView::STAGE_READY_FOR_HANDOFF);
  EXPECT_EQ(ready.handoff().provider_organization_id(), "prov-a");
  ASSERT_TRUE(Handoff("prov-a", id).ok());
  ASSERT_TRUE(Outcome("prov-a", "provider", id).ok());
  EXPECT_EQ(AsChildWelfare(id).status(), v1::REFERRAL_STATUS_COMPLETED);
  EXPECT_EQ(AsOfficer(id).stage(), v1::ReferrerView::STAGE_CONNECTED_TO_SERVICES);
  std::cout << "bed notices " << BedNotices(id) << ", routed again " << replay.routed_again()
            << ", offers " << offered.offers_size() << "\n";
}

TEST_F(EscalationTest, TheOfficeAcceptsItselfHandsOffAndRecordsTheOutcome) {
  const std::string id = Escalated();
  EXPECT_EQ(AsOfficer(id).stage(), v1::ReferrerView::STAGE_WITH_CHILD_WELFARE);
  v1::Referral accepted;
  ASSERT_TRUE(OfficeAccept("cw-king", id, &accepted).ok());
  EXPECT_EQ(accepted.status(), v1::REFERRAL_STATUS_ACCEPTED);
  EXPECT_EQ(accepted.handoff().provider_organization_id(), "cw-king");
  EXPECT_TRUE(accepted.has_handoff_deadline());
  // Conservative: the consent names the accepting provider; the office never sees the details.
  EXPECT_FALSE(accepted.youth().has_identifying());
  v1::Referral replay;
  ASSERT_TRUE(OfficeAccept("cw-king", id, &replay).ok());  // a retry: the same answer
  EXPECT_EQ(replay.etag(), accepted.etag());
  EXPECT_EQ(AsChildWelfare(id).youth().identifying().name(), "");

  const v1::ReferrerView ready = AsOfficer(id);
  EXPECT_EQ(ready.stage(), v1::ReferrerView::STAGE_READY_FOR_HANDOFF);
  EXPECT_EQ(ready.handoff().provider_organization_id(), "cw-king");

  auto office = Stub_("cw-king", "child_welfare");
  v1::ConfirmHandoffRequest handoff;
  handoff.set_id(id);
  v1::ConfirmHandoffResponse handed;
  grpc::Status st = office->ConfirmHandoff(Ctx().get(), handoff, &handed);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(handed.referral().status(), v1::REFERRAL_STATUS_HANDED_OFF);
  // The law's clocks start at this hand-off too: the DCYF notice (an officer's referral) and the
  // emergency placement window (a placement).
  std::set<int> kinds;
  for (const auto& t : handed.referral().statutory_timers()) kinds.insert(t.kind());
  EXPECT_EQ(kinds, (std::set<int>{v1::STATUTORY_TIMER_KIND_DCYF_NOTICE,
                                  v1::STATUTORY_TIMER_KIND_EMERGENCY_PLACEMENT_WINDOW}));
  EXPECT_EQ(AsOfficer(id).stage(), v1::ReferrerView::STAGE_CONNECTED_TO_SERVICES);
  v1::StartServicesRequest start;
  start.set_id(id);
  v1::StartServicesResponse started;
  ASSERT_TRUE(office->StartServices(Ctx().get(), start, &started).ok());
  ASSERT_TRUE(Outcome("cw-king", "child_welfare", id).ok());
  const v1::Referral closed = AsChildWelfare(id);
  EXPECT_EQ(closed.status(), v1::REFERRAL_STATUS_COMPLETED);
  EXPECT_EQ(closed.outcome_code(), v1::REASON_CODE_COMPLETED);
  // The officer never learns the outcome: only "connected", from the hand-off on.
  const v1::ReferrerView after = AsOfficer(id);
  EXPECT_EQ(after.stage(), v1::ReferrerView::STAGE_CONNECTED_TO_SERVICES);
  EXPECT_FALSE(after.has_handoff());
  EXPECT_EQ(Outcome("cw-king", "child_welfare", id).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);  // closed
}

TEST_F(EscalationTest, OnlyTheOfficeItIsWithCarriesItOnAndNothingChangesOtherwise) {
  const std::string id = Escalated();
  const v1::Referral before = AsChildWelfare(id);
  const auto code = [](const grpc::Status& s) { return s.error_code(); };
  // Another county's office: the referral is outside its region.
  EXPECT_EQ(code(RouteAgain("cw-pierce", "child_welfare", id, "x-1")),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(code(OfficeAccept("cw-pierce", id)), grpc::StatusCode::PERMISSION_DENIED);
  // A provider, and the officer: not their role (the method table), nor their referral.
  EXPECT_EQ(code(RouteAgain("prov-a", "provider", id, "x-2")), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(code(Accept("prov-a", id)), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(code(RouteAgain("le-seattle", "law_enforcement", id, "x-3")),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::AcceptReferralRequest accept;
  accept.set_id(id);
  accept.set_request_id("x-4");
  v1::AcceptReferralResponse accepted;
  EXPECT_EQ(code(officer_->AcceptReferral(Ctx().get(), accept, &accepted)),
            grpc::StatusCode::PERMISSION_DENIED);
  // The office may not hand off or record an outcome before it accepted.
  v1::ConfirmHandoffRequest handoff;
  handoff.set_id(id);
  v1::ConfirmHandoffResponse handed;
  EXPECT_EQ(code(Stub_("cw-king", "child_welfare")->ConfirmHandoff(Ctx().get(), handoff, &handed)),
            grpc::StatusCode::FAILED_PRECONDITION);
  const v1::Referral after = AsChildWelfare(id);
  EXPECT_EQ(after.etag(), before.etag());
  EXPECT_EQ(after.status(), v1::REFERRAL_STATUS_ESCALATED);
  EXPECT_EQ(after.routed_again(), 0);
  EXPECT_EQ(after.history_size(), before.history_size());

  // A referral that is not escalated is not routed again, nor taken by the office.
  const std::string offered = Create(Request(/*placement=*/false, "not-escalated"));
  EXPECT_EQ(Timers(), 1);
  const v1::Referral o = AsChildWelfare(offered);
  ASSERT_EQ(o.status(), v1::REFERRAL_STATUS_OFFERED);
  EXPECT_EQ(code(RouteAgain("cw-king", "child_welfare", offered, "x-5")),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(code(OfficeAccept("cw-king", offered)), grpc::StatusCode::FAILED_PRECONDITION);
  // A provider accepts it: the office still does not hand it off.
  ASSERT_TRUE(Accept(o.offers(0).provider_organization_id(), offered).ok());
  EXPECT_EQ(code(Stub_("cw-king", "child_welfare")
                     ->ConfirmHandoff(
                         Ctx().get(),
                         [&] {
                           v1::ConfirmHandoffRequest r;
                           r.set_id(offered);
                           return r;
                         }(),
                         &handed)),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(code(Outcome("cw-king", "child_welfare", offered)),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(AsChildWelfare(offered).status(), v1::REFERRAL_STATUS_ACCEPTED);
}

TEST_F(EscalationTest, RoutedAgainWithNobodyLeftGoesBackToTheSameOfficeOnce) {
  const std::string id = Escalated();
  ASSERT_TRUE(RouteAgain("cw-king", "child_welfare", id, "again-1").ok());
  EXPECT_EQ(Timers(), 1);  // Every bed still taken: escalated again, to the same office.
  const v1::Referral r = AsChildWelfare(id);
  ASSERT_EQ(r.status(), v1::REFERRAL_STATUS_ESCALATED) << r.routing_explanation();
  EXPECT_EQ(r.handoff().provider_organization_id(), "cw-king");
  EXPECT_EQ(r.routed_again(), 1);
  EXPECT_EQ(AsOfficer(id).stage(), v1::ReferrerView::STAGE_WITH_CHILD_WELFARE);
  // It waits for the office: nothing routes it again on its own.
  clock_.Advance(absl::Minutes(10));
  EXPECT_EQ(Timers(), 0);
  EXPECT_EQ(Timers(), 0);
  EXPECT_EQ(AsChildWelfare(id).etag(), r.etag());
  EXPECT_EQ(Metric("safeharbor_referrals_escalations_total"), 2);
  // The retry of the first request does not route it a second time.
  ASSERT_TRUE(RouteAgain("cw-king", "child_welfare", id, "again-1").ok());
  EXPECT_EQ(AsChildWelfare(id).status(), v1::REFERRAL_STATUS_ESCALATED);
  // A new request does; the office may also cancel it instead.
  ASSERT_TRUE(RouteAgain("cw-king", "child_welfare", id, "again-2").ok());
  EXPECT_EQ(AsChildWelfare(id).routed_again(), 2);
}

// Who is asked again, through the real services: the provider that declined NOT_ELIGIBLE is
// not; the one that let its offer lapse is, with a bed held for it again.
TEST_F(EscalationTest, RoutedAgainAsksTheProviderThatDidNotAnswerNotTheOneThatWasIneligible) {
  SubscribeOffice("cw-king");
  const std::string id = Create(Request(/*placement=*/true, "asked-again"));
  EXPECT_EQ(Timers(), 1);
  ASSERT_EQ(AsChildWelfare(id).offers(0).provider_organization_id(), "prov-a");
  v1::DeclineReferralRequest decline;
  decline.set_id(id);
  decline.set_reason_code(v1::REASON_CODE_NOT_ELIGIBLE);
  v1::DeclineReferralResponse declined;
  ASSERT_TRUE(Stub_("prov-a", "provider")->DeclineReferral(Ctx().get(), decline, &declined).ok());
  EXPECT_EQ(Timers(), 1);
  ASSERT_EQ(AsChildWelfare(id).offers(1).provider_organization_id(), "prov-b");
  clock_.Advance(absl::Minutes(31));  // prov-b does not answer: nobody left, escalated.
  Timers();
  const v1::Referral escalated = AsChildWelfare(id);
  ASSERT_EQ(escalated.status(), v1::REFERRAL_STATUS_ESCALATED) << escalated.routing_explanation();
  // fac-b's bed is free again (its hold released) and prov-b would be asked again: the office
  // is told at once; fac-a's bed is free too, but prov-a is never asked again.
  EXPECT_EQ(BedNotices(id), 1);
  ASSERT_TRUE(RouteAgain("cw-king", "child_welfare", id, "again-1").ok());
  EXPECT_EQ(Timers(), 1);
  const v1::Referral offered = AsChildWelfare(id);
  ASSERT_EQ(offered.status(), v1::REFERRAL_STATUS_OFFERED) << offered.routing_explanation();
  ASSERT_EQ(offered.offers_size(), 3);
  EXPECT_EQ(offered.offers(2).provider_organization_id(), "prov-b");
  EXPECT_EQ(offered.offers(2).state(), v1::OFFER_STATE_PENDING);
  EXPECT_FALSE(offered.bed_hold_id().empty());
  for (const auto& c : offered.candidates()) EXPECT_NE(c.provider_organization_id(), "prov-a");
  ASSERT_TRUE(Accept("prov-b", id).ok());
  const v1::Referral accepted = AsChildWelfare(id);
  EXPECT_EQ(accepted.status(), v1::REFERRAL_STATUS_ACCEPTED);
  EXPECT_EQ(accepted.handoff().provider_organization_id(), "prov-b");
  // The offers table holds prov-b's answer of this round; its open-offer counter agrees.
  EXPECT_EQ(Count(referrals_.pg.get(),
                  absl::StrCat(
                      "SELECT count(*) AS n FROM offers WHERE referral_id = '", id,
                      "' AND provider_org = 'prov-b' AND state = ", int{v1::OFFER_STATE_ACCEPTED})),
            1);
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT coalesce(sum(open_offers), 0)::bigint AS n FROM provider_load "
                  "WHERE provider_org = 'prov-b'"),
            1);
}

// Fired once across replicas: two more replicas of the service on the referral database run
// their periodic pass at the same time; each appearance of a bed is told once for each referral.
TEST_F(EscalationTest, TwoReplicasTellEachEscalatedReferralOnce) {
  SubscribeOffice("cw-king");
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(Escalated());
  std::vector<std::unique_ptr<Hosted<ReferralServiceImpl>>> replicas;
  for (int i = 0; i < 2; ++i) {
    auto replica = std::make_unique<Hosted<ReferralServiceImpl>>();
    replica->Connect("ref", Migrations(), 4, 8, true, referrals_.db_url);
    ReferralOptions ropts;
    ropts.key_namespace = absl::StrCat("escreplica", i, absl::ToUnixNanos(absl::Now()));
    ropts.batch = 2;  // a bounded batch per tick: several passes share the work
    replica->service = std::make_unique<ReferralServiceImpl>(
        replica->env.get(), replica->pg.get(), replica->redis.get(), *replica->registry,
        WashingtonCounties(), &clock_, &sealer_, network_, ropts);
    replicas.push_back(std::move(replica));
  }
  Census("fac-a", "prov-a", 0);
  clock_.Advance(absl::Seconds(61));
  std::vector<std::thread> threads;
  for (auto& r : replicas) {
    threads.emplace_back([&r] {
      for (int i = 0; i < 4; ++i) EXPECT_TRUE(r->service->RunTimers().ok());
    });
  }
  for (auto& t : threads) t.join();
  double told[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    for (const auto& family : replicas[static_cast<size_t>(i)]->registry->Collect()) {
      if (family.name != "safeharbor_referrals_bed_available_notices_total") continue;
      for (const auto& m : family.metric) told[i] += m.counter.value;
    }
  }
  std::printf("bed notices: replica one %.0f, replica two %.0f (5 escalated referrals)\n", told[0],
              told[1]);
  EXPECT_EQ(told[0] + told[1], 5);
  for (const std::string& id : ids) {
    EXPECT_EQ(BedNotices(id), 1) << id;
    EXPECT_TRUE(AsChildWelfare(id).has_bed_available_time()) << id;
  }
  for (auto& r : replicas) r->Shutdown();
}

}  // namespace
}  // namespace safeharbor::referrals
