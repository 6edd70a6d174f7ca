#include "common/counties.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace safeharbor {

absl::StatusOr<CountyTable> CountyTable::FromCsv(absl::string_view csv) {
  CountyTable table;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(csv, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#' || absl::StartsWith(line, "fips,")) continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, ',');
    CountyInfo c;
    if (f.size() != 4 || f[0].size() != 5 || !absl::SimpleAtod(f[2], &c.latitude) ||
        !absl::SimpleAtod(f[3], &c.longitude)) {
      return absl::InvalidArgumentError(
          absl::StrCat("county data line ", line_no, " is malformed"));
    }
    c.fips = std::string(f[0]);
    c.name = std::string(f[1]);
    table.counties_.push_back(std::move(c));
  }
  return table;
}

const CountyInfo* CountyTable::Find(absl::string_view fips) const {
  for (const auto& c : counties_) {
    if (c.fips == fips) return &c;
  }
  return nullptr;
}

const CountyInfo* CountyTable::FindByName(absl::string_view name) const {
  name = absl::StripSuffix(absl::StripAsciiWhitespace(name), " County");
  for (const auto& c : counties_) {
    if (absl::EqualsIgnoreCase(c.name, name)) return &c;
  }
  return nullptr;
}

std::pair<double, double> SearchOrigin(bool has_point, double latitude, double longitude,
                                       const CountyTable& counties, absl::string_view county_fips) {
  if (has_point) return {latitude, longitude};
  const CountyInfo* county = counties.Find(county_fips);
  return county ? std::make_pair(county->latitude, county->longitude) : std::make_pair(0.0, 0.0);
}

const CountyTable& WashingtonCounties() {
  static const CountyTable* table = [] {
    auto t = CountyTable::FromCsv(WashingtonCountiesCsv());
    if (!t.ok() || t->all().size() != 39) {
      std::fprintf(stderr, "built-in county data is broken\n");
      std::abort();
    }
    return new CountyTable(*std::move(t));
  }();
  return *table;
}

}  // namespace safeharbor
