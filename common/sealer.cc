#include "common/sealer.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
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
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

const unsigned char* U(absl::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

absl::StatusOr<Sealer> Sealer::Create(std::map<uint8_t, std::string> keys, uint8_t current) {
  if (keys.empty() || !keys.contains(current)) {
    return absl::InvalidArgumentError("the sealing key must be one of the configured keys");
  }
  for (const auto& [id, key] : keys) {
    if (id == 0 || key.size() != kKeyBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("key ", int{id}, " must have an id 1-255 and exactly 32 bytes"));
    }
  }
  return Sealer(std::move(keys), current);
}

absl::StatusOr<Sealer> Sealer::FromConfig(absl::string_view config) {
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
    if (first < 0) first = id;
    keys[static_cast<uint8_t>(id)] = key;
  }
  if (first < 0) return absl::InvalidArgumentError("no encryption key configured");
  return Create(std::move(keys), static_cast<uint8_t>(first));
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
  auto key = keys_.find(static_cast<uint8_t>(sealed[0]));
  if (key == keys_.end()) return absl::DataLossError("sealed with a key that is not configured");
  const absl::string_view nonce = sealed.substr(1, kNonceBytes);
  const absl::string_view body =
      sealed.substr(1 + kNonceBytes, sealed.size() - 1 - kNonceBytes - kTagBytes);
  std::string tag(sealed.substr(sealed.size() - kTagBytes));
  std::string out(body.size(), '\0');
  Ctx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0;
  if (!ctx ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, U(key->second), U(nonce)) != 1 ||
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
  const std::string& key = keys_.at(current_);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(value.data()), value.size(), mac, &len);
  return absl::StrCat(current_, ":",
                      absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(mac), len)));
}

}  // namespace safeharbor
