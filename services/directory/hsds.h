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

#include <cstdint>
#include <string>
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

// At most this many problems (and as many normalizations) are listed; the rest are counted.
inline constexpr size_t kMaxHsdsListed = 1000;

// What reading a document found: every problem with its JSON path, and every value changed.
class HsdsReport {
 public:
  // `text` reads on its own ("organizations[0].locations[0]: location.latitude must be ...").
  void Problem(std::string path, std::string text);
  void Normalized(std::string path, std::string original, std::string normalized, const char* rule);

  int64_t problem_count() const { return problems_total_; }
  // The first problem as INVALID_ARGUMENT (OK when there is none).
  absl::Status First() const;
  // Lists (bounded) and counts into an ImportHsds answer.
  void Fill(v1::ImportHsdsResponse* resp) const;

 private:
  std::vector<v1::HsdsProblem> problems_;
  int64_t problems_total_ = 0;
  std::vector<v1::HsdsNormalization> normalizations_;
  int64_t normalizations_total_ = 0;
};

struct HsdsRead {
  HsdsData data;  // the records without a problem, normalized
  int32_t organizations_skipped = 0;
  int32_t services_skipped = 0;
  int32_t locations_skipped = 0;
  HsdsReport report;
};

// Reads every record of the document, collecting every problem. The unit refused is the record:
// a location with a problem is left out of its organization; an organization with a problem is
// refused with its services; a service with a problem (or whose location was refused) alone.
// Safe normalizations are made and reported: surrounding quotes on any text, phone punctuation,
// numbers written as text, county names and FIPS codes of service areas.
HsdsRead ReadHsds(absl::string_view json, const CountyTable& counties);

// All or nothing: INVALID_ARGUMENT naming the JSON path of the first problem.
absl::StatusOr<HsdsData> ParseHsds(absl::string_view json, const CountyTable& counties);

// Deterministic output (records in the given order, keys sorted).
std::string WriteHsds(const std::vector<v1::Organization>& organizations,
                      const std::vector<v1::Service>& services, const CountyTable& counties);

}  // namespace safeharbor::directory
