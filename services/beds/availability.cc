#include "services/beds/availability.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/validate.h"

namespace safeharbor::beds {
namespace {
using absl::InvalidArgumentError;
using absl::StrCat;
}  // namespace

bool IsRoutable(v1::PlacementType type) {
  return v1::PlacementType_IsValid(type) && type != v1::PLACEMENT_TYPE_UNSPECIFIED &&
         type != v1::PLACEMENT_TYPE_SECURE_CRISIS_RESIDENTIAL_CENTER &&
         type != v1::PLACEMENT_TYPE_DETENTION;
}

int32_t AvailableBeds(const Inventory& inv) {
  return std::max(0, inv.licensed_capacity - inv.out_of_service - inv.occupied - inv.held);
}

v1::AvailabilityStatus StatusAt(const Inventory& inv, absl::Time now, absl::Duration stale_after) {
  if (!inv.confirmed_at) return v1::AVAILABILITY_STATUS_NEVER_REPORTED;
  if (now - *inv.confirmed_at > stale_after) return v1::AVAILABILITY_STATUS_STALE;
  return v1::AVAILABILITY_STATUS_KNOWN;
}

absl::Status CanHold(const Inventory& inv, bool routable, absl::Time now,
                     absl::Duration stale_after) {
  if (!routable) {
    return absl::FailedPreconditionError(
        "this facility is a secure or detention placement and is never held or routed to");
  }
  switch (StatusAt(inv, now, stale_after)) {
    case v1::AVAILABILITY_STATUS_NEVER_REPORTED:
      return absl::FailedPreconditionError(
          "no census was ever reported for this bed type; call the facility");
    case v1::AVAILABILITY_STATUS_STALE:
      return absl::FailedPreconditionError(
          "the census for this bed type is stale, so availability is unknown; call the facility");
    default:
      break;
  }
  if (AvailableBeds(inv) <= 0) {
    return absl::FailedPreconditionError("no bed of this type is free");
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::Duration> HoldTtl(int32_t ttl_seconds) {
  if (ttl_seconds == 0) return absl::Minutes(30);
  if (ttl_seconds < 60 || ttl_seconds > 4 * 3600) {
    return InvalidArgumentError("ttl_seconds must be between 60 and 14400 (or 0 for 1800)");
  }
  return absl::Seconds(ttl_seconds);
}

absl::StatusOr<absl::Time> ExtendedExpiry(const v1::Hold& hold, absl::Time requested,
                                          absl::Time now, absl::Duration max_extension) {
  const absl::Time current = FromProtoTime(hold.expire_time());
  if (hold.state() != v1::HOLD_STATE_ACTIVE || current <= now) {
    return absl::FailedPreconditionError(
        StrCat("hold '", hold.id(), "' is no longer active (",
               hold.state() == v1::HOLD_STATE_ACTIVE ? "expired" : v1::HoldState_Name(hold.state()),
               ") and cannot be extended"));
  }
  requested = absl::FromUnixMicros(absl::ToUnixMicros(requested));  // as PostgreSQL keeps it
  if (requested < current) {
    return absl::FailedPreconditionError(
        StrCat("expire_time is before the hold's current expiry (", Rfc3339Seconds(current),
               "); a hold is never shortened (release it instead)"));
  }
  if (requested > now + max_extension) {
    return InvalidArgumentError(StrCat("expire_time may be at most ",
                                       absl::ToInt64Seconds(max_extension), " seconds from now"));
  }
  return requested;
}

absl::Status ValidateFacility(const v1::Facility& f, const CountyTable& counties, bool require_id) {
  if (require_id || !f.id().empty()) {
    SH_RETURN_IF_ERROR(ValidateId(f.id(), "facility.id"));
  }
  SH_RETURN_IF_ERROR(ValidateId(f.organization_id(), "facility.organization_id"));
  if (f.name().empty() || f.name().size() > 200) {
    return InvalidArgumentError("facility.name is required (at most 200 bytes)");
  }
  if (f.placement_type() == v1::PLACEMENT_TYPE_UNSPECIFIED ||
      !v1::PlacementType_IsValid(f.placement_type())) {
    return InvalidArgumentError("facility.placement_type is required");
  }
  if (counties.Find(f.county_fips()) == nullptr) {
    return InvalidArgumentError("facility.county_fips must be a known county FIPS code");
  }
  SH_RETURN_IF_ERROR(ValidateLatLng(f.latitude(), f.longitude(), "facility."));
  if (f.minimum_age() < 0 || f.minimum_age() > 30 || f.maximum_age() < 0 || f.maximum_age() > 30 ||
      f.minimum_age() > f.maximum_age()) {
    return InvalidArgumentError(
        "facility.minimum_age and facility.maximum_age must be 0 to 30, minimum first");
  }
  std::set<int> genders;
  for (int i = 0; i < f.genders_accepted_size(); ++i) {
    const auto g = f.genders_accepted(i);
    if (g == v1::GENDER_UNSPECIFIED || !v1::Gender_IsValid(g) || !genders.insert(g).second) {
      return InvalidArgumentError(
          StrCat("facility.genders_accepted[", i, "] must be a distinct, specified gender"));
    }
  }
  if (f.bed_types_size() == 0 || f.bed_types_size() > 10) {
    return InvalidArgumentError("facility.bed_types needs 1 to 10 entries");
  }
  std::set<int> types;
  for (int i = 0; i < f.bed_types_size(); ++i) {
    const auto& b = f.bed_types(i);
    const std::string field = StrCat("facility.bed_types[", i, "]");
    if (b.bed_type() == v1::BED_TYPE_UNSPECIFIED || !v1::BedType_IsValid(b.bed_type()) ||
        !types.insert(b.bed_type()).second) {
      return InvalidArgumentError(StrCat(field, ".bed_type must be a distinct, specified type"));
    }
    if (b.licensed_capacity() < 0 || b.licensed_capacity() > 1000) {
      return InvalidArgumentError(StrCat(field, ".licensed_capacity must be 0 to 1000"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateCensus(const v1::ReportCensusRequest& req, const v1::Facility& facility,
                            absl::Time now, absl::Duration stale_after) {
  if (!req.has_confirmed_time()) return InvalidArgumentError("confirmed_time is required");
  const absl::Time t = FromProtoTime(req.confirmed_time());
  if (t > now + absl::Minutes(2)) {
    return InvalidArgumentError("confirmed_time is in the future");
  }
  if (now - t > stale_after) {
    return InvalidArgumentError("confirmed_time is older than the staleness window");
  }
  if (req.entries_size() == 0) return InvalidArgumentError("entries needs at least one bed type");
  std::set<int> seen;
  for (int i = 0; i < req.entries_size(); ++i) {
    const auto& e = req.entries(i);
    const std::string field = StrCat("entries[", i, "]");
    const v1::BedTypeCapacity* cap = nullptr;
    for (const auto& b : facility.bed_types()) {
      if (b.bed_type() == e.bed_type()) cap = &b;
    }
    if (cap == nullptr || !seen.insert(e.bed_type()).second) {
      return InvalidArgumentError(
          StrCat(field, ".bed_type must be one of the facility's bed types, once"));
    }
    if (e.occupied() < 0 || e.out_of_service() < 0) {
      return InvalidArgumentError(StrCat(field, " counts must not be negative"));
    }
    if (int64_t{e.occupied()} + e.out_of_service() > cap->licensed_capacity()) {
      return InvalidArgumentError(StrCat(field, ": occupied + out_of_service exceeds the ",
                                         cap->licensed_capacity(), " licensed beds"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSearch(const v1::SearchAvailabilityRequest& req, const CountyTable& counties) {
  if (req.county_fips().empty() && !req.has_near()) {
    return InvalidArgumentError("one of county_fips or near is required");
  }
  if (!req.county_fips().empty() && counties.Find(req.county_fips()) == nullptr) {
    return InvalidArgumentError("county_fips must be a known county FIPS code");
  }
  if (req.has_near()) {
    SH_RETURN_IF_ERROR(ValidateLatLng(req.near().latitude(), req.near().longitude(), "near."));
    if (req.radius_meters() < 1 || req.radius_meters() > 1000000) {
      return InvalidArgumentError("radius_meters must be between 1 and 1000000 with near");
    }
  } else if (req.radius_meters() != 0) {
    return InvalidArgumentError("radius_meters needs near");
  }
  if (req.has_age() && (req.age() < 0 || req.age() > 30)) {
    return InvalidArgumentError("age must be between 0 and 30");
  }
  if (!v1::Gender_IsValid(req.gender())) return InvalidArgumentError("gender is not valid");
  for (int i = 0; i < req.bed_types_size(); ++i) {
    if (req.bed_types(i) == v1::BED_TYPE_UNSPECIFIED || !v1::BedType_IsValid(req.bed_types(i))) {
      return InvalidArgumentError(StrCat("bed_types[", i, "] is not a bed type"));
    }
  }
  if (req.max_staleness_seconds() < 0 || req.max_staleness_seconds() > 604800) {
    return InvalidArgumentError("max_staleness_seconds must be between 0 and 604800");
  }
  return ValidatePageSize(req.page_size(), 20, 200).status();
}

v1::BedAvailability ToProto(const std::string& facility_id, v1::BedType type, const Inventory& inv,
                            absl::Time now, absl::Duration stale_after) {
  v1::BedAvailability out;
  out.set_facility_id(facility_id);
  out.set_bed_type(type);
  out.set_status(StatusAt(inv, now, stale_after));
  out.set_licensed_capacity(inv.licensed_capacity);
  out.set_out_of_service(inv.out_of_service);
  out.set_occupied(inv.occupied);
  out.set_held(inv.held);
  out.set_available_beds(AvailableBeds(inv));
  if (inv.confirmed_at) *out.mutable_confirmed_time() = ToProtoTime(*inv.confirmed_at);
  return out;
}

}  // namespace safeharbor::beds
