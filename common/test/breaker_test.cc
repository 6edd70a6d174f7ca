#include "common/breaker.h"

#include <gtest/gtest.h>

#include <vector>

namespace safeharbor {
namespace {

class BreakerTest : public ::testing::Test {
 protected:
  FakeClock clock_{absl::FromUnixSeconds(1'800'000'000)};
  std::vector<BreakerState> seen_;
  Breaker breaker_{"directory", &clock_,
                   BreakerOptions{.failure_threshold = 3, .open_for = absl::Seconds(1)},
                   [this](BreakerState s) { seen_.push_back(s); }};
};

TEST_F(BreakerTest, OpensOnlyAfterConsecutiveFailures) {
  EXPECT_TRUE(breaker_.Allow());
  breaker_.Failed();
  breaker_.Failed();
  breaker_.Succeeded();  // an answer in between: the count starts again
  breaker_.Failed();
  breaker_.Failed();
  EXPECT_EQ(breaker_.state(), BreakerState::kClosed);
  EXPECT_TRUE(breaker_.Allow());
  breaker_.Failed();
  EXPECT_EQ(breaker_.state(), BreakerState::kOpen);
  EXPECT_FALSE(breaker_.Allow());
  absl::Status refusal = breaker_.Refusal();
  EXPECT_EQ(refusal.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(refusal.message().find("directory"), absl::string_view::npos) << refusal;
}

TEST_F(BreakerTest, OneProbeAfterTheOpenPeriodClosesItWhenItAnswers) {
  for (int i = 0; i < 3; ++i) breaker_.Failed();
  clock_.Advance(absl::Milliseconds(999));
  EXPECT_FALSE(breaker_.Allow());
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(breaker_.Allow());  // the probe
  EXPECT_EQ(breaker_.state(), BreakerState::kHalfOpen);
  EXPECT_FALSE(breaker_.Allow());  // only one while it is out
  breaker_.Succeeded();
  EXPECT_EQ(breaker_.state(), BreakerState::kClosed);
  EXPECT_TRUE(breaker_.Allow());
  EXPECT_EQ(seen_, (std::vector<BreakerState>{BreakerState::kClosed, BreakerState::kOpen,
                                              BreakerState::kHalfOpen, BreakerState::kClosed}));
}

TEST_F(BreakerTest, AFailedProbeOpensItAgainForAnotherPeriod) {
  for (int i = 0; i < 3; ++i) breaker_.Failed();
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(breaker_.Allow());
  breaker_.Failed();  // one failure is enough while half-open
  EXPECT_EQ(breaker_.state(), BreakerState::kOpen);
  clock_.Advance(absl::Milliseconds(500));
  EXPECT_FALSE(breaker_.Allow());
  clock_.Advance(absl::Milliseconds(500));
  EXPECT_TRUE(breaker_.Allow());
}

TEST_F(BreakerTest, AProbeThatNeverReportsDoesNotKeepItShutForever) {
  for (int i = 0; i < 3; ++i) breaker_.Failed();
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(breaker_.Allow());  // this probe is lost (its caller never reports)
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(breaker_.Allow());  // another one
}

TEST_F(BreakerTest, TripOpensAtOnceAndAnAnswerClosesIt) {
  breaker_.Trip();  // the health probe found the dependency not answering
  EXPECT_EQ(breaker_.state(), BreakerState::kOpen);
  EXPECT_FALSE(breaker_.Allow());
  clock_.Advance(absl::Milliseconds(300));
  breaker_.Trip();  // still not answering: the open period is not extended
  clock_.Advance(absl::Milliseconds(700));
  EXPECT_TRUE(breaker_.Allow());
  breaker_.Succeeded();
  EXPECT_EQ(breaker_.state(), BreakerState::kClosed);
}

// A time-out is the dependency's failure only when the call was given at least half its cap; a
// caller that left too little time timed out by its own deadline.
TEST(TimeoutIsTheDependencys, OnlyWhenTheCallHadAtLeastHalfItsCap) {
  const absl::Duration cap = absl::Milliseconds(1500);
  EXPECT_TRUE(TimeoutIsTheDependencys(cap, cap));
  EXPECT_TRUE(TimeoutIsTheDependencys(absl::Milliseconds(750), cap));
  EXPECT_FALSE(TimeoutIsTheDependencys(absl::Milliseconds(749), cap));
  EXPECT_FALSE(TimeoutIsTheDependencys(absl::Milliseconds(50), cap));
  EXPECT_FALSE(TimeoutIsTheDependencys(absl::ZeroDuration(), cap));
}

}  // namespace
}  // namespace safeharbor
