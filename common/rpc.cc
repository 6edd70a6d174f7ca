#include "common/rpc.h"

namespace safeharbor {

absl::StatusOr<Caller> RpcEnv::Identify(const grpc::ServerContextBase& ctx) const {
  if (insecure_dev_mode_) {
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

grpc::Status RpcEnv::BusyStatus() {
  return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      "server busy: request queue full; retry with backoff");
}

}  // namespace safeharbor
