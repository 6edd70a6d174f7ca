// The edge between gRPC's callback API and a service's logic: identify the caller, hand the
// work to the bounded executor (never block a reactor thread), map absl::Status to gRPC once.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_callback.h>

#include <utility>

#include "common/auth.h"
#include "common/executor.h"
#include "common/status.h"

namespace safeharbor {

class RpcEnv {
 public:
  // `insecure_dev_mode`: no TLS; identity comes from the x-safeharbor-dev-identity header.
  RpcEnv(size_t worker_threads, size_t max_queued, bool insecure_dev_mode)
      : executor_(worker_threads, max_queued), insecure_dev_mode_(insecure_dev_mode) {}

  Executor& executor() { return executor_; }
  bool insecure_dev_mode() const { return insecure_dev_mode_; }

  absl::StatusOr<Caller> Identify(const grpc::ServerContextBase& ctx) const;

  // Runs fn(caller, request, response) -> absl::Status on the executor and finishes the call
  // with its status. RESOURCE_EXHAUSTED at once when the executor's queue is full.
  template <typename Req, typename Resp, typename Fn>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, const Req* req, Resp* resp,
                                  Fn fn) {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    absl::StatusOr<Caller> caller = Identify(*ctx);
    if (!caller.ok()) {
      reactor->Finish(ToGrpcStatus(caller.status()));
      return reactor;
    }
    bool queued = executor_.TrySubmit(
        [ctx, reactor, req, resp, fn = std::move(fn), caller = *std::move(caller)]() mutable {
          if (ctx->IsCancelled()) {
            reactor->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled"));
            return;
          }
          reactor->Finish(ToGrpcStatus(fn(caller, *req, resp)));
        });
    if (!queued) reactor->Finish(BusyStatus());
    return reactor;
  }

  static grpc::Status BusyStatus();

 private:
  Executor executor_;
  const bool insecure_dev_mode_;
};

}  // namespace safeharbor

// Inside a CallbackService subclass with an `RpcEnv* env_` member and a blocking method
// `absl::Status Name(const Caller&, const v1::NameRequest&, v1::NameResponse*)`: overrides the
// generated RPC to run that method on the executor.
#define SAFEHARBOR_UNARY_RPC(Name)                                                               \
  grpc::ServerUnaryReactor* Name(grpc::CallbackServerContext* ctx, const v1::Name##Request* req, \
                                 v1::Name##Response* resp) override {                            \
    return env_->Unary(ctx, req, resp,                                                           \
                       [this](const ::safeharbor::Caller& c, const v1::Name##Request& r,         \
                              v1::Name##Response* out) { return this->Name(c, r, out); });       \
  }
