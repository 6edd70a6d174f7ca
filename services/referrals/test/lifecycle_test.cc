// The referral lifecycle and the referrer's non-punitive view.
#include "services/referrals/lifecycle.h"

#include <gtest/gtest.h>

#include "services/referrals/views.h"

namespace safeharbor::referrals {
namespace {

using v1::ReferralStatus;

TEST(Lifecycle, TheOrdinaryPathIsAllowedForTheRightActor) {
  EXPECT_TRUE(
      CheckTransition(v1::REFERRAL_STATUS_REQUESTED, v1::REFERRAL_STATUS_OFFERED, Actor::kSystem)
          .ok());
  EXPECT_TRUE(CheckTransition(v1::REFERRAL_STATUS_OFFERED, v1::REFERRAL_STATUS_ACCEPTED,
                              Actor::kOfferedProvider)
                  .ok());
  EXPECT_TRUE(CheckTransition(v1::REFERRAL_STATUS_ACCEPTED, v1::REFERRAL_STATUS_HANDED_OFF,
                              Actor::kAcceptedProvider)
                  .ok());
  EXPECT_TRUE(CheckTransition(v1::REFERRAL_STATUS_HANDED_OFF, v1::REFERRAL_STATUS_IN_PROGRESS,
                              Actor::kAcceptedProvider)
                  .ok());
  for (auto outcome : {v1::REFERRAL_STATUS_COMPLETED, v1::REFERRAL_STATUS_YOUTH_DECLINED,
                       v1::REFERRAL_STATUS_COULD_NOT_CONTACT}) {
    EXPECT_TRUE(
        CheckTransition(v1::REFERRAL_STATUS_IN_PROGRESS, outcome, Actor::kAcceptedProvider).ok());
  }
  EXPECT_TRUE(
      CheckTransition(v1::REFERRAL_STATUS_OFFERED, v1::REFERRAL_STATUS_ESCALATED, Actor::kSystem)
          .ok());
}

TEST(Lifecycle, IllegalOrForeignTransitionsAreRefused) {
  struct Case {
    ReferralStatus from, to;
    Actor actor;
  };
  const Case refused[] = {
      // Skipping the acceptance.
      {v1::REFERRAL_STATUS_OFFERED, v1::REFERRAL_STATUS_HANDED_OFF, Actor::kOfferedProvider},
      // Only a provider with an offer accepts; the referrer cannot accept for it.
      {v1::REFERRAL_STATUS_OFFERED, v1::REFERRAL_STATUS_ACCEPTED, Actor::kReferrer},
      // The referrer never records outcomes (and never sees them).
      {v1::REFERRAL_STATUS_IN_PROGRESS, v1::REFERRAL_STATUS_YOUTH_DECLINED, Actor::kReferrer},
      // After the hand-off the referral belongs to the youth and the provider: no cancel.
      {v1::REFERRAL_STATUS_HANDED_OFF, v1::REFERRAL_STATUS_CANCELLED, Actor::kReferrer},
      // Closed referrals stay closed.
      {v1::REFERRAL_STATUS_COMPLETED, v1::REFERRAL_STATUS_IN_PROGRESS, Actor::kAcceptedProvider},
      {v1::REFERRAL_STATUS_YOUTH_DECLINED, v1::REFERRAL_STATUS_OFFERED, Actor::kSystem},
      {v1::REFERRAL_STATUS_CANCELLED, v1::REFERRAL_STATUS_OFFERED, Actor::kSystem},
      // Only routing escalates.
      {v1::REFERRAL_STATUS_OFFERED, v1::REFERRAL_STATUS_ESCALATED, Actor::kReferrer},
  };
  for (const auto& c : refused) {
    absl::Status st = CheckTransition(c.from, c.to, c.actor);
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition)
        << v1::ReferralStatus_Name(c.from) << " -> " << v1::ReferralStatus_Name(c.to);
    EXPECT_NE(st.message().find(v1::ReferralStatus_Name(c.to)), std::string::npos);
  }
}

TEST(ReferrerView, AfterTheHandOffTheReferrerSeesOnlyConnected) {
  EXPECT_EQ(ReferrerStage(v1::REFERRAL_STATUS_REQUESTED), v1::ReferrerView::STAGE_ROUTING);
  EXPECT_EQ(ReferrerStage(v1::REFERRAL_STATUS_OFFERED), v1::ReferrerView::STAGE_ROUTING);
  EXPECT_EQ(ReferrerStage(v1::REFERRAL_STATUS_ACCEPTED), v1::ReferrerView::STAGE_READY_FOR_HANDOFF);
  // Engagement, outcome and declining all look the same to law enforcement.
  for (auto s : {v1::REFERRAL_STATUS_HANDED_OFF, v1::REFERRAL_STATUS_IN_PROGRESS,
                 v1::REFERRAL_STATUS_COMPLETED, v1::REFERRAL_STATUS_YOUTH_DECLINED,
                 v1::REFERRAL_STATUS_COULD_NOT_CONTACT}) {
    EXPECT_EQ(ReferrerStage(s), v1::ReferrerView::STAGE_CONNECTED_TO_SERVICES)
        << v1::ReferralStatus_Name(s);
  }
  EXPECT_EQ(ReferrerStage(v1::REFERRAL_STATUS_ESCALATED),
            v1::ReferrerView::STAGE_WITH_CHILD_WELFARE);
}

TEST(Deadlines, ShorterWhenUrgent) {
  DeadlinePolicy p;
  EXPECT_EQ(AcceptanceWindow(v1::URGENCY_ROUTINE, p), absl::Minutes(30));
  EXPECT_EQ(AcceptanceWindow(v1::URGENCY_UNSPECIFIED, p), absl::Minutes(30));
  EXPECT_EQ(AcceptanceWindow(v1::URGENCY_URGENT, p), absl::Minutes(15));
  EXPECT_EQ(AcceptanceWindow(v1::URGENCY_EMERGENCY, p), absl::Minutes(10));
}

TEST(Stats, CountsBelowElevenAreWithheldAndMarked) {
  StatsCounts c;
  c.by_status = {{v1::REFERRAL_STATUS_REQUESTED, 11}, {v1::REFERRAL_STATUS_CANCELLED, 10}};
  c.escalations = 1;
  c.reroutes = 40;  // from 3 referrals: suppressed by the referrals behind it
  c.rerouted_referrals = 3;
  c.placement_unavailable = 12;
  c.accepted = 10;
  c.median_minutes_to_acceptance = 7.5;
  const v1::GetReferralStatsResponse v = StatsView(c);
  EXPECT_EQ(v.by_status(0).count(), 11);
  EXPECT_FALSE(v.by_status(0).suppressed());
  EXPECT_EQ(v.by_status(1).count(), 0);
  EXPECT_TRUE(v.by_status(1).suppressed());
  EXPECT_TRUE(v.escalations_suppressed());
  EXPECT_EQ(v.escalations(), 0);
  EXPECT_TRUE(v.reroutes_suppressed());
  EXPECT_EQ(v.reroutes(), 0);
  EXPECT_FALSE(v.placement_unavailable_suppressed());
  EXPECT_EQ(v.placement_unavailable(), 12);
  EXPECT_TRUE(v.median_minutes_to_acceptance_suppressed());
  EXPECT_EQ(v.median_minutes_to_acceptance(), 0);
}

}  // namespace
}  // namespace safeharbor::referrals
