#include "common/sealer.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace safeharbor {
namespace {

constexpr size_t kKeyBytes = 32, kNonceBytes = 12, kTagBytes = 16;
// HKDF parameters: one salt for the application, one `info` per purpose, so the two keys are
// independent even if an operator configured related secrets.
constexpr absl::string_view kSalt = "safeharbor-network";
constexpr absl::string_view kEncryptionInfo = "youth-data aes-256-gcm v1";
constexpr absl::string_view kFingerprintInfo = "idempotency fingerprint hmac-sha256 v1";
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

const unsigned char* U(absl::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

absl::StatusOr<std::string> HkdfSha256(absl::string_view secret, absl::string_view salt,
                                       absl::string_view info, size_t length) {
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr), &EVP_PKEY_CTX_free);
  std::string out(length, '\0');
  size_t len = out.size();
  if (!ctx || length == 0 || length > 255 * 32 || EVP_PKEY_derive_init(ctx.get()) <= 0 ||
      EVP_PKEY_CTX_set_hkdf_md(ctx.get(), EVP_sha256()) <= 0 ||
      EVP_PKEY_CTX_set1_hkdf_salt(ctx.get(), U(salt), static_cast<int>(salt.size())) <= 0 ||
      EVP_PKEY_CTX_set1_hkdf_key(ctx.get(), U(secret), static_cast<int>(secret.size())) <= 0 ||
      EVP_PKEY_CTX_add1_hkdf_info(ctx.get(), U(info), static_cast<int>(info.size())) <= 0 ||
      EVP_PKEY_derive(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len) <= 0 ||
      len != length) {
    return absl::InternalError("HKDF key derivation failed");
  }
  return out;
}

absl::StatusOr<Sealer> Sealer::Create(const std::map<uint8_t, std::string>& keys, uint8_t current,
                                      absl::string_view fingerprint_secret) {
  if (keys.empty() || !keys.contains(current)) {
    return absl::InvalidArgumentError("the sealing key must be one of the configured keys");
  }
  if (fingerprint_secret.size() < kKeyBytes) {
    return absl::InvalidArgumentError("the fingerprint secret must have at least 32 bytes");
  }
  std::map<uint8_t, std::string> derived;
  for (const auto& [id, key] : keys) {
    if (id == 0 || key.size() != kKeyBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("key ", int{id}, " must have an id 1-255 and exactly 32 bytes"));
    }
    if (key == fingerprint_secret) {
      return absl::InvalidArgumentError(
          absl::StrCat("the fingerprint secret must not be an encryption key (key ", int{id}, ")"));
    }
    auto k = HkdfSha256(key, kSalt, kEncryptionInfo, kKeyBytes);
    if (!k.ok()) return k.status();
    derived[id] = *std::move(k);
  }
  auto fingerprint = HkdfSha256(fingerprint_secret, kSalt, kFingerprintInfo, kKeyBytes);
  if (!fingerprint.ok()) return fingerprint.status();
  return Sealer(std::move(derived), keys, current, *std::move(fingerprint));
}

absl::StatusOr<Sealer> Sealer::FromConfig(absl::string_view config,
                                          absl::string_view fingerprint_secret_base64) {
  std::map<uint8_t, std::string> keys;
  int first = -1;
  for (absl::string_view entry : absl::StrSplit(config, ',', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(entry, absl::MaxSplits(':', 1));
    int id = 0;
    std::string key;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(kv.first), &id) || id < 1 || id > 255 ||
        !absl::Base64Unescape(absl::StripAsciiWhitespace(kv.second), &key)) {
      return absl::InvalidArgumentError("encryption keys must be 'id:base64key[,id:base64key]'");
    }
    if (!keys.emplace(static_cast<uint8_t>(id), key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("encryption key id ", id, " is configured twice; each id names one key"));
    }
    if (first < 0) first = id;
  }
  if (first < 0) return absl::InvalidArgumentError("no encryption key configured");
  std::string fingerprint_secret;
  if (!absl::Base64Unescape(absl::StripAsciiWhitespace(fingerprint_secret_base64),
                            &fingerprint_secret)) {
    return absl::InvalidArgumentError("the fingerprint secret must be base64");
  }
  return Create(keys, static_cast<uint8_t>(first), fingerprint_secret);
}

absl::StatusOr<std::string> Sealer::Seal(absl::string_view plaintext, absl::string_view aad) const {
  std::string out(1 + kNonceBytes + plaintext.size() + kTagBytes, '\0');
  out[0] = static_cast<char>(current_);
  auto* nonce = reinterpret_cast<unsigned char*>(&out[1]);
  if (RAND_bytes(nonce, kNonceBytes) != 1) return absl::InternalError("no randomness for a nonce");
  Ctx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0;
  auto* body = reinterpret_cast<unsigned char*>(&out[1 + kNonceBytes]);
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, U(keys_.at(current_)), nonce) !=
          1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, U(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), body, &len, U(plaintext), static_cast<int>(plaintext.size())) !=
          1 ||
      EVP_EncryptFinal_ex(ctx.get(), body + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, body + plaintext.size()) !=
          1) {
    return absl::InternalError("encryption failed");
  }
  return out;
}

absl::StatusOr<std::string> Sealer::Open(absl::string_view sealed, absl::string_view aad) const {
  if (sealed.size() < 1 + kNonceBytes + kTagBytes)
    return absl::DataLossError("sealed value is truncated");
  const uint8_t id = static_cast<uint8_t>(sealed[0]);
  auto key = keys_.find(id);
  if (key == keys_.end()) return absl::DataLossError("sealed with a key that is not configured");
  absl::StatusOr<std::string> out = OpenWith(key->second, sealed, aad);
  // Sealed before keys were derived (the configured secret was the AES key itself): still opens,
  // and is sealed again under the derived key the next time it is written.
  if (!out.ok()) {
    absl::StatusOr<std::string> legacy = OpenWith(legacy_keys_.at(id), sealed, aad);
    if (legacy.ok()) return legacy;
  }
  return out;
}

absl::StatusOr<std::string> Sealer::OpenWith(absl::string_view key, absl::string_view sealed,
                                             absl::string_view aad) {
  const absl::string_view nonce = sealed.substr(1, kNonceBytes);
  const absl::string_view body =
      sealed.substr(1 + kNonceBytes, sealed.size() - 1 - kNonceBytes - kTagBytes);
  std::string tag(sealed.substr(sealed.size() - kTagBytes));
  std::string out(body.size(), '\0');
  Ctx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0;
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, U(key), U(nonce)) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, U(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, U(body),
                        static_cast<int>(body.size())) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + len, &len) !=
          1) {
    return absl::DataLossError("sealed value failed authentication (altered, or another record's)");
  }
  return out;
}

std::string Sealer::Fingerprint(absl::string_view value) const {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), fingerprint_key_.data(), static_cast<int>(fingerprint_key_.size()),
       reinterpret_cast<const unsigned char*>(value.data()), value.size(), mac, &len);
  return absl::StrCat("f1:",
                      absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(mac), len)));
}

}  // namespace safeharbor
