// Pure input validation for the directory: every error is INVALID_ARGUMENT and names the field.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "safeharbor/directory/v1/directory.pb.h"
#include "services/directory/counties.h"

namespace safeharbor::directory {

// [a-z0-9][a-z0-9-]{2,62}
bool IsValidId(absl::string_view id);
absl::Status ValidateId(absl::string_view id, absl::string_view field);

// Routing never proposes a secure (locked) placement.
bool IsRoutableCategory(v1::ServiceCategory category);

// `require_id`: false on create (the server may generate one).
absl::Status ValidateOrganization(const v1::Organization& org, const CountyTable& counties,
                                  bool require_id);
absl::Status ValidateService(const v1::Service& service, const CountyTable& counties,
                             bool require_id);
absl::Status ValidateSearch(const v1::SearchServicesRequest& req, const CountyTable& counties);
// page_size: 0 → default_size; otherwise 1..max_size.
absl::StatusOr<int> ValidatePageSize(int32_t page_size, int default_size, int max_size);

}  // namespace safeharbor::directory
