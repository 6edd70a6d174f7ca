// The referral service through real gRPC over mTLS, routing against a real directory service and
// a real beds service (in process, each on its own PostgreSQL database), with an injected clock
// shared by beds and referrals so deadlines can pass without waiting.
#include "services/referrals/referral_service.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iostream>

#include "services/referrals/statutory_clocks.h"
#include "services/referrals/test/referral_fixture.h"

namespace safeharbor::referrals {
namespace {

TEST_F(ReferralTest, OfficerToHandoffWithABedHeldAndOnlyConnectedAfterwards) {
  // The provider watches from the start of the stream.
  grpc::ClientContext watch_ctx;
  v1::WatchReferralsRequest watch_req;
  watch_req.set_cursor("0");
  auto provider_a = Stub_("prov-a", "provider");
  auto stream = provider_a->WatchReferrals(&watch_ctx, watch_req);

  const std::string id = Create(Request(/*placement=*/true));
  EXPECT_EQ(Timers(), 1);
  v1::Referral r = AsChildWelfare(id);
  ASSERT_EQ(r.status(), v1::REFERRAL_STATUS_OFFERED) << r.routing_explanation();
  ASSERT_EQ(r.offers_size(), 1);
  EXPECT_EQ(r.offers(0).provider_organization_id(), "prov-a");  // Nearest CSEC bed.
  EXPECT_EQ(r.offers(0).facility_id(), "fac-a");
  EXPECT_FALSE(r.bed_hold_id().empty());
  EXPECT_FALSE(r.youth().has_identifying());  // Child welfare never gets the identity.
  ASSERT_GE(r.candidates_size(), 2);
  for (const auto& c : r.candidates()) {
    EXPECT_NE(c.facility_id(), "fac-det");
    EXPECT_NE(c.facility_id(), "fac-scrc");
  }
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM holds WHERE state = 1"), 1);
  EXPECT_EQ(AsOfficer(id).stage(), v1::ReferrerView::STAGE_ROUTING);
  EXPECT_FALSE(AsOfficer(id).has_handoff());

  // The offer reaches the provider's stream, without the identity.
  v1::WatchReferralsResponse event;
  ASSERT_TRUE(stream->Read(&event));
  EXPECT_EQ(event.referral().id(), id);
  EXPECT_EQ(event.referral().status(), v1::REFERRAL_STATUS_OFFERED);
  EXPECT_FALSE(event.referral().youth().has_identifying());
  EXPECT_EQ(event.referral().candidates_size(), 0);
  EXPECT_FALSE(event.cursor().empty());

  v1::Referral accepted;
  grpc::Status st = Accept("prov-a", id, &accepted);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(accepted.youth().identifying().name(), "Jane Q");  // Only for the one that accepted.
  EXPECT_EQ(accepted.status(), v1::REFERRAL_STATUS_ACCEPTED);
  ASSERT_TRUE(Accept("prov-a", id).ok());  // A retried accept: same answer.

  v1::ReferrerView ready = AsOfficer(id);
  EXPECT_EQ(ready.stage(), v1::ReferrerView::STAGE_READY_FOR_HANDOFF);
  EXPECT_EQ(ready.handoff().provider_organization_id(), "prov-a");
  EXPECT_NE(ready.handoff().place().find("1 Main St"), std::string::npos)
      << ready.handoff().place();
  EXPECT_FALSE(ready.handoff().contact_phone().empty());

  v1::ConfirmHandoffRequest confirm;
  confirm.set_id(id);
  v1::ConfirmHandoffResponse confirmed;
  st = provider_a->ConfirmHandoff(Ctx().get(), confirm, &confirmed);
  ASSERT_TRUE(st.ok()) << st.error_message();
  Timers();  // Confirms the placement with the beds service.
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM holds WHERE state = 4"), 1);
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM placements"), 1);
  EXPECT_EQ(
      Count(referrals_.pg.get(), "SELECT count(*) AS n FROM referrals WHERE placement_pending"), 0);

  v1::ReferrerView connected = AsOfficer(id);
  EXPECT_EQ(connected.stage(), v1::ReferrerView::STAGE_CONNECTED_TO_SERVICES);
  EXPECT_FALSE(connected.has_handoff());

  // The youth declines services: an ordinary outcome, and none of the officer's business.
  v1::RecordOutcomeRequest outcome;
  outcome.set_id(id);
  outcome.set_outcome(v1::REFERRAL_STATUS_YOUTH_DECLINED);
  v1::RecordOutcomeResponse recorded;
  st = provider_a->RecordOutcome(Ctx().get(), outcome, &recorded);
  ASSERT_TRUE(st.ok()) << st.error_message();
  v1::ReferrerView after = AsOfficer(id);
  EXPECT_EQ(after.stage(), v1::ReferrerView::STAGE_CONNECTED_TO_SERVICES);
  EXPECT_FALSE(after.has_handoff());
  v1::ListReferralsResponse listed;
  st = officer_->ListReferrals(Ctx().get(), v1::ListReferralsRequest(), &listed);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(listed.referrals_size(), 1);
  EXPECT_FALSE(listed.referrals(0).has_referral());
  EXPECT_EQ(listed.referrals(0).referrer_view().stage(),
            v1::ReferrerView::STAGE_CONNECTED_TO_SERVICES);

  // Every change and read of the youth's data is in the audit log.
  auto audit = referrals_.pg->Query(
      "SELECT actor_org, action FROM audit_log WHERE referral_id = $1 ORDER BY id", {id});
  ASSERT_TRUE(audit.ok());
  std::set<std::string> seen;
  for (int i = 0; i < audit->rows(); ++i) {
    seen.insert(absl::StrCat(audit->String(i, "actor_org"), ":", audit->String(i, "action")));
  }
  for (const char* want : {"le-seattle:create", "referral-service:route",
                           "prov-a:disclosed_on_watch", "prov-a:accept", "prov-a:identity_read",
                           "cw-king:read", "prov-a:confirm_handoff", "prov-a:record_outcome"}) {
    EXPECT_TRUE(seen.count(want)) << want;
  }
  auto path = referrals_.pg->Query(
      "SELECT string_agg(to_status::text, ',' ORDER BY id) AS p FROM transitions "
      "WHERE referral_id = $1",
      {id});
  ASSERT_TRUE(path.ok());
  EXPECT_EQ(path->String(0, "p"),
            "1,2,3,4,7");  // requested, offered, accepted, handed off, declined
  watch_ctx.TryCancel();
}

TEST_F(ReferralTest, MissedDeadlineMovesTheHoldThenEscalatesToChildWelfareNeverDetention) {
  // Options the beds service would never return; routing must refuse them on its own too.
  Option detention;
  detention.provider_organization_id = "prov-c";
  detention.facility_id = "fac-det";
  detention.routable = false;
  detention.csec_specialized = true;
  Option secure = detention;
  secure.facility_id = "fac-scrc";
  secure.routable = true;
  secure.category = dir::SERVICE_CATEGORY_SECURE_CRISIS_RESIDENTIAL_CENTER;
  network_->extra_beds = {detention, secure};

  const std::string id = Create(Request(/*placement=*/true));
  EXPECT_EQ(Timers(), 1);
  v1::Referral first = AsChildWelfare(id);
  ASSERT_EQ(first.status(), v1::REFERRAL_STATUS_OFFERED);
  EXPECT_EQ(first.offers(0).facility_id(), "fac-a");

  clock_.Advance(absl::Minutes(31));  // No answer within the 30-minute routine deadline.
  Timers();
  v1::Referral second = AsChildWelfare(id);
  ASSERT_EQ(second.status(), v1::REFERRAL_STATUS_OFFERED) << second.routing_explanation();
  ASSERT_EQ(second.offers_size(), 2);
  EXPECT_EQ(second.offers(0).state(), v1::OFFER_STATE_EXPIRED);
  EXPECT_EQ(second.offers(1).facility_id(), "fac-b");
  EXPECT_NE(second.bed_hold_id(), first.bed_hold_id());
  EXPECT_EQ(second.reroutes(), 1);
  auto hold_state = [&](const std::string& hold) {
    auto r = beds_.pg->Query("SELECT state FROM holds WHERE id = $1", {hold});
    return r.ok() && r->rows() == 1 ? r->Int32(0, "state") : -1;
  };
  EXPECT_EQ(hold_state(first.bed_hold_id()), beds::v1::HOLD_STATE_RELEASED);
  EXPECT_EQ(hold_state(second.bed_hold_id()), beds::v1::HOLD_STATE_ACTIVE);
  // The late provider can no longer accept.
  EXPECT_EQ(Accept("prov-a", id).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  clock_.Advance(absl::Minutes(31));
  Timers();
  v1::Referral third = AsChildWelfare(id);
  ASSERT_EQ(third.status(), v1::REFERRAL_STATUS_ESCALATED) << third.routing_explanation();
  EXPECT_EQ(third.handoff().provider_organization_id(), "cw-king");
  EXPECT_TRUE(third.placement_unavailable());
  EXPECT_EQ(hold_state(second.bed_hold_id()), beds::v1::HOLD_STATE_RELEASED);
  for (const auto& o : third.offers()) {
    EXPECT_NE(o.facility_id(), "fac-det");
    EXPECT_NE(o.facility_id(), "fac-scrc");
  }
  for (const auto& c : third.candidates()) {
    EXPECT_NE(c.facility_id(), "fac-det");
    EXPECT_NE(c.facility_id(), "fac-scrc");
  }
  v1::ReferrerView officer = AsOfficer(id);
  EXPECT_EQ(officer.stage(), v1::ReferrerView::STAGE_WITH_CHILD_WELFARE);
  EXPECT_EQ(officer.handoff().provider_organization_id(), "cw-king");
  EXPECT_FALSE(officer.handoff().contact_phone().empty());

  EXPECT_EQ(Metric("safeharbor_referrals_escalations_total"), 1);
  EXPECT_EQ(Metric("safeharbor_referrals_placement_unavailable_total"), 1);
  EXPECT_EQ(Metric("safeharbor_referrals_reroutes_total"), 2);
  v1::GetReferralStatsResponse stats;
  grpc::Status st = Stub_("state-auditor", "auditor")
                        ->GetReferralStats(Ctx().get(), v1::GetReferralStatsRequest(), &stats);
  ASSERT_TRUE(st.ok()) << st.error_message();
  // One referral: every figure is a small cell, withheld (issue 11).
  EXPECT_TRUE(stats.escalations_suppressed());
  EXPECT_EQ(stats.escalations(), 0);
  EXPECT_TRUE(stats.reroutes_suppressed());
  EXPECT_EQ(stats.reroutes(), 0);
  EXPECT_TRUE(stats.placement_unavailable_suppressed());
  EXPECT_EQ(stats.placement_unavailable(), 0);
  // Every status is listed (issue 14, S2), each withheld here.
  ASSERT_EQ(stats.by_status_size(), 10);
  EXPECT_EQ(stats.by_status(9).status(), v1::REFERRAL_STATUS_ESCALATED);
  for (const auto& c : stats.by_status()) EXPECT_TRUE(c.suppressed());
  // The escalation is explained, and the deadline passes are in the history.
  EXPECT_NE(third.routing_explanation().find("escalated to"), std::string::npos);
  int deadlines = 0;
  for (const auto& t : third.history()) {
    deadlines += t.reason().find("no answer by the deadline") != std::string::npos;
  }
  EXPECT_EQ(deadlines, 2);
}

TEST_F(ReferralTest, ServicesAreOfferedToThreeAndTheFirstToAcceptWins) {
  const std::string id = Create(Request(/*placement=*/false));
  EXPECT_EQ(Timers(), 1);
  v1::Referral r = AsChildWelfare(id);
  ASSERT_EQ(r.status(), v1::REFERRAL_STATUS_OFFERED);
  ASSERT_EQ(r.offers_size(), 3);
  EXPECT_TRUE(r.bed_hold_id().empty());
  ASSERT_TRUE(Accept("prov-b", id).ok());
  r = AsChildWelfare(id);
  EXPECT_EQ(r.status(), v1::REFERRAL_STATUS_ACCEPTED);
  for (const auto& o : r.offers()) {
    EXPECT_EQ(o.state(), o.provider_organization_id() == "prov-b" ? v1::OFFER_STATE_ACCEPTED
                                                                  : v1::OFFER_STATE_WITHDRAWN);
  }
  // The others can neither accept nor read it any more.
  EXPECT_EQ(Accept("prov-a", id).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::GetReferralResponse other;
  EXPECT_EQ(Stub_("prov-c", "provider")->GetReferral(Ctx().get(), Get(id), &other).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(ReferralTest, DeclinedByAllGoesToTheNextCandidates) {
  const std::string id = Create(Request(/*placement=*/true));
  Timers();
  v1::DeclineReferralRequest decline;
  decline.set_id(id);
  decline.set_reason("at capacity");
  v1::DeclineReferralResponse declined;
  ASSERT_TRUE(Stub_("prov-a", "provider")->DeclineReferral(Ctx().get(), decline, &declined).ok());
  Timers();
  v1::Referral r = AsChildWelfare(id);
  ASSERT_EQ(r.status(), v1::REFERRAL_STATUS_OFFERED);
  EXPECT_EQ(r.offers(0).state(), v1::OFFER_STATE_DECLINED);
  EXPECT_EQ(r.offers(0).decline_reason(), "at capacity");
  EXPECT_EQ(r.offers(1).provider_organization_id(), "prov-b");
  EXPECT_EQ(Metric("safeharbor_referrals_reroutes_total"), 1);
}

TEST_F(ReferralTest, IntakeWhileBedsIsDownIsRoutedWhenItReturns) {
  network_->beds_down = true;
  const std::string id = Create(Request(/*placement=*/true));
  EXPECT_EQ(Timers(), 0);
  EXPECT_EQ(AsChildWelfare(id).status(), v1::REFERRAL_STATUS_REQUESTED);
  EXPECT_GE(Metric("safeharbor_referrals_routing_errors_total"), 1);
  network_->beds_down = false;
  clock_.Advance(absl::Seconds(3));  // The retry delay.
  EXPECT_EQ(Timers(), 1);
  EXPECT_EQ(AsChildWelfare(id).status(), v1::REFERRAL_STATUS_OFFERED);
}

TEST_F(ReferralTest, HandoffConfirmedWhileBedsIsDownReachesBedsLater) {
  const std::string id = Create(Request(/*placement=*/true));
  Timers();
  ASSERT_TRUE(Accept("prov-a", id).ok());
  network_->beds_down = true;
  v1::ConfirmHandoffRequest confirm;
  confirm.set_id(id);
  v1::ConfirmHandoffResponse confirmed;
  ASSERT_TRUE(Stub_("prov-a", "provider")->ConfirmHandoff(Ctx().get(), confirm, &confirmed).ok());
  Timers();
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM placements"), 0);
  network_->beds_down = false;
  Timers();
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM placements"), 1);
}

TEST_F(ReferralTest, ExploiterKnownInTheAreaPlacesOutsideTheCounty) {
  v1::CreateReferralRequest req = Request(/*placement=*/false);
  req.mutable_safety()->set_exploiter_known_in_area(true);
  const std::string id = Create(req);
  Timers();
  v1::Referral r = AsChildWelfare(id);
  ASSERT_EQ(r.status(), v1::REFERRAL_STATUS_OFFERED);
  ASSERT_EQ(r.offers_size(), 2);
  for (const auto& o : r.offers()) EXPECT_NE(o.provider_organization_id(), "prov-a");
}

// Issue 11: the fingerprints of identifying details in idempotency records are keyed by their
// own secret, not the encryption key: after the encryption keys rotate, a retry still matches
// its first call (and a changed name is still told apart).
TEST_F(ReferralTest, ARetryAfterEncryptionKeyRotationStillMatchesItsFirstCall) {
  v1::CreateReferralRequest req = Request(false, "before-rotation");
  const std::string id = Create(req);
  const Sealer rotated_sealer = *Sealer::Create(
      {{2, std::string(32, 'n')}, {1, std::string(32, 'k')}}, 2, std::string(32, 'f'));
  Hosted<ReferralServiceImpl> rotated;
  rotated.Connect("ref", Migrations(), 4, 8, /*with_redis=*/false, referrals_.db_url);
  ReferralOptions ropts;
  ropts.key_namespace = absl::StrCat("rot", ++counter_, absl::ToUnixNanos(absl::Now()));
  rotated.service = std::make_unique<ReferralServiceImpl>(
      rotated.env.get(), rotated.pg.get(), nullptr, *rotated.registry, WashingtonCounties(),
      &clock_, &rotated_sealer, network_, ropts);
  rotated.service->StartBackground(/*timers=*/false);
  rotated.Serve("referrals");
  auto officer = rotated.Stub<v1::ReferralService>("le-seattle", "law_enforcement");
  v1::CreateReferralResponse again;
  grpc::Status st = officer->CreateReferral(Ctx().get(), req, &again);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(again.referral().id(), id);
  req.mutable_youth()->mutable_identifying()->set_name("Jane R");
  st = officer->CreateReferral(Ctx().get(), req, &again);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_NE(st.error_message().find("identifying"), std::string::npos) << st.error_message();
  EXPECT_EQ(st.error_message().find("Jane"), std::string::npos) << st.error_message();
  rotated.service->StopBackground();
  rotated.Shutdown();
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM referrals"), 1);
}

TEST_F(ReferralTest, CreateIsIdempotentAndAConflictingReplayNamesTheField) {
  v1::CreateReferralRequest req = Request(false, "same");
  const std::string id = Create(req);
  EXPECT_EQ(Create(req), id);
  req.mutable_youth()->set_age(16);
  v1::CreateReferralResponse resp;
  grpc::Status st = officer_->CreateReferral(Ctx().get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_NE(st.error_message().find("youth.age"), std::string::npos) << st.error_message();
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM referrals"), 1);
}

// Issue 13: an intake's transaction is one round trip to PostgreSQL — BEGIN, the request_id
// claim, the referral, its first transition, the audit row, the stored response and COMMIT sent
// together — and nothing is acknowledged that was not committed: the referral, its history and
// its audit row are all there. A replay (its claim refused by the record) stores nothing more.
TEST_F(ReferralTest, AnIntakeIsOneRoundTripToPostgres) {
  const auto trips = [&] {
    return SumHistogram(*referrals_.registry, "safeharbor_rpc_postgres_round_trips",
                        {{"grpc_method", "CreateReferral"}}, 1);
  };
  const std::string id = Create(Request(true, "rt-1"));
  Create(Request(false, "rt-2"));
  const HistogramTotals made = trips();
  EXPECT_EQ(made.count, 2u);
  EXPECT_EQ(made.at_most, 2u) << "every intake in one round trip";
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM referrals"), 2);
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(*) AS n FROM transitions WHERE referral_id = '" + id + "'"),
            1);
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM audit_log WHERE referral_id = '" +
                                           id + "' AND action = 'create'"),
            1);
  EXPECT_EQ(Create(Request(true, "rt-1")), id);
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM referrals"), 2);
  const HistogramTotals all = trips();
  std::cout << "CreateReferral round trips to PostgreSQL: " << made.sum / made.count
            << " per intake; a replay took " << all.sum - made.sum << "\n";
}

TEST_F(ReferralTest, BadInputIsRefusedNamingTheFieldAndNothingIsStored) {
  struct Case {
    std::function<void(v1::CreateReferralRequest&)> mutate;
    const char* field;
  };
  const std::vector<Case> cases = {
      {[](auto& r) { r.clear_request_id(); }, "request_id"},
      {[](auto& r) { r.mutable_youth()->clear_youth_reference(); }, "youth.youth_reference"},
      {[](auto& r) { r.mutable_youth()->set_youth_reference("Jane Q"); }, "youth.youth_reference"},
      {[](auto& r) { r.mutable_youth()->set_age(31); }, "youth.age"},
      {[](auto& r) { r.mutable_youth()->add_languages("Spanish"); }, "youth.languages"},
      {[](auto& r) { r.set_county_fips("99999"); }, "county_fips"},
      {[](auto& r) { r.mutable_location()->set_latitude(123); }, "location"},
      {[](auto& r) { r.clear_needs(); }, "needs"},
      {[](auto& r) {
         r.mutable_needs()->add_service_categories(
             dir::SERVICE_CATEGORY_SECURE_CRISIS_RESIDENTIAL_CENTER);
       },
       "needs.service_categories"},
      {[](auto& r) { r.mutable_referrer_contact()->clear_phone(); }, "referrer_contact.phone"},
      {[](auto& r) { r.mutable_youth()->mutable_identifying()->set_notes(std::string(3000, 'x')); },
       "youth.identifying.notes"},
  };
  for (const Case& c : cases) {
    v1::CreateReferralRequest req = Request(false);
    c.mutate(req);
    v1::CreateReferralResponse resp;
    grpc::Status st = officer_->CreateReferral(Ctx().get(), req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_NE(st.error_message().find(c.field), std::string::npos)
        << c.field << ": " << st.error_message();
  }
  v1::CreateReferralResponse resp;
  EXPECT_EQ(
      Stub_("prov-a", "provider")->CreateReferral(Ctx().get(), Request(false), &resp).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM referrals"), 0);
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM audit_log"), 0);
}

TEST_F(ReferralTest, IllegalTransitionsAndForeignReadersAreRefused) {
  const std::string id = Create(Request(/*placement=*/false));
  Timers();
  auto prov_a = Stub_("prov-a", "provider");
  v1::StartServicesRequest start;
  start.set_id(id);
  v1::StartServicesResponse started;
  EXPECT_EQ(prov_a->StartServices(Ctx().get(), start, &started).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);  // Not accepted yet.
  v1::ConfirmHandoffRequest confirm;
  confirm.set_id(id);
  v1::ConfirmHandoffResponse confirmed;
  EXPECT_EQ(officer_->ConfirmHandoff(Ctx().get(), confirm, &confirmed).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::GetReferralResponse got;
  for (auto [org, role] : {std::pair{"le-tacoma", "law_enforcement"},
                           {"state-auditor", "auditor"},
                           {"cw-pierce", "child_welfare"},
                           {"prov-x", "provider"},
                           {"clerk", "court_clerk"}}) {
    EXPECT_EQ(Stub_(org, role)->GetReferral(Ctx().get(), Get(id), &got).error_code(),
              grpc::StatusCode::PERMISSION_DENIED)
        << org;
  }
  ASSERT_TRUE(Accept("prov-a", id).ok());
  ASSERT_TRUE(prov_a->ConfirmHandoff(Ctx().get(), confirm, &confirmed).ok());
  EXPECT_EQ(prov_a->ConfirmHandoff(Ctx().get(), confirm, &confirmed).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  v1::CancelReferralRequest cancel;
  cancel.set_id(id);
  cancel.set_reason("changed my mind");
  v1::CancelReferralResponse cancelled;
  EXPECT_EQ(officer_->CancelReferral(Ctx().get(), cancel, &cancelled).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);  // The provider has the youth.
  v1::RecordOutcomeRequest outcome;
  outcome.set_id(id);
  outcome.set_outcome(v1::REFERRAL_STATUS_COMPLETED);
  v1::RecordOutcomeResponse recorded;
  ASSERT_TRUE(prov_a->RecordOutcome(Ctx().get(), outcome, &recorded).ok());
  outcome.set_outcome(v1::REFERRAL_STATUS_YOUTH_DECLINED);
  grpc::Status closed = prov_a->RecordOutcome(Ctx().get(), outcome, &recorded);
  EXPECT_EQ(closed.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(closed.error_message().find("closed"), std::string::npos) << closed.error_message();
  outcome.set_outcome(v1::REFERRAL_STATUS_ESCALATED);
  EXPECT_EQ(prov_a->RecordOutcome(Ctx().get(), outcome, &recorded).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // The accepted provider reads the identity, audited; child welfare in the county never does.
  ASSERT_TRUE(prov_a->GetReferral(Ctx().get(), Get(id), &got).ok());
  EXPECT_EQ(got.referral().youth().identifying().name(), "Jane Q");
  EXPECT_FALSE(AsChildWelfare(id).youth().has_identifying());
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(*) AS n FROM audit_log WHERE action = 'identity_read' AND "
                  "actor_org = 'prov-a'"),
            2);  // At accept and at this read.
}

TEST_F(ReferralTest, CancelWithdrawsOffersAndReleasesTheBed) {
  const std::string id = Create(Request(/*placement=*/true));
  Timers();
  v1::CancelReferralRequest cancel;
  cancel.set_id(id);
  cancel.set_reason("youth reunited with family");
  v1::CancelReferralResponse cancelled;
  ASSERT_TRUE(officer_->CancelReferral(Ctx().get(), cancel, &cancelled).ok());
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM holds WHERE state = 1"), 0);
  EXPECT_EQ(AsOfficer(id).stage(), v1::ReferrerView::STAGE_CANCELLED);
  EXPECT_EQ(Accept("prov-a", id).error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(ReferralTest, TheOfficerLearnsNothingPastConnectedNotEvenFromErrorsOrTimes) {
  const std::string id = Create(Request(/*placement=*/false));
  Timers();
  auto prov = Stub_("prov-a", "provider");
  ASSERT_TRUE(Accept("prov-a", id).ok());
  v1::ConfirmHandoffRequest confirm;
  confirm.set_id(id);
  v1::ConfirmHandoffResponse confirmed;
  ASSERT_TRUE(prov->ConfirmHandoff(Ctx().get(), confirm, &confirmed).ok());
  const v1::ReferrerView connected = AsOfficer(id);
  clock_.Advance(absl::Hours(1));
  v1::StartServicesRequest start;
  start.set_id(id);
  v1::StartServicesResponse started;
  ASSERT_TRUE(prov->StartServices(Ctx().get(), start, &started).ok());
  clock_.Advance(absl::Hours(1));
  v1::RecordOutcomeRequest outcome;
  outcome.set_id(id);
  outcome.set_outcome(v1::REFERRAL_STATUS_YOUTH_DECLINED);
  v1::RecordOutcomeResponse recorded;
  ASSERT_TRUE(prov->RecordOutcome(Ctx().get(), outcome, &recorded).ok());
  // Not even the time of the view moves.
  EXPECT_EQ(AsOfficer(id).SerializeAsString(), connected.SerializeAsString());
  // A status filter would reveal it: refused.
  v1::ListReferralsRequest list;
  list.set_status(v1::REFERRAL_STATUS_YOUTH_DECLINED);
  v1::ListReferralsResponse listed;
  EXPECT_EQ(officer_->ListReferrals(Ctx().get(), list, &listed).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // So would an error naming the status.
  v1::CancelReferralRequest cancel;
  cancel.set_id(id);
  cancel.set_reason("x");
  v1::CancelReferralResponse cancelled;
  grpc::Status st = officer_->CancelReferral(Ctx().get(), cancel, &cancelled);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(st.error_message().find("DECLINED"), std::string::npos) << st.error_message();
  EXPECT_NE(st.error_message().find("STAGE_CONNECTED_TO_SERVICES"), std::string::npos);
}

// Child welfare pages through its region's referrals: every one exactly once (the page token is
// taken from the last row before the rows move into the answer).
// Issue 11: beds are held by the referral service for the referral's referrer: the hold counts
// against the referring agency's cap, not the referral service's.
TEST_F(ReferralTest, ABedIsHeldForTheReferringAgency) {
  const std::string id = Create(Request(/*placement=*/true));
  Timers();
  ASSERT_FALSE(AsChildWelfare(id).bed_hold_id().empty());
  auto r = beds_.pg->Query("SELECT for_org, holder_org FROM holds WHERE state = 1");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->rows(), 1);
  EXPECT_EQ(r->String(0, "for_org"), "le-seattle");
  EXPECT_EQ(r->String(0, "holder_org"), "safeharbor-referrals");
}

// An agency with one bed hold at most: its second placement referral waits for the hold to be
// freed, and the next agency's referral is routed in the same pass.
class CappedReferralTest : public ReferralTest {
 protected:
  int64_t HoldCap() const override { return 1; }
};

TEST_F(CappedReferralTest, AnAgencyAtItsHoldCapWaitsAndDoesNotHoldUpOthers) {
  const std::string first = Create(Request(/*placement=*/true, "cap-1"));
  clock_.Advance(absl::Seconds(1));
  const std::string second = Create(Request(/*placement=*/true, "cap-2"));
  clock_.Advance(absl::Seconds(1));
  auto tacoma = Stub_("le-tacoma", "law_enforcement");
  v1::CreateReferralResponse created;
  ASSERT_TRUE(
      tacoma->CreateReferral(Ctx().get(), Request(/*placement=*/true, "cap-3"), &created).ok());
  Timers();
  EXPECT_FALSE(AsChildWelfare(first).bed_hold_id().empty());
  const v1::Referral waiting = AsChildWelfare(second);
  EXPECT_EQ(waiting.status(), v1::REFERRAL_STATUS_REQUESTED) << waiting.routing_explanation();
  EXPECT_TRUE(waiting.bed_hold_id().empty());
  const v1::Referral other = AsChildWelfare(created.referral().id());
  EXPECT_EQ(other.status(), v1::REFERRAL_STATUS_OFFERED) << other.routing_explanation();
  EXPECT_FALSE(other.bed_hold_id().empty());
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM holds WHERE state = 1"), 2);
}

// Issue 11: aggregates over a day or more, with counts below 11 withheld (marked suppressed).
TEST_F(ReferralTest, StatsCoverADayOrMoreAndSuppressCountsBelowEleven) {
  auto auditor = Stub_("state-auditor", "auditor");
  auto stats = [&](absl::Duration window, v1::GetReferralStatsResponse* out) {
    v1::GetReferralStatsRequest req;
    *req.mutable_to_time() = ToProtoTime(clock_.Now() + absl::Seconds(1));
    *req.mutable_from_time() = ToProtoTime(clock_.Now() + absl::Seconds(1) - window);
    return auditor->GetReferralStats(Ctx().get(), req, out);
  };
  v1::GetReferralStatsResponse got;
  EXPECT_EQ(stats(absl::Seconds(2), &got).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(stats(absl::Hours(23), &got).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  std::vector<std::string> ids;
  for (int i = 0; i < 11; ++i) ids.push_back(Create(Request(false, absl::StrCat("st-", i))));
  ASSERT_TRUE(stats(absl::Hours(24), &got).ok());
  ASSERT_EQ(got.by_status_size(), 10);  // every status (issue 14, S2)
  EXPECT_EQ(got.by_status(0).status(), v1::REFERRAL_STATUS_REQUESTED);
  EXPECT_EQ(got.by_status(0).count(), 11);
  EXPECT_FALSE(got.by_status(0).suppressed());
  EXPECT_TRUE(got.escalations_suppressed());  // none: below 11 as well
  EXPECT_TRUE(got.median_minutes_to_acceptance_suppressed());
  v1::CancelReferralRequest cancel;
  cancel.set_id(ids[0]);
  cancel.set_reason("reunited");
  v1::CancelReferralResponse cancelled;
  ASSERT_TRUE(officer_->CancelReferral(Ctx().get(), cancel, &cancelled).ok());
  ASSERT_TRUE(stats(absl::Hours(24 * 7), &got).ok());
  ASSERT_EQ(got.by_status_size(), 10);
  for (const auto& c : got.by_status()) {
    EXPECT_TRUE(c.suppressed()) << v1::ReferralStatus_Name(c.status());  // 10, 1 and zeros
    EXPECT_EQ(c.count(), 0);
  }
}

// Issue 11: an officer could tell "still in services" from "closed" by how long a refused
// cancel took (the cancel's work ran before the lifecycle refused it). Now the refusal comes
// first, the same way in both states.
TEST_F(ReferralTest, ARefusedCancelTakesOnePathInServicesOrClosed) {
  auto prov = Stub_("prov-a", "provider");
  std::vector<std::string> ids;
  for (const char* rid : {"in-services", "closed"}) {
    const std::string id = Create(Request(/*placement=*/false, rid));
    Timers();
    ASSERT_TRUE(Accept("prov-a", id).ok());
    v1::ConfirmHandoffRequest confirm;
    confirm.set_id(id);
    v1::ConfirmHandoffResponse confirmed;
    ASSERT_TRUE(prov->ConfirmHandoff(Ctx().get(), confirm, &confirmed).ok());
    v1::StartServicesRequest start;
    start.set_id(id);
    v1::StartServicesResponse started;
    ASSERT_TRUE(prov->StartServices(Ctx().get(), start, &started).ok());
    ids.push_back(id);
  }
  v1::RecordOutcomeRequest outcome;
  outcome.set_id(ids[1]);
  outcome.set_outcome(v1::REFERRAL_STATUS_COMPLETED);
  v1::RecordOutcomeResponse recorded;
  ASSERT_TRUE(prov->RecordOutcome(Ctx().get(), outcome, &recorded).ok());
  const int64_t transitions = Count(referrals_.pg.get(), "SELECT count(*) AS n FROM transitions");
  const double early = Metric("safeharbor_referrals_changes_refused_early_total");
  std::vector<grpc::Status> refused;
  for (const std::string& id : ids) {
    v1::CancelReferralRequest cancel;
    cancel.set_id(id);
    cancel.set_reason("x");
    v1::CancelReferralResponse cancelled;
    refused.push_back(officer_->CancelReferral(Ctx().get(), cancel, &cancelled));
  }
  EXPECT_EQ(refused[0].error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(refused[1].error_code(), refused[0].error_code());
  EXPECT_EQ(refused[1].error_message(), refused[0].error_message());
  // Both refused by the lifecycle before the cancel's work (offers, routing) was touched.
  EXPECT_EQ(Metric("safeharbor_referrals_changes_refused_early_total"), early + 2);
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM transitions"), transitions);
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM hold_releases"), 0);
}

TEST_F(ReferralTest, ChildWelfarePagesThroughItsRegionEveryReferralOnce) {
  std::set<std::string> created;
  for (int i = 0; i < 5; ++i) created.insert(Create(Request(false, absl::StrCat("page-", i))));
  auto cw = Stub_("cw-king", "child_welfare");
  std::set<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    v1::ListReferralsRequest req;
    req.set_page_size(2);
    req.set_page_token(token);
    v1::ListReferralsResponse resp;
    grpc::Status st = cw->ListReferrals(Ctx().get(), req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    for (const auto& item : resp.referrals()) {
      EXPECT_TRUE(seen.insert(item.referral().id()).second) << "listed twice";
      EXPECT_FALSE(item.referral().youth().has_identifying());
    }
    token = resp.next_page_token();
    ASSERT_LT(++pages, 10);
  } while (!token.empty());
  EXPECT_EQ(seen, created);
  EXPECT_EQ(pages, 3);
}

TEST_F(ReferralTest, ProvidersSeeOnlyTheirOwnOfferAndNeverWhoElseWasAsked) {
  const std::string id = Create(Request(/*placement=*/true));
  Timers();
  v1::DeclineReferralRequest decline;
  decline.set_id(id);
  decline.set_reason("at capacity tonight");
  v1::DeclineReferralResponse declined;
  ASSERT_TRUE(Stub_("prov-a", "provider")->DeclineReferral(Ctx().get(), decline, &declined).ok());
  Timers();  // Offered to prov-b now.
  v1::GetReferralResponse got;
  ASSERT_TRUE(Stub_("prov-b", "provider")->GetReferral(Ctx().get(), Get(id), &got).ok());
  const v1::Referral& offered = got.referral();
  ASSERT_EQ(offered.offers_size(), 1);
  EXPECT_EQ(offered.offers(0).provider_organization_id(), "prov-b");
  EXPECT_EQ(offered.candidates_size(), 0);
  EXPECT_TRUE(offered.routing_explanation().empty());
  EXPECT_FALSE(offered.has_location());  // Not until it accepts.
  for (const auto& t : offered.history()) {
    EXPECT_EQ(t.reason().find("prov-a"), std::string::npos) << t.reason();
    EXPECT_EQ(t.reason().find("at capacity"), std::string::npos) << t.reason();
  }
  v1::Referral accepted;
  ASSERT_TRUE(Accept("prov-b", id, &accepted).ok());
  EXPECT_EQ(accepted.offers_size(), 1);
  EXPECT_EQ(accepted.candidates_size(), 0);
  EXPECT_EQ(accepted.youth().identifying().name(), "Jane Q");
  EXPECT_TRUE(accepted.has_location());
  // A retried accept still carries the identity (and is audited again).
  v1::Referral again;
  ASSERT_TRUE(Accept("prov-b", id, &again).ok());
  EXPECT_EQ(again.youth().identifying().name(), "Jane Q");
}

TEST_F(ReferralTest, TheIdempotencyRecordCannotBeUsedToTestAGuessedName) {
  const v1::CreateReferralRequest req = Request(false, "guess");
  Create(req);
  auto row = referrals_.pg->Query(
      "SELECT field_digests::text AS d FROM idempotency_keys WHERE request_id = 'guess'");
  ASSERT_TRUE(row.ok());
  ASSERT_EQ(row->rows(), 1);
  const std::string stored = row->String(0, "d");
  // What an attacker with the database could compute from a guess and the stored salt:
  const auto guessable = FieldDigests(req, req.request_id());
  const std::string name_digest = guessable.at("youth.identifying.name");
  EXPECT_EQ(stored.find(name_digest), std::string::npos);
  EXPECT_NE(stored.find(guessable.at("youth.age")), std::string::npos);  // Others are as before.
}

TEST_F(ReferralTest, HoldsLetGoWhileBedsIsDownAreReleasedWhenItReturns) {
  const std::string id = Create(Request(/*placement=*/true));
  Timers();
  ASSERT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM holds WHERE state = 1"), 1);
  network_->beds_down = true;
  v1::CancelReferralRequest cancel;
  cancel.set_id(id);
  cancel.set_reason("youth went home with a parent");
  v1::CancelReferralResponse cancelled;
  ASSERT_TRUE(officer_->CancelReferral(Ctx().get(), cancel, &cancelled).ok());
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM hold_releases"), 1);
  network_->beds_down = false;
  Timers();
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM holds WHERE state = 1"), 0);
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM hold_releases"), 0);
}

TEST_F(ReferralTest, AHoldTakenJustBeforeACrashIsFoundAndTheBedOfferedAgain) {
  network_->lose_next_hold = true;
  const std::string id = Create(Request(/*placement=*/true));
  EXPECT_EQ(Timers(), 0);  // The hold on fac-a was taken, then the "process died".
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM holds WHERE state = 1"), 1);
  clock_.Advance(absl::Seconds(3));
  EXPECT_EQ(Timers(), 1);
  v1::Referral r = AsChildWelfare(id);
  ASSERT_EQ(r.status(), v1::REFERRAL_STATUS_OFFERED);
  // fac-a's only bed was not lost to the orphan hold: it is offered, and held once.
  EXPECT_EQ(r.offers(0).facility_id(), "fac-a");
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM holds WHERE state = 1"), 1);
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(*) AS n FROM referrals WHERE pending_hold IS NOT NULL"),
            0);
}

// A worker whose routing lease lapses mid-routing (a slow beds service) while another worker
// takes the referral over: the second replays the first's pending hold and releases it, then
// stops at a directory outage. The first must not offer the released hold (found by a review:
// its offer passed the revision check, as the pending-hold record does not change the revision).
TEST_F(ReferralTest, AWorkerWhoseRoutingClaimLapsedNeverOffersAHoldTheNextWorkerReleased) {
  const std::string id = Create(Request(/*placement=*/true));
  int taken_over = -1;
  network_->after_hold = [&] {
    clock_.Advance(absl::Seconds(31));  // past the 30 s lease
    network_->directory_down = true;
    taken_over = Timers();  // the second worker: recovers and releases the hold, then stops
    network_->directory_down = false;
  };
  EXPECT_EQ(Timers(), 0);  // the first worker: its claim is gone, nothing of it is kept
  EXPECT_EQ(taken_over, 0);
  v1::Referral r = AsChildWelfare(id);
  EXPECT_EQ(r.status(), v1::REFERRAL_STATUS_REQUESTED);
  EXPECT_TRUE(r.bed_hold_id().empty());
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM holds WHERE state = 1"), 0);
  clock_.Advance(absl::Seconds(3));  // the retry delay the second worker set
  EXPECT_EQ(Timers(), 1);
  r = AsChildWelfare(id);
  ASSERT_EQ(r.status(), v1::REFERRAL_STATUS_OFFERED);
  EXPECT_EQ(Count(beds_.pg.get(), absl::StrCat("SELECT count(*) AS n FROM holds WHERE state = 1 "
                                               "AND id = '",
                                               r.bed_hold_id(), "'")),
            1);
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM holds WHERE state = 1"), 1);
}

// One referral whose stored body cannot be read (first in the queue) must not stop routing for
// every other youth (found by a review: the claim failed, rolled back, and was retried first).
TEST_F(ReferralTest, AnUnreadableReferralFirstInTheQueueDoesNotStopRoutingTheOthers) {
  const std::string broken = Create(Request(/*placement=*/false, "broken"));
  clock_.Advance(absl::Seconds(1));
  const std::string fine = Create(Request(/*placement=*/false, "fine"));
  ASSERT_TRUE(
      referrals_.pg->Query("UPDATE referrals SET body = '\\xffff'::bytea WHERE id = $1", {broken})
          .ok());
  EXPECT_EQ(Timers(), 1);
  EXPECT_EQ(AsChildWelfare(fine).status(), v1::REFERRAL_STATUS_OFFERED);
  EXPECT_EQ(Gauge("safeharbor_referrals_routing_attempts_total", "failed"), 1);
}

// WatchReferrals (issue 11): the request is validated before anything is written or registered;
// the stream delivers nothing unless its audit row committed; a cursor from before the pruned
// range (the replay horizon) is refused with a message telling the client to resync.
TEST_F(ReferralTest, WatchValidatesFirstAuditsBeforeDeliveringAndResumesOnlyWithinTheHorizon) {
  const std::string id = Create(Request(/*placement=*/false));
  ASSERT_EQ(Timers(), 1);
  const v1::Referral routed = AsChildWelfare(id);
  ASSERT_GE(routed.offers_size(), 1);
  const std::string prov = routed.offers(0).provider_organization_id();
  auto provider = Stub_(prov, "provider");
  struct Watched {
    grpc::Status status;
    std::vector<std::string> cursors;
  };
  auto watch = [&](const std::string& cursor, size_t want) {
    Watched out;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::WatchReferralsRequest req;
    req.set_cursor(cursor);
    auto stream = provider->WatchReferrals(&ctx, req);
    v1::WatchReferralsResponse ev;
    while (out.cursors.size() < want && stream->Read(&ev)) out.cursors.push_back(ev.cursor());
    if (out.cursors.size() == want) ctx.TryCancel();
    out.status = stream->Finish();
    return out;
  };
  const std::string opened = "SELECT count(*) AS n FROM audit_log WHERE action = 'watch_opened'";
  // Refused before any audit row or registration: a 200 kB cursor (over the server's receive
  // limit), one over the method's size limit, malformed ones.
  EXPECT_EQ(watch(std::string(200000, '7'), 1).status.error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  const Watched oversized = watch(std::string(60000, '7'), 1);
  EXPECT_EQ(oversized.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(watch("12ab", 1).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(watch(std::string(21, '1'), 1).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Count(referrals_.pg.get(), opened), 0);
  EXPECT_EQ(Metric("safeharbor_referrals_watchers"), 0);  // never registered, not even briefly

  // The audit write fails: the stream ends without delivering the event waiting for it.
  ASSERT_TRUE(referrals_.pg->Query("ALTER TABLE audit_log RENAME TO audit_log_away").ok());
  const Watched unaudited = watch("0", 1);
  ASSERT_TRUE(referrals_.pg->Query("ALTER TABLE audit_log_away RENAME TO audit_log").ok());
  EXPECT_EQ(unaudited.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(unaudited.status.error_message().find("audited"), std::string::npos);
  EXPECT_TRUE(unaudited.cursors.empty());
  const Watched audited = watch("0", 1);
  ASSERT_EQ(audited.cursors.size(), 1u) << audited.status.error_message();
  EXPECT_EQ(Count(referrals_.pg.get(), opened), 1);

  // Eight days later one more event; pruning removes everything older than seven days but it.
  clock_.Advance(absl::Hours(24 * 8));
  int64_t newest = 0;
  ASSERT_TRUE(referrals_.pg
                  ->Transact([&](PgTx& tx) -> absl::Status {
                    v1::Referral view;
                    view.set_id(id);
                    auto seq = ReferralStore::AppendEvent(tx, prov, view, clock_.Now());
                    if (seq.ok()) newest = *seq;
                    return seq.status();
                  })
                  .ok());
  ASSERT_TRUE(referrals_.service->PruneWatchEvents().ok());
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM referral_events"), 1);
  const Watched stale = watch("0", 1);
  EXPECT_EQ(stale.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(stale.status.error_message().find("replay horizon"), std::string::npos)
      << stale.status.error_message();
  EXPECT_NE(stale.status.error_message().find("Resync"), std::string::npos);
  // From the last pruned event on, the stream resumes.
  const Watched fresh = watch(absl::StrCat(newest - 1), 1);
  ASSERT_EQ(fresh.cursors.size(), 1u) << fresh.status.error_message();
  EXPECT_EQ(fresh.cursors[0], absl::StrCat(newest));
}

// Issue 15: the FHIR R4 view. Bundles of referrals in every status, as child welfare and the
// providers see them, validate against the R4 JSON schema (tools/fhir-validate.mjs); the
// identity is in the accepting provider's bundle only; law enforcement has no FHIR view.
class FhirViewTest : public ReferralTest {
 protected:
  // The bundle `org` (as `role`) gets, after checking the call's code.
  std::string Fhir(const std::string& org, const std::string& role, const std::string& id,
                   grpc::StatusCode want = grpc::StatusCode::OK) {
    v1::GetReferralFhirRequest req;
    req.set_id(id);
    v1::GetReferralFhirResponse resp;
    const grpc::Status st = Stub_(org, role)->GetReferralFhir(Ctx().get(), req, &resp);
    EXPECT_EQ(st.error_code(), want) << st.error_message();
    return resp.bundle_json();
  }
  void Keep(const std::string& name, const std::string& json) {
    ASSERT_FALSE(json.empty()) << name;
    bundles_.emplace_back(name, json);
  }
  template <typename Req, typename Resp>
  void AsProvider(const std::string& org, const std::string& id,
                  grpc::Status (Stub::*call)(grpc::ClientContext*, const Req&, Resp*)) {
    Req req;
    req.set_id(id);
    Resp resp;
    const grpc::Status st = (Stub_(org, "provider").get()->*call)(Ctx().get(), req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  void Outcome(const std::string& org, const std::string& id, v1::ReferralStatus outcome) {
    v1::RecordOutcomeRequest req;
    req.set_id(id);
    req.set_outcome(outcome);
    v1::RecordOutcomeResponse resp;
    ASSERT_TRUE(Stub_(org, "provider")->RecordOutcome(Ctx().get(), req, &resp).ok());
  }
  // A services referral accepted by prov-b and handed off.
  std::string HandedOff(const std::string& rid) {
    const std::string id = Create(Request(/*placement=*/false, rid));
    Timers();
    EXPECT_TRUE(Accept("prov-b", id).ok());
    AsProvider("prov-b", id, &Stub::ConfirmHandoff);
    return id;
  }
  // Every kept bundle through the validator; its output on failure.
  void ExpectAllValid() {
    const std::string dir = absl::StrCat(::testing::TempDir(), "/fhir-", getpid());
    ASSERT_EQ(std::system(absl::StrCat("mkdir -p '", dir, "'").c_str()), 0);
    std::string files;
    for (const auto& [name, json] : bundles_) {
      const std::string path = absl::StrCat(dir, "/", name, ".json");
      std::ofstream(path) << json;
      absl::StrAppend(&files, " '", path, "'");
    }
    const std::string cmd =
        absl::StrCat("node '", testing::SourceDir(), "/tools/fhir-validate.mjs'", files, " > '",
                     dir, "/report.txt' 2>&1");
    const int rc = std::system(cmd.c_str());
    std::ifstream report(dir + "/report.txt");
    const std::string text((std::istreambuf_iterator<char>(report)), {});
    std::printf("%s", text.c_str());
    EXPECT_EQ(rc, 0) << text;
    EXPECT_NE(text.find(absl::StrCat(bundles_.size(), " of ", bundles_.size(), " valid")),
              std::string::npos);
  }
  std::vector<std::pair<std::string, std::string>> bundles_;
};

TEST_F(FhirViewTest, BundlesInEveryStatusValidateAndOnlyTheAcceptingProviderSeesTheIdentity) {
  network_->beds_down = true;
  const std::string requested = Create(Request(/*placement=*/true, "fhir-requested"));
  Timers();
  Keep("requested", Fhir("cw-king", "child_welfare", requested));
  network_->beds_down = false;

  const std::string id = Create(Request(/*placement=*/false, "fhir-main"));
  Timers();
  const std::string offered = Fhir("cw-king", "child_welfare", id);
  Keep("offered-cw", offered);
  EXPECT_EQ(offered.find("Jane Q"), std::string::npos);
  EXPECT_NE(offered.find("\"status\":\"requested\""), std::string::npos) << offered;
  EXPECT_NE(offered.find("SPD-2026-0042"), std::string::npos);  // the opaque reference only
  Fhir("le-seattle", "law_enforcement", id, grpc::StatusCode::PERMISSION_DENIED);
  Fhir("prov-z", "provider", id, grpc::StatusCode::PERMISSION_DENIED);  // never offered it
  // A provider with an offer it has not accepted answers it through GetReferral, not FHIR.
  Fhir("prov-a", "provider", id, grpc::StatusCode::PERMISSION_DENIED);

  v1::DeclineReferralRequest decline;
  decline.set_id(id);
  decline.set_reason("at capacity");
  v1::DeclineReferralResponse declined;
  ASSERT_TRUE(Stub_("prov-a", "provider")->DeclineReferral(Ctx().get(), decline, &declined).ok());
  ASSERT_TRUE(Accept("prov-b", id).ok());
  const std::string accepted = Fhir("prov-b", "provider", id);
  Keep("accepted-provider", accepted);
  EXPECT_NE(accepted.find("Jane Q"), std::string::npos);
  EXPECT_NE(accepted.find("\"status\":\"accepted\""), std::string::npos) << accepted;
  const std::string cw = Fhir("cw-king", "child_welfare", id);
  Keep("accepted-cw", cw);
  EXPECT_EQ(cw.find("Jane Q"), std::string::npos);
  EXPECT_NE(cw.find("\"status\":\"rejected\""), std::string::npos) << cw;
  EXPECT_NE(cw.find("at capacity"), std::string::npos);

  AsProvider("prov-b", id, &Stub::ConfirmHandoff);
  Keep("handed-off", Fhir("prov-b", "provider", id));
  AsProvider("prov-b", id, &Stub::StartServices);
  Keep("in-progress", Fhir("prov-b", "provider", id));
  Outcome("prov-b", id, v1::REFERRAL_STATUS_COMPLETED);
  const std::string completed = Fhir("cw-king", "child_welfare", id);
  Keep("completed", completed);
  EXPECT_NE(completed.find("\"status\":\"completed\""), std::string::npos) << completed;

  const std::string declined_id = HandedOff("fhir-declined");
  Outcome("prov-b", declined_id, v1::REFERRAL_STATUS_YOUTH_DECLINED);
  Keep("youth-declined", Fhir("prov-b", "provider", declined_id));
  const std::string lost_id = HandedOff("fhir-lost");
  Outcome("prov-b", lost_id, v1::REFERRAL_STATUS_COULD_NOT_CONTACT);
  Keep("could-not-contact", Fhir("cw-king", "child_welfare", lost_id));

  v1::CancelReferralRequest cancel;
  cancel.set_id(requested);
  cancel.set_reason("found family");
  v1::CancelReferralResponse cancelled;
  ASSERT_TRUE(officer_->CancelReferral(Ctx().get(), cancel, &cancelled).ok());
  const std::string revoked = Fhir("cw-king", "child_welfare", requested);
  Keep("cancelled", revoked);
  EXPECT_NE(revoked.find("\"status\":\"revoked\""), std::string::npos) << revoked;

  // No answer from anyone, twice over: to the county's on-call office.
  const std::string esc = Create(Request(/*placement=*/false, "fhir-escalated"));
  for (int i = 0; i < 6 && AsChildWelfare(esc).status() != v1::REFERRAL_STATUS_ESCALATED; ++i) {
    Timers();
    clock_.Advance(absl::Minutes(31));
  }
  ASSERT_EQ(AsChildWelfare(esc).status(), v1::REFERRAL_STATUS_ESCALATED);
  Keep("escalated", Fhir("cw-king", "child_welfare", esc));

  // Issue 14: a waitlisted offer is an on-hold Task; a coded decline's statusReason is coded.
  const std::string wait = Create(Request(/*placement=*/false, "fhir-waitlisted"));
  Timers();
  v1::WaitlistReferralRequest waitlist;
  waitlist.set_id(wait);
  *waitlist.mutable_until() = ToProtoTime(clock_.Now() + absl::Hours(6));
  v1::WaitlistReferralResponse waitlisted;
  ASSERT_TRUE(
      Stub_("prov-a", "provider")->WaitlistReferral(Ctx().get(), waitlist, &waitlisted).ok());
  v1::DeclineReferralRequest coded;
  coded.set_id(wait);
  coded.set_reason_code(v1::REASON_CODE_NOT_ELIGIBLE);
  ASSERT_TRUE(Stub_("prov-b", "provider")->DeclineReferral(Ctx().get(), coded, &declined).ok());
  const std::string on_hold = Fhir("cw-king", "child_welfare", wait);
  Keep("waitlisted", on_hold);
  EXPECT_NE(on_hold.find("\"status\":\"on-hold\""), std::string::npos) << on_hold;
  EXPECT_NE(on_hold.find("\"code\":\"not-eligible\""), std::string::npos) << on_hold;

  // Issue 14, one referral, several needs: one ServiceRequest, a Task per need (each with its
  // status, and its owner once accepted); the accepting provider's bundle holds its need only.
  v1::CreateReferralRequest two = Request(/*placement=*/true, "fhir-parts");
  two.mutable_needs()->add_service_categories(dir::SERVICE_CATEGORY_CSEC_ADVOCACY);
  const std::string lead = Create(two);
  Timers();
  const std::string part = AsChildWelfare(lead).part_ids(0);
  const std::string advocate = AsChildWelfare(part).offers(0).provider_organization_id();
  ASSERT_TRUE(Accept(advocate, part).ok());
  const std::string whole = Fhir("cw-king", "child_welfare", part);
  Keep("parts-cw", whole);
  EXPECT_NE(whole.find(absl::StrCat("\"id\":\"", lead, "-need\"")), std::string::npos) << whole;
  EXPECT_NE(whole.find(absl::StrCat("\"id\":\"", part, "-need\"")), std::string::npos) << whole;
  EXPECT_NE(whole.find("placement-tonight"), std::string::npos);
  EXPECT_EQ(whole.find(absl::StrCat("\"id\":\"", part, "\"")), std::string::npos)
      << "the ServiceRequest is the referral's (the lead's id)";
  const std::string own = Fhir(advocate, "provider", part);
  Keep("parts-provider", own);
  EXPECT_NE(own.find("Jane Q"), std::string::npos);
  EXPECT_EQ(own.find(absl::StrCat(lead, "-need")), std::string::npos) << own;
  EXPECT_EQ(own.find("placement-tonight"), std::string::npos) << own;
  ExpectAllValid();
}

// Issue 14: reports an auditor can use, non-identifying, small cells withheld.
TEST_F(ReferralTest, AuditorsSeeOutcomesByCountyAndProviderAndTimesToAcceptanceAndHandoff) {
  std::vector<std::string> ids;
  for (int i = 0; i < 12; ++i) ids.push_back(Create(Request(false, absl::StrCat("out-", i))));
  while (Timers() > 0) {
  }
  for (const std::string& id : ids) {  // accepted 1, 2, ..., 12 minutes after creation
    clock_.Advance(absl::Minutes(1));
    ASSERT_TRUE(Accept("prov-b", id).ok());
  }
  clock_.Advance(absl::Minutes(1));  // every hand-off 13 minutes after creation
  auto prov = Stub_("prov-b", "provider");
  for (size_t i = 0; i < ids.size(); ++i) {
    v1::ConfirmHandoffRequest confirm;
    confirm.set_id(ids[i]);
    v1::ConfirmHandoffResponse confirmed;
    ASSERT_TRUE(prov->ConfirmHandoff(Ctx().get(), confirm, &confirmed).ok());
    v1::RecordOutcomeRequest outcome;
    outcome.set_id(ids[i]);
    outcome.set_outcome(i == 0 ? v1::REFERRAL_STATUS_YOUTH_DECLINED
                               : v1::REFERRAL_STATUS_COMPLETED);
    v1::RecordOutcomeResponse recorded;
    ASSERT_TRUE(prov->RecordOutcome(Ctx().get(), outcome, &recorded).ok());
  }
  v1::GetReferralStatsRequest req;
  *req.mutable_to_time() = ToProtoTime(clock_.Now() + absl::Seconds(1));
  v1::GetReferralStatsResponse got;
  const grpc::Status st =
      Stub_("state-auditor", "auditor")->GetReferralStats(Ctx().get(), req, &got);
  ASSERT_TRUE(st.ok()) << st.error_message();
  // Issue 14, S2: the one youth who declined is withheld, and so are the 11 completed (its
  // complement in the status table: the 12 referrals measured below would give the 1 back), so
  // neither table lists a cell; a withheld cell names no county or provider.
  EXPECT_EQ(got.outcomes_by_county_size(), 0) << got.DebugString();
  EXPECT_EQ(got.outcomes_by_provider_size(), 0);
  EXPECT_TRUE(got.by_status(5).suppressed());  // COMPLETED
  EXPECT_TRUE(got.by_status(6).suppressed());  // YOUTH_DECLINED
  EXPECT_EQ(got.time_to_acceptance().referrals(), 12);
  EXPECT_DOUBLE_EQ(got.time_to_acceptance().median_minutes(), 6.5);
  EXPECT_NEAR(got.time_to_acceptance().p90_minutes(), 10.9, 1e-9);
  EXPECT_EQ(got.time_to_handoff().referrals(), 12);
  EXPECT_DOUBLE_EQ(got.time_to_handoff().median_minutes(), 13);
  EXPECT_EQ(got.placement_unavailable_by_month_size(), 0);
  // A window moved by a second answers the same: windows are whole days, so two of them cannot
  // be differenced down to the referrals of one second.
  v1::GetReferralStatsRequest shifted;
  *shifted.mutable_from_time() = ToProtoTime(clock_.Now() - absl::Minutes(13));
  *shifted.mutable_to_time() = ToProtoTime(clock_.Now() + absl::Hours(24));
  v1::GetReferralStatsRequest later = shifted;
  *later.mutable_from_time() = ToProtoTime(clock_.Now() - absl::Minutes(13) + absl::Seconds(1));
  *later.mutable_to_time() = ToProtoTime(clock_.Now() + absl::Hours(24) + absl::Seconds(1));
  v1::GetReferralStatsResponse a, b;
  auto auditor = Stub_("state-auditor", "auditor");
  ASSERT_TRUE(auditor->GetReferralStats(Ctx().get(), shifted, &a).ok());
  ASSERT_TRUE(auditor->GetReferralStats(Ctx().get(), later, &b).ok());
  EXPECT_EQ(a.SerializeAsString(), b.SerializeAsString());
  EXPECT_EQ(a.time_to_acceptance().referrals(), 12);  // the referrals 13 minutes old included
}

// Issue 14: coded reasons and the waitlist answer, through the real gRPC API.
class ReasonsTest : public ReferralTest {
 protected:
  grpc::Status Decline(const std::string& org, const std::string& id, v1::ReasonCode code,
                       const std::string& text = "") {
    v1::DeclineReferralRequest req;
    req.set_id(id);
    req.set_reason_code(code);
    req.set_reason(text);
    v1::DeclineReferralResponse resp;
    return Stub_(org, "provider")->DeclineReferral(Ctx().get(), req, &resp);
  }
  grpc::Status Waitlist(const std::string& org, const std::string& id, absl::Time until,
                        v1::Referral* out = nullptr) {
    v1::WaitlistReferralRequest req;
    req.set_id(id);
    *req.mutable_until() = ToProtoTime(until);
    req.set_reason("a bed frees when Jane Q's roommate moves out");
    v1::WaitlistReferralResponse resp;
    grpc::Status st = Stub_(org, "provider")->WaitlistReferral(Ctx().get(), req, &resp);
    if (out != nullptr) *out = resp.referral();
    return st;
  }
  grpc::Status Outcome(const std::string& org, const std::string& id, v1::ReferralStatus outcome,
                       v1::ReasonCode code, const std::string& text = "") {
    v1::RecordOutcomeRequest req;
    req.set_id(id);
    req.set_outcome(outcome);
    req.set_reason_code(code);
    req.set_reason(text);
    v1::RecordOutcomeResponse resp;
    return Stub_(org, "provider")->RecordOutcome(Ctx().get(), req, &resp);
  }
  const v1::Offer* OfferOf(const v1::Referral& r, const std::string& org) {
    for (const auto& o : r.offers()) {
      if (o.provider_organization_id() == org) return &o;
    }
    return nullptr;
  }
  v1::GetReferralStatsResponse Stats() {
    v1::GetReferralStatsRequest req;
    *req.mutable_to_time() = ToProtoTime(clock_.Now() + absl::Seconds(1));
    v1::GetReferralStatsResponse got;
    const grpc::Status st =
        Stub_("state-auditor", "auditor")->GetReferralStats(Ctx().get(), req, &got);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return got;
  }
  static int64_t CodeCount(const google::protobuf::RepeatedPtrField<v1::ReasonCount>& cells,
                           v1::ReasonCode code, bool* suppressed) {
    for (const auto& c : cells) {
      if (c.code() != code) continue;
      *suppressed = c.suppressed();
      return c.count();
    }
    ADD_FAILURE() << "no cell for " << v1::ReasonCode_Name(code);
    return -1;
  }
};

TEST_F(ReasonsTest, CodedDeclinesAndOutcomesAreCountedAndTheirTextReachesNoReferrer) {
  std::vector<std::string> ids;
  for (int i = 0; i < 12; ++i) ids.push_back(Create(Request(false, absl::StrCat("code-", i))));
  while (Timers() > 0) {
  }
  // Bad codes are refused naming the field, and change nothing.
  EXPECT_EQ(Decline("prov-a", ids[0], v1::REASON_CODE_UNSPECIFIED).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  grpc::Status bad = Decline("prov-a", ids[0], v1::REASON_CODE_COMPLETED, "x");
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad.error_message().find("reason_code"), std::string::npos) << bad.error_message();
  EXPECT_EQ(OfferOf(AsChildWelfare(ids[0]), "prov-a")->state(), v1::OFFER_STATE_PENDING);
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_TRUE(Decline("prov-a", ids[i], v1::REASON_CODE_AT_CAPACITY, "secret-youth-detail").ok());
    if (i < 11) {
      ASSERT_TRUE(Decline("prov-b", ids[i], v1::REASON_CODE_NOT_ELIGIBLE).ok());
    }
  }
  ASSERT_TRUE(
      Decline("prov-b", ids[11], v1::REASON_CODE_SAFETY_CONCERN, "secret-youth-detail").ok());
  // The code and text are on the offer, for child welfare and the declining provider.
  const v1::Referral cw = AsChildWelfare(ids[0]);
  EXPECT_EQ(OfferOf(cw, "prov-a")->decline_code(), v1::REASON_CODE_AT_CAPACITY);
  EXPECT_EQ(OfferOf(cw, "prov-a")->decline_reason(), "secret-youth-detail");
  // prov-c accepts them all and carries each to an outcome with a code.
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_TRUE(Accept("prov-c", ids[i]).ok()) << i;
    v1::ConfirmHandoffRequest confirm;
    confirm.set_id(ids[i]);
    v1::ConfirmHandoffResponse confirmed;
    ASSERT_TRUE(Stub_("prov-c", "provider")->ConfirmHandoff(Ctx().get(), confirm, &confirmed).ok());
  }
  // A code that does not fit the outcome is refused (INVALID_ARGUMENT naming reason_code).
  bad = Outcome("prov-c", ids[0], v1::REFERRAL_STATUS_YOUTH_DECLINED, v1::REASON_CODE_COMPLETED);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad.error_message().find("reason_code"), std::string::npos);
  EXPECT_EQ(AsChildWelfare(ids[0]).status(), v1::REFERRAL_STATUS_HANDED_OFF);
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_TRUE(Outcome("prov-c", ids[i], v1::REFERRAL_STATUS_COMPLETED,
                        v1::REASON_CODE_REFERRED_ELSEWHERE, "secret-outcome-detail")
                    .ok());
  }
  const v1::Referral closed = AsChildWelfare(ids[1]);
  EXPECT_EQ(closed.outcome_code(), v1::REASON_CODE_REFERRED_ELSEWHERE);
  EXPECT_EQ(closed.outcome_reason(), "secret-outcome-detail");

  // The referrer sees none of it: not the code, not the text, not that the youth declined.
  for (const std::string& id : ids) {
    const std::string officer = AsOfficer(id).SerializeAsString();
    EXPECT_EQ(officer.find("secret"), std::string::npos);
    EXPECT_EQ(AsOfficer(id).stage(), v1::ReferrerView::STAGE_CONNECTED_TO_SERVICES);
  }
  v1::ListReferralsResponse listed;
  ASSERT_TRUE(officer_->ListReferrals(Ctx().get(), v1::ListReferralsRequest(), &listed).ok());
  EXPECT_EQ(listed.SerializeAsString().find("secret"), std::string::npos);
  // The free text is kept on the offer and the referral only: never in a transition's reason or
  // an audit row (which name the code).
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(*) AS n FROM transitions WHERE reason LIKE '%secret%'"),
            0);
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(*) AS n FROM audit_log WHERE detail LIKE '%secret%'"),
            0);
  EXPECT_GE(Count(referrals_.pg.get(),
                  "SELECT count(*) AS n FROM audit_log WHERE detail LIKE '%at capacity%'"),
            12);

  // The report: at capacity on 12 referrals; not eligible (11) is withheld as the complement of
  // the single safety concern, so that the one cannot be worked out.
  const v1::GetReferralStatsResponse got = Stats();
  bool hidden = true;
  EXPECT_EQ(CodeCount(got.declines_by_code(), v1::REASON_CODE_AT_CAPACITY, &hidden), 12);
  EXPECT_FALSE(hidden);
  EXPECT_EQ(CodeCount(got.declines_by_code(), v1::REASON_CODE_SAFETY_CONCERN, &hidden), 0);
  EXPECT_TRUE(hidden);
  EXPECT_EQ(CodeCount(got.declines_by_code(), v1::REASON_CODE_NOT_ELIGIBLE, &hidden), 0);
  EXPECT_TRUE(hidden);
  EXPECT_EQ(CodeCount(got.outcomes_by_code(), v1::REASON_CODE_REFERRED_ELSEWHERE, &hidden), 12);
  EXPECT_FALSE(hidden);
  EXPECT_EQ(CodeCount(got.outcomes_by_code(), v1::REASON_CODE_COMPLETED, &hidden), 0);
  EXPECT_TRUE(hidden);                        // empty, withheld alike
  EXPECT_EQ(got.declines_by_code_size(), 8);  // every code, zeros too
  EXPECT_EQ(got.SerializeAsString().find("secret"), std::string::npos);
  std::printf("declines by code: %s\n", got.ShortDebugString().c_str());

  // FHIR: the Task's statusReason is coded.
  v1::GetReferralFhirRequest fhir;
  fhir.set_id(ids[0]);
  v1::GetReferralFhirResponse bundle;
  ASSERT_TRUE(Stub_("cw-king", "child_welfare")->GetReferralFhir(Ctx().get(), fhir, &bundle).ok());
  EXPECT_NE(bundle.bundle_json().find("\"code\":\"at-capacity\""), std::string::npos);
  EXPECT_NE(bundle.bundle_json().find("\"code\":\"referred-elsewhere\""), std::string::npos);
}

TEST_F(ReasonsTest, AWaitlistedProviderAcceptsBeforeItsTimeWhileTheReferralIsOfferedElsewhere) {
  const std::string id = Create(Request(/*placement=*/true, "waitlist-wins"));
  Timers();
  v1::Referral r = AsChildWelfare(id);
  ASSERT_EQ(r.status(), v1::REFERRAL_STATUS_OFFERED);
  ASSERT_EQ(r.offers_size(), 1);
  const std::string first = r.offers(0).provider_organization_id();
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM holds WHERE state = 1"), 1);
  // Bad times are refused naming the field.
  for (absl::Time bad : {clock_.Now() - absl::Minutes(1), clock_.Now() + absl::Hours(25)}) {
    const grpc::Status st = Waitlist(first, id, bad);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("until"), std::string::npos) << st.error_message();
  }
  EXPECT_EQ(Waitlist("prov-z", id, clock_.Now() + absl::Hours(1)).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  const absl::Time until = clock_.Now() + absl::Hours(8);
  v1::Referral mine;
  ASSERT_TRUE(Waitlist(first, id, until, &mine).ok());
  ASSERT_EQ(mine.offers_size(), 1);
  EXPECT_EQ(mine.offers(0).state(), v1::OFFER_STATE_WAITLISTED);
  EXPECT_EQ(FromProtoTime(mine.offers(0).respond_by()), until);
  // Waitlisted once: not again.
  EXPECT_EQ(Waitlist(first, id, until + absl::Hours(1)).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  // Back to routing: the bed hold is let go, and the next candidate is offered.
  r = AsChildWelfare(id);
  EXPECT_EQ(r.status(), v1::REFERRAL_STATUS_REQUESTED);
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM holds WHERE state = 1"), 0);
  Timers();
  r = AsChildWelfare(id);
  ASSERT_EQ(r.status(), v1::REFERRAL_STATUS_OFFERED);
  ASSERT_EQ(r.offers_size(), 2);
  const std::string second = r.offers(1).provider_organization_id();
  EXPECT_NE(second, first);  // never offered twice to the waitlisting provider
  EXPECT_EQ(r.offers(0).state(), v1::OFFER_STATE_WAITLISTED);
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM holds WHERE state = 1"), 1);
  // The waitlisting provider still sees it (GetReferral, ListReferrals); the officer only that
  // a provider is being found.
  v1::GetReferralResponse seen;
  ASSERT_TRUE(Stub_(first, "provider")->GetReferral(Ctx().get(), Get(id), &seen).ok());
  v1::ListReferralsResponse listed;
  ASSERT_TRUE(Stub_(first, "provider")
                  ->ListReferrals(Ctx().get(), v1::ListReferralsRequest(), &listed)
                  .ok());
  ASSERT_EQ(listed.referrals_size(), 1);
  EXPECT_EQ(AsOfficer(id).stage(), v1::ReferrerView::STAGE_ROUTING);
  EXPECT_EQ(AsOfficer(id).SerializeAsString().find("roommate"), std::string::npos);
  // Before its time the waitlisted provider accepts, and wins: the other offer is withdrawn and
  // its bed hold released.
  clock_.Advance(absl::Minutes(10));
  v1::Referral accepted;
  ASSERT_TRUE(Accept(first, id, &accepted).ok());
  EXPECT_EQ(accepted.status(), v1::REFERRAL_STATUS_ACCEPTED);
  EXPECT_EQ(accepted.handoff().provider_organization_id(), first);
  r = AsChildWelfare(id);
  EXPECT_EQ(OfferOf(r, first)->state(), v1::OFFER_STATE_ACCEPTED);
  EXPECT_EQ(OfferOf(r, second)->state(), v1::OFFER_STATE_WITHDRAWN);
  EXPECT_TRUE(r.bed_hold_id().empty());
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM holds WHERE state = 1"), 0);
  EXPECT_EQ(Accept(second, id).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(AsOfficer(id).stage(), v1::ReferrerView::STAGE_READY_FOR_HANDOFF);
  const v1::GetReferralStatsResponse got = Stats();
  EXPECT_TRUE(got.waitlisted_suppressed());  // one referral: withheld
  EXPECT_EQ(got.waitlisted(), 0);
}

TEST_F(ReasonsTest, AWaitlistedOfferLapsesAtItsTime) {
  const std::string id = Create(Request(/*placement=*/false, "waitlist-lapses"));
  Timers();
  ASSERT_EQ(AsChildWelfare(id).offers_size(), 3);
  const absl::Time until = clock_.Now() + absl::Minutes(20);  // before the others' 30 minutes
  ASSERT_TRUE(Waitlist("prov-a", id, until).ok());
  v1::Referral r = AsChildWelfare(id);
  EXPECT_EQ(r.status(), v1::REFERRAL_STATUS_OFFERED);  // two offers still pending
  clock_.Advance(absl::Minutes(20) + absl::Seconds(1));
  // Past its time the offer is no longer the provider's to take, even before a timer ran.
  EXPECT_EQ(Accept("prov-a", id).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  Timers();
  r = AsChildWelfare(id);
  EXPECT_EQ(OfferOf(r, "prov-a")->state(), v1::OFFER_STATE_EXPIRED);
  EXPECT_EQ(r.status(), v1::REFERRAL_STATUS_OFFERED);
  Timers();  // once: a second pass finds nothing to lapse
  EXPECT_EQ(
      Count(referrals_.pg.get(), absl::StrCat("SELECT count(*) AS n FROM audit_log WHERE action = "
                                              "'waitlist_lapsed' AND referral_id = '",
                                              id, "'")),
      1);
  // The other providers still answer as before.
  ASSERT_TRUE(Accept("prov-b", id).ok());
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(*) AS n FROM offers WHERE waitlisted_until IS NOT NULL"),
            1);
}

// Issue 13: with many routine referrals waiting, the emergency one created last is routed first,
// then the urgent one, then the routine ones oldest first; the queue gauges count them by urgency.
TEST_F(ReferralTest, AnEmergencyIsRoutedBeforeTheRoutineReferralsWaitingBeforeIt) {
  std::vector<std::string> routine;
  for (int i = 0; i < 30; ++i) {
    routine.push_back(Create(Request(/*placement=*/false, absl::StrCat("routine-", i))));
    clock_.Advance(absl::Milliseconds(10));
  }
  v1::CreateReferralRequest urgent_req = Request(/*placement=*/false, "urgent-1");
  urgent_req.set_urgency(v1::URGENCY_URGENT);
  const std::string urgent = Create(urgent_req);
  clock_.Advance(absl::Milliseconds(10));
  v1::CreateReferralRequest emergency_req = Request(/*placement=*/false, "emergency-1");
  emergency_req.set_urgency(v1::URGENCY_EMERGENCY);
  const std::string emergency = Create(emergency_req);
  ASSERT_TRUE(referrals_.service->RefreshGauges().ok());
  EXPECT_EQ(Gauge("safeharbor_referrals_routing_queue", "routine"), 30);
  EXPECT_EQ(Gauge("safeharbor_referrals_routing_queue", "urgent"), 1);
  EXPECT_EQ(Gauge("safeharbor_referrals_routing_queue", "emergency"), 1);

  EXPECT_EQ(Timers(), 20);  // One pass routes a batch of 20: the emergency is among them.
  auto order =
      referrals_.pg->Query("SELECT referral_id FROM transitions WHERE to_status = 2 ORDER BY id");
  ASSERT_TRUE(order.ok()) << order.status();
  ASSERT_EQ(order->rows(), 20);
  EXPECT_EQ(order->String(0, "referral_id"), emergency);
  EXPECT_EQ(order->String(1, "referral_id"), urgent);
  for (int i = 2; i < 20; ++i) {
    EXPECT_EQ(order->String(i, "referral_id"), routine[static_cast<size_t>(i - 2)]) << i;
  }
  EXPECT_EQ(AsChildWelfare(emergency).status(), v1::REFERRAL_STATUS_OFFERED);
  ASSERT_TRUE(referrals_.service->RefreshGauges().ok());
  EXPECT_EQ(Gauge("safeharbor_referrals_routing_queue", "routine"), 12);
  EXPECT_EQ(Gauge("safeharbor_referrals_routing_queue", "emergency"), 0);
  EXPECT_EQ(Gauge("safeharbor_referrals_routing_oldest_waiting_seconds", "emergency"), 0);
  EXPECT_EQ(Gauge("safeharbor_referrals_routing_attempts_total", "routed"), 20);
}

// Issue 13: provider load is a counter kept with the offers; after offers are made, accepted,
// declined, lapsed, cancelled and closed it equals the open offers counted from the offers
// themselves, and ranking reads it.
TEST_F(ReferralTest, TheLoadCounterEqualsTheOpenOffersAfterAcceptDeclineAndLapse) {
  // Every provider's counter against the offers (pending or accepted, of an open referral).
  const auto mismatches = [&]() {
    auto r = referrals_.pg->Query(
        "SELECT coalesce(l.provider_org, c.provider_org) AS p, coalesce(l.open_offers, 0) AS k, "
        "coalesce(c.n, 0) AS n FROM provider_load l FULL JOIN (SELECT o.provider_org, "
        "count(*)::int AS n FROM offers o JOIN referrals f ON f.id = o.referral_id "
        "WHERE o.state IN (1, 2) AND f.status IN (2, 3, 4, 5) GROUP BY o.provider_org) c "
        "ON c.provider_org = l.provider_org ORDER BY 1");
    EXPECT_TRUE(r.ok()) << r.status();
    std::string out;
    int64_t total = 0;
    for (int i = 0; r.ok() && i < r->rows(); ++i) {
      total += r->Int32(i, "n");
      if (r->Int32(i, "k") != r->Int32(i, "n")) {
        absl::StrAppend(&out, r->String(i, "p"), ": counter ", r->Int32(i, "k"), ", open ",
                        r->Int32(i, "n"), "; ");
      }
    }
    std::printf("open offers %lld, counter mismatches: [%s]\n", static_cast<long long>(total),
                out.c_str());
    return out;
  };
  const auto load = [&](const std::string& org) {
    auto r = referrals_.pg->Query(
        "SELECT coalesce((SELECT open_offers FROM provider_load WHERE provider_org = $1), 0) AS n",
        {org});
    return r.ok() ? r->Int32(0, "n") : -1;
  };
  const std::string accepted = Create(Request(/*placement=*/false, "load-accept"));
  const std::string declined = Create(Request(/*placement=*/false, "load-decline"));
  const std::string cancelled = Create(Request(/*placement=*/false, "load-cancel"));
  EXPECT_EQ(Timers(), 3);
  EXPECT_EQ(mismatches(), "");
  EXPECT_EQ(load("prov-a"), 3);  // Three services referrals, each offered to all three.
  // Ranking reads the counter: the third referral saw two open offers at each provider.
  const v1::Referral third = AsChildWelfare(cancelled);
  ASSERT_GE(third.candidates_size(), 1);
  EXPECT_NE(third.candidates(0).explanation().find("2 active referrals"), std::string::npos)
      << third.candidates(0).explanation();

  ASSERT_TRUE(Accept("prov-b", accepted).ok());  // The two others withdrawn.
  EXPECT_EQ(mismatches(), "");
  EXPECT_EQ(load("prov-a"), 2);
  EXPECT_EQ(load("prov-b"), 3);
  v1::DeclineReferralRequest decline;
  decline.set_id(declined);
  decline.set_reason("at capacity");
  v1::DeclineReferralResponse ok;
  ASSERT_TRUE(Stub_("prov-c", "provider")->DeclineReferral(Ctx().get(), decline, &ok).ok());
  EXPECT_EQ(mismatches(), "");
  EXPECT_EQ(load("prov-c"), 1);
  v1::CancelReferralRequest cancel;
  cancel.set_id(cancelled);
  cancel.set_reason("went home");
  v1::CancelReferralResponse cancel_ok;
  ASSERT_TRUE(officer_->CancelReferral(Ctx().get(), cancel, &cancel_ok).ok());
  EXPECT_EQ(mismatches(), "");
  EXPECT_EQ(load("prov-c"), 0);

  // A placement offered, its deadline missed (lapsed, rerouted to the next facility).
  const std::string placed = Create(Request(/*placement=*/true, "load-lapse"));
  EXPECT_EQ(Timers(), 1);
  EXPECT_EQ(mismatches(), "");
  clock_.Advance(absl::Minutes(31));
  Timers();
  EXPECT_EQ(AsChildWelfare(placed).offers_size(), 2);
  EXPECT_EQ(mismatches(), "");
  // The accepted referral handed off and closed: its provider's offer is no longer open.
  v1::ConfirmHandoffRequest handoff;
  handoff.set_id(accepted);
  v1::ConfirmHandoffResponse handed;
  ASSERT_TRUE(Stub_("prov-b", "provider")->ConfirmHandoff(Ctx().get(), handoff, &handed).ok());
  v1::RecordOutcomeRequest outcome;
  outcome.set_id(accepted);
  outcome.set_outcome(v1::REFERRAL_STATUS_COMPLETED);
  v1::RecordOutcomeResponse recorded;
  ASSERT_TRUE(Stub_("prov-b", "provider")->RecordOutcome(Ctx().get(), outcome, &recorded).ok());
  EXPECT_EQ(mismatches(), "");
  // The declined referral lapsed too (then escalated: no one left to ask); the rerouted
  // placement is prov-b's only open offer.
  EXPECT_EQ(load("prov-a"), 0);
  EXPECT_EQ(load("prov-b"), 1);
}

// Issue 13: two replicas on one database, each with four routing workers, drain one queue
// together: every referral is offered exactly once, none is claimed twice, and a referral
// created on a replica whose tick is an hour away is routed at once (the in-process wake).
TEST_F(ReferralTest, TwoReplicasWithWorkersOfferEveryReferralOnce) {
  constexpr int kReferrals = 60;
  for (int i = 0; i < kReferrals; ++i) {
    Create(Request(/*placement=*/false, absl::StrCat("two-", i)));
  }
  std::vector<std::unique_ptr<Hosted<ReferralServiceImpl>>> replicas;
  for (int i = 0; i < 2; ++i) {
    auto replica = std::make_unique<Hosted<ReferralServiceImpl>>();
    replica->Connect("ref", Migrations(), 4, 8, true, referrals_.db_url);
    ReferralOptions ropts;
    ropts.key_namespace = absl::StrCat("replica", i, absl::ToUnixNanos(absl::Now()));
    ropts.routing_workers = 4;
    ropts.tick = absl::Hours(1);  // Only a wake (or the start) makes a worker claim.
    replica->service = std::make_unique<ReferralServiceImpl>(
        replica->env.get(), replica->pg.get(), replica->redis.get(), *replica->registry,
        WashingtonCounties(), &clock_, &sealer_, network_, ropts);
    replicas.push_back(std::move(replica));
  }
  replicas[0]->Serve("referrals");
  for (auto& r : replicas) r->service->StartBackground();  // Both drain the same queue.
  const auto waiting = [&] {
    return Count(referrals_.pg.get(), "SELECT count(*) AS n FROM referrals WHERE status = 1");
  };
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (waiting() > 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(20));
  ASSERT_EQ(waiting(), 0);

  // One more, created on the first replica: its wake routes it (the tick is an hour away).
  auto officer = v1::ReferralService::NewStub(
      TestServers::Get().Channel(replicas[0]->port(), "le-seattle", "law_enforcement"));
  v1::CreateReferralResponse created;
  ASSERT_TRUE(
      officer->CreateReferral(Ctx().get(), Request(/*placement=*/false, "two-last"), &created)
          .ok());
  const absl::Time wait_for_last = absl::Now() + absl::Seconds(30);
  while (waiting() > 0 && absl::Now() < wait_for_last) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(waiting(), 0);
  for (auto& r : replicas) r->service->StopBackground();

  double routed[2] = {0, 0}, unchanged = 0;
  for (int i = 0; i < 2; ++i) {
    for (const auto& family : replicas[static_cast<size_t>(i)]->registry->Collect()) {
      if (family.name != "safeharbor_referrals_routing_attempts_total") continue;
      for (const auto& m : family.metric) {
        const bool is_routed = m.label[0].value == "routed";
        (is_routed ? routed[i] : unchanged) += m.counter.value;
      }
    }
  }
  std::printf("routed by replica one %.0f, by replica two %.0f; other outcomes %.0f\n", routed[0],
              routed[1], unchanged);
  EXPECT_EQ(routed[0] + routed[1], kReferrals + 1);
  EXPECT_EQ(unchanged, 0);  // No referral was claimed by two workers.
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(*) AS n FROM (SELECT referral_id FROM transitions "
                  "WHERE to_status = 2 GROUP BY referral_id HAVING count(*) <> 1) twice"),
            0);
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(DISTINCT referral_id) AS n FROM transitions WHERE to_status = 2"),
            kReferrals + 1);
  // Each provider was told of each referral once.
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(*) AS n FROM (SELECT provider_org, referral_id FROM "
                  "referral_events GROUP BY 1, 2 HAVING count(*) <> 1) twice"),
            0);
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM offers"), 3 * (kReferrals + 1));
  for (auto& r : replicas) r->Shutdown();
}

// Issue 14: the law's clocks as timers. A placement delivered to a crisis residential center
// starts all three; each fires once across two replicas of the service on one database (their
// periodic pass run side by side with an injected clock), queues one STATUTORY_TIMER_DUE event
// for the accepting provider and the county's child welfare, and shows on the referral for
// them (never for the officer) until it is marked filed.
class StatutoryTimerTest : public ReferralTest {
 protected:
  void AdvanceTo(absl::Time t) {
    ASSERT_GE(t, clock_.Now());
    clock_.Advance(t - clock_.Now());
  }
  static absl::Time Pacific(int month, int day, int hour) {
    return absl::FromCivil(absl::CivilSecond(2026, month, day, hour, 0, 0), *WashingtonTimeZone());
  }
  void Subscribe(const std::string& org, const std::string& role) {
    v1::CreateWebhookSubscriptionRequest req;
    req.set_organization_id(org);
    req.set_url(absl::StrCat("https://hooks.example.org/", org));
    req.add_events(v1::WEBHOOK_EVENT_TYPE_STATUTORY_TIMER_DUE);
    v1::CreateWebhookSubscriptionResponse resp;
    grpc::Status st = Stub_(org, role)->CreateWebhookSubscription(Ctx().get(), req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  static std::map<int, v1::StatutoryTimer> ByKind(const v1::Referral& r) {
    std::map<int, v1::StatutoryTimer> out;
    for (const auto& t : r.statutory_timers()) out[t.kind()] = t;
    return out;
  }
  grpc::Status File(const std::string& org, const std::string& role, const std::string& id,
                    v1::StatutoryTimerKind kind, v1::StatutoryTimer* out = nullptr) {
    v1::RecordStatutoryFilingRequest req;
    req.set_id(id);
    req.set_kind(kind);
    req.set_request_id(absl::StrCat("file-", id, "-", kind));
    v1::RecordStatutoryFilingResponse resp;
    grpc::Status st = Stub_(org, role)->RecordStatutoryFiling(Ctx().get(), req, &resp);
    if (out != nullptr) *out = resp.timer();
    return st;
  }
  // Two more replicas on the referral service's database.
  void StartReplicas() {
    for (int i = 0; i < 2; ++i) {
      auto replica = std::make_unique<Hosted<ReferralServiceImpl>>();
      replica->Connect("ref", Migrations(), 4, 8, true, referrals_.db_url);
      ReferralOptions ropts;
      ropts.key_namespace = absl::StrCat("statreplica", i, absl::ToUnixNanos(absl::Now()));
      replica->service = std::make_unique<ReferralServiceImpl>(
          replica->env.get(), replica->pg.get(), replica->redis.get(), *replica->registry,
          WashingtonCounties(), &clock_, &sealer_, network_, ropts);
      replicas_.push_back(std::move(replica));
    }
  }
  // Each replica's periodic pass, `passes` times, both at once.
  void RunBothReplicas(int passes) {
    std::vector<std::thread> threads;
    for (auto& r : replicas_) {
      threads.emplace_back([&r, passes] {
        for (int i = 0; i < passes; ++i) EXPECT_TRUE(r->service->RunTimers().ok());
      });
    }
    for (auto& t : threads) t.join();
  }
  // Fired, summed over both replicas, by kind label.
  double Fired(const std::string& kind) {
    double total = 0;
    for (auto& r : replicas_) {
      for (const auto& family : r->registry->Collect()) {
        if (family.name != "safeharbor_referrals_statutory_timers_fired_total") continue;
        for (const auto& m : family.metric) {
          if (m.label[0].value == kind) total += m.counter.value;
        }
      }
    }
    return total;
  }
  double Open(const std::string& kind, const std::string& state) {
    for (const auto& family : replicas_[0]->registry->Collect()) {
      if (family.name != "safeharbor_referrals_statutory_timers") continue;
      for (const auto& m : family.metric) {
        std::map<std::string, std::string> labels;
        for (const auto& l : m.label) labels[l.name] = l.value;
        if (labels["kind"] == kind && labels["state"] == state) return m.gauge.value;
      }
    }
    return -1;
  }
  void TearDown() override {
    for (auto& r : replicas_) r->Shutdown();
    ReferralTest::TearDown();
  }
  std::vector<std::unique_ptr<Hosted<ReferralServiceImpl>>> replicas_;
};

TEST_F(StatutoryTimerTest, EachTimerFiresOnceAcrossReplicasAndTheWindowSkipsAWeekendAndHolidays) {
  Subscribe("prov-b", "provider");
  Subscribe("cw-king", "child_welfare");
  v1::CreateReferralRequest req = Request(/*placement=*/true, "stat-1");
  req.mutable_safety()->set_exploiter_known_in_area(true);  // Snohomish's crisis residential
  const std::string id = Create(req);
  EXPECT_EQ(Timers(), 1);
  v1::Referral offered = AsChildWelfare(id);
  ASSERT_EQ(offered.offers_size(), 1);
  ASSERT_EQ(offered.offers(0).facility_id(), "fac-b");
  ASSERT_TRUE(Accept("prov-b", id).ok());
  EXPECT_EQ(AsChildWelfare(id).statutory_timers_size(), 0);  // Nothing before the hand-off.
  EXPECT_EQ(File("prov-b", "provider", id, v1::STATUTORY_TIMER_KIND_CRISIS_RESIDENTIAL_REPORT)
                .error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  // Delivered on Tuesday before Thanksgiving, 15:00 Pacific. 72 hours of the window: 9 that
  // Tuesday, 24 on Wednesday; Thanksgiving, Native American Heritage Day and the weekend do not
  // count; 24 on Monday; the last 15 on Tuesday December 1 — due 15:00, not Friday the 27th.
  const absl::Time delivered = Pacific(11, 24, 15);
  AdvanceTo(delivered);
  v1::ConfirmHandoffRequest confirm;
  confirm.set_id(id);
  v1::ConfirmHandoffResponse confirmed;
  grpc::Status st = Stub_("prov-b", "provider")->ConfirmHandoff(Ctx().get(), confirm, &confirmed);
  ASSERT_TRUE(st.ok()) << st.error_message();
  auto timers = ByKind(confirmed.referral());
  ASSERT_EQ(timers.size(), 3u);
  const absl::Time created = FromProtoTime(offered.create_time());
  const absl::Time report_due = delivered + absl::Hours(24);
  const absl::Time notice_due = created + absl::Hours(72);  // routine: 72 hours from custody
  const absl::Time window_due = Pacific(12, 1, 15);
  EXPECT_EQ(FromProtoTime(timers[v1::STATUTORY_TIMER_KIND_CRISIS_RESIDENTIAL_REPORT].due_time()),
            report_due);
  EXPECT_EQ(FromProtoTime(timers[v1::STATUTORY_TIMER_KIND_DCYF_NOTICE].due_time()), notice_due);
  EXPECT_EQ(FromProtoTime(timers[v1::STATUTORY_TIMER_KIND_EMERGENCY_PLACEMENT_WINDOW].due_time()),
            window_due);
  EXPECT_EQ(timers[v1::STATUTORY_TIMER_KIND_EMERGENCY_PLACEMENT_WINDOW].citation(),
            "RCW 43.185C.265");

  // Child welfare and the accepting provider see them; the officer's view has no such field.
  auto seen = ByKind(AsChildWelfare(id));
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_TRUE(seen[v1::STATUTORY_TIMER_KIND_DCYF_NOTICE].overdue());  // due Saturday the 21st
  EXPECT_FALSE(seen[v1::STATUTORY_TIMER_KIND_CRISIS_RESIDENTIAL_REPORT].overdue());
  v1::GetReferralResponse as_provider;
  ASSERT_TRUE(Stub_("prov-b", "provider")->GetReferral(Ctx().get(), Get(id), &as_provider).ok());
  EXPECT_EQ(as_provider.referral().statutory_timers_size(), 3);
  EXPECT_EQ(AsOfficer(id).stage(), v1::ReferrerView::STAGE_CONNECTED_TO_SERVICES);
  EXPECT_EQ(v1::ReferrerView::descriptor()->FindFieldByName("statutory_timers"), nullptr);

  // Two replicas, side by side: the overdue notice fires once, nothing else is due.
  StartReplicas();
  RunBothReplicas(5);
  EXPECT_EQ(Fired("dcyf_notice"), 1);
  EXPECT_EQ(Fired("crisis_residential_report"), 0);
  EXPECT_EQ(Fired("emergency_placement_window"), 0);
  const std::string deliveries =
      "SELECT count(*) AS n FROM webhook_deliveries WHERE event_type = 5";
  EXPECT_EQ(Count(referrals_.pg.get(), deliveries), 2);  // prov-b and cw-king
  auto row = referrals_.pg->Query(
      "SELECT count(DISTINCT event_id) AS n, min(deadline) AS deadline, "
      "string_agg(org_id, ',' ORDER BY org_id) AS orgs FROM webhook_deliveries "
      "WHERE event_type = 5");
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->Int64(0, "n"), 1);
  EXPECT_EQ(row->Time(0, "deadline"), notice_due);
  EXPECT_EQ(row->String(0, "orgs"), "cw-king,prov-b");

  // The center marks the officer's report received (a retry answers the same); nobody else may.
  v1::StatutoryTimer filed, again;
  ASSERT_TRUE(
      File("prov-b", "provider", id, v1::STATUTORY_TIMER_KIND_CRISIS_RESIDENTIAL_REPORT, &filed)
          .ok());
  EXPECT_TRUE(filed.has_satisfied_time());
  EXPECT_EQ(filed.satisfied_by_organization_id(), "prov-b");
  clock_.Advance(absl::Minutes(5));
  ASSERT_TRUE(
      File("prov-b", "provider", id, v1::STATUTORY_TIMER_KIND_CRISIS_RESIDENTIAL_REPORT, &again)
          .ok());
  EXPECT_EQ(FromProtoTime(again.satisfied_time()), FromProtoTime(filed.satisfied_time()));
  EXPECT_EQ(File("cw-king", "child_welfare", id, v1::STATUTORY_TIMER_KIND_CRISIS_RESIDENTIAL_REPORT)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(File("prov-b", "provider", id, v1::STATUTORY_TIMER_KIND_DCYF_NOTICE).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(
      File("cw-pierce", "child_welfare", id, v1::STATUTORY_TIMER_KIND_DCYF_NOTICE).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);  // Outside its region.

  // Past the report's due time and past Friday the 27th (72 hours counted straight): the filed
  // report never fires, the window is not due yet.
  AdvanceTo(window_due - absl::Minutes(1));
  RunBothReplicas(3);
  EXPECT_EQ(Fired("crisis_residential_report"), 0);
  EXPECT_EQ(Fired("emergency_placement_window"), 0);
  AdvanceTo(window_due);
  RunBothReplicas(3);
  EXPECT_EQ(Fired("emergency_placement_window"), 1);
  EXPECT_EQ(Fired("dcyf_notice"), 1);
  EXPECT_EQ(Count(referrals_.pg.get(), deliveries), 4);
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(DISTINCT event_id) AS n FROM webhook_deliveries "
                  "WHERE event_type = 5"),
            2);

  // The unfiled ones show overdue, on the referral and in the gauges.
  ASSERT_TRUE(replicas_[0]->service->RefreshGauges().ok());
  EXPECT_EQ(Open("dcyf_notice", "overdue"), 1);
  EXPECT_EQ(Open("emergency_placement_window", "overdue"), 1);
  EXPECT_EQ(Open("crisis_residential_report", "overdue"), 0);
  EXPECT_EQ(Open("crisis_residential_report", "pending"), 0);
  seen = ByKind(AsChildWelfare(id));
  EXPECT_TRUE(seen[v1::STATUTORY_TIMER_KIND_DCYF_NOTICE].overdue());
  EXPECT_TRUE(seen[v1::STATUTORY_TIMER_KIND_DCYF_NOTICE].has_fired_time());
  EXPECT_FALSE(seen[v1::STATUTORY_TIMER_KIND_CRISIS_RESIDENTIAL_REPORT].overdue());
  EXPECT_FALSE(seen[v1::STATUTORY_TIMER_KIND_CRISIS_RESIDENTIAL_REPORT].has_fired_time());

  // Child welfare marks the notice received: no longer overdue; audited.
  ASSERT_TRUE(File("cw-king", "child_welfare", id, v1::STATUTORY_TIMER_KIND_DCYF_NOTICE).ok());
  seen = ByKind(AsChildWelfare(id));
  EXPECT_FALSE(seen[v1::STATUTORY_TIMER_KIND_DCYF_NOTICE].overdue());
  EXPECT_EQ(seen[v1::STATUTORY_TIMER_KIND_DCYF_NOTICE].satisfied_by_organization_id(), "cw-king");
  ASSERT_TRUE(replicas_[0]->service->RefreshGauges().ok());
  EXPECT_EQ(Open("dcyf_notice", "overdue"), 0);
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(*) AS n FROM audit_log WHERE action = 'statutory_filing'"),
            3);
  // The FHIR view carries each as a Task with its clock as restriction.period.
  v1::GetReferralFhirRequest fhir_req;
  fhir_req.set_id(id);
  v1::GetReferralFhirResponse fhir;
  ASSERT_TRUE(
      Stub_("cw-king", "child_welfare")->GetReferralFhir(Ctx().get(), fhir_req, &fhir).ok());
  EXPECT_NE(fhir.bundle_json().find(absl::StrCat(id, "-timer-3")), std::string::npos);
  EXPECT_NE(fhir.bundle_json().find("\"end\":\"2026-12-01T23:00:00.000Z\""), std::string::npos)
      << fhir.bundle_json();
  std::printf(
      "statutory timers: fired report %.0f, notice %.0f, window %.0f across two replicas; "
      "%lld webhook deliveries\n",
      Fired("crisis_residential_report"), Fired("dcyf_notice"), Fired("emergency_placement_window"),
      static_cast<long long>(Count(referrals_.pg.get(), deliveries)));
}

// An emergency services referral (no placement, not a crisis residential center): only the
// police's DCYF notice, due 24 hours after custody. Bad requests name the field.
TEST_F(StatutoryTimerTest, AnEmergencyServicesHandoffStartsOnlyTheDayLongNotice) {
  v1::CreateReferralRequest req = Request(/*placement=*/false, "stat-2");
  req.set_urgency(v1::URGENCY_EMERGENCY);
  const std::string id = Create(req);
  EXPECT_EQ(Timers(), 1);
  ASSERT_TRUE(Accept("prov-a", id).ok());
  clock_.Advance(absl::Minutes(30));
  v1::ConfirmHandoffRequest confirm;
  confirm.set_id(id);
  v1::ConfirmHandoffResponse confirmed;
  ASSERT_TRUE(Stub_("prov-a", "provider")->ConfirmHandoff(Ctx().get(), confirm, &confirmed).ok());
  auto timers = ByKind(confirmed.referral());
  ASSERT_EQ(timers.size(), 1u);
  const v1::StatutoryTimer& notice = timers[v1::STATUTORY_TIMER_KIND_DCYF_NOTICE];
  EXPECT_EQ(FromProtoTime(notice.due_time()),
            FromProtoTime(AsChildWelfare(id).create_time()) + absl::Hours(24));
  EXPECT_FALSE(notice.overdue());
  EXPECT_EQ(File("cw-king", "child_welfare", id, v1::STATUTORY_TIMER_KIND_UNSPECIFIED).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(
      File("cw-king", "child_welfare", id, v1::STATUTORY_TIMER_KIND_EMERGENCY_PLACEMENT_WINDOW)
          .error_code(),
      grpc::StatusCode::FAILED_PRECONDITION);  // A services referral has no window.
  EXPECT_EQ(
      File("le-seattle", "law_enforcement", id, v1::STATUTORY_TIMER_KIND_DCYF_NOTICE).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);  // Not in the method's roles.
  // Filed in time, it never fires.
  ASSERT_TRUE(File("cw-king", "child_welfare", id, v1::STATUTORY_TIMER_KIND_DCYF_NOTICE).ok());
  clock_.Advance(absl::Hours(25));
  Timers();
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(*) AS n FROM statutory_timers WHERE fired IS NOT NULL"),
            0);
}

// Many timers due at once, two replicas' own periodic tasks racing for them (a 20 ms tick each,
// real threads): every timer fires once, every subscription hears of each once. Prints its counts.
TEST_F(StatutoryTimerTest, ManyDueTimersRacedByTwoReplicasEachFireOnce) {
  constexpr int kReferrals = 12;
  Subscribe("cw-king", "child_welfare");
  std::vector<std::string> ids;
  for (int i = 0; i < kReferrals; ++i) {
    ids.push_back(Create(Request(/*placement=*/false, absl::StrCat("race-", i))));
  }
  while (Timers() > 0) {
  }
  for (const std::string& id : ids) {
    ASSERT_TRUE(Accept("prov-a", id).ok());
    v1::ConfirmHandoffRequest confirm;
    confirm.set_id(id);
    v1::ConfirmHandoffResponse confirmed;
    ASSERT_TRUE(Stub_("prov-a", "provider")->ConfirmHandoff(Ctx().get(), confirm, &confirmed).ok());
  }
  ASSERT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM statutory_timers"), kReferrals);
  for (int i = 0; i < 2; ++i) {
    auto replica = std::make_unique<Hosted<ReferralServiceImpl>>();
    replica->Connect("ref", Migrations(), 4, 8, true, referrals_.db_url);
    ReferralOptions ropts;
    ropts.key_namespace = absl::StrCat("statrace", i, absl::ToUnixNanos(absl::Now()));
    ropts.tick = absl::Milliseconds(20);
    ropts.batch = 3;                       // Several passes each, interleaved.
    ropts.webhooks.poll = absl::Hours(1);  // Queued, not posted (nothing listens).
    replica->service = std::make_unique<ReferralServiceImpl>(
        replica->env.get(), replica->pg.get(), replica->redis.get(), *replica->registry,
        WashingtonCounties(), &clock_, &sealer_, network_, ropts);
    replicas_.push_back(std::move(replica));
  }
  for (auto& r : replicas_) r->service->StartBackground();
  clock_.Advance(absl::Hours(73));  // Every routine notice is due.
  const auto unfired = [&] {
    return Count(referrals_.pg.get(),
                 "SELECT count(*) AS n FROM statutory_timers WHERE fired IS NULL");
  };
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (unfired() > 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(20));
  absl::SleepFor(absl::Milliseconds(200));  // A few more ticks on both: nothing fires again.
  for (auto& r : replicas_) r->service->StopBackground();
  double by_replica[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    for (const auto& family : replicas_[static_cast<size_t>(i)]->registry->Collect()) {
      if (family.name != "safeharbor_referrals_statutory_timers_fired_total") continue;
      for (const auto& m : family.metric) by_replica[i] += m.counter.value;
    }
  }
  const int64_t deliveries = Count(
      referrals_.pg.get(), "SELECT count(*) AS n FROM webhook_deliveries WHERE event_type = 5");
  const int64_t distinct =
      Count(referrals_.pg.get(),
            "SELECT count(DISTINCT event_id) AS n FROM webhook_deliveries WHERE event_type = 5");
  std::printf(
      "%d timers due at once: fired %.0f by replica one, %.0f by replica two; %lld "
      "deliveries, %lld distinct events\n",
      kReferrals, by_replica[0], by_replica[1], static_cast<long long>(deliveries),
      static_cast<long long>(distinct));
  EXPECT_EQ(unfired(), 0);
  EXPECT_EQ(by_replica[0] + by_replica[1], kReferrals);
  EXPECT_EQ(deliveries, kReferrals);  // One subscription, one delivery per timer.
  EXPECT_EQ(distinct, kReferrals);
}

// Issue 14: identifying details only under a recorded consent, purged on revocation, expiry or
// a retention period after the referral closes; nothing left in any table, the audit says why.
class ConsentTest : public ReferralTest {
 protected:
  // Rows of every table of the referral service's database whose text holds `needle` (bytea
  // columns print as hex, so a hex needle finds bytes).
  int64_t RowsHolding(const std::string& needle) {
    auto tables = referrals_.pg->Query(
        "SELECT table_name AS t FROM information_schema.tables WHERE table_schema = "
        "current_schema() AND table_type = 'BASE TABLE'");
    EXPECT_TRUE(tables.ok()) << tables.status();
    int64_t rows = 0;
    for (int i = 0; tables.ok() && i < tables->rows(); ++i) {
      const std::string t = tables->String(i, "t");
      auto r = referrals_.pg->Query(
          absl::StrCat("SELECT count(*) AS n FROM \"", t, "\" x WHERE strpos(x::text, $1) > 0"),
          {needle});
      EXPECT_TRUE(r.ok()) << t << ": " << r.status();
      if (r.ok()) rows += r->Int64(0, "n");
    }
    return rows;
  }

  static std::string Hex(const std::string& bytes) {
    static const char* kDigits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
      out.push_back(kDigits[c >> 4]);
      out.push_back(kDigits[c & 15]);
    }
    return out;
  }

  // What a purge must leave nowhere: the details in plain text and as bytes, the sealed
  // details, and their fingerprints in the request_id record.
  std::vector<std::string> Traces(const std::string& id, const std::string& request_id) {
    std::vector<std::string> out = {"Jane Q", Hex("Jane Q"), "206-555-0177", Hex("206-555-0177")};
    auto sealed = referrals_.pg->Query(
        "SELECT encode(identity_sealed, 'hex') AS h FROM referrals WHERE id = $1", {id});
    EXPECT_TRUE(sealed.ok() && sealed->rows() == 1 && !sealed->IsNull(0, "h"));
    if (sealed.ok() && sealed->rows() == 1) out.push_back(sealed->String(0, "h").substr(0, 64));
    auto digests = referrals_.pg->Query(
        "SELECT value AS d FROM idempotency_keys, jsonb_each_text(field_digests) "
        "WHERE request_id = $1 AND key LIKE 'youth.identifying%'",
        {request_id});
    EXPECT_TRUE(digests.ok() && digests->rows() == 2) << digests.status();
    for (int i = 0; digests.ok() && i < digests->rows(); ++i) {
      out.push_back(digests->String(i, "d"));
    }
    return out;
  }

  grpc::Status Revoke(const std::string& org, const std::string& role, const std::string& id) {
    v1::RevokeConsentRequest req;
    req.set_id(id);
    v1::RevokeConsentResponse resp;
    return Stub_(org, role)->RevokeConsent(Ctx().get(), req, &resp);
  }

  int64_t PurgeAudits(const std::string& id, const std::string& reason) {
    return Count(referrals_.pg.get(),
                 absl::StrCat("SELECT count(*) AS n FROM audit_log WHERE referral_id = '", id,
                              "' AND action = 'identity_purged' AND detail = '", reason, "'"));
  }
};

TEST_F(ConsentTest, IdentifyingDetailsAreRefusedWithoutConsentAndAYoungerYouthNeedsAGuardian) {
  struct Case {
    std::function<void(v1::YouthProfile&)> change;
    const char* names;
  };
  int refused = 0;
  for (const Case& c : std::vector<Case>{
           {[](auto& y) { y.clear_consent(); }, "youth.consent"},
           {[](auto& y) { y.set_age(12); }, "guardian"},
           {[](auto& y) { y.mutable_consent()->clear_scopes(); }, "shared"},
           {[](auto& y) { y.mutable_consent()->set_giver(v1::Consent::GIVER_UNSPECIFIED); },
            "youth.consent.giver"},
           {[](auto& y) { *y.mutable_consent()->mutable_give_time() = ToProtoTime(absl::Now()); },
            "set by the service"},
           {[this](auto& y) {
              *y.mutable_consent()->mutable_expire_time() =
                  ToProtoTime(clock_.Now() + absl::Hours(24 * 400));
            },
            "time-limited"}}) {
    v1::CreateReferralRequest req = Request(false, absl::StrCat("refused-", ++refused));
    c.change(*req.mutable_youth());
    v1::CreateReferralResponse resp;
    grpc::Status st = officer_->CreateReferral(Ctx().get(), req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.names;
    EXPECT_NE(st.error_message().find(c.names), std::string::npos)
        << c.names << ": " << st.error_message();
    EXPECT_EQ(st.error_message().find("Jane"), std::string::npos) << st.error_message();
  }
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM referrals"), 0);
  v1::CreateReferralRequest guardian = Request(false, "guardian");
  guardian.mutable_youth()->set_age(12);
  guardian.mutable_youth()->mutable_consent()->set_giver(v1::Consent::GIVER_GUARDIAN);
  Create(guardian);
  v1::CreateReferralRequest none = Request(false, "no-details");
  none.mutable_youth()->clear_identifying();
  none.mutable_youth()->clear_consent();
  Create(none);
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(*) AS n FROM referrals WHERE identity_sealed IS NOT NULL "
                  "AND identity_purge_at IS NOT NULL AND create_request_id = 'guardian'"),
            1);
}

TEST_F(ConsentTest, RevokingConsentPurgesTheDetailsFromEveryTableAndTheAuditSaysPurged) {
  const std::string id = Create(Request(false, "revoked"));
  Timers();  // Offered to three providers.
  EXPECT_EQ(Revoke("prov-b", "provider", id).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::Referral accepted;
  ASSERT_TRUE(Accept("prov-a", id, &accepted).ok());
  ASSERT_EQ(accepted.youth().identifying().name(), "Jane Q");
  EXPECT_TRUE(accepted.youth().consent().has_give_time());
  const std::vector<std::string> traces = Traces(id, "revoked");
  ASSERT_EQ(traces.size(), 7u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(RowsHolding(traces[i]), 0) << traces[i];  // sealed
  for (size_t i = 4; i < 7; ++i) EXPECT_GE(RowsHolding(traces[i]), 1) << traces[i];  // the probe

  ASSERT_TRUE(Revoke("prov-a", "provider", id).ok());
  v1::GetReferralResponse got;
  ASSERT_TRUE(Stub_("prov-a", "provider")->GetReferral(Ctx().get(), Get(id), &got).ok());
  EXPECT_FALSE(got.referral().youth().has_identifying());
  EXPECT_TRUE(got.referral().youth().consent().has_revoke_time());
  for (const std::string& t : traces) EXPECT_EQ(RowsHolding(t), 0) << t;
  EXPECT_EQ(PurgeAudits(id, "consent_revoked"), 1);
  EXPECT_TRUE(Revoke("le-seattle", "law_enforcement", id).ok());  // again: nothing changes
  EXPECT_EQ(PurgeAudits(id, "consent_revoked"), 1);
  EXPECT_EQ(Gauge("safeharbor_referrals_identity_purged_total", "consent_revoked"), 1);
  // A retry of the intake cannot bring the details back: its record no longer knows them, so
  // one carrying them is refused; one without them is answered from the record.
  v1::CreateReferralResponse replay;
  grpc::Status again = officer_->CreateReferral(Ctx().get(), Request(false, "revoked"), &replay);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_NE(again.error_message().find("youth.identifying"), std::string::npos);
  v1::CreateReferralRequest without = Request(false, "revoked");
  without.mutable_youth()->clear_identifying();
  ASSERT_TRUE(officer_->CreateReferral(Ctx().get(), without, &replay).ok());
  EXPECT_EQ(replay.referral().id(), id);
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM referrals"), 1);
}

TEST_F(ConsentTest, DetailsArePurgedWhenTheConsentExpiresAndARetentionPeriodAfterClosing) {
  v1::CreateReferralRequest brief = Request(false, "brief");
  *brief.mutable_youth()->mutable_consent()->mutable_expire_time() =
      ToProtoTime(clock_.Now() + absl::Hours(2));
  const std::string expiring = Create(brief);
  v1::CreateReferralRequest long_lived = Request(false, "closing");
  *long_lived.mutable_youth()->mutable_consent()->mutable_expire_time() =
      ToProtoTime(clock_.Now() + absl::Hours(24 * 200));
  const std::string closing = Create(long_lived);
  long_lived.set_request_id("open");
  *long_lived.mutable_youth()->mutable_consent()->mutable_expire_time() =
      ToProtoTime(clock_.Now() + absl::Hours(24 * 100));
  const std::string open = Create(long_lived);
  v1::CancelReferralRequest cancel;
  cancel.set_id(closing);
  cancel.set_reason("reunited with family");
  v1::CancelReferralResponse cancelled;
  ASSERT_TRUE(officer_->CancelReferral(Ctx().get(), cancel, &cancelled).ok());
  const auto expiring_traces = Traces(expiring, "brief");
  const auto closing_traces = Traces(closing, "closing");
  auto& retention = referrals_.service->retention();
  EXPECT_EQ(*retention.RunOnce(), 0);
  clock_.Advance(absl::Hours(2) + absl::Seconds(1));
  EXPECT_EQ(*retention.RunOnce(), 1);
  EXPECT_EQ(PurgeAudits(expiring, "consent_expired"), 1);
  for (const std::string& t : expiring_traces) EXPECT_EQ(RowsHolding(t), 0) << t;
  EXPECT_EQ(*retention.RunOnce(), 0);  // once
  clock_.Advance(absl::Hours(24 * 90));
  EXPECT_EQ(*retention.RunOnce(), 1);  // the open referral's consent (100 days) is not yet due
  EXPECT_EQ(PurgeAudits(closing, "retention_after_close"), 1);
  for (const std::string& t : closing_traces) EXPECT_EQ(RowsHolding(t), 0) << t;
  EXPECT_EQ(
      Count(referrals_.pg.get(), absl::StrCat("SELECT count(*) AS n FROM referrals WHERE id = '",
                                              open, "' AND identity_sealed IS NOT NULL")),
      1);
  clock_.Advance(absl::Hours(24 * 10));
  EXPECT_EQ(*retention.RunOnce(), 1);  // now its consent has expired too
  EXPECT_EQ(PurgeAudits(open, "consent_expired"), 1);
}

}  // namespace
}  // namespace safeharbor::referrals

namespace safeharbor::referrals {
namespace {

// Issue 14, the hold follows the referral: accepting extends the bed hold to the hand-off
// deadline (4 hours after acceptance), so a hand-off later than the hold routing took still finds
// its bed.
TEST_F(ReferralTest, AcceptingExtendsTheHoldToTheHandoffDeadlineAndALateHandoffFindsItsBed) {
  const absl::Time routed = clock_.Now();
  const std::string id = Create(Request(/*placement=*/true));
  ASSERT_EQ(Timers(), 1);
  const std::string hold = AsChildWelfare(id).bed_hold_id();
  ASSERT_FALSE(hold.empty());
  // Routing held the bed for the acceptance window (30 minutes) and the 3-hour margin.
  const absl::Time old_expiry = routed + absl::Minutes(30) + absl::Hours(3);
  EXPECT_EQ(HoldExpiry(hold), absl::ToUnixSeconds(old_expiry));

  clock_.Advance(absl::Minutes(25));  // The provider accepts late in its window.
  const absl::Time accepted = clock_.Now();
  ASSERT_TRUE(Accept("prov-a", id).ok());
  // Committed with the acceptance, called after it: in the outbox until the timers run.
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM hold_extensions"), 1);
  EXPECT_EQ(FromProtoTime(AsChildWelfare(id).handoff_deadline()), accepted + absl::Hours(4));
  Timers();
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM hold_extensions"), 0);
  EXPECT_EQ(HoldExpiry(hold), absl::ToUnixSeconds(accepted + absl::Hours(4)));
  const v1::Referral r = AsChildWelfare(id);
  EXPECT_EQ(FromProtoTime(r.bed_hold_expire_time()), accepted + absl::Hours(4));  // beds' answer
  EXPECT_FALSE(r.bed_hold_lost());
  EXPECT_EQ(Gauge("safeharbor_referrals_hold_extensions_total", "extended"), 1);
  EXPECT_FALSE(AsOfficer(id).handoff().has_handed_off_time());

  // The drive takes 3h50m: past the hold routing took, before the hand-off deadline.
  clock_.Advance(absl::Hours(3) + absl::Minutes(50));
  ASSERT_GT(clock_.Now(), old_expiry);
  ASSERT_TRUE(beds_.service->SweepExpiredHolds().ok());
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM holds WHERE state = 1"), 1);
  ASSERT_TRUE(Handoff("prov-a", id).ok());
  Timers();  // The placement is recorded on the bed the hold kept.
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM holds WHERE state = 4"), 1);
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM placements"), 1);
  EXPECT_EQ(Metric("safeharbor_referrals_placements_unrecorded_total"), 0);
  EXPECT_EQ(Metric("safeharbor_referrals_handoffs_overdue_total"), 0);
}

TEST_F(ReferralTest, AHandoffPastItsDeadlineIsCountedAndToldToTheCountyOnce) {
  // King County's office subscribes to hand-off deadlines (it hears of its region's referrals).
  v1::CreateWebhookSubscriptionRequest sub;
  sub.set_organization_id("cw-king");
  sub.set_url("https://hooks.cw-king.example.org/safeharbor");
  sub.add_events(v1::WEBHOOK_EVENT_TYPE_HANDOFF_DEADLINE);
  v1::CreateWebhookSubscriptionResponse created;
  grpc::Status st =
      Stub_("cw-king", "child_welfare")->CreateWebhookSubscription(Ctx().get(), sub, &created);
  ASSERT_TRUE(st.ok()) << st.error_message();
  const std::string id = Create(Request(/*placement=*/true));
  ASSERT_EQ(Timers(), 1);
  ASSERT_TRUE(Accept("prov-a", id).ok());
  Timers();
  clock_.Advance(absl::Hours(4) - absl::Seconds(1));
  Timers();
  ASSERT_TRUE(referrals_.service->RefreshGauges().ok());
  EXPECT_EQ(Metric("safeharbor_referrals_handoffs_overdue"), 0);
  clock_.Advance(absl::Seconds(2));  // Past the deadline, not handed off.
  Timers();
  Timers();  // Told once, whatever the number of passes (or replicas).
  ASSERT_TRUE(referrals_.service->RefreshGauges().ok());
  EXPECT_EQ(Metric("safeharbor_referrals_handoffs_overdue"), 1);
  EXPECT_EQ(Metric("safeharbor_referrals_handoffs_overdue_total"), 1);
  auto told = referrals_.pg->Query(
      "SELECT org_id, event_type, referral_id, extract(epoch FROM deadline)::bigint AS deadline "
      "FROM webhook_deliveries");
  ASSERT_TRUE(told.ok());
  ASSERT_EQ(told->rows(), 1);
  EXPECT_EQ(told->String(0, "org_id"), "cw-king");
  EXPECT_EQ(told->Int32(0, "event_type"), v1::WEBHOOK_EVENT_TYPE_HANDOFF_DEADLINE);
  EXPECT_EQ(told->String(0, "referral_id"), id);
  EXPECT_EQ(told->Int64(0, "deadline"),
            absl::ToUnixSeconds(FromProtoTime(AsChildWelfare(id).handoff_deadline())));
  // The bed is still held (the hold runs to the deadline): the hand-off still lands on it.
  ASSERT_TRUE(Handoff("prov-a", id).ok());
  ASSERT_TRUE(referrals_.service->RefreshGauges().ok());
  EXPECT_EQ(Metric("safeharbor_referrals_handoffs_overdue"), 0);
}

TEST_F(ReferralTest, AHoldExtensionSurvivesARestartBetweenAcceptAndTheCall) {
  const std::string id = Create(Request(/*placement=*/true));
  ASSERT_EQ(Timers(), 1);
  const std::string hold = AsChildWelfare(id).bed_hold_id();
  const absl::Time accepted = clock_.Now();
  ASSERT_TRUE(Accept("prov-a", id).ok());
  // The process stops before any timer ran: only the outbox row knows of the extension.
  referrals_.service->StopBackground();
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM hold_extensions"), 1);
  Hosted<ReferralServiceImpl> restarted;
  restarted.Connect("ref", Migrations(), 4, 8, true, referrals_.db_url);
  ReferralOptions ropts;
  ropts.key_namespace = absl::StrCat("ref-restarted", counter_, absl::ToUnixNanos(absl::Now()));
  restarted.service = std::make_unique<ReferralServiceImpl>(
      restarted.env.get(), restarted.pg.get(), restarted.redis.get(), *restarted.registry,
      WashingtonCounties(), &clock_, &sealer_, network_, ropts);
  // Beds is out when the restarted process first tries: retried, not lost.
  network_->beds_down = true;
  auto n = restarted.service->RunTimers();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(Count(restarted.pg.get(), "SELECT attempts AS n FROM hold_extensions"), 1);
  network_->beds_down = false;
  clock_.Advance(absl::Seconds(1));  // the first retry waits one tick
  ASSERT_TRUE(restarted.service->RunTimers().ok());
  EXPECT_EQ(Count(restarted.pg.get(), "SELECT count(*) AS n FROM hold_extensions"), 0);
  EXPECT_EQ(HoldExpiry(hold), absl::ToUnixSeconds(accepted + absl::Hours(4)));
  EXPECT_EQ(FromProtoTime(AsChildWelfare(id).bed_hold_expire_time()), accepted + absl::Hours(4));
  double retries = 0, extended = 0;
  for (const auto& family : restarted.registry->Collect()) {
    if (family.name != "safeharbor_referrals_hold_extensions_total") continue;
    for (const auto& m : family.metric) {
      if (m.label[0].value == "retry") retries = m.counter.value;
      if (m.label[0].value == "extended") extended = m.counter.value;
    }
  }
  std::cout << "hold extension after restart: retries=" << retries << " extended=" << extended
            << "\n";
  EXPECT_EQ(retries, 1);
  EXPECT_EQ(extended, 1);
  restarted.service->StopBackground();
}

TEST_F(ReferralTest, AHoldGoneBeforeItsExtensionMarksTheReferralAndAlerts) {
  const std::string id = Create(Request(/*placement=*/true));
  ASSERT_EQ(Timers(), 1);
  clock_.Advance(absl::Minutes(25));
  ASSERT_TRUE(Accept("prov-a", id).ok());
  // Beds was unreachable until after the hold routing took had lapsed.
  network_->beds_down = true;
  Timers();
  clock_.Advance(absl::Hours(3) + absl::Minutes(10));
  ASSERT_TRUE(beds_.service->SweepExpiredHolds().ok());
  network_->beds_down = false;
  Timers();
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM hold_extensions"), 0);
  const v1::Referral r = AsChildWelfare(id);
  EXPECT_TRUE(r.bed_hold_lost());
  EXPECT_FALSE(r.has_bed_hold_expire_time());
  EXPECT_EQ(r.status(), v1::REFERRAL_STATUS_ACCEPTED);  // The youth is still expected there.
  EXPECT_EQ(Gauge("safeharbor_referrals_hold_extensions_total", "lost"), 1);
  EXPECT_EQ(Gauge("safeharbor_referrals_hold_extensions_total", "extended"), 0);
  // The officer's view does not grow.
  EXPECT_EQ(AsOfficer(id).stage(), v1::ReferrerView::STAGE_READY_FOR_HANDOFF);
}

TEST_F(ReferralTest, AnExtensionOfAReferralThatMovedOnIsDroppedNotAlerted) {
  const std::string id = Create(Request(/*placement=*/true));
  ASSERT_EQ(Timers(), 1);
  ASSERT_TRUE(Accept("prov-a", id).ok());
  // Handed off before the extension was made: the hold became the placement.
  network_->beds_down = true;
  Timers();
  ASSERT_TRUE(Handoff("prov-a", id).ok());
  network_->beds_down = false;
  clock_.Advance(absl::Minutes(1));
  Timers();
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM hold_extensions"), 0);
  EXPECT_EQ(Count(beds_.pg.get(), "SELECT count(*) AS n FROM placements"), 1);
  EXPECT_FALSE(AsChildWelfare(id).bed_hold_lost());
  EXPECT_EQ(Gauge("safeharbor_referrals_hold_extensions_total", "lost"), 0);
}

// Review #8: a HoldBed the beds service refused for good (here: a facility it does not know)
// leaves no "about to be held" record behind, so the next attempt does not replay it (a replay
// could take a bed freed since, for nobody).
TEST_F(ReferralTest, ARefusedHoldLeavesNothingToReplay) {
  for (const char* rid : {"r-a", "r-b"}) {  // the two real beds are held by earlier referrals
    Create(Request(/*placement=*/true, rid));
    ASSERT_EQ(Timers(), 1);
  }
  Option ghost;
  ghost.provider_organization_id = "prov-a";
  ghost.facility_id = "fac-ghost";
  ghost.bed_type = beds::v1::BED_TYPE_GENERAL;
  ghost.location_id = "main";
  ghost.name = "Facility ghost";
  ghost.category = dir::SERVICE_CATEGORY_HOPE_CENTER;
  ghost.csec_specialized = true;
  ghost.languages = {"en"};
  ghost.county_fips = kKing;
  network_->extra_beds = {ghost};
  const std::string id = Create(Request(/*placement=*/true, "r-c"));
  Timers();
  EXPECT_NE(AsChildWelfare(id).status(), v1::REFERRAL_STATUS_OFFERED);
  EXPECT_EQ(
      Count(referrals_.pg.get(), absl::StrCat("SELECT count(*) AS n FROM referrals WHERE id = '",
                                              id, "' AND pending_hold IS NOT NULL")),
      0);
}

}  // namespace
}  // namespace safeharbor::referrals
