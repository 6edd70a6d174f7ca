#include "services/referrals/views.h"

#include <gtest/gtest.h>

namespace safeharbor::referrals {
namespace {

TEST(SuppressedCells, SmallCellsAreWithheldAndALoneOneTakesTheNextSmallestWithIt) {
  EXPECT_EQ(SuppressedCells({}), std::vector<bool>{});
  EXPECT_EQ(SuppressedCells({11, 40}), (std::vector<bool>{false, false}));
  // 3 alone withheld: 14 too, or total - 40 - 25 would give 17 - 14 = 3 back.
  EXPECT_EQ(SuppressedCells({40, 3, 25, 14}), (std::vector<bool>{false, true, false, true}));
  EXPECT_EQ(SuppressedCells({2, 5, 30}), (std::vector<bool>{true, true, false}));
  EXPECT_EQ(SuppressedCells({7}), std::vector<bool>{true});  // nothing else to withhold
  EXPECT_EQ(SuppressedCells({0, 12}), (std::vector<bool>{true, true}));
}

TEST(StatsView, OutcomesAreSuppressedWithinEachOutcomesGroupAndMonthsAmongMonths) {
  StatsCounts counts;
  using Cell = StatsCounts::OutcomeCell;
  counts.outcomes_by_county = {
      Cell{"53033", "", v1::REFERRAL_STATUS_COMPLETED, 30},
      Cell{"53033", "", v1::REFERRAL_STATUS_YOUTH_DECLINED, 12},
      Cell{"53053", "", v1::REFERRAL_STATUS_COMPLETED, 4},
      Cell{"53061", "", v1::REFERRAL_STATUS_COMPLETED, 20},
      Cell{"53061", "", v1::REFERRAL_STATUS_YOUTH_DECLINED, 15},
  };
  counts.to_acceptance = {10, 60, 120};  // fewer than 11: withheld
  counts.to_handoff = {11, 600, 1200};
  counts.placement_unavailable_by_month = {{"2026-10", 30}, {"2026-11", 2}, {"2026-12", 13}};
  const v1::GetReferralStatsResponse v = StatsView(counts);
  ASSERT_EQ(v.outcomes_by_county_size(), 5);
  std::map<std::pair<std::string, int>, bool> hidden;
  for (const auto& c : v.outcomes_by_county()) {
    hidden[{c.county_fips(), c.outcome()}] = c.suppressed();
    if (c.suppressed()) {
      EXPECT_EQ(c.count(), 0);
    }
  }
  // Completed: 4 withheld, and 20 (the next smallest) with it; declined: nothing small.
  EXPECT_FALSE((hidden[{"53033", v1::REFERRAL_STATUS_COMPLETED}]));
  EXPECT_TRUE((hidden[{"53053", v1::REFERRAL_STATUS_COMPLETED}]));
  EXPECT_TRUE((hidden[{"53061", v1::REFERRAL_STATUS_COMPLETED}]));
  EXPECT_FALSE((hidden[{"53033", v1::REFERRAL_STATUS_YOUTH_DECLINED}]));
  EXPECT_FALSE((hidden[{"53061", v1::REFERRAL_STATUS_YOUTH_DECLINED}]));
  EXPECT_TRUE(v.time_to_acceptance().suppressed());
  EXPECT_EQ(v.time_to_acceptance().median_minutes(), 0);
  EXPECT_FALSE(v.time_to_handoff().suppressed());
  EXPECT_EQ(v.time_to_handoff().median_minutes(), 10);
  EXPECT_EQ(v.time_to_handoff().p90_minutes(), 20);
  ASSERT_EQ(v.placement_unavailable_by_month_size(), 3);
  EXPECT_FALSE(v.placement_unavailable_by_month(0).suppressed());
  EXPECT_TRUE(v.placement_unavailable_by_month(1).suppressed());
  EXPECT_TRUE(v.placement_unavailable_by_month(2).suppressed());  // the complement
  EXPECT_EQ(v.placement_unavailable_by_month(2).month(), "2026-12");
}

}  // namespace
}  // namespace safeharbor::referrals
