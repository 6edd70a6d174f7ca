// Pure ranking of routing candidates. Hard constraints first (never a secure or detention
// placement, never the county where the exploiter is known when the youth is at risk there, the
// youth's age and gender), then a score: CSEC specialization, language, distance, current load.
// The explanation of every candidate is kept with the referral.
#pragma once

#include <string>
#include <vector>

#include "safeharbor/referrals/v1/referrals.pb.h"

namespace safeharbor::referrals {

// A service (or a facility with a free bed) the directory and beds service offered.
struct Option {
  std::string provider_organization_id;
  std::string service_id;
  std::string facility_id;                                      // set for placements
  beds::v1::BedType bed_type = beds::v1::BED_TYPE_UNSPECIFIED;  // the bed to hold
  std::string location_id;  // the directory location of the service, for the hand-off
  std::string name;         // the service's or facility's name
  directory::v1::ServiceCategory category = directory::v1::SERVICE_CATEGORY_UNSPECIFIED;
  bool routable = true;  // false for secure crisis residential and detention
  bool csec_specialized = false;
  std::vector<std::string> languages;
  std::string county_fips;  // where the service is delivered
  int64_t distance_meters = 0;
  int32_t active_referrals = 0;  // current load at this provider: its open offers
  bool open_24_7 = false;        // the directory's Schedule.open_24_7 (services only)
};

struct RoutingRequest {
  const v1::YouthProfile* youth;
  const v1::SafetyFlags* safety;
  std::string county_fips;  // where the youth was identified
  v1::Urgency urgency = v1::URGENCY_ROUTINE;
  // Issue 14, advocate response: only services open 24/7 (an urgent or emergency advocacy row,
  // advocate.h's HasAdvocateTarget).
  bool open_24_7_only = false;
};

// Eligible options, best first, with rank, score and explanation; deterministic.
std::vector<v1::Candidate> Rank(const RoutingRequest& request, const std::vector<Option>& options);

// How many providers to offer at once: one for a placement (a bed is held for it), up to three
// for non-residential services (the first to accept wins).
int OffersAtOnce(bool placement);

}  // namespace safeharbor::referrals
