#include "common/auth.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace safeharbor {
namespace {

struct RoleEntry {
  Role role;
  absl::string_view name;
};
constexpr RoleEntry kRoles[] = {
    {Role::kLawEnforcement, "law_enforcement"},
    {Role::kChildWelfare, "child_welfare"},
    {Role::kProvider, "provider"},
    {Role::kCourtClerk, "court_clerk"},
    {Role::kFiscal, "fiscal"},
    {Role::kDirectoryAdmin, "directory_admin"},
    {Role::kAuditor, "auditor"},
    {Role::kService, "service"},
};

bool ValidOrgId(absl::string_view id) {
  if (id.size() < 3 || id.size() > 63) return false;
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return id.front() != '-';
}

}  // namespace

absl::string_view RoleName(Role role) {
  for (const auto& e : kRoles) {
    if (e.role == role) return e.name;
  }
  return "unknown";
}

bool ParseRole(absl::string_view name, Role* role) {
  for (const auto& e : kRoles) {
    if (e.name == name) {
      *role = e.role;
      return true;
    }
  }
  return false;
}

absl::StatusOr<Caller> ParseSpiffeId(absl::string_view uri) {
  const std::string prefix = absl::StrCat("spiffe://", kSpiffeTrustDomain, "/");
  if (!absl::StartsWith(uri, prefix)) {
    return absl::UnauthenticatedError("certificate identity is not in the safeharbor trust domain");
  }
  std::vector<absl::string_view> parts = absl::StrSplit(uri.substr(prefix.size()), '/');
  if (parts.size() != 4 || parts[0] != "org" || parts[2] != "role") {
    return absl::UnauthenticatedError(
        "certificate identity must be spiffe://safeharbor/org/<org-id>/role/<role>");
  }
  Caller caller;
  if (!ValidOrgId(parts[1])) {
    return absl::UnauthenticatedError("certificate identity has an invalid organization id");
  }
  if (!ParseRole(parts[3], &caller.role)) {
    return absl::UnauthenticatedError(
        absl::StrCat("certificate identity has unknown role '", parts[3].substr(0, 40), "'"));
  }
  caller.org_id = std::string(parts[1]);
  caller.spiffe_id = std::string(uri);
  return caller;
}

absl::StatusOr<std::vector<std::string>> UriSansFromPem(absl::string_view pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  if (!bio) return absl::InternalError("BIO_new_mem_buf failed");
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), &X509_free);
  if (!cert) return absl::UnauthenticatedError("peer certificate could not be parsed");
  std::vector<std::string> uris;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return uris;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_URI) continue;
    const ASN1_IA5STRING* s = name->d.uniformResourceIdentifier;
    uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                      static_cast<size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(names);
  return uris;
}

absl::StatusOr<Caller> CallerFromAuthContext(const grpc::AuthContext& auth) {
  if (!auth.IsPeerAuthenticated()) {
    return absl::UnauthenticatedError("a client certificate issued by the network CA is required");
  }
  auto pems = auth.FindPropertyValues("x509_pem_cert");
  if (pems.empty()) return absl::UnauthenticatedError("no peer certificate");
  // Parsing a certificate costs more than a cached search (OpenSSL 3 decoders take locks), and
  // a connection presents the same one on every call: remember what it said, bounded.
  static std::mutex mu;
  static auto* known = new std::unordered_map<std::string, Caller>();
  std::string pem(pems.front().data(), pems.front().size());
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = known->find(pem);
    if (it != known->end()) return it->second;
  }
  auto uris = UriSansFromPem(pem);
  if (!uris.ok()) return uris.status();
  std::vector<std::string> ours;
  for (const auto& u : *uris) {
    if (absl::StartsWith(u, "spiffe://")) ours.push_back(u);
  }
  if (ours.size() != 1) {
    return absl::UnauthenticatedError(
        "client certificate must carry exactly one spiffe:// URI SAN naming org and role");
  }
  auto caller = ParseSpiffeId(ours.front());
  if (caller.ok()) {
    std::lock_guard<std::mutex> lock(mu);
    if (known->size() >= 4096) known->clear();
    known->emplace(std::move(pem), *caller);
  }
  return caller;
}

}  // namespace safeharbor
