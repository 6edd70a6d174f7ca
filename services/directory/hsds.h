// Open Referral HSDS 3.1 JSON <-> directory records. Pure: no I/O.
//
// Shape read and written: {"hsds_version": "3.1", "organizations": [ {id, name, description,
// email, website, phones, contacts, locations: [{id, name, latitude, longitude, addresses}],
// services: [{id, name, description, status, minimum_age, maximum_age, eligibility_description,
// assured_date, languages: [{code}], schedules: [{freq, byday, opens_at, closes_at}],
// service_areas: [{name, extent_type, extent}], service_at_locations: [{location_id}],
// attributes: [{taxonomy_term: {taxonomy, code}}]}], attributes: [...]} ]}.
// Fields HSDS lacks (category, CSEC specialization, genders, time zone, organization kind,
// county) travel as attributes of taxonomy "safeharbor", e.g. code "category:hope_center".
// Plain 211 data without them is accepted: the category is inferred from the service's name
// and taxonomy terms when possible, and every record that cannot be placed is refused with
// its JSON path.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/counties.h"
#include "safeharbor/directory/v1/directory.pb.h"

namespace safeharbor::directory {

struct HsdsData {
  std::vector<v1::Organization> organizations;
  std::vector<v1::Service> services;
};

inline constexpr char kDefaultHsdsTimeZone[] = "America/Los_Angeles";

// Parses and validates; INVALID_ARGUMENT naming the JSON path of the first bad record.
absl::StatusOr<HsdsData> ParseHsds(absl::string_view json, const CountyTable& counties);

// Deterministic output (records in the given order, keys sorted).
std::string WriteHsds(const std::vector<v1::Organization>& organizations,
                      const std::vector<v1::Service>& services, const CountyTable& counties);

}  // namespace safeharbor::directory
