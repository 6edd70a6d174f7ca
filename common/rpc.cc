#include "common/rpc.h"

#include "absl/strings/str_cat.h"
#include "common/service_spec.h"
#include "common/status_macros.h"

namespace safeharbor {
namespace {

absl::StatusOr<Caller> Claimed(const grpc::ServerContextBase& ctx, bool insecure_dev_mode) {
  if (insecure_dev_mode) {
    const auto& md = ctx.client_metadata();
    auto it = md.find(std::string(kDevIdentityHeader));
    if (it == md.end()) {
      return absl::UnauthenticatedError(
          "development mode: send x-safeharbor-dev-identity: "
          "spiffe://safeharbor/org/<id>/role/<role>");
    }
    return ParseSpiffeId(absl::string_view(it->second.data(), it->second.size()));
  }
  auto auth = ctx.auth_context();
  if (auth == nullptr) return absl::UnauthenticatedError("no TLS peer");
  return CallerFromAuthContext(*auth);
}

}  // namespace

absl::StatusOr<Caller> RpcEnv::Identify(const grpc::ServerContextBase& ctx) const {
  SH_ASSIGN_OR_RETURN(Caller caller, Claimed(ctx, insecure_dev_mode_));
  if (caller.role == Role::kService && !IsServiceIdentity(caller.spiffe_id)) {
    return absl::PermissionDeniedError(
        absl::StrCat("role 'service' is only for the SafeHarbor services' own identities "
                     "(spiffe://safeharbor/org/safeharbor-<service>/role/service); organization '",
                     caller.org_id, "' is not one"));
  }
  return caller;
}

grpc::Status RpcEnv::BusyStatus() {
  return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      "server busy: request queue full; retry with backoff");
}

}  // namespace safeharbor
