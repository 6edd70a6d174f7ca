#include "services/directory/schedule.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace safeharbor::directory {

absl::StatusOr<int> ParseHhMm(absl::string_view text, bool allow_end_of_day) {
  int h = 0, m = 0;
  if (text.size() != 5 || text[2] != ':' || !absl::SimpleAtoi(text.substr(0, 2), &h) ||
      !absl::SimpleAtoi(text.substr(3, 2), &m) || m < 0 || m > 59 || h < 0 || h > 24 ||
      (h == 24 && (m != 0 || !allow_end_of_day))) {
    return absl::InvalidArgumentError(
        absl::StrCat("must be HH:MM (00:00 to ", allow_end_of_day ? "24:00" : "23:59", ")"));
  }
  return h * 60 + m;
}

absl::StatusOr<std::vector<MinuteInterval>> OpenIntervals(const v1::Schedule& schedule) {
  std::vector<MinuteInterval> out;
  if (schedule.weekly_hours_size() > 70) {
    return absl::InvalidArgumentError("schedule.weekly_hours has more than 70 entries");
  }
  for (int i = 0; i < schedule.weekly_hours_size(); ++i) {
    const auto& h = schedule.weekly_hours(i);
    const std::string field = absl::StrCat("schedule.weekly_hours[", i, "]");
    if (h.day() < v1::DAY_OF_WEEK_MONDAY || h.day() > v1::DAY_OF_WEEK_SUNDAY) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".day must be MONDAY to SUNDAY"));
    }
    auto opens = ParseHhMm(h.opens_at(), false);
    if (!opens.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".opens_at ", opens.status().message()));
    }
    auto closes = ParseHhMm(h.closes_at(), true);
    if (!closes.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".closes_at ", closes.status().message()));
    }
    const int day_start = (static_cast<int>(h.day()) - 1) * 1440;
    const int start = day_start + *opens;
    int end = day_start + *closes;
    if (*closes <= *opens) end += 1440;  // Past midnight into the next day.
    if (end <= kMinutesPerWeek) {
      out.push_back({start, end});
    } else {
      out.push_back({start, kMinutesPerWeek});
      out.push_back({0, end - kMinutesPerWeek});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const MinuteInterval& a, const MinuteInterval& b) { return a.start < b.start; });
  std::vector<MinuteInterval> merged;
  for (const auto& iv : out) {
    if (!merged.empty() && iv.start <= merged.back().end) {
      merged.back().end = std::max(merged.back().end, iv.end);
    } else {
      merged.push_back(iv);
    }
  }
  return merged;
}

int MinuteOfWeek(absl::Time t, const absl::TimeZone& tz) {
  const absl::CivilMinute m = absl::ToCivilMinute(t, tz);
  const int weekday_from_monday = (static_cast<int>(absl::GetWeekday(absl::CivilDay(m))) -
                                   static_cast<int>(absl::Weekday::monday) + 7) %
                                  7;
  return weekday_from_monday * 1440 + m.hour() * 60 + m.minute();
}

bool IsOpenAt(const v1::Schedule& schedule, absl::Time t) {
  if (schedule.open_24_7()) return true;
  absl::TimeZone tz;
  if (!absl::LoadTimeZone(schedule.time_zone(), &tz)) return false;
  auto intervals = OpenIntervals(schedule);
  if (!intervals.ok()) return false;
  const int m = MinuteOfWeek(t, tz);
  for (const auto& iv : *intervals) {
    if (iv.start <= m && m < iv.end) return true;
  }
  return false;
}

}  // namespace safeharbor::directory
