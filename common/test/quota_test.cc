// OrgQuotas, the per-organization limits the service kit enforces: pure, with an injected clock.
#include "common/quota.h"

#include <gtest/gtest.h>

#include <optional>

namespace safeharbor {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

TEST(OrgQuotas, ConcurrentCallsAreCountedPerOrganization) {
  FakeClock clock(kStart);
  OrgQuotas q({.max_concurrent_calls = 2, .calls_per_second = 0, .max_open_streams = 0}, &clock);
  EXPECT_EQ(q.BeginCall("org-a"), std::nullopt);
  EXPECT_EQ(q.BeginCall("org-a"), std::nullopt);
  EXPECT_EQ(q.BeginCall("org-a"), QuotaLimit::kConcurrentCalls);
  EXPECT_EQ(q.BeginCall("org-b"), std::nullopt);  // another organization is not affected
  q.EndCall("org-a");
  EXPECT_EQ(q.BeginCall("org-a"), std::nullopt);
  EXPECT_EQ(q.BeginCall("org-a"), QuotaLimit::kConcurrentCalls);
  const absl::Status st = q.Refusal(QuotaLimit::kConcurrentCalls);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("2 calls in progress"), std::string::npos) << st.message();
}

TEST(OrgQuotas, CallRateIsATokenBucketRefilledByTheClock) {
  FakeClock clock(kStart);
  OrgQuotas q({.max_concurrent_calls = 0, .calls_per_second = 2, .burst = 4}, &clock);
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(q.BeginCall("org-a"), std::nullopt) << i;
    q.EndCall("org-a");
  }
  EXPECT_EQ(q.BeginCall("org-a"), QuotaLimit::kCallRate);
  EXPECT_EQ(q.OpenStream("org-a"), QuotaLimit::kCallRate);  // streams take tokens too
  EXPECT_EQ(q.BeginCall("org-b"), std::nullopt);
  q.EndCall("org-b");
  clock.Advance(absl::Milliseconds(500));  // one token back
  EXPECT_EQ(q.BeginCall("org-a"), std::nullopt);
  q.EndCall("org-a");
  EXPECT_EQ(q.BeginCall("org-a"), QuotaLimit::kCallRate);
  clock.Advance(absl::Hours(1));  // never more than the burst
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(q.BeginCall("org-a"), std::nullopt) << i;
    q.EndCall("org-a");
  }
  EXPECT_EQ(q.BeginCall("org-a"), QuotaLimit::kCallRate);
  EXPECT_NE(q.Refusal(QuotaLimit::kCallRate).message().find("call rate"), std::string::npos);
}

TEST(OrgQuotas, OpenStreamsAreLimitedAndGivenBackBySlots) {
  FakeClock clock(kStart);
  OrgQuotas q({.max_concurrent_calls = 1, .calls_per_second = 0, .max_open_streams = 2}, &clock);
  std::optional<QuotaSlot> first;
  {
    ASSERT_EQ(q.OpenStream("org-a"), std::nullopt);
    first.emplace(&q, "org-a", QuotaSlot::Kind::kStream);
    ASSERT_EQ(q.OpenStream("org-a"), std::nullopt);
    QuotaSlot second(&q, "org-a", QuotaSlot::Kind::kStream);
    EXPECT_EQ(q.OpenStream("org-a"), QuotaLimit::kOpenStreams);
    // Streams do not take call slots: a unary call still goes through.
    EXPECT_EQ(q.BeginCall("org-a"), std::nullopt);
    QuotaSlot call(&q, "org-a", QuotaSlot::Kind::kCall);
    QuotaSlot moved = std::move(second);  // moving does not give the slot back
    EXPECT_FALSE(second.held());
    EXPECT_EQ(q.OpenStream("org-a"), QuotaLimit::kOpenStreams);
  }
  // `moved` and `call` are gone: one stream and the call slot are back.
  EXPECT_EQ(q.OpenStream("org-a"), std::nullopt);
  EXPECT_EQ(q.BeginCall("org-a"), std::nullopt);
  EXPECT_NE(q.Refusal(QuotaLimit::kOpenStreams).message().find("2 open streams"),
            std::string::npos);
}

TEST(OrgQuotas, LimitsOfZeroAreOffAndIdleOrganizationsAreForgotten) {
  FakeClock clock(kStart);
  OrgQuotas q({.max_concurrent_calls = 0, .calls_per_second = 0, .max_open_streams = 0}, &clock);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(q.BeginCall("org-a"), std::nullopt);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(q.OpenStream("org-a"), std::nullopt);
  // State stays bounded however many organizations call: idle ones are dropped.
  for (int i = 0; i < 25000; ++i) {
    const std::string org = "org-" + std::to_string(i);
    ASSERT_EQ(q.BeginCall(org), std::nullopt);
    q.EndCall(org);
  }
  EXPECT_LE(q.tracked(), 10001u);
  EXPECT_EQ(q.BeginCall("org-a"), std::nullopt);  // a busy organization's state was kept
}

}  // namespace
}  // namespace safeharbor
