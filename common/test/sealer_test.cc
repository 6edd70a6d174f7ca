#include "common/sealer.h"

#include <gtest/gtest.h>

#include "absl/strings/escaping.h"

namespace safeharbor {
namespace {

std::string Key(char fill) { return std::string(32, fill); }

TEST(Sealer, RoundTripsAndNeverStoresThePlaintext) {
  auto s = Sealer::Create({{1, Key('a')}}, 1);
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
  auto s = *Sealer::Create({{1, Key('a')}}, 1);
  std::string sealed = *s.Seal("secret", "ref-1");
  EXPECT_EQ(s.Open(sealed, "ref-2").status().code(), absl::StatusCode::kDataLoss);
  std::string altered = sealed;
  altered[20] ^= 1;
  EXPECT_EQ(s.Open(altered, "ref-1").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(s.Open(sealed.substr(0, 10), "ref-1").status().code(), absl::StatusCode::kDataLoss);
  auto other = *Sealer::Create({{2, Key('b')}}, 2);
  EXPECT_EQ(other.Open(sealed, "ref-1").status().code(), absl::StatusCode::kDataLoss);
}

TEST(Sealer, RotatedKeysStillOpenOldValues) {
  auto old_key = *Sealer::Create({{1, Key('a')}}, 1);
  std::string sealed = *old_key.Seal("secret", "r");
  auto rotated = Sealer::FromConfig("2:" + absl::Base64Escape(Key('b')) +
                                    ",1:" + absl::Base64Escape(Key('a')));
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_EQ(*rotated->Open(sealed, "r"), "secret");
  EXPECT_EQ(static_cast<uint8_t>((*rotated->Seal("x", "r"))[0]), 2);  // new values: key 2
}

TEST(Sealer, BadConfigurationIsRefused) {
  EXPECT_FALSE(Sealer::FromConfig("").ok());
  EXPECT_FALSE(Sealer::FromConfig("1:c2hvcnQ=").ok());  // 5 bytes
  EXPECT_FALSE(Sealer::FromConfig("0:" + absl::Base64Escape(Key('a'))).ok());
  EXPECT_FALSE(Sealer::FromConfig("one:two").ok());
}

}  // namespace
}  // namespace safeharbor

namespace safeharbor {
namespace {

TEST(Sealer, FingerprintsAreKeyedAndStable) {
  auto a = Sealer::Create({{1, std::string(32, 'a')}}, 1);
  auto b = Sealer::Create({{1, std::string(32, 'b')}}, 1);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->Fingerprint("Jane Q"), a->Fingerprint("Jane Q"));
  EXPECT_NE(a->Fingerprint("Jane Q"), a->Fingerprint("Jane R"));
  // Without the key nobody can test a guess: another key gives another digest.
  EXPECT_NE(a->Fingerprint("Jane Q"), b->Fingerprint("Jane Q"));
  EXPECT_EQ(a->Fingerprint("Jane Q").find("Jane"), std::string::npos);
  EXPECT_EQ(a->Fingerprint("x").substr(0, 2), "1:");
}

}  // namespace
}  // namespace safeharbor
