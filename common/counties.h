// Reference data: counties by FIPS code with approximate centroids.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace safeharbor {

struct CountyInfo {
  std::string fips;
  std::string name;
  double latitude = 0;
  double longitude = 0;
};

class CountyTable {
 public:
  // "fips,name,latitude,longitude" rows; '#' comment lines and the header are skipped.
  static absl::StatusOr<CountyTable> FromCsv(absl::string_view csv);
  const CountyInfo* Find(absl::string_view fips) const;
  const CountyInfo* FindByName(absl::string_view name) const;  // "King" or "King County"
  const std::vector<CountyInfo>& all() const { return counties_; }

 private:
  std::vector<CountyInfo> counties_;
};

// Where a search measures distance from: the point when given, else the county's centroid.
// The county must be known (callers validate first).
std::pair<double, double> SearchOrigin(bool has_point, double latitude, double longitude,
                                       const CountyTable& counties, absl::string_view county_fips);

// The 39 Washington counties (data/wa_counties.csv, compiled in).
const CountyTable& WashingtonCounties();
absl::string_view WashingtonCountiesCsv();

}  // namespace safeharbor
