#include "services/referrals/statutory_clocks.h"

#include <algorithm>

#include "common/invariant.h"

namespace safeharbor::referrals {
namespace {

using Kind = HolidayRule::Kind;
using absl::Weekday;

// The `nth` `weekday` of `month` in `year` (nth 1..4).
absl::CivilDay NthWeekday(int year, int month, Weekday weekday, int nth) {
  absl::CivilDay first(year, month, 1);
  while (absl::GetWeekday(first) != weekday) ++first;
  return first + 7 * (nth - 1);
}

absl::CivilDay LastWeekday(int year, int month, Weekday weekday) {
  absl::CivilDay last = absl::CivilDay(absl::CivilMonth(year, month) + 1) - 1;
  while (absl::GetWeekday(last) != weekday) --last;
  return last;
}

// The day the rule's holiday falls on in `year`, before any observance shift.
absl::CivilDay ActualDay(const HolidayRule& rule, int year) {
  switch (rule.kind) {
    case Kind::kFixedDate:
      return absl::CivilDay(year, rule.month, rule.day);
    case Kind::kNthWeekday:
      return NthWeekday(year, rule.month, rule.weekday, rule.nth);
    case Kind::kLastWeekday:
      return LastWeekday(year, rule.month, rule.weekday);
    case Kind::kDayAfterNthWeekday:
      return NthWeekday(year, rule.month, rule.weekday, rule.nth) + 1;
  }
  SH_RELEASE_ASSERT(false, rule.name);
  return {};
}

bool IsWeekend(absl::CivilDay day) {
  const Weekday w = absl::GetWeekday(day);
  return w == Weekday::saturday || w == Weekday::sunday;
}

}  // namespace

const std::vector<HolidayRule>& WashingtonHolidayRules() {
  static const auto* rules = new std::vector<HolidayRule>{
      {"new_years_day", Kind::kFixedDate, 1, 1},
      {"martin_luther_king_jr_day", Kind::kNthWeekday, 1, 0, Weekday::monday, 3},
      {"presidents_day", Kind::kNthWeekday, 2, 0, Weekday::monday, 3},
      {"memorial_day", Kind::kLastWeekday, 5, 0, Weekday::monday},
      {"juneteenth", Kind::kFixedDate, 6, 19, Weekday::monday, 0, 2022},
      {"independence_day", Kind::kFixedDate, 7, 4},
      {"labor_day", Kind::kNthWeekday, 9, 0, Weekday::monday, 1},
      {"veterans_day", Kind::kFixedDate, 11, 11},
      {"thanksgiving_day", Kind::kNthWeekday, 11, 0, Weekday::thursday, 4},
      {"native_american_heritage_day", Kind::kDayAfterNthWeekday, 11, 0, Weekday::thursday, 4},
      {"christmas_day", Kind::kFixedDate, 12, 25},
  };
  return *rules;
}

absl::CivilDay ObservedDay(absl::CivilDay actual) {
  switch (absl::GetWeekday(actual)) {
    case Weekday::saturday:
      return actual - 1;
    case Weekday::sunday:
      return actual + 1;
    default:
      return actual;
  }
}

absl::StatusOr<absl::TimeZone> WashingtonTimeZone() {
  absl::TimeZone tz;
  if (!absl::LoadTimeZone("America/Los_Angeles", &tz)) {
    return absl::InternalError("time zone America/Los_Angeles is not installed (tzdata)");
  }
  return tz;
}

absl::StatusOr<LegalCalendar> LegalCalendar::Washington() {
  absl::StatusOr<absl::TimeZone> tz = WashingtonTimeZone();
  if (!tz.ok()) return tz.status();
  return LegalCalendar(*tz, WashingtonHolidayRules());
}

std::vector<absl::CivilDay> LegalCalendar::ObservedHolidays(int year) const {
  std::vector<absl::CivilDay> days;
  for (int y = year; y <= year + 1; ++y) {  // next year's January 1 may be observed in this one
    for (const HolidayRule& rule : rules_) {
      if (y < rule.first_year || y > rule.last_year) continue;
      const absl::CivilDay actual = ActualDay(rule, y);
      const absl::CivilDay observed = rule.kind == Kind::kFixedDate ? ObservedDay(actual) : actual;
      if (observed.year() == year) days.push_back(observed);
    }
  }
  std::sort(days.begin(), days.end());
  return days;
}

bool LegalCalendar::IsHoliday(absl::CivilDay day) const {
  const std::vector<absl::CivilDay> days = ObservedHolidays(static_cast<int>(day.year()));
  return std::binary_search(days.begin(), days.end(), day);
}

bool LegalCalendar::IsExcluded(absl::CivilDay day) const {
  return IsWeekend(day) || IsHoliday(day);
}

absl::Time LegalCalendar::AddExcludingNonBusinessDays(absl::Time start, absl::Duration span) const {
  SH_RELEASE_ASSERT(span >= absl::ZeroDuration() && span <= absl::Hours(24 * 366),
                    "a statutory window of at most a year");
  absl::Time t = start;
  absl::Duration left = span;
  // Each pass moves to the next midnight: a year of days is far more than any window needs.
  for (int days = 0; days < 2 * 366; ++days) {
    const absl::CivilDay day = absl::ToCivilDay(t, tz_);
    const absl::Time next_midnight = absl::FromCivil(day + 1, tz_);
    if (!IsExcluded(day)) {
      const absl::Duration counted = next_midnight - t;
      if (counted >= left) return t + left;
      left -= counted;
    }
    t = next_midnight;
  }
  // Unreachable: at most 366 days of span, and never a year without a counted day.
  SH_RELEASE_ASSERT(false, "a counted day within two years");
  return t;
}

const char* ClockName(StatutoryClock clock) {
  switch (clock) {
    case StatutoryClock::kCrisisResidentialReport:
      return "crisis_residential_report";
    case StatutoryClock::kDcyfNotice:
      return "dcyf_notice";
    case StatutoryClock::kEmergencyPlacementWindow:
      return "emergency_placement_window";
  }
  return "unknown";
}

const char* ClockCitation(StatutoryClock clock) {
  switch (clock) {
    case StatutoryClock::kCrisisResidentialReport:
      return "RCW 43.185C.260(3)";
    case StatutoryClock::kDcyfNotice:
      return "RCW 26.44.030(5)";
    case StatutoryClock::kEmergencyPlacementWindow:
      return "RCW 43.185C.265";
  }
  return "";
}

std::vector<ClockDue> DueClocks(const HandOffFacts& facts, const LegalCalendar& calendar) {
  std::vector<ClockDue> due;
  if (facts.delivered && facts.crisis_residential_center) {
    due.push_back({StatutoryClock::kCrisisResidentialReport, facts.delivered_at + absl::Hours(24)});
  }
  if (facts.police_custody) {
    due.push_back({StatutoryClock::kDcyfNotice,
                   facts.custody_taken + absl::Hours(facts.emergency ? 24 : 72)});
  }
  if (facts.dcyf_custody) {
    due.push_back({StatutoryClock::kEmergencyPlacementWindow,
                   calendar.AddExcludingNonBusinessDays(facts.dcyf_custody_at, absl::Hours(72))});
  }
  return due;
}

}  // namespace safeharbor::referrals
