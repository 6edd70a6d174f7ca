#include "services/referrals/consent.h"

#include <gtest/gtest.h>

namespace safeharbor::referrals {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'795'000'000);

Consent YouthConsent(int32_t age) {
  Consent c;
  c.giver = ConsentGiver::kYouth;
  c.youth_age_years = age;
  c.scopes = kShareWithAcceptingProvider;
  c.given_at = kNow - absl::Minutes(5);
  c.expires_at = kNow + absl::Hours(24 * 30);
  return c;
}

TEST(Consent, AYouthOfThirteenConsentsForThemselvesAYoungerOneNeedsAGuardian) {
  const ConsentPolicy policy;
  EXPECT_TRUE(ValidateConsent(YouthConsent(13), policy, kNow).ok());
  const absl::Status twelve = ValidateConsent(YouthConsent(12), policy, kNow);
  EXPECT_EQ(twelve.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(twelve.message().find("guardian"), std::string::npos) << twelve;
  Consent guardian = YouthConsent(12);
  guardian.giver = ConsentGiver::kGuardian;
  EXPECT_TRUE(ValidateConsent(guardian, policy, kNow).ok());
}

TEST(Consent, IsTimeLimitedAndScoped) {
  const ConsentPolicy policy;
  Consent c = YouthConsent(15);
  c.expires_at = c.given_at;
  EXPECT_EQ(ValidateConsent(c, policy, kNow).code(), absl::StatusCode::kInvalidArgument);
  c.expires_at = c.given_at + policy.max_duration + absl::Seconds(1);
  EXPECT_EQ(ValidateConsent(c, policy, kNow).code(), absl::StatusCode::kInvalidArgument);
  c = YouthConsent(15);
  c.scopes = 0;
  EXPECT_EQ(ValidateConsent(c, policy, kNow).code(), absl::StatusCode::kInvalidArgument);
  c.scopes = 1u << 7;
  EXPECT_EQ(ValidateConsent(c, policy, kNow).code(), absl::StatusCode::kInvalidArgument);
  c = YouthConsent(15);
  c.given_at = kNow + absl::Minutes(1);
  EXPECT_EQ(ValidateConsent(c, policy, kNow).code(), absl::StatusCode::kInvalidArgument);
}

TEST(Consent, PermitsOnlyItsScopeUntilExpiryOrRevocation) {
  Consent c = YouthConsent(16);
  EXPECT_TRUE(ConsentPermits(c, kShareWithAcceptingProvider, kNow));
  EXPECT_FALSE(ConsentPermits(c, kShareWithChildWelfare, kNow));
  EXPECT_FALSE(ConsentPermits(c, kShareWithAcceptingProvider, c.expires_at));
  c.revoked_at = kNow + absl::Hours(1);
  EXPECT_TRUE(ConsentPermits(c, kShareWithAcceptingProvider, kNow));
  EXPECT_FALSE(ConsentPermits(c, kShareWithAcceptingProvider, kNow + absl::Hours(1)));
}

TEST(Consent, PurgeIsDueAtTheFirstOfRevocationExpiryAndRetentionAfterClose) {
  ConsentPolicy policy;
  policy.retention_after_close = absl::Hours(24 * 90);
  Consent c = YouthConsent(16);
  c.expires_at = kNow + absl::Hours(24 * 200);
  EXPECT_EQ(PurgeDue(c, std::nullopt, policy), c.expires_at);  // open referral
  EXPECT_EQ(PurgeDue(c, kNow, policy), kNow + absl::Hours(24 * 90));
  c.revoked_at = kNow + absl::Hours(2);
  EXPECT_EQ(PurgeDue(c, kNow, policy), kNow + absl::Hours(2));
  EXPECT_EQ(PurgeDue(std::nullopt, kNow, policy), absl::InfinitePast());  // never without consent
}

}  // namespace
}  // namespace safeharbor::referrals
