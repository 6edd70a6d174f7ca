// Great-circle distance, in C++ and as the SQL expression searches order by.
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace safeharbor {

inline constexpr double kEarthRadiusMeters = 6371008.8;

int64_t HaversineMeters(double lat1, double lng1, double lat2, double lng2);

// A latitude/longitude box containing every point within radius_meters of (lat, lng).
struct BoundingBox {
  double min_lat, max_lat, min_lng, max_lng;
};
BoundingBox BoxAround(double lat, double lng, int64_t radius_meters);

// SQL for the whole-meter distance between columns (lat_col, lng_col) and parameters
// (lat_param, lng_param), e.g. DistanceSql("s.latitude", "s.longitude", "$1", "$2").
std::string DistanceSql(absl::string_view lat_col, absl::string_view lng_col,
                        absl::string_view lat_param, absl::string_view lng_param);

}  // namespace safeharbor
