// The directory's SQL. Every function runs inside the caller's transaction, so a service can
// combine several with an idempotency record atomically. Every statement is parameterized.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/pg.h"
#include "safeharbor/directory/v1/directory.pb.h"

namespace safeharbor::directory {

struct SearchQuery {
  const v1::SearchServicesRequest* request;
  double origin_latitude;
  double origin_longitude;
  // Keyset position: results strictly after (after_distance, after_id).
  std::optional<std::pair<int64_t, std::string>> after;
  int limit;
};

class DirectoryStore {
 public:
  // Fills create/update time and etag on success.
  static absl::Status InsertOrganization(PgTx& tx, v1::Organization* org);
  static absl::StatusOr<v1::Organization> GetOrganization(PgTx& tx, absl::string_view id,
                                                          bool for_update = false);
  // Replaces the organization if org->etag() matches (ABORTED otherwise); keeps its services'
  // positions in step with its locations.
  static absl::Status UpdateOrganization(PgTx& tx, v1::Organization* org);
  static absl::StatusOr<std::vector<v1::Organization>> ListOrganizations(
      PgTx& tx, v1::OrganizationKind kind, absl::string_view county_fips,
      absl::string_view after_id, int limit);

  static absl::Status InsertService(PgTx& tx, v1::Service* service);
  static absl::StatusOr<v1::Service> GetService(PgTx& tx, absl::string_view id,
                                                bool for_update = false);
  static absl::Status UpdateService(PgTx& tx, v1::Service* service);
  static absl::StatusOr<std::vector<v1::Service>> ListServices(PgTx& tx,
                                                               absl::string_view organization_id,
                                                               absl::string_view after_id,
                                                               int limit);

  static absl::StatusOr<std::vector<v1::ServiceMatch>> Search(PgTx& tx, const SearchQuery& q);

  // Insert or replace (by id), for HSDS import: no etag check.
  static absl::Status UpsertOrganization(PgTx& tx, v1::Organization* org);
  static absl::Status UpsertService(PgTx& tx, v1::Service* service);
};

}  // namespace safeharbor::directory
