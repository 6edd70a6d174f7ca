#include "common/auth.h"

#include <gtest/gtest.h>

#include "common/testing/harness.h"
#include "common/tls.h"

namespace safeharbor {
namespace {

TEST(ParseSpiffeId, AcceptsOrgAndRole) {
  auto c = ParseSpiffeId("spiffe://safeharbor/org/demo-provider-001/role/provider");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->org_id, "demo-provider-001");
  EXPECT_EQ(c->role, Role::kProvider);
}

TEST(ParseSpiffeId, RefusesOtherShapes) {
  for (const char* bad :
       {"spiffe://other/org/abc/role/provider", "spiffe://safeharbor/org/abc/role/emperor",
        "spiffe://safeharbor/org/AB/role/provider",
        "spiffe://safeharbor/org/abc/role/provider/extra", "spiffe://safeharbor/role/provider",
        "https://safeharbor/org/abc/role/x"}) {
    auto c = ParseSpiffeId(bad);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kUnauthenticated) << bad;
  }
}

TEST(UriSansFromPem, ReadsTheIssuedCertificate) {
  auto& servers = testing::TestServers::Get();
  TlsFiles files = servers.ClientTls("org-uri-test", "auditor");
  auto pem = ReadFileToString(files.cert, 1 << 20);
  ASSERT_TRUE(pem.ok());
  auto uris = UriSansFromPem(*pem);
  ASSERT_TRUE(uris.ok()) << uris.status();
  ASSERT_EQ(uris->size(), 1u);
  EXPECT_EQ(uris->front(), "spiffe://safeharbor/org/org-uri-test/role/auditor");
  EXPECT_FALSE(UriSansFromPem("not a certificate").ok());
}

}  // namespace
}  // namespace safeharbor
