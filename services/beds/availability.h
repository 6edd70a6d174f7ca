// Pure decisions of the beds service: availability arithmetic, staleness, routability, and
// input validation. No I/O.
#pragma once

#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/counties.h"
#include "safeharbor/beds/v1/beds.pb.h"

namespace safeharbor::beds {

// Routing never proposes a secure (locked) placement or detention.
bool IsRoutable(v1::PlacementType type);

struct Inventory {
  int32_t licensed_capacity = 0;
  int32_t occupied = 0;
  int32_t out_of_service = 0;
  int32_t held = 0;  // active, unexpired holds
  std::optional<absl::Time> confirmed_at;
};

// licensed - out_of_service - occupied - held, never below 0.
int32_t AvailableBeds(const Inventory& inv);

v1::AvailabilityStatus StatusAt(const Inventory& inv, absl::Time now, absl::Duration stale_after);

// OK when one more hold fits; FAILED_PRECONDITION saying why not (never routable, census stale
// or missing, no bed free).
absl::Status CanHold(const Inventory& inv, bool routable, absl::Time now,
                     absl::Duration stale_after);

// 0 → 30 minutes; otherwise 60 s to 4 h.
absl::StatusOr<absl::Duration> HoldTtl(int32_t ttl_seconds);

// ExtendHold's decision, taken under the bed type's lock at `now`: the hold's new expiry.
// FAILED_PRECONDITION for a hold no longer active (released, confirmed, or past its expiry) and
// for an expiry before the current one (a hold is never shortened); INVALID_ARGUMENT naming
// expire_time beyond now + max_extension. The current expiry itself is answered as it is.
absl::StatusOr<absl::Time> ExtendedExpiry(const v1::Hold& hold, absl::Time requested,
                                          absl::Time now, absl::Duration max_extension);

absl::Status ValidateFacility(const v1::Facility& f, const CountyTable& counties, bool require_id);

// Against the facility's bed types; confirmed_time not in the future nor older than stale_after.
absl::Status ValidateCensus(const v1::ReportCensusRequest& req, const v1::Facility& facility,
                            absl::Time now, absl::Duration stale_after);

absl::Status ValidateSearch(const v1::SearchAvailabilityRequest& req, const CountyTable& counties);

v1::BedAvailability ToProto(const std::string& facility_id, v1::BedType type, const Inventory& inv,
                            absl::Time now, absl::Duration stale_after);

}  // namespace safeharbor::beds
