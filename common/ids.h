// Server-generated resource ids: "<prefix>-<16 random hex digits>".
#pragma once

#include <openssl/rand.h>

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace safeharbor {

inline std::string NewId(absl::string_view prefix) {
  unsigned char bytes[8];
  RAND_bytes(bytes, sizeof bytes);
  return absl::StrCat(prefix, "-",
                      absl::BytesToHexString(
                          absl::string_view(reinterpret_cast<const char*>(bytes), sizeof bytes)));
}

}  // namespace safeharbor
