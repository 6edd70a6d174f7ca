// Encryption at rest for identifying youth details (DESIGN.md "Non-punitive by construction"):
// AES-256-GCM with a random 96-bit nonce, bound to associated data (e.g. the referral id) so a
// sealed value cannot be moved to another record. Keys carry an id so they can be rotated:
// values sealed with an older key still open while it is configured.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace safeharbor {

class Sealer {
 public:
  // keys: key id (1 to 255) → 32 raw bytes; `current` seals new values.
  static absl::StatusOr<Sealer> Create(std::map<uint8_t, std::string> keys, uint8_t current);
  // From configuration text "id:base64key[,id:base64key...]"; the first key seals.
  static absl::StatusOr<Sealer> FromConfig(absl::string_view config);

  // key id (1 byte) | nonce (12) | ciphertext | tag (16)
  absl::StatusOr<std::string> Seal(absl::string_view plaintext, absl::string_view aad) const;
  // DATA_LOSS when the value was altered, sealed for other associated data, or with an
  // unknown key.
  absl::StatusOr<std::string> Open(absl::string_view sealed, absl::string_view aad) const;

  // A keyed digest (HMAC-SHA256 under the current key, hex, prefixed with the key id): lets
  // identical values be recognized without storing anything a dictionary could reverse.
  std::string Fingerprint(absl::string_view value) const;

 private:
  Sealer(std::map<uint8_t, std::string> keys, uint8_t current)
      : keys_(std::move(keys)), current_(current) {}
  std::map<uint8_t, std::string> keys_;
  uint8_t current_;
};

}  // namespace safeharbor
