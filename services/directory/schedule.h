// Weekly opening hours as minute-of-week intervals: minute 0 is Monday 00:00 local time,
// 10080 the end of Sunday. The search filters "open at" against these in SQL.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "safeharbor/directory/v1/directory.pb.h"

namespace safeharbor::directory {

inline constexpr int kMinutesPerWeek = 7 * 24 * 60;

struct MinuteInterval {
  int start;  // inclusive
  int end;    // exclusive
  bool operator==(const MinuteInterval&) const = default;
};

// "HH:MM" → minutes after midnight; "24:00" only when allow_end_of_day.
absl::StatusOr<int> ParseHhMm(absl::string_view text, bool allow_end_of_day);

// Validates the weekly hours (error messages name "schedule.weekly_hours[i].opens_at" etc.)
// and returns sorted, non-overlapping intervals. Hours closing at or before they open run
// past midnight; Sunday's wrap into Monday morning is split in two.
absl::StatusOr<std::vector<MinuteInterval>> OpenIntervals(const v1::Schedule& schedule);

int MinuteOfWeek(absl::Time t, const absl::TimeZone& tz);

// Pure reference for the SQL filter.
bool IsOpenAt(const v1::Schedule& schedule, absl::Time t);

}  // namespace safeharbor::directory
