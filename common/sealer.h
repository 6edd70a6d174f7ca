// Encryption at rest for identifying youth details (DESIGN.md "Non-punitive by construction"):
// AES-256-GCM with a random 96-bit nonce, bound to associated data (e.g. the referral id) so a
// sealed value cannot be moved to another record. Keys carry an id so they can be rotated:
// values sealed with an older key still open while it is configured.
//
// Two separate keys, each derived with HKDF-SHA256 from its own configured secret: the
// encryption keys (one per key id) and the fingerprint key (HMAC-SHA256 digests of identifying
// details in idempotency records). The fingerprint key does not change when the encryption keys
// rotate, so a retry after a rotation still matches its first call.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace safeharbor {

// RFC 5869 HKDF with SHA-256 (OpenSSL's EVP_PKEY_HKDF): `length` bytes (at most 255 * 32).
absl::StatusOr<std::string> HkdfSha256(absl::string_view secret, absl::string_view salt,
                                       absl::string_view info, size_t length);

class Sealer {
 public:
  // keys: key id (1 to 255) → configured secret of exactly 32 bytes; `current` seals new values.
  // `fingerprint_secret`: at least 32 bytes, none of the encryption secrets.
  static absl::StatusOr<Sealer> Create(const std::map<uint8_t, std::string>& keys, uint8_t current,
                                       absl::string_view fingerprint_secret);
  // From configuration text "id:base64key[,id:base64key...]" (the first key seals; a key id
  // given twice is refused) and the base64 fingerprint secret.
  static absl::StatusOr<Sealer> FromConfig(absl::string_view config,
                                           absl::string_view fingerprint_secret_base64);

  // key id (1 byte) | nonce (12) | ciphertext | tag (16)
  absl::StatusOr<std::string> Seal(absl::string_view plaintext, absl::string_view aad) const;
  // DATA_LOSS when the value was altered, sealed for other associated data, or with an
  // unknown key. A value sealed before keys were derived (under the configured secret itself)
  // still opens.
  absl::StatusOr<std::string> Open(absl::string_view sealed, absl::string_view aad) const;

  // A keyed digest ("f1:" and HMAC-SHA256 under the fingerprint key, hex): lets identical values
  // be recognized without storing anything a dictionary could reverse; the same whichever
  // encryption key is current.
  std::string Fingerprint(absl::string_view value) const;

 private:
  Sealer(std::map<uint8_t, std::string> keys, std::map<uint8_t, std::string> legacy_keys,
         uint8_t current, std::string fingerprint_key)
      : keys_(std::move(keys)),
        legacy_keys_(std::move(legacy_keys)),
        current_(current),
        fingerprint_key_(std::move(fingerprint_key)) {}
  static absl::StatusOr<std::string> OpenWith(absl::string_view key, absl::string_view sealed,
                                              absl::string_view aad);
  std::map<uint8_t, std::string> keys_;         // derived encryption keys
  std::map<uint8_t, std::string> legacy_keys_;  // the configured secrets, which sealed values
                                                // before keys were derived (open only)
  uint8_t current_;
  std::string fingerprint_key_;  // derived
};

}  // namespace safeharbor
