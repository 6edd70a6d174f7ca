#include "services/referrals/views.h"

#include <gtest/gtest.h>

namespace safeharbor::referrals {
namespace {

TEST(SuppressedCells, SmallCellsAreWithheldAndALoneOneTakesTheNextSmallestWithIt) {
  EXPECT_EQ(SuppressedCells({}), std::vector<bool>{});
  EXPECT_EQ(SuppressedCells({11, 40}), (std::vector<bool>{false, false}));
  // 3 alone withheld: 14 too, or total - 40 - 25 would give 17 - 14 = 3 back.
  EXPECT_EQ(SuppressedCells({40, 3, 25, 14}), (std::vector<bool>{false, true, false, true}));
  EXPECT_EQ(SuppressedCells({7}), std::vector<bool>{true});  // nothing else to withhold
  // An empty cell is withheld alike (a fixed key set tells nothing), but the total less the
  // published cells is then 0: it singles out no one, so nothing more is withheld.
  EXPECT_EQ(SuppressedCells({0, 12}), (std::vector<bool>{true, false}));
  EXPECT_EQ(SuppressedCells({0, 0, 30}), (std::vector<bool>{true, true, false}));
}

// Issue 14, S2 (a reviewer's finding): two small cells withheld side by side rested on 7
// referrals together, which the published total gave back (40 - 30 = 7, and with a second
// table each cell alone). Withheld cells must add up to 11 at least: the next smallest goes too.
TEST(SuppressedCells, WithheldCellsTogetherRestOnElevenReferralsAtLeast) {
  EXPECT_EQ(SuppressedCells({2, 5, 30}), (std::vector<bool>{true, true, true}));
  EXPECT_EQ(SuppressedCells({2, 5, 30, 12}), (std::vector<bool>{true, true, false, true}));
  EXPECT_EQ(SuppressedCells({6, 5, 30}), (std::vector<bool>{true, true, false}));  // 11 already
  EXPECT_EQ(SuppressedCells({1, 1, 1, 40, 50}), (std::vector<bool>{true, true, true, true, false}));
  // Whatever the cells, what is withheld holds no small group alone.
  const std::vector<std::vector<int64_t>> groups = {
      {1, 2, 3, 100}, {10, 0, 0, 11}, {3, 3, 3, 3, 11, 11}, {9, 200, 1}, {4, 0, 13, 12}};
  for (const auto& g : groups) {
    const std::vector<bool> hidden = SuppressedCells(g);
    int64_t sum = 0;
    bool someone = false;
    for (size_t i = 0; i < g.size(); ++i) {
      if (g[i] < kMinimumCell) {
        EXPECT_TRUE(hidden[i]);
      }
      if (hidden[i]) sum += g[i];
      someone = someone || (hidden[i] && g[i] > 0);
    }
    if (someone) {
      EXPECT_GE(sum, kMinimumCell);
    }
  }
}

// S2: a withheld cell must not name its county, provider or month (its key alone told that a
// small group exists there). Counties, providers and months are left out when withheld;
// statuses and reason codes are listed in full, zeros included, so a withheld one is no news.
TEST(StatsView, WithheldCellsNameNoCountyProviderOrMonthAndFixedTablesListEveryKey) {
  StatsCounts counts;
  using Cell = StatsCounts::OutcomeCell;
  counts.outcomes_by_county = {
      Cell{"53033", "", v1::REFERRAL_STATUS_COMPLETED, 30},
      Cell{"53053", "", v1::REFERRAL_STATUS_COMPLETED, 2},
      Cell{"53061", "", v1::REFERRAL_STATUS_COMPLETED, 5},
  };
  counts.outcomes_by_provider = {Cell{"", "prov-small", v1::REFERRAL_STATUS_COMPLETED, 3},
                                 Cell{"", "prov-big", v1::REFERRAL_STATUS_COMPLETED, 34}};
  counts.by_status = {{v1::REFERRAL_STATUS_COMPLETED, 37}, {v1::REFERRAL_STATUS_ESCALATED, 4}};
  counts.placement_unavailable_by_month = {{"2026-10", 30}, {"2026-11", 2}};
  counts.declines_by_code = {{v1::REASON_CODE_AT_CAPACITY, 12},
                             {v1::REASON_CODE_SAFETY_CONCERN, 3}};
  const v1::GetReferralStatsResponse v = StatsView(counts);
  // Completed: 2 and 5 withheld (7 together), and 30 with them: nothing left to publish.
  EXPECT_EQ(v.outcomes_by_county_size(), 0) << v.DebugString();
  for (const auto& c : v.outcomes_by_provider()) EXPECT_FALSE(c.suppressed());
  EXPECT_EQ(v.outcomes_by_provider_size(), 0);  // 3 withheld, and 34 as its complement
  EXPECT_EQ(v.DebugString().find("prov-small"), std::string::npos);
  EXPECT_EQ(v.DebugString().find("53053"), std::string::npos);
  EXPECT_EQ(v.DebugString().find("53061"), std::string::npos);
  EXPECT_EQ(v.DebugString().find("2026-11"), std::string::npos);
  ASSERT_EQ(v.by_status_size(), 10);
  for (const auto& c : v.by_status()) {
    // ESCALATED's 4 is withheld, COMPLETED's 37 with it; the empty ones look the same.
    EXPECT_TRUE(c.suppressed()) << v1::ReferralStatus_Name(c.status());
    EXPECT_EQ(c.count(), 0);
  }
  ASSERT_EQ(v.declines_by_code_size(), 8);  // every code
  for (const auto& c : v.declines_by_code()) {
    EXPECT_TRUE(c.suppressed()) << v1::ReasonCode_Name(c.code());  // 3 withheld, 12 with it
  }
  ASSERT_EQ(v.outcomes_by_code_size(), 8);
}

// S2, across tables: an outcome's cells by county add up to its status count; when the status
// table withholds that count (here 11, the complement of a lone 1), the county cells would give
// it back, and the 1 with it. The outcome's cells are withheld whole.
TEST(StatsView, AnOutcomeWhoseStatusCountIsWithheldIsWithheldByCountyToo) {
  StatsCounts counts;
  using Cell = StatsCounts::OutcomeCell;
  counts.by_status = {{v1::REFERRAL_STATUS_COMPLETED, 11}, {v1::REFERRAL_STATUS_YOUTH_DECLINED, 1}};
  counts.outcomes_by_county = {Cell{"53033", "", v1::REFERRAL_STATUS_COMPLETED, 11},
                               Cell{"53033", "", v1::REFERRAL_STATUS_YOUTH_DECLINED, 1}};
  const v1::GetReferralStatsResponse v = StatsView(counts);
  EXPECT_TRUE(v.by_status(5).suppressed());  // COMPLETED
  EXPECT_EQ(v.outcomes_by_county_size(), 0) << v.DebugString();
  counts.by_status = {{v1::REFERRAL_STATUS_COMPLETED, 11}};
  EXPECT_EQ(StatsView(counts).outcomes_by_county_size(), 1);
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
  counts.by_status = {{v1::REFERRAL_STATUS_COMPLETED, 54},
                      {v1::REFERRAL_STATUS_YOUTH_DECLINED, 27}};
  counts.to_acceptance = {10, 60, 120};  // fewer than 11: withheld
  counts.to_handoff = {11, 600, 1200};
  counts.placement_unavailable_by_month = {{"2026-10", 30}, {"2026-11", 2}, {"2026-12", 13}};
  const v1::GetReferralStatsResponse v = StatsView(counts);
  // Withheld cells are left out (issue 14, S2): only the published ones are listed.
  ASSERT_EQ(v.outcomes_by_county_size(), 3);
  std::map<std::pair<std::string, int>, bool> shown;
  for (const auto& c : v.outcomes_by_county()) {
    shown[{c.county_fips(), c.outcome()}] = true;
    EXPECT_FALSE(c.suppressed());
  }
  // Completed: 4 withheld, and 20 (the next smallest) with it; declined: nothing small.
  EXPECT_TRUE((shown[{"53033", v1::REFERRAL_STATUS_COMPLETED}]));
  EXPECT_FALSE((shown[{"53053", v1::REFERRAL_STATUS_COMPLETED}]));
  EXPECT_FALSE((shown[{"53061", v1::REFERRAL_STATUS_COMPLETED}]));
  EXPECT_TRUE((shown[{"53033", v1::REFERRAL_STATUS_YOUTH_DECLINED}]));
  EXPECT_TRUE((shown[{"53061", v1::REFERRAL_STATUS_YOUTH_DECLINED}]));
  EXPECT_TRUE(v.time_to_acceptance().suppressed());
  EXPECT_EQ(v.time_to_acceptance().median_minutes(), 0);
  EXPECT_FALSE(v.time_to_handoff().suppressed());
  EXPECT_EQ(v.time_to_handoff().median_minutes(), 10);
  EXPECT_EQ(v.time_to_handoff().p90_minutes(), 20);
  // 2026-11's 2 withheld, 2026-12's 13 as its complement: both left out.
  ASSERT_EQ(v.placement_unavailable_by_month_size(), 1);
  EXPECT_EQ(v.placement_unavailable_by_month(0).month(), "2026-10");
  EXPECT_EQ(v.placement_unavailable_by_month(0).count(), 30);
}

}  // namespace
}  // namespace safeharbor::referrals
