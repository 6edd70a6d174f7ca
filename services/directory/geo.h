// Great-circle distance, the same formula the search SQL uses.
#pragma once

#include <cstdint>

namespace safeharbor::directory {

inline constexpr double kEarthRadiusMeters = 6371008.8;

int64_t HaversineMeters(double lat1, double lng1, double lat2, double lng2);

// A latitude/longitude box containing every point within radius_meters of (lat, lng).
struct BoundingBox {
  double min_lat, max_lat, min_lng, max_lng;
};
BoundingBox BoxAround(double lat, double lng, int64_t radius_meters);

}  // namespace safeharbor::directory
