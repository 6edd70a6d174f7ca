// Issue 14 (mend14): a provider that answered "waitlist until" on a placement and then accepts
// gets a bed held at its facility (its first hold was let go when the referral went back to
// routing), extended to the hand-off deadline; with no bed to hold the accept stands, the
// referral shows bed_hold_lost and the alert's counter moves. Its acceptance while the referral
// is being routed again ends the routing worker's claim: the worker is fenced at its next write.
#include "services/referrals/test/referral_fixture.h"

namespace safeharbor::referrals {
namespace {

class WaitlistHoldTest : public ReferralTest {
 protected:
  // A placement offered to its first provider, who answers "waitlist until" 8 hours ahead: the
  // referral is back in routing, the first hold released. Returns the first offer.
  v1::Offer OfferedThenWaitlisted(const std::string& id) {
    Timers();
    const v1::Referral r = AsChildWelfare(id);
    EXPECT_EQ(r.status(), v1::REFERRAL_STATUS_OFFERED);
    if (r.offers_size() != 1) {
      ADD_FAILURE() << "expected one offer";
      return v1::Offer();
    }
    v1::WaitlistReferralRequest req;
    req.set_id(id);
    *req.mutable_until() = ToProtoTime(clock_.Now() + absl::Hours(8));
    v1::WaitlistReferralResponse resp;
    const grpc::Status st = Stub_(r.offers(0).provider_organization_id(), "provider")
                                ->WaitlistReferral(Ctx().get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(AsChildWelfare(id).status(), v1::REFERRAL_STATUS_REQUESTED);
    EXPECT_EQ(ActiveHolds(), 0);
    return r.offers(0);
  }

  int64_t ActiveHolds(const std::string& facility = "") {
    return Count(beds_.pg.get(),
                 absl::StrCat("SELECT count(*) AS n FROM holds WHERE state = 1",
                              facility.empty() ? "" : " AND facility_id = '" + facility + "'"));
  }

  int64_t Queued() { return Count(referrals_.pg.get(), "SELECT count(*) AS n FROM hold_requests"); }

  int64_t RoutingClaim(const std::string& id) {
    return Count(referrals_.pg.get(),
                 absl::StrCat("SELECT routing_claim AS n FROM referrals WHERE id = '", id, "'"));
  }
};

TEST_F(WaitlistHoldTest, AcceptingFromTheWaitlistHoldsABedAtItsFacilityToTheHandoffDeadline) {
  const std::string id = Create(Request(/*placement=*/true, "waitlist-hold"));
  const v1::Offer first = OfferedThenWaitlisted(id);
  EXPECT_EQ(first.bed_type(), beds::v1::BED_TYPE_GENERAL);  // kept on the offer
  Timers();  // offered to the next provider, with a bed held at its facility
  ASSERT_EQ(AsChildWelfare(id).offers_size(), 2);
  EXPECT_EQ(ActiveHolds(), 1);
  EXPECT_EQ(ActiveHolds(first.facility_id()), 0);
  clock_.Advance(absl::Minutes(10));
  ASSERT_TRUE(Accept(first.provider_organization_id(), id).ok());
  EXPECT_EQ(ActiveHolds(), 0);  // the other offer's hold released; the fresh one is queued
  EXPECT_EQ(Queued(), 1);
  Timers();  // taken from the beds service after the commit, then extended
  const v1::Referral r = AsChildWelfare(id);
  EXPECT_EQ(r.status(), v1::REFERRAL_STATUS_ACCEPTED);
  ASSERT_FALSE(r.bed_hold_id().empty());
  EXPECT_FALSE(r.bed_hold_lost());
  EXPECT_EQ(Queued(), 0);
  EXPECT_EQ(ActiveHolds(), 1);
  EXPECT_EQ(ActiveHolds(first.facility_id()), 1);
  EXPECT_EQ(FromProtoTime(r.bed_hold_expire_time()), FromProtoTime(r.handoff_deadline()));
  EXPECT_EQ(HoldExpiry(r.bed_hold_id()), absl::ToUnixSeconds(FromProtoTime(r.handoff_deadline())));
  EXPECT_EQ(Gauge("safeharbor_referrals_hold_extensions_total", "extended"), 1);
  Timers();  // once: nothing more is held
  EXPECT_EQ(ActiveHolds(), 1);
  EXPECT_EQ(AsOfficer(id).stage(), v1::ReferrerView::STAGE_READY_FOR_HANDOFF);
  // The hold becomes the placement at the hand-off, as any accepted hold does.
  ASSERT_TRUE(Handoff(first.provider_organization_id(), id).ok());
  Timers();
  EXPECT_EQ(ActiveHolds(), 0);
  EXPECT_EQ(Count(referrals_.pg.get(),
                  "SELECT count(*) AS n FROM referrals WHERE "
                  "placement_pending"),
            0);
}

// The officer at 2 a.m. is told where to bring the youth as soon as the provider says yes: the
// provider knows its own beds better than the last census. With no bed the beds service will
// hold, the accept stands and the referral is marked so the county's office confirms the bed.
TEST_F(WaitlistHoldTest, WithNoBedToHoldTheAcceptStandsMarkedBedHoldLostAndAlerted) {
  const std::string id = Create(Request(/*placement=*/true, "waitlist-no-bed"));
  const v1::Offer first = OfferedThenWaitlisted(id);
  v1::Candidate bed;  // the bed it had in mind goes to another agency's youth meanwhile
  bed.set_facility_id(first.facility_id());
  bed.set_bed_type(beds::v1::BED_TYPE_GENERAL);
  ASSERT_TRUE(
      network_->HoldBed("elsewhere", bed, "another-referral", "le-tacoma", absl::Hours(2)).ok());
  Timers();
  ASSERT_TRUE(Accept(first.provider_organization_id(), id).ok());
  Timers();
  const v1::Referral r = AsChildWelfare(id);
  EXPECT_EQ(r.status(), v1::REFERRAL_STATUS_ACCEPTED);
  EXPECT_TRUE(r.bed_hold_id().empty());
  EXPECT_TRUE(r.bed_hold_lost());
  EXPECT_EQ(Queued(), 0);
  EXPECT_EQ(ActiveHolds(first.facility_id()), 1);  // the other agency's only
  EXPECT_EQ(Gauge("safeharbor_referrals_hold_extensions_total", "lost"), 1);  // pages
  EXPECT_EQ(AsOfficer(id).stage(), v1::ReferrerView::STAGE_READY_FOR_HANDOFF);
  Timers();
  EXPECT_EQ(Gauge("safeharbor_referrals_hold_extensions_total", "lost"), 1);  // once
}

TEST_F(WaitlistHoldTest, AcceptingWhileTheReferralIsRoutedAgainEndsTheWorkersClaim) {
  const std::string id = Create(Request(/*placement=*/true, "waitlist-claim"));
  const v1::Offer first = OfferedThenWaitlisted(id);
  int64_t claim = -1;
  grpc::Status accepted;
  network_->after_hold = [&] {  // the worker routing it again has just held the next bed
    claim = RoutingClaim(id);
    accepted = Accept(first.provider_organization_id(), id);
  };
  EXPECT_EQ(Timers(), 0);  // the worker's offer is fenced: nothing of it is kept
  ASSERT_TRUE(accepted.ok()) << accepted.error_message();
  ASSERT_GT(claim, 0);
  EXPECT_GT(RoutingClaim(id), claim);
  // Any later write of the worker under its claim is refused.
  const absl::Status late = referrals_.pg->Transact(
      [&](PgTx& tx) { return ReferralStore::SetPendingHold(tx, id, "late|fac-b|1|60", claim); });
  EXPECT_TRUE(IsRoutingClaimLost(late)) << late;
  const v1::Referral r = AsChildWelfare(id);
  EXPECT_EQ(r.status(), v1::REFERRAL_STATUS_ACCEPTED);
  EXPECT_EQ(r.offers_size(), 1);  // never offered to the next provider
  EXPECT_EQ(r.handoff().provider_organization_id(), first.provider_organization_id());
  // The worker's hold was released; the winner's own bed is held.
  EXPECT_EQ(ActiveHolds(), 1);
  EXPECT_EQ(ActiveHolds(first.facility_id()), 1);
}

// Review: a winner from the waitlist that hands the youth off before its fresh hold is taken
// keeps that hold as the placement: the bed the youth sleeps in is never shown free.
TEST_F(WaitlistHoldTest, AHandoffBeforeTheFreshHoldIsTakenKeepsItAsThePlacement) {
  const std::string id = Create(Request(/*placement=*/true, "waitlist-quick"));
  const v1::Offer first = OfferedThenWaitlisted(id);
  Timers();  // offered to the next provider meanwhile
  ASSERT_TRUE(Accept(first.provider_organization_id(), id).ok());
  ASSERT_TRUE(Handoff(first.provider_organization_id(), id).ok());  // before the hold is taken
  EXPECT_EQ(Queued(), 1);
  Timers();  // the hold taken: kept, and recorded as the placement
  Timers();
  const v1::Referral r = AsChildWelfare(id);
  EXPECT_EQ(r.status(), v1::REFERRAL_STATUS_HANDED_OFF);
  ASSERT_FALSE(r.bed_hold_id().empty());
  EXPECT_FALSE(r.bed_hold_lost());
  EXPECT_EQ(Queued(), 0);
  EXPECT_EQ(Count(beds_.pg.get(), absl::StrCat("SELECT occupied AS n FROM bed_inventory WHERE "
                                               "facility_id = '",
                                               first.facility_id(), "'")),
            1)
      << "the youth's bed is occupied, not free";
  EXPECT_EQ(ActiveHolds(first.facility_id()), 0);
  EXPECT_EQ(
      Count(referrals_.pg.get(), "SELECT count(*) AS n FROM referrals WHERE placement_pending"), 0);
}

}  // namespace
}  // namespace safeharbor::referrals
