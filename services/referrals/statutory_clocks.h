// The law's clocks after a hand-off (DOMAIN.md §7), as pure functions of dated calendar data:
//   - the written report due within 24 hours of delivering a child to a crisis residential
//     center (RCW 43.185C.260(3));
//   - the notice to DCYF, within 24 hours in an emergency and 72 hours otherwise
//     (RCW 26.44.030(5));
//   - DCYF's emergency placement window, 72 hours excluding Saturdays, Sundays and holidays
//     (RCW 43.185C.265), with Washington's legal holidays (RCW 1.16.050) as observed by state
//     offices.
// Holidays are data (a table of rules with the years each is in force), so a change in statute
// is a new row, not new code. Days are the state's (America/Los_Angeles), so a window that spans
// a change to or from daylight time counts the hours that really pass.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"

namespace safeharbor::referrals {

// One legal holiday and the years it is in force.
struct HolidayRule {
  enum class Kind {
    kFixedDate,           // `month`/`day` every year; observed on a weekday when it falls on one
    kNthWeekday,          // the `nth` `weekday` of `month` (nth 1..4)
    kLastWeekday,         // the last `weekday` of `month`
    kDayAfterNthWeekday,  // the day after the `nth` `weekday` of `month`
  };
  const char* name;
  Kind kind;
  int month;
  int day = 0;  // kFixedDate
  absl::Weekday weekday = absl::Weekday::monday;
  int nth = 0;
  int first_year = 2000;  // in force from (2000: before any year this software counts)
  int last_year = 9999;   // through (9999: still in force)
};

// Washington's legal holidays (RCW 1.16.050) as of 2026.
const std::vector<HolidayRule>& WashingtonHolidayRules();

// The day state offices observe a holiday that falls on `actual`: a Saturday's on the Friday
// before, a Sunday's on the Monday after, any other day on the day itself.
absl::CivilDay ObservedDay(absl::CivilDay actual);

// The state's time zone, America/Los_Angeles: INTERNAL when the time zone database is missing.
// The one loader of the service (the calendar, and the auditor's whole Pacific days).
absl::StatusOr<absl::TimeZone> WashingtonTimeZone();

class LegalCalendar {
 public:
  LegalCalendar(absl::TimeZone tz, std::vector<HolidayRule> rules)
      : tz_(tz), rules_(std::move(rules)) {}
  // Washington: America/Los_Angeles and WashingtonHolidayRules(). INTERNAL when the time zone
  // database is missing (never counts in UTC instead).
  static absl::StatusOr<LegalCalendar> Washington();

  // The holidays state offices observe in `year` (a January 1 on a Saturday is observed in the
  // year before), in date order.
  std::vector<absl::CivilDay> ObservedHolidays(int year) const;
  bool IsHoliday(absl::CivilDay day) const;  // as observed
  // Saturday, Sunday or an observed holiday.
  bool IsExcluded(absl::CivilDay day) const;
  // The instant at which `span` has passed counting only the time on days not excluded. A start
  // on an excluded day counts from the next counted day's midnight.
  absl::Time AddExcludingNonBusinessDays(absl::Time start, absl::Duration span) const;
  const absl::TimeZone& time_zone() const { return tz_; }

 private:
  absl::TimeZone tz_;
  std::vector<HolidayRule> rules_;
};

enum class StatutoryClock {
  kCrisisResidentialReport,   // RCW 43.185C.260(3)
  kDcyfNotice,                // RCW 26.44.030(5)
  kEmergencyPlacementWindow,  // RCW 43.185C.265
};
const char* ClockName(StatutoryClock clock);      // for metric labels and alert rules
const char* ClockCitation(StatutoryClock clock);  // "RCW 43.185C.260(3)"

// What is known of a referral's hand-off; each clock runs only when its facts apply.
struct HandOffFacts {
  absl::Time custody_taken;    // when the officer took the child into custody (the referral)
  bool police_custody = true;  // an officer took custody (not a child-welfare intake itself)
  bool emergency = false;      // the referral's urgency was emergency
  bool delivered = false;      // the hand-off was confirmed
  absl::Time delivered_at;
  bool crisis_residential_center = false;  // delivered to one
  bool dcyf_custody = false;               // DCYF accepted custody from the officer
  absl::Time dcyf_custody_at;
};

struct ClockDue {
  StatutoryClock clock;
  absl::Time due;
};

// The clocks the facts start, each with its due time, in the order of StatutoryClock. The DCYF
// notice is the police's: none when no officer took custody.
std::vector<ClockDue> DueClocks(const HandOffFacts& facts, const LegalCalendar& calendar);

}  // namespace safeharbor::referrals
