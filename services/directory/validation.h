// Pure input validation for the directory: every error is INVALID_ARGUMENT and names the field.
#pragma once

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/counties.h"
#include "common/validate.h"
#include "safeharbor/directory/v1/directory.pb.h"

namespace safeharbor::directory {

// Routing never proposes a secure (locked) placement.
bool IsRoutableCategory(v1::ServiceCategory category);

// `require_id`: false on create (the server may generate one).
absl::Status ValidateOrganization(const v1::Organization& org, const CountyTable& counties,
                                  bool require_id);
absl::Status ValidateService(const v1::Service& service, const CountyTable& counties,
                             bool require_id);
// Every problem of the record (each naming its field), in the order the two above check them:
// their answer is the first of these.
std::vector<absl::Status> OrganizationProblems(const v1::Organization& org,
                                               const CountyTable& counties, bool require_id);
std::vector<absl::Status> ServiceProblems(const v1::Service& service, const CountyTable& counties,
                                          bool require_id);
absl::Status ValidateSearch(const v1::SearchServicesRequest& req, const CountyTable& counties);

}  // namespace safeharbor::directory
