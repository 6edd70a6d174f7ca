#include "common/geo.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/substitute.h"

namespace safeharbor {
namespace {
constexpr double kPi = 3.14159265358979323846;
double Rad(double deg) { return deg * kPi / 180.0; }
}  // namespace

int64_t HaversineMeters(double lat1, double lng1, double lat2, double lng2) {
  const double dlat = Rad(lat2 - lat1), dlng = Rad(lng2 - lng1);
  const double a = std::pow(std::sin(dlat / 2), 2) +
                   std::cos(Rad(lat1)) * std::cos(Rad(lat2)) * std::pow(std::sin(dlng / 2), 2);
  return std::llround(kEarthRadiusMeters * 2 * std::asin(std::sqrt(std::min(1.0, a))));
}

BoundingBox BoxAround(double lat, double lng, int64_t radius_meters) {
  const double dlat = static_cast<double>(radius_meters) / (kEarthRadiusMeters * kPi / 180.0);
  const double cos_lat = std::max(0.01, std::cos(Rad(std::min(89.0, std::abs(lat) + dlat))));
  const double dlng = std::min(180.0, dlat / cos_lat);
  return {lat - dlat, lat + dlat, lng - dlng, lng + dlng};
}

std::string DistanceSql(absl::string_view lat_col, absl::string_view lng_col,
                        absl::string_view lat_param, absl::string_view lng_param) {
  return absl::Substitute(
      "round(6371008.8 * 2 * asin(least(1.0, sqrt("
      "power(sin(radians($0 - $2::float8) / 2), 2) + "
      "cos(radians($2::float8)) * cos(radians($0)) * "
      "power(sin(radians($1 - $3::float8) / 2), 2)))))::bigint",
      lat_col, lng_col, lat_param, lng_param);
}

}  // namespace safeharbor
