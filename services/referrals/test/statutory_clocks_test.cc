#include "services/referrals/statutory_clocks.h"

#include <gtest/gtest.h>

namespace safeharbor::referrals {
namespace {

using absl::CivilDay;

class StatutoryClocks : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cal = LegalCalendar::Washington();
    ASSERT_TRUE(cal.ok()) << cal.status();
    cal_.emplace(*std::move(cal));
  }
  // A local (Pacific) wall-clock time.
  absl::Time Local(int y, int mo, int d, int h, int mi = 0) const {
    return absl::FromCivil(absl::CivilMinute(y, mo, d, h, mi), cal_->time_zone());
  }
  std::optional<LegalCalendar> cal_;
};

TEST_F(StatutoryClocks, WashingtonHolidaysOf2026AsStateOfficesObserveThem) {
  const std::vector<CivilDay> want = {
      CivilDay(2026, 1, 1),   CivilDay(2026, 1, 19),  CivilDay(2026, 2, 16),
      CivilDay(2026, 5, 25),  CivilDay(2026, 6, 19),  CivilDay(2026, 7, 3),  // July 4 a Saturday
      CivilDay(2026, 9, 7),   CivilDay(2026, 11, 11), CivilDay(2026, 11, 26),
      CivilDay(2026, 11, 27), CivilDay(2026, 12, 25),
  };
  EXPECT_EQ(cal_->ObservedHolidays(2026), want);
  EXPECT_FALSE(cal_->IsHoliday(CivilDay(2026, 7, 4)));  // the Saturday itself: a weekend day
  EXPECT_TRUE(cal_->IsExcluded(CivilDay(2026, 7, 4)));
}

TEST_F(StatutoryClocks, ObservanceMovesSundaysForwardAndSaturdaysBackAcrossTheYear) {
  EXPECT_TRUE(cal_->IsHoliday(CivilDay(2027, 7, 5)));    // July 4, 2027 is a Sunday
  EXPECT_TRUE(cal_->IsHoliday(CivilDay(2021, 12, 31)));  // January 1, 2022 is a Saturday
  EXPECT_FALSE(cal_->IsHoliday(CivilDay(2022, 1, 3)));
  EXPECT_TRUE(cal_->IsHoliday(CivilDay(2022, 12, 26)));  // December 25, 2022 is a Sunday
}

TEST_F(StatutoryClocks, JuneteenthOnlySince2022) {
  EXPECT_FALSE(cal_->IsHoliday(CivilDay(2021, 6, 18)));  // June 19, 2021: a Saturday, not yet
  EXPECT_TRUE(cal_->IsHoliday(CivilDay(2022, 6, 20)));   // June 19, 2022: a Sunday
  EXPECT_TRUE(cal_->IsHoliday(CivilDay(2025, 6, 19)));
}

TEST_F(StatutoryClocks, SeventyTwoHoursSkipThanksgivingAndTheWeekend) {
  // Wednesday 10:00: 14 hours that day, then Thursday (Thanksgiving), Friday (Native American
  // Heritage Day), Saturday and Sunday do not count; Monday 24, Tuesday 24, Wednesday 10.
  EXPECT_EQ(cal_->AddExcludingNonBusinessDays(Local(2026, 11, 25, 10), absl::Hours(72)),
            Local(2026, 12, 2, 10));
}

TEST_F(StatutoryClocks, AStartOnAnExcludedDayCountsFromTheNextCountedMidnight) {
  EXPECT_EQ(cal_->AddExcludingNonBusinessDays(Local(2026, 11, 28, 15), absl::Hours(72)),
            Local(2026, 12, 3, 0));
  EXPECT_EQ(cal_->AddExcludingNonBusinessDays(Local(2026, 11, 28, 15), absl::ZeroDuration()),
            Local(2026, 11, 30, 0));
}

TEST_F(StatutoryClocks, CountsWallClockDaysAcrossDaylightTimeChanges) {
  // Friday noon PST; the Sunday of the change (excluded) ends an hour early; Wednesday noon PDT.
  const absl::Time due = cal_->AddExcludingNonBusinessDays(Local(2026, 3, 6, 12), absl::Hours(72));
  EXPECT_EQ(due, Local(2026, 3, 11, 12));
  // And back: Sunday November 1 is 25 hours long, Monday a plain 24.
  EXPECT_EQ(cal_->AddExcludingNonBusinessDays(Local(2026, 10, 30, 12), absl::Hours(72)),
            Local(2026, 11, 4, 12));
}

TEST_F(StatutoryClocks, WhichClocksRunDependsOnTheHandOff) {
  HandOffFacts facts;
  facts.custody_taken = Local(2026, 11, 25, 2);
  facts.emergency = true;
  std::vector<ClockDue> due = DueClocks(facts, *cal_);
  ASSERT_EQ(due.size(), 1u);  // not yet delivered: only the notice to DCYF
  EXPECT_EQ(due[0].clock, StatutoryClock::kDcyfNotice);
  EXPECT_EQ(due[0].due, facts.custody_taken + absl::Hours(24));

  facts.emergency = false;
  facts.delivered = true;
  facts.delivered_at = Local(2026, 11, 25, 4);
  facts.crisis_residential_center = true;
  facts.dcyf_custody = true;
  facts.dcyf_custody_at = Local(2026, 11, 25, 10);
  due = DueClocks(facts, *cal_);
  ASSERT_EQ(due.size(), 3u);
  EXPECT_EQ(due[0].clock, StatutoryClock::kCrisisResidentialReport);
  EXPECT_EQ(due[0].due, Local(2026, 11, 26, 4));  // 24 plain hours, a holiday or not
  EXPECT_EQ(due[1].due, facts.custody_taken + absl::Hours(72));
  EXPECT_EQ(due[2].clock, StatutoryClock::kEmergencyPlacementWindow);
  EXPECT_EQ(due[2].due, Local(2026, 12, 2, 10));
  EXPECT_STREQ(ClockCitation(due[2].clock), "RCW 43.185C.265");
}

TEST_F(StatutoryClocks, NoPoliceCustodyNoNoticeToDcyf) {
  HandOffFacts facts;
  facts.custody_taken = Local(2026, 11, 25, 2);
  facts.police_custody = false;  // a child-welfare intake: DCYF is the referrer
  facts.delivered = true;
  facts.delivered_at = Local(2026, 11, 25, 4);
  facts.crisis_residential_center = true;
  const std::vector<ClockDue> due = DueClocks(facts, *cal_);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].clock, StatutoryClock::kCrisisResidentialReport);
}

TEST_F(StatutoryClocks, ARuleOutOfForceIsNotAHoliday) {
  std::vector<HolidayRule> rules = WashingtonHolidayRules();
  for (HolidayRule& r : rules) {
    if (std::string(r.name) == "veterans_day") r.last_year = 2025;  // a repeal, as data
  }
  LegalCalendar changed(cal_->time_zone(), rules);
  EXPECT_TRUE(changed.IsHoliday(CivilDay(2025, 11, 11)));
  EXPECT_FALSE(changed.IsHoliday(CivilDay(2026, 11, 11)));
}

}  // namespace
}  // namespace safeharbor::referrals
