#include "services/referrals/consent.h"

#include <gtest/gtest.h>

#include "common/proto_time.h"

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
  c.expires_at = LatestExpiry(c.given_at, policy) + absl::Seconds(1);
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

TEST(Consent, AYearIsACalendarYearEvenAcrossFebruary29) {
  const ConsentPolicy policy;
  Consent c = YouthConsent(15);
  c.given_at = absl::FromCivil(absl::CivilSecond(2027, 3, 1, 9, 30, 0), absl::UTCTimeZone());
  c.expires_at = absl::FromCivil(absl::CivilSecond(2028, 3, 1, 9, 30, 0), absl::UTCTimeZone());
  EXPECT_EQ(c.expires_at - c.given_at, absl::Hours(24 * 366));
  EXPECT_TRUE(ValidateConsent(c, policy, c.given_at).ok());
  c.expires_at += absl::Seconds(1);
  EXPECT_EQ(ValidateConsent(c, policy, c.given_at).code(), absl::StatusCode::kInvalidArgument);
  c.given_at = absl::FromCivil(absl::CivilSecond(2028, 2, 29, 12, 0, 0), absl::UTCTimeZone());
  EXPECT_EQ(LatestExpiry(c.given_at, policy),
            absl::FromCivil(absl::CivilSecond(2029, 3, 1, 12, 0, 0), absl::UTCTimeZone()));
}

TEST(Consent, PermitsOnlyItsScopeUntilExpiryOrRevocation) {
  Consent c = YouthConsent(16);
  EXPECT_TRUE(ConsentPermits(c, kShareWithAcceptingProvider, kNow));
  EXPECT_FALSE(ConsentPermits(c, static_cast<ConsentScope>(1u << 1), kNow));
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

TEST(Consent, IdentifyingDetailsNeedARecordedConsentThatTheServiceStamps) {
  const ConsentPolicy policy;
  v1::YouthProfile y;
  y.set_age(15);
  EXPECT_TRUE(ValidateIntakeConsent(y, policy, kNow).ok());  // nothing identifying, no consent
  y.mutable_identifying()->set_contact("x");
  EXPECT_EQ(ValidateIntakeConsent(y, policy, kNow).code(), absl::StatusCode::kInvalidArgument);
  y.mutable_consent()->set_giver(v1::Consent::GIVER_YOUTH);
  y.mutable_consent()->add_scopes(v1::Consent::SCOPE_ACCEPTING_PROVIDER);
  EXPECT_TRUE(ValidateIntakeConsent(y, policy, kNow).ok());
  y.mutable_consent()->add_scopes(static_cast<v1::Consent::Scope>(9));  // unknown to us
  EXPECT_EQ(ValidateIntakeConsent(y, policy, kNow).code(), absl::StatusCode::kInvalidArgument);
  y.mutable_consent()->mutable_scopes()->RemoveLast();
  StampConsent(&y, policy, kNow);
  EXPECT_EQ(FromProtoTime(y.consent().give_time()), kNow);
  EXPECT_EQ(FromProtoTime(y.consent().expire_time()), kNow + policy.default_duration);
  EXPECT_TRUE(IdentityVisible(y, kNow));
  EXPECT_FALSE(IdentityVisible(y, kNow + policy.default_duration));
  *y.mutable_consent()->mutable_revoke_time() = ToProtoTime(kNow + absl::Hours(1));
  EXPECT_FALSE(IdentityVisible(y, kNow + absl::Hours(1)));
  y.clear_consent();
  EXPECT_FALSE(IdentityVisible(y, kNow));  // details kept without a consent are never shown
}

TEST(Consent, AProviderWithOnlyAnOfferCannotRevoke) {
  EXPECT_EQ(CanRevokeConsent(Actor::kOfferedProvider).code(), absl::StatusCode::kPermissionDenied);
  for (Actor a : {Actor::kReferrer, Actor::kAcceptedProvider, Actor::kChildWelfare}) {
    EXPECT_TRUE(CanRevokeConsent(a).ok());
  }
}

}  // namespace
}  // namespace safeharbor::referrals
