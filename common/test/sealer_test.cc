#include "common/sealer.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "absl/strings/escaping.h"

namespace safeharbor {
namespace {

std::string Key(char fill) { return std::string(32, fill); }
const std::string kFp(32, 'f');  // the fingerprint secret
const std::string kFpConfig = absl::Base64Escape(kFp);

TEST(Sealer, RoundTripsAndNeverStoresThePlaintext) {
  auto s = Sealer::Create({{1, Key('a')}}, 1, kFp);
  ASSERT_TRUE(s.ok());
  auto sealed = s->Seal("Name: Jane Doe; phone 206-555-0199", "ref-1");
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(sealed->find("Jane"), std::string::npos);
  auto opened = s->Open(*sealed, "ref-1");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, "Name: Jane Doe; phone 206-555-0199");
  // A fresh nonce every time: equal plaintexts do not give equal values.
  EXPECT_NE(*sealed, *s->Seal("Name: Jane Doe; phone 206-555-0199", "ref-1"));
}

TEST(Sealer, RefusesAlteredValuesOtherRecordsAndUnknownKeys) {
  auto s = *Sealer::Create({{1, Key('a')}}, 1, kFp);
  std::string sealed = *s.Seal("secret", "ref-1");
  EXPECT_EQ(s.Open(sealed, "ref-2").status().code(), absl::StatusCode::kDataLoss);
  std::string altered = sealed;
  altered[20] ^= 1;
  EXPECT_EQ(s.Open(altered, "ref-1").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(s.Open(sealed.substr(0, 10), "ref-1").status().code(), absl::StatusCode::kDataLoss);
  auto other = *Sealer::Create({{2, Key('b')}}, 2, kFp);
  EXPECT_EQ(other.Open(sealed, "ref-1").status().code(), absl::StatusCode::kDataLoss);
}

TEST(Sealer, RotatedKeysStillOpenOldValues) {
  auto old_key = *Sealer::Create({{1, Key('a')}}, 1, kFp);
  std::string sealed = *old_key.Seal("secret", "r");
  auto rotated = Sealer::FromConfig(
      "2:" + absl::Base64Escape(Key('b')) + ",1:" + absl::Base64Escape(Key('a')), kFpConfig);
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_EQ(*rotated->Open(sealed, "r"), "secret");
  EXPECT_EQ(static_cast<uint8_t>((*rotated->Seal("x", "r"))[0]), 2);  // new values: key 2
}

// A value sealed the way values were before keys were derived: AES-256-GCM under the configured
// secret itself, in the same layout (key id | nonce | ciphertext | tag).
std::string SealWithRawKey(const std::string& key, uint8_t id, const std::string& plaintext,
                           const std::string& aad) {
  std::string out(1 + 12 + plaintext.size() + 16, '\0');
  out[0] = static_cast<char>(id);
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  auto u = [](const std::string& s) { return reinterpret_cast<const unsigned char*>(s.data()); };
  for (int i = 0; i < 12; ++i) p[1 + i] = static_cast<unsigned char>(i);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0;
  EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, u(key), p + 1);
  EVP_EncryptUpdate(ctx, nullptr, &len, u(aad), static_cast<int>(aad.size()));
  EVP_EncryptUpdate(ctx, p + 13, &len, u(plaintext), static_cast<int>(plaintext.size()));
  EVP_EncryptFinal_ex(ctx, p + 13 + len, &len);
  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, p + 13 + plaintext.size());
  EVP_CIPHER_CTX_free(ctx);
  return out;
}

TEST(Sealer, ValuesSealedBeforeKeysWereDerivedStillOpen) {
  auto s = *Sealer::Create({{1, Key('a')}}, 1, kFp);
  const std::string legacy = SealWithRawKey(Key('a'), 1, "Name: Jane Doe", "ref-1");
  auto opened = s.Open(legacy, "ref-1");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, "Name: Jane Doe");
  EXPECT_EQ(s.Open(legacy, "ref-2").status().code(), absl::StatusCode::kDataLoss);
}

TEST(Sealer, BadConfigurationIsRefused) {
  EXPECT_FALSE(Sealer::FromConfig("", kFpConfig).ok());
  EXPECT_FALSE(Sealer::FromConfig("1:c2hvcnQ=", kFpConfig).ok());  // 5 bytes
  EXPECT_FALSE(Sealer::FromConfig("0:" + absl::Base64Escape(Key('a')), kFpConfig).ok());
  EXPECT_FALSE(Sealer::FromConfig("one:two", kFpConfig).ok());
  // Issue 11: a key id given twice no longer silently overwrites the first.
  auto twice = Sealer::FromConfig(
      "1:" + absl::Base64Escape(Key('a')) + ",1:" + absl::Base64Escape(Key('b')), kFpConfig);
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(twice.status().message().find("twice"), std::string::npos) << twice.status();
  // The fingerprint secret: required, long enough, not an encryption key.
  const std::string one = "1:" + absl::Base64Escape(Key('a'));
  EXPECT_FALSE(Sealer::FromConfig(one, "").ok());
  EXPECT_FALSE(Sealer::FromConfig(one, "c2hvcnQ=").ok());
  EXPECT_FALSE(Sealer::FromConfig(one, absl::Base64Escape(Key('a'))).ok());
  EXPECT_TRUE(Sealer::FromConfig(one, kFpConfig).ok());
}

}  // namespace
}  // namespace safeharbor

namespace safeharbor {
namespace {

TEST(Sealer, FingerprintsAreKeyedAndStable) {
  auto a = Sealer::Create({{1, std::string(32, 'a')}}, 1, kFp);
  auto b = Sealer::Create({{1, std::string(32, 'a')}}, 1, std::string(32, 'g'));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->Fingerprint("Jane Q"), a->Fingerprint("Jane Q"));
  EXPECT_NE(a->Fingerprint("Jane Q"), a->Fingerprint("Jane R"));
  // Without the key nobody can test a guess: another secret gives another digest.
  EXPECT_NE(a->Fingerprint("Jane Q"), b->Fingerprint("Jane Q"));
  EXPECT_EQ(a->Fingerprint("Jane Q").find("Jane"), std::string::npos);
  EXPECT_EQ(a->Fingerprint("x").substr(0, 3), "f1:");
}

// Issue 11: the fingerprint key is its own, derived from its own secret: rotating the
// encryption keys leaves fingerprints (and so retries of earlier requests) unchanged, and the
// encryption key is not the configured secret itself.
TEST(Sealer, FingerprintsSurviveEncryptionKeyRotation) {
  auto before = *Sealer::Create({{1, Key('a')}}, 1, kFp);
  auto rotated = *Sealer::Create({{2, Key('b')}, {1, Key('a')}}, 2, kFp);
  EXPECT_EQ(before.Fingerprint("Jane Q"), rotated.Fingerprint("Jane Q"));
  // HMAC under the raw encryption key (what fingerprints used to be) is not what is produced.
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const std::string raw = Key('a');
  HMAC(EVP_sha256(), raw.data(), static_cast<int>(raw.size()),
       reinterpret_cast<const unsigned char*>("Jane Q"), 6, mac, &len);
  const std::string old_style =
      absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(mac), len));
  EXPECT_EQ(before.Fingerprint("Jane Q").find(old_style), std::string::npos);
}

// RFC 5869, test case 1.
TEST(Sealer, HkdfMatchesTheRfcVector) {
  const std::string ikm(22, '\x0b');
  const std::string salt = absl::HexStringToBytes("000102030405060708090a0b0c");
  const std::string info = absl::HexStringToBytes("f0f1f2f3f4f5f6f7f8f9");
  auto okm = HkdfSha256(ikm, salt, info, 42);
  ASSERT_TRUE(okm.ok()) << okm.status();
  EXPECT_EQ(absl::BytesToHexString(*okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

}  // namespace
}  // namespace safeharbor
