#include "common/validate.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace safeharbor {

bool IsValidId(absl::string_view id) {
  if (id.size() < 3 || id.size() > 63) return false;
  if (!(absl::ascii_islower(id[0]) || absl::ascii_isdigit(id[0]))) return false;
  for (char c : id) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-')) return false;
  }
  return true;
}

absl::Status ValidateId(absl::string_view id, absl::string_view field) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is required"));
  if (!IsValidId(id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " must be 3 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ValidatePageSize(int32_t page_size, int default_size, int max_size) {
  if (page_size == 0) return default_size;
  if (page_size < 0 || page_size > max_size) {
    return absl::InvalidArgumentError(absl::StrCat("page_size must be between 1 and ", max_size));
  }
  return page_size;
}

absl::Status ValidateLatLng(double latitude, double longitude, absl::string_view prefix) {
  if (!(latitude >= -90 && latitude <= 90)) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "latitude must be between -90 and 90"));
  }
  if (!(longitude >= -180 && longitude <= 180)) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "longitude must be between -180 and 180"));
  }
  if (latitude == 0 && longitude == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "latitude and ", prefix, "longitude are required"));
  }
  return absl::OkStatus();
}

absl::Status ValidateCursor(absl::string_view cursor) {
  if (cursor.size() > 20 || !std::all_of(cursor.begin(), cursor.end(), [](char ch) {
        return absl::ascii_isdigit(static_cast<unsigned char>(ch));
      })) {
    return absl::InvalidArgumentError("cursor is malformed");
  }
  return absl::OkStatus();
}

}  // namespace safeharbor
