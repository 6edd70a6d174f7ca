// Facts that decide money or reach: an organization's kind, county and locations (where its
// services are and which county's fees it shares), and a service's area (which counties'
// searches and routing reach it). They change only through directory_admin; a provider edits
// the rest of its own organization. Every change is recorded (who, when, old, new) in the
// transaction that makes it, for auditors.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/pg.h"
#include "safeharbor/directory/v1/directory.pb.h"

namespace safeharbor::directory {

struct FactChange {
  std::string field;  // "kind", "county_fips", "locations[main]", "service_area_county_fips"
  std::string old_value;
  std::string new_value;
};

// Pure: the deciding facts that differ between `before` (null: newly created) and `after`.
std::vector<FactChange> OrganizationFactChanges(const v1::Organization* before,
                                                const v1::Organization& after);
std::vector<FactChange> ServiceFactChanges(const v1::Service* before, const v1::Service& after);

// Pure: PERMISSION_DENIED naming the first field when a caller other than directory_admin
// would change a deciding fact.
absl::Status MayChangeFacts(const Caller& caller, const std::vector<FactChange>& changes);

// Pure: a provider creates a service only for the counties its organization already serves
// (its county and its locations' counties, both set by directory_admin).
absl::Status ProviderMayServe(const v1::Organization& org, const v1::Service& service);

class FactLog {
 public:
  // Appends `changes` of one resource, in the caller's transaction.
  static absl::Status Record(PgTx& tx, const Caller& by, absl::string_view organization_id,
                             absl::string_view resource, absl::string_view resource_id,
                             const std::vector<FactChange>& changes);
  // Changes with id > after_id, oldest first (organization_id empty: every organization).
  static absl::StatusOr<std::vector<v1::FactChange>> List(PgTx& tx,
                                                          absl::string_view organization_id,
                                                          int64_t after_id, int limit);
};

}  // namespace safeharbor::directory
