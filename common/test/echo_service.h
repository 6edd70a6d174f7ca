// The echo service used by runtime tests: exercises RpcEnv (identity, executor, status).
#pragma once

#include "common/rpc.h"
#include "safeharbor/testing/v1/echo.grpc.pb.h"

namespace safeharbor::testing {

class EchoServiceImpl final : public safeharbor::testing::v1::EchoService::CallbackService {
 public:
  explicit EchoServiceImpl(RpcEnv* env) : env_(env) {}
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* ctx, const v1::EchoRequest* req,
                                 v1::EchoResponse* resp) override {
    return env_->Unary(ctx, req, resp,
                       [](const Caller& caller, const v1::EchoRequest& r, v1::EchoResponse* out) {
                         if (r.message() == "fail") {
                           return absl::FailedPreconditionError("asked to fail");
                         }
                         out->set_message(r.message());
                         out->set_caller_org_id(caller.org_id);
                         out->set_caller_role(std::string(RoleName(caller.role)));
                         return absl::OkStatus();
                       });
  }

 private:
  RpcEnv* env_;
};

}  // namespace safeharbor::testing
