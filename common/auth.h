// Caller identity: organization id and role, derived from the client certificate's
// SPIFFE URI SAN (spiffe://safeharbor/org/<org-id>/role/<role>). Who may call what is in each
// service's method table (rpc_kit.h).
#pragma once

#include <grpcpp/security/auth_context.h>

#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace safeharbor {

enum class Role {
  kLawEnforcement,
  kChildWelfare,
  kProvider,
  kCourtClerk,
  kFiscal,
  kDirectoryAdmin,
  kAuditor,
  kService,  // Another SafeHarbor service (e.g. the referral service calling beds).
};

absl::string_view RoleName(Role role);
bool ParseRole(absl::string_view name, Role* role);

struct Caller {
  std::string org_id;
  Role role = Role::kAuditor;
  std::string spiffe_id;
};

inline constexpr absl::string_view kSpiffeTrustDomain = "safeharbor";

// Pure: parses "spiffe://safeharbor/org/<org-id>/role/<role>".
absl::StatusOr<Caller> ParseSpiffeId(absl::string_view uri);

// Pure: extracts URI SANs from a PEM certificate.
absl::StatusOr<std::vector<std::string>> UriSansFromPem(absl::string_view pem);

// From a TLS peer: the single SafeHarbor SPIFFE id among the certificate's URI SANs.
// UNAUTHENTICATED when there is no verified peer certificate or no usable identity.
absl::StatusOr<Caller> CallerFromAuthContext(const grpc::AuthContext& auth);

// Development mode only (no TLS): identity taken from the "x-safeharbor-dev-identity"
// metadata, a SPIFFE id as above.
inline constexpr absl::string_view kDevIdentityHeader = "x-safeharbor-dev-identity";

}  // namespace safeharbor
