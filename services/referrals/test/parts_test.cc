// Issue 14, one referral, several needs: a referral listing a bed tonight and service
// categories is stored as one row per need (the lead and its parts), each routed, offered,
// accepted and handed off on its own, in parallel; the officer's view is computed from the lead
// and its parts and reads exactly as a one-need referral's.
#include <google/protobuf/util/message_differencer.h>

#include <iostream>

#include "common/metrics.h"
#include "services/referrals/fhir.h"
#include "services/referrals/requests.h"
#include "services/referrals/test/referral_fixture.h"
#include "services/referrals/views.h"

namespace safeharbor::referrals {
namespace {

using google::protobuf::util::MessageDifferencer;

// Pure: a row of a services-only referral, accepted at `accepted` (never when 0) by `org`.
v1::Referral Row(const std::string& id, v1::ReferralStatus status, int64_t accepted,
                 const std::string& org) {
  v1::Referral r;
  r.set_id(id);
  r.set_status(status);
  r.mutable_needs()->add_service_categories(dir::SERVICE_CATEGORY_CSEC_ADVOCACY);
  *r.mutable_create_time() = ToProtoTime(absl::FromUnixSeconds(100));
  *r.mutable_referrer_view_time() = ToProtoTime(absl::FromUnixSeconds(100 + accepted));
  if (accepted > 0) {
    *r.mutable_accepted_time() = ToProtoTime(absl::FromUnixSeconds(100 + accepted));
    r.mutable_handoff()->set_provider_organization_id(org);
  }
  return r;
}

TEST(PartsViewTest, TheOfficerSeesTheFirstAcceptedRowUnderTheLeadsId) {
  v1::Referral lead = Row("lead", v1::REFERRAL_STATUS_OFFERED, 0, "");
  lead.add_part_ids("p1");
  lead.add_part_ids("p2");
  const std::vector<v1::Referral> parts = {Row("p2", v1::REFERRAL_STATUS_ACCEPTED, 5, "org-2"),
                                           Row("p1", v1::REFERRAL_STATUS_HANDED_OFF, 9, "org-1")};
  v1::ReferrerView v = ReferrerViewOf(lead, parts);
  EXPECT_EQ(v.id(), "lead");
  EXPECT_EQ(v.stage(), v1::ReferrerView::STAGE_READY_FOR_HANDOFF);
  EXPECT_EQ(v.handoff().provider_organization_id(), "org-2");
  EXPECT_EQ(FromProtoTime(v.update_time()), absl::FromUnixSeconds(105));
  // None accepted: the lead's own view; a tie: the lead before its parts, then part_ids order.
  EXPECT_EQ(ReferrerViewOf(lead, {Row("p1", v1::REFERRAL_STATUS_OFFERED, 0, "")}).stage(),
            v1::ReferrerView::STAGE_ROUTING);
  v1::Referral accepted = Row("lead", v1::REFERRAL_STATUS_ACCEPTED, 5, "org-lead");
  accepted.add_part_ids("p1");
  accepted.add_part_ids("p2");
  EXPECT_EQ(ReferrerViewOf(accepted, parts).handoff().provider_organization_id(), "org-lead");
  EXPECT_EQ(ReferrerViewOf(lead, {Row("p1", v1::REFERRAL_STATUS_ACCEPTED, 5, "org-1"),
                                  Row("p2", v1::REFERRAL_STATUS_ACCEPTED, 5, "org-2")})
                .handoff()
                .provider_organization_id(),
            "org-1");
  // With a placement, exactly the placement row's view, whatever its parts.
  v1::Referral bed = Row("bed", v1::REFERRAL_STATUS_OFFERED, 0, "");
  bed.mutable_needs()->Clear();
  bed.mutable_needs()->set_placement_tonight(true);
  bed.add_part_ids("p2");
  EXPECT_TRUE(MessageDifferencer::Equals(ReferrerViewOf(bed, parts), ReferrerViewOf(bed)));
}

TEST(PartsViewTest, NeedsSplitOnePerRowAndTheRequestStatusFollowsEveryRow) {
  v1::Needs needs;
  needs.set_placement_tonight(true);
  needs.add_service_categories(dir::SERVICE_CATEGORY_CSEC_ADVOCACY);
  needs.add_service_categories(dir::SERVICE_CATEGORY_MENTAL_HEALTH);
  const std::vector<v1::Needs> rows = SplitNeeds(needs);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_TRUE(rows[0].placement_tonight());
  EXPECT_EQ(rows[0].service_categories_size(), 0);
  EXPECT_FALSE(rows[1].placement_tonight());
  EXPECT_EQ(rows[1].service_categories(0), dir::SERVICE_CATEGORY_CSEC_ADVOCACY);
  EXPECT_EQ(rows[2].service_categories(0), dir::SERVICE_CATEGORY_MENTAL_HEALTH);
  using S = v1::ReferralStatus;
  EXPECT_STREQ(FhirRequestStatus(std::vector<S>{v1::REFERRAL_STATUS_ESCALATED}), "active");
  EXPECT_STREQ(FhirRequestStatus(std::vector<S>{v1::REFERRAL_STATUS_CANCELLED}), "revoked");
  EXPECT_STREQ(FhirRequestStatus(
                   std::vector<S>{v1::REFERRAL_STATUS_HANDED_OFF, v1::REFERRAL_STATUS_CANCELLED}),
               "active");
  EXPECT_STREQ(FhirRequestStatus(
                   std::vector<S>{v1::REFERRAL_STATUS_COMPLETED, v1::REFERRAL_STATUS_CANCELLED}),
               "completed");
  EXPECT_STREQ(FhirRequestStatus(
                   std::vector<S>{v1::REFERRAL_STATUS_CANCELLED, v1::REFERRAL_STATUS_CANCELLED}),
               "revoked");
}

class PartsTest : public ReferralTest {
 protected:
  // A bed tonight and a survivor advocate (two needs).
  v1::CreateReferralRequest BedAndAdvocate(const std::string& rid) {
    v1::CreateReferralRequest req = Request(/*placement=*/true, rid);
    req.mutable_needs()->add_service_categories(dir::SERVICE_CATEGORY_CSEC_ADVOCACY);
    return req;
  }

  // The part of `lead` (as child welfare reads it), which must be exactly one.
  std::string OnlyPart(const std::string& lead) {
    const v1::Referral r = AsChildWelfare(lead);
    EXPECT_EQ(r.part_ids_size(), 1);
    return r.part_ids_size() == 1 ? r.part_ids(0) : std::string();
  }

  // The providers with a pending offer of row `id`.
  std::vector<std::string> Offered(const std::string& id) {
    std::vector<std::string> out;
    const v1::Referral r = AsChildWelfare(id);
    for (const auto& o : r.offers()) {
      if (o.state() == v1::OFFER_STATE_PENDING) out.push_back(o.provider_organization_id());
    }
    return out;
  }

  grpc::Status Decline(const std::string& org, const std::string& id) {
    v1::DeclineReferralRequest req;
    req.set_id(id);
    req.set_reason_code(v1::REASON_CODE_AT_CAPACITY);
    v1::DeclineReferralResponse resp;
    return Stub_(org, "provider")->DeclineReferral(Ctx().get(), req, &resp);
  }

  // The officer's view of `lead` is exactly the view of its one placement row on its own (what
  // the officer of a one-need referral sees), and shows `stage`.
  void ExpectOfficerSeesOnlyThePlacement(const std::string& lead, v1::ReferrerView::Stage stage) {
    const v1::ReferrerView officer = AsOfficer(lead);
    const v1::ReferrerView alone = ReferrerViewOf(AsChildWelfare(lead));
    EXPECT_TRUE(MessageDifferencer::Equals(officer, alone))
        << officer.DebugString() << " vs " << alone.DebugString();
    EXPECT_EQ(officer.stage(), stage);
  }

  int64_t Rows(const std::string& where) {
    return Count(referrals_.pg.get(), "SELECT count(*) AS n FROM referrals WHERE " + where);
  }

  v1::GetReferralStatsResponse Stats() {
    v1::GetReferralStatsResponse stats;
    grpc::Status st = Stub_("state-auditor", "auditor")
                          ->GetReferralStats(Ctx().get(), v1::GetReferralStatsRequest(), &stats);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return stats;
  }
};

// A bed and an advocate are offered in parallel to different providers and both accepted; the
// officer's view moves ROUTING -> READY_FOR_HANDOFF (the placement's hand-off) -> CONNECTED
// exactly as a one-need referral's, its time moving only with it, and never shows the advocate.
TEST_F(PartsTest, ABedAndAnAdvocateAreOfferedInParallelAndBothAccepted) {
  const std::string lead = Create(BedAndAdvocate("bed-adv"));
  const std::string part = OnlyPart(lead);
  ASSERT_FALSE(part.empty());
  EXPECT_NE(part, lead);
  const v1::Referral lead_row = AsChildWelfare(lead);
  const v1::Referral part_row = AsChildWelfare(part);
  // Each row holds exactly its own need.
  EXPECT_TRUE(lead_row.needs().placement_tonight());
  EXPECT_EQ(lead_row.needs().service_categories_size(), 0);
  EXPECT_TRUE(lead_row.parent_id().empty());
  EXPECT_FALSE(part_row.needs().placement_tonight());
  ASSERT_EQ(part_row.needs().service_categories_size(), 1);
  EXPECT_EQ(part_row.needs().service_categories(0), dir::SERVICE_CATEGORY_CSEC_ADVOCACY);
  EXPECT_EQ(part_row.parent_id(), lead);
  EXPECT_EQ(Rows("true"), 2);
  EXPECT_EQ(Rows("parent_id = '" + lead + "'"), 1);
  ExpectOfficerSeesOnlyThePlacement(lead, v1::ReferrerView::STAGE_ROUTING);
  const v1::ReferrerView created = AsOfficer(lead);

  // One routing pass offers both: the rows are claimed and routed in parallel.
  Timers();
  EXPECT_EQ(AsChildWelfare(lead).status(), v1::REFERRAL_STATUS_OFFERED);
  EXPECT_EQ(AsChildWelfare(part).status(), v1::REFERRAL_STATUS_OFFERED);
  EXPECT_FALSE(AsChildWelfare(lead).bed_hold_id().empty());
  EXPECT_TRUE(AsChildWelfare(part).bed_hold_id().empty());
  const std::vector<std::string> bed = Offered(lead);
  ASSERT_EQ(bed.size(), 1u);
  const std::string bed_provider = bed[0];
  std::string advocate;
  for (const std::string& p : Offered(part)) {
    if (p != bed_provider && advocate.empty()) advocate = p;
  }
  ASSERT_FALSE(advocate.empty()) << "the advocacy is offered to another provider too";
  std::cout << "bed offered to " << bed_provider << "; advocacy offered to " << Offered(part).size()
            << " providers, accepted by " << advocate << "\n";
  ExpectOfficerSeesOnlyThePlacement(lead, v1::ReferrerView::STAGE_ROUTING);
  EXPECT_TRUE(MessageDifferencer::Equals(AsOfficer(lead), created)) << "nothing moved for it";

  // The advocate accepts first: nothing changes for the officer.
  clock_.Advance(absl::Minutes(3));
  ASSERT_TRUE(Accept(advocate, part).ok());
  EXPECT_EQ(AsChildWelfare(part).status(), v1::REFERRAL_STATUS_ACCEPTED);
  ExpectOfficerSeesOnlyThePlacement(lead, v1::ReferrerView::STAGE_ROUTING);
  EXPECT_TRUE(MessageDifferencer::Equals(AsOfficer(lead), created));

  // The bed is accepted: the officer brings the youth to the placement.
  clock_.Advance(absl::Minutes(2));
  ASSERT_TRUE(Accept(bed_provider, lead).ok());
  ExpectOfficerSeesOnlyThePlacement(lead, v1::ReferrerView::STAGE_READY_FOR_HANDOFF);
  const v1::ReferrerView ready = AsOfficer(lead);
  EXPECT_EQ(ready.handoff().provider_organization_id(), bed_provider);
  EXPECT_GT(FromProtoTime(ready.update_time()), FromProtoTime(created.update_time()));

  // The advocate meets the youth first: still the placement's hand-off for the officer.
  clock_.Advance(absl::Minutes(20));
  ASSERT_TRUE(Handoff(advocate, part).ok());
  EXPECT_EQ(AsChildWelfare(part).status(), v1::REFERRAL_STATUS_HANDED_OFF);
  ExpectOfficerSeesOnlyThePlacement(lead, v1::ReferrerView::STAGE_READY_FOR_HANDOFF);
  EXPECT_TRUE(MessageDifferencer::Equals(AsOfficer(lead), ready));

  clock_.Advance(absl::Minutes(20));
  ASSERT_TRUE(Handoff(bed_provider, lead).ok());
  ExpectOfficerSeesOnlyThePlacement(lead, v1::ReferrerView::STAGE_CONNECTED_TO_SERVICES);
  EXPECT_FALSE(AsOfficer(lead).has_handoff());
  // One notice to DCYF for the youth, not one per need: started by the first hand-off (the
  // advocate's), on its row, from the intake.
  EXPECT_EQ(Count(referrals_.pg.get(),
                  absl::StrCat("SELECT count(*) AS n FROM statutory_timers WHERE kind = 2 AND "
                               "referral_id IN ('",
                               lead, "', '", part, "')")),
            1);
  EXPECT_EQ(Count(referrals_.pg.get(),
                  absl::StrCat("SELECT count(*) AS n FROM statutory_timers WHERE kind = 2 AND "
                               "referral_id = '",
                               part, "' AND started = to_timestamp(",
                               absl::ToUnixSeconds(FromProtoTime(lead_row.create_time())), ")")),
            1);

  // The officer's list holds the referral once, with the same view.
  v1::ListReferralsResponse list;
  ASSERT_TRUE(officer_->ListReferrals(Ctx().get(), v1::ListReferralsRequest(), &list).ok());
  ASSERT_EQ(list.referrals_size(), 1);
  EXPECT_TRUE(MessageDifferencer::Equals(list.referrals(0).referrer_view(), AsOfficer(lead)));
  EXPECT_EQ(Metric("safeharbor_referrals_created_by_needs_total"), 1);
  EXPECT_EQ(Gauge("safeharbor_referrals_created_by_needs_total", "2"), 1);
}

// Without a placement, the first accepted service gives the officer its hand-off (under the
// lead's id, even when it is a part's), then "connected"; a later acceptance moves nothing, and
// the officer cannot cancel once the service it was shown has the youth.
TEST_F(PartsTest, WithoutAPlacementTheFirstAcceptedServiceIsTheHandoff) {
  AddService("prov-b", "mh-prov-b", dir::SERVICE_CATEGORY_MENTAL_HEALTH);
  v1::CreateReferralRequest req = Request(/*placement=*/false, "two-services");
  req.mutable_needs()->add_service_categories(dir::SERVICE_CATEGORY_MENTAL_HEALTH);
  const std::string lead = Create(req);
  const std::string part = OnlyPart(lead);
  EXPECT_EQ(AsChildWelfare(lead).needs().service_categories(0),
            dir::SERVICE_CATEGORY_CSEC_ADVOCACY);
  EXPECT_EQ(AsChildWelfare(part).needs().service_categories(0),
            dir::SERVICE_CATEGORY_MENTAL_HEALTH);
  Timers();
  const v1::ReferrerView routing = AsOfficer(lead);
  EXPECT_EQ(routing.stage(), v1::ReferrerView::STAGE_ROUTING);
  ASSERT_EQ(Offered(part), std::vector<std::string>{"prov-b"});
  const std::vector<std::string> advocates = Offered(lead);
  ASSERT_FALSE(advocates.empty());

  // The mental-health part is accepted first: its hand-off is where the officer goes.
  clock_.Advance(absl::Minutes(4));
  ASSERT_TRUE(Accept("prov-b", part).ok());
  const v1::ReferrerView ready = AsOfficer(lead);
  EXPECT_EQ(ready.id(), lead);
  EXPECT_EQ(ready.stage(), v1::ReferrerView::STAGE_READY_FOR_HANDOFF);
  EXPECT_EQ(ready.handoff().provider_organization_id(), "prov-b");
  v1::ReferrerView part_alone = ReferrerViewOf(AsChildWelfare(part));
  part_alone.set_id(lead);
  EXPECT_TRUE(MessageDifferencer::Equals(ready, part_alone));
  EXPECT_GT(FromProtoTime(ready.update_time()), FromProtoTime(routing.update_time()));

  // The advocacy (the lead) accepted later changes nothing the officer sees.
  clock_.Advance(absl::Minutes(4));
  ASSERT_TRUE(Accept(advocates[0], lead).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(AsOfficer(lead), ready));

  clock_.Advance(absl::Minutes(10));
  ASSERT_TRUE(Handoff("prov-b", part).ok());
  const v1::ReferrerView connected = AsOfficer(lead);
  EXPECT_EQ(connected.stage(), v1::ReferrerView::STAGE_CONNECTED_TO_SERVICES);
  EXPECT_FALSE(connected.has_handoff());
  v1::CancelReferralRequest cancel;
  cancel.set_id(lead);
  cancel.set_reason("changed plans");
  v1::CancelReferralResponse cancelled;
  const grpc::Status refused = officer_->CancelReferral(Ctx().get(), cancel, &cancelled);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(refused.error_message().find("STAGE_CONNECTED_TO_SERVICES"), std::string::npos)
      << refused.error_message();
  EXPECT_EQ(AsChildWelfare(lead).status(), v1::REFERRAL_STATUS_ACCEPTED);
  ASSERT_TRUE(Handoff(advocates[0], lead).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(AsOfficer(lead), connected));
}

// The referrer cannot read, list or change a part: the same answer as for a referral it did not
// make. Child welfare reads the lead with part_ids, each part with parent_id, and lists both.
TEST_F(PartsTest, TheReferrerCannotReadAPartChildWelfareReadsAndListsEach) {
  const std::string lead = Create(BedAndAdvocate("parts-read"));
  const std::string part = OnlyPart(lead);
  v1::GetReferralResponse resp;
  const grpc::Status st = officer_->GetReferral(Ctx().get(), Get(part), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  const grpc::Status other =
      Stub_("le-tacoma", "law_enforcement")->GetReferral(Ctx().get(), Get(lead), &resp);
  EXPECT_EQ(other.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(st.error_message(), other.error_message());
  v1::CancelReferralRequest cancel;
  cancel.set_id(part);
  cancel.set_reason("only the advocate");
  v1::CancelReferralResponse cancelled;
  EXPECT_EQ(officer_->CancelReferral(Ctx().get(), cancel, &cancelled).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(AsChildWelfare(part).status(), v1::REFERRAL_STATUS_REQUESTED);

  v1::ListReferralsResponse mine;
  ASSERT_TRUE(officer_->ListReferrals(Ctx().get(), v1::ListReferralsRequest(), &mine).ok());
  ASSERT_EQ(mine.referrals_size(), 1);
  EXPECT_EQ(mine.referrals(0).referrer_view().id(), lead);

  v1::ListReferralsResponse region;
  ASSERT_TRUE(Stub_("cw-king", "child_welfare")
                  ->ListReferrals(Ctx().get(), v1::ListReferralsRequest(), &region)
                  .ok());
  std::map<std::string, std::string> parents;
  for (const auto& item : region.referrals()) {
    parents[item.referral().id()] = item.referral().parent_id();
  }
  ASSERT_EQ(parents.size(), 2u);
  EXPECT_EQ(parents[lead], "");
  EXPECT_EQ(parents[part], lead);
}

// The officer's cancel of the lead cancels every open row: offers withdrawn, the bed hold
// released, nothing left to route.
TEST_F(PartsTest, CancellingTheLeadCancelsEveryOpenRow) {
  const std::string lead = Create(BedAndAdvocate("parts-cancel"));
  const std::string part = OnlyPart(lead);
  Timers();
  const std::string hold = AsChildWelfare(lead).bed_hold_id();
  ASSERT_FALSE(hold.empty());
  ASSERT_FALSE(Offered(part).empty());
  v1::CancelReferralRequest cancel;
  cancel.set_id(lead);
  cancel.set_reason("found family");
  v1::CancelReferralResponse cancelled;
  ASSERT_TRUE(officer_->CancelReferral(Ctx().get(), cancel, &cancelled).ok());
  for (const std::string& id : {lead, part}) {
    const v1::Referral r = AsChildWelfare(id);
    EXPECT_EQ(r.status(), v1::REFERRAL_STATUS_CANCELLED) << id;
    for (const auto& o : r.offers()) EXPECT_EQ(o.state(), v1::OFFER_STATE_WITHDRAWN) << id;
    EXPECT_TRUE(r.bed_hold_id().empty());
  }
  EXPECT_EQ(AsOfficer(lead).stage(), v1::ReferrerView::STAGE_CANCELLED);
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM hold_releases"), 0);
  auto released = beds_.pg->Query("SELECT state FROM holds WHERE id = $1", {hold});
  ASSERT_TRUE(released.ok() && released->rows() == 1);
  EXPECT_NE(released->Int32(0, "state"), 1) << "the hold is no longer active";
  EXPECT_EQ(Rows("route_after IS NOT NULL"), 0);
  EXPECT_EQ(Timers(), 0);  // nothing left to route
  // A second cancel is refused as for a one-need referral.
  EXPECT_EQ(officer_->CancelReferral(Ctx().get(), cancel, &cancelled).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

// Revoking the youth's consent on the lead (the officer) or on a part (child welfare) purges
// the identifying details of every row of the referral; the audit rows say purged, never what.
TEST_F(PartsTest, RevokingConsentOnTheLeadOrAPartPurgesEveryRow) {
  const std::string first = Create(BedAndAdvocate("revoke-lead"));
  v1::CreateReferralRequest second_req = BedAndAdvocate("revoke-part");
  second_req.mutable_needs()->add_service_categories(dir::SERVICE_CATEGORY_MENTAL_HEALTH);
  const std::string second = Create(second_req);
  EXPECT_EQ(Rows("identity_sealed IS NOT NULL"), 5);
  v1::RevokeConsentRequest req;
  req.set_id(first);
  v1::RevokeConsentResponse resp;
  ASSERT_TRUE(officer_->RevokeConsent(Ctx().get(), req, &resp).ok());
  EXPECT_EQ(
      Rows("identity_sealed IS NOT NULL AND (id = '" + first + "' OR parent_id = '" + first + "')"),
      0);
  EXPECT_EQ(Rows("identity_sealed IS NOT NULL"), 3);
  req.set_id(AsChildWelfare(second).part_ids(1));
  ASSERT_TRUE(Stub_("cw-king", "child_welfare")->RevokeConsent(Ctx().get(), req, &resp).ok());
  EXPECT_EQ(Rows("identity_sealed IS NOT NULL"), 0);
  EXPECT_EQ(Rows("identity_purge_at IS NOT NULL"), 0);
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(*) AS n FROM audit_log WHERE action = 'identity_purged' "
                  "AND detail = 'consent_revoked'"),
            5);
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(*) AS n FROM audit_log WHERE detail LIKE '%Jane%' "
                  "OR detail LIKE '%aunt%'"),
            0);
  for (const std::string& id : {first, second}) {
    const v1::Referral r = AsChildWelfare(id);
    EXPECT_TRUE(r.youth().consent().has_revoke_time());
    for (const std::string& p : r.part_ids()) {
      EXPECT_TRUE(AsChildWelfare(p).youth().consent().has_revoke_time()) << p;
    }
  }
  EXPECT_EQ(Gauge("safeharbor_referrals_identity_purged_total", "consent_revoked"), 5);
  // Again: nothing more to purge, the same empty answer.
  req.set_id(first);
  ASSERT_TRUE(officer_->RevokeConsent(Ctx().get(), req, &resp).ok());
  EXPECT_EQ(Gauge("safeharbor_referrals_identity_purged_total", "consent_revoked"), 5);
}

// Reports count a referral once however many needs it has, and its needs per row.
TEST_F(PartsTest, StatsCountTheReferralOnceAndEachNeed) {
  for (int i = 0; i < 11; ++i) Create(BedAndAdvocate(absl::StrCat("stats-", i)));
  const v1::GetReferralStatsResponse stats = Stats();
  EXPECT_FALSE(stats.referrals_suppressed());
  EXPECT_EQ(stats.referrals(), 11);
  EXPECT_FALSE(stats.needs_suppressed());
  EXPECT_EQ(stats.needs(), 22);
  int64_t by_status = 0;
  for (const auto& s : stats.by_status()) by_status += s.count();
  EXPECT_EQ(by_status, 22) << "by_status counts needs";
  EXPECT_EQ(Gauge("safeharbor_referrals_created_by_needs_total", "2"), 11);
  EXPECT_EQ(Gauge("safeharbor_referrals_created_total", "routine"), 11);
}

// An intake of several needs is still one round trip; replayed with the same request_id it
// answers the same lead and stores no more rows.
TEST_F(PartsTest, ASeveralNeedIntakeIsOneRoundTripAndAReplayStoresNothingMore) {
  v1::CreateReferralRequest req = BedAndAdvocate("replayed");
  req.mutable_needs()->add_service_categories(dir::SERVICE_CATEGORY_MENTAL_HEALTH);
  const std::string lead = Create(req);
  const HistogramTotals made =
      SumHistogram(*referrals_.registry, "safeharbor_rpc_postgres_round_trips",
                   {{"grpc_method", "CreateReferral"}}, 1);
  EXPECT_EQ(made.count, 1u);
  EXPECT_EQ(made.at_most, 1u) << "three rows in one round trip";
  EXPECT_EQ(Rows("true"), 3);
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM transitions"), 3);
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM audit_log"), 3);
  EXPECT_EQ(Create(req), lead);
  EXPECT_EQ(Create(req), lead);
  EXPECT_EQ(Rows("true"), 3);
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM transitions"), 3);
  EXPECT_EQ(Gauge("safeharbor_referrals_created_by_needs_total", "3"), 1);
  std::cout << "a three-need intake: " << made.sum << " round trip(s), 3 rows; two replays "
            << "stored nothing\n";
}

// At most a placement and 5 distinct categories; a category twice is refused naming the field,
// and nothing is stored on a refusal.
TEST_F(PartsTest, TooManyOrRepeatedNeedsAreRefusedAndNothingIsStored) {
  v1::CreateReferralRequest twice = BedAndAdvocate("twice");
  twice.mutable_needs()->add_service_categories(dir::SERVICE_CATEGORY_CSEC_ADVOCACY);
  v1::CreateReferralRequest many = BedAndAdvocate("many");
  for (auto c :
       {dir::SERVICE_CATEGORY_MENTAL_HEALTH, dir::SERVICE_CATEGORY_LEGAL_ADVOCACY,
        dir::SERVICE_CATEGORY_MEDICAL_FORENSIC_EXAM, dir::SERVICE_CATEGORY_SUBSTANCE_USE_TREATMENT,
        dir::SERVICE_CATEGORY_FAMILY_SUPPORT}) {
    many.mutable_needs()->add_service_categories(c);
  }
  for (const auto* req : {&twice, &many}) {
    v1::CreateReferralResponse resp;
    const grpc::Status st = officer_->CreateReferral(Ctx().get(), *req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << req->request_id();
    EXPECT_NE(st.error_message().find("needs.service_categories"), std::string::npos)
        << st.error_message();
  }
  EXPECT_EQ(Rows("true"), 0);
  EXPECT_EQ(Count(referrals_.pg.get(), "SELECT count(*) AS n FROM audit_log"), 0);
  // Six needs in all are taken.
  many.mutable_needs()->mutable_service_categories()->RemoveLast();
  many.set_request_id("six");
  const std::string lead = Create(many);
  EXPECT_EQ(AsChildWelfare(lead).part_ids_size(), 5);
  EXPECT_EQ(Rows("true"), 6);
}

// The parts and the advocate response meet: an urgent referral for a bed and an advocate has the
// response target on its advocacy part (its own need), not on the placement, and the part goes
// only to 24/7 advocacy services as a one-need advocacy referral would.
TEST_F(PartsTest, AnUrgentReferralsAdvocacyPartCarriesTheResponseTarget) {
  v1::CreateReferralRequest req = BedAndAdvocate("bed-adv-urgent");
  req.set_urgency(v1::URGENCY_URGENT);
  const absl::Time created = clock_.Now();
  const std::string lead = Create(req);
  const std::string part = OnlyPart(lead);
  ASSERT_FALSE(part.empty());
  EXPECT_FALSE(AsChildWelfare(lead).has_advocate_response_due()) << "the placement has none";
  const v1::Referral advocacy = AsChildWelfare(part);
  ASSERT_TRUE(advocacy.has_advocate_response_due());
  EXPECT_EQ(FromProtoTime(advocacy.advocate_response_due()), created + absl::Minutes(90));
  EXPECT_EQ(Rows(absl::StrCat("id = '", part, "' AND advocate_due IS NOT NULL")), 1);
  EXPECT_EQ(Rows(absl::StrCat("id = '", lead, "' AND advocate_due IS NOT NULL")), 0);
}

// Review: a need cancelled after it was accepted is not where the youth goes: the officer's
// view goes back to the others (here: routing), and the officer can still cancel.
TEST_F(PartsTest, AnAcceptedNeedCancelledSinceNoLongerShowsToTheOfficer) {
  AddService("prov-b", "mh-prov-b", dir::SERVICE_CATEGORY_MENTAL_HEALTH);
  v1::CreateReferralRequest req = Request(/*placement=*/false, "cancelled-part");
  req.mutable_needs()->add_service_categories(dir::SERVICE_CATEGORY_MENTAL_HEALTH);
  const std::string lead = Create(req);
  const std::string part = OnlyPart(lead);
  Timers();
  ASSERT_TRUE(Accept("prov-b", part).ok());
  ASSERT_EQ(AsOfficer(lead).stage(), v1::ReferrerView::STAGE_READY_FOR_HANDOFF);
  v1::CancelReferralRequest cancel;
  cancel.set_id(part);
  cancel.set_reason("duplicate");
  v1::CancelReferralResponse done;
  grpc::Status st = Stub_("cw-king", "child_welfare")->CancelReferral(Ctx().get(), cancel, &done);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(AsOfficer(lead).stage(), v1::ReferrerView::STAGE_ROUTING);
  cancel.set_id(lead);
  st = officer_->CancelReferral(Ctx().get(), cancel, &done);
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(AsOfficer(lead).stage(), v1::ReferrerView::STAGE_CANCELLED);
}

// Review: the on-call office an escalated need is with carries the change to that need only;
// another need (accepted by a provider, outside the office's reach) is left as it is.
TEST_F(PartsTest, AnOfficeCancellingTheNeedItHoldsLeavesTheOthers) {
  const std::string lead = Create(BedAndAdvocate("office-cancel"));
  const std::string part = OnlyPart(lead);
  Timers();
  const std::vector<std::string> advocates = Offered(part);
  ASSERT_FALSE(advocates.empty());
  ASSERT_TRUE(Accept(advocates[0], part).ok());
  // The bed's provider declines and no bed is left: the placement goes to the on-call office.
  for (int i = 0; i < 4 && AsChildWelfare(lead).status() != v1::REFERRAL_STATUS_ESCALATED; ++i) {
    for (const std::string& org : Offered(lead)) ASSERT_TRUE(Decline(org, lead).ok());
    Timers();
  }
  const v1::Referral escalated = AsChildWelfare(lead);
  ASSERT_EQ(escalated.status(), v1::REFERRAL_STATUS_ESCALATED);
  const std::string office = escalated.handoff().provider_organization_id();
  v1::CancelReferralRequest cancel;
  cancel.set_id(lead);
  cancel.set_reason("the office found a bed itself");
  v1::CancelReferralResponse done;
  const grpc::Status st =
      Stub_(office, "child_welfare")->CancelReferral(Ctx().get(), cancel, &done);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(AsChildWelfare(lead).status(), v1::REFERRAL_STATUS_CANCELLED);
  EXPECT_EQ(AsChildWelfare(part).status(), v1::REFERRAL_STATUS_ACCEPTED) << "not the office's";
}

}  // namespace
}  // namespace safeharbor::referrals
