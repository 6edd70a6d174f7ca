// Input checks shared by every service; each error is INVALID_ARGUMENT and names the field.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace safeharbor {

// Resource ids: [a-z0-9][a-z0-9-]{2,62}.
bool IsValidId(absl::string_view id);
absl::Status ValidateId(absl::string_view id, absl::string_view field);
// A watch cursor: empty (from now) or at most 20 digits; INVALID_ARGUMENT naming cursor.
absl::Status ValidateCursor(absl::string_view cursor);
// page_size: 0 → default_size; otherwise 1..max_size.
absl::StatusOr<int> ValidatePageSize(int32_t page_size, int default_size, int max_size);
// A latitude/longitude pair: in range and not (0, 0), the usual sign of a missing value.
absl::Status ValidateLatLng(double latitude, double longitude, absl::string_view field_prefix);

}  // namespace safeharbor
