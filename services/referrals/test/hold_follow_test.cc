// Issue 14, the hold follows the referral: the pure decisions (hold_follow.h).
#include "services/referrals/hold_follow.h"

#include <gtest/gtest.h>

namespace safeharbor::referrals {
namespace {

TEST(HoldFollow, AnswersAreExtendedLostRetriedOrFailedAndRetriesAreBounded) {
  EXPECT_EQ(ClassifyExtension(absl::OkStatus(), 0, 12), ExtensionStep::kExtended);
  EXPECT_EQ(ClassifyExtension(absl::FailedPreconditionError("released"), 0, 12),
            ExtensionStep::kLost);
  EXPECT_EQ(ClassifyExtension(absl::NotFoundError("no such hold"), 3, 12), ExtensionStep::kLost);
  EXPECT_EQ(ClassifyExtension(absl::UnavailableError("down"), 0, 12), ExtensionStep::kRetry);
  EXPECT_EQ(ClassifyExtension(absl::DeadlineExceededError("slow"), 10, 12), ExtensionStep::kRetry);
  // The twelfth attempt is the last: an outage then is given up (and alerted).
  EXPECT_EQ(ClassifyExtension(absl::UnavailableError("down"), 11, 12), ExtensionStep::kFailed);
  EXPECT_EQ(ClassifyExtension(absl::InvalidArgumentError("too far"), 0, 12),
            ExtensionStep::kFailed);
  EXPECT_EQ(ClassifyExtension(absl::PermissionDeniedError("not the holder"), 0, 12),
            ExtensionStep::kFailed);
  EXPECT_STREQ(ExtensionStepLabel(ExtensionStep::kLost), "lost");
  EXPECT_STREQ(ExtensionStepLabel(ExtensionStep::kRetry), "retry");
}

TEST(HoldFollow, AnExtensionMattersOnlyWhileTheReferralAwaitsItsHandoffWithThatHold) {
  v1::Referral r;
  r.set_status(v1::REFERRAL_STATUS_ACCEPTED);
  r.set_bed_hold_id("hold-1");
  EXPECT_TRUE(AwaitsHandoffWithHold(r, "hold-1"));
  EXPECT_FALSE(AwaitsHandoffWithHold(r, "hold-2"));
  EXPECT_FALSE(AwaitsHandoffWithHold(r, ""));
  for (auto s : {v1::REFERRAL_STATUS_HANDED_OFF, v1::REFERRAL_STATUS_CANCELLED,
                 v1::REFERRAL_STATUS_REQUESTED, v1::REFERRAL_STATUS_OFFERED}) {
    r.set_status(s);
    EXPECT_FALSE(AwaitsHandoffWithHold(r, "hold-1")) << v1::ReferralStatus_Name(s);
  }
}

}  // namespace
}  // namespace safeharbor::referrals
