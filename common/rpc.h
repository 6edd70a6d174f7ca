// What every service's RPCs share: the caller's identity from the TLS peer (or, in development
// mode, a header) and the bounded executor blocking work runs on (never a reactor thread). The
// method table (rpc_kit.h) runs each call through them.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <utility>

#include "common/auth.h"
#include "common/clock.h"
#include "common/executor.h"
#include "common/quota.h"
#include "common/status.h"

namespace safeharbor {

class RpcEnv {
 public:
  // `insecure_dev_mode`: no TLS; identity comes from the x-safeharbor-dev-identity header.
  RpcEnv(size_t worker_threads, size_t max_queued, bool insecure_dev_mode)
      : executor_(worker_threads, max_queued), insecure_dev_mode_(insecure_dev_mode) {}

  Executor& executor() { return executor_; }
  // Per-organization limits (the QuotaLimits defaults until set, before serving).
  OrgQuotas& quotas() { return *quotas_; }
  void SetQuotaLimits(const QuotaLimits& limits) {
    quotas_ = std::make_unique<OrgQuotas>(limits, SystemClock::Get());
  }
  bool insecure_dev_mode() const { return insecure_dev_mode_; }

  // The caller's identity; role "service" only for the known services' own SPIFFE ids
  // (PERMISSION_DENIED for any other certificate claiming it).
  absl::StatusOr<Caller> Identify(const grpc::ServerContextBase& ctx) const;

  static grpc::Status BusyStatus();

 private:
  Executor executor_;
  const bool insecure_dev_mode_;
  std::unique_ptr<OrgQuotas> quotas_ =
      std::make_unique<OrgQuotas>(QuotaLimits{}, SystemClock::Get());
};

}  // namespace safeharbor
