// The echo service used by runtime tests, served from a one-entry method table: by default any
// role may call it; tests pass another policy or handler to exercise the service kit.
#pragma once

#include <functional>

#include "common/rpc_kit.h"
#include "safeharbor/testing/v1/echo.grpc.pb.h"

namespace safeharbor::testing {

class EchoServiceImpl final : public RpcService {
 public:
  using Handler =
      std::function<absl::Status(CallContext&, const v1::EchoRequest&, v1::EchoResponse*)>;
  using FastPath = std::function<bool(CallContext&, const v1::EchoRequest&, v1::EchoResponse*)>;

  // "fail" fails with FAILED_PRECONDITION; "invalid" is refused by validation. The request's
  // message names the organization for Scope::kOwnOrganization.
  explicit EchoServiceImpl(RpcEnv* env, MethodPolicy policy = {.roles = RoleSet::Every()},
                           Handler handler = {}, prometheus::Registry* registry = nullptr,
                           FastPath fast_path = {})
      : RpcService("safeharbor.testing.v1.EchoService",
                   KitDeps{env, nullptr, SystemClock::Get(), registry}),
        handler_(std::move(handler)) {
    SAFEHARBOR_RPC(
        Echo, policy,
        .validate = [](const v1::EchoRequest& r) -> absl::Status {
          if (r.message() == "invalid") return absl::InvalidArgumentError("message is invalid");
          return absl::OkStatus();
        },
        .organization = [](const v1::EchoRequest& r) { return r.message(); },
        .fast_path = std::move(fast_path));
    Seal();
  }

 private:
  absl::Status Echo(CallContext& ctx, const v1::EchoRequest& r, v1::EchoResponse* out) {
    if (handler_) return handler_(ctx, r, out);
    if (r.message() == "fail") return absl::FailedPreconditionError("asked to fail");
    out->set_message(r.message());
    out->set_caller_org_id(ctx.caller().org_id);
    out->set_caller_role(std::string(RoleName(ctx.caller().role)));
    return absl::OkStatus();
  }

  Handler handler_;
};

}  // namespace safeharbor::testing
