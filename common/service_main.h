// What every service's main does around its own wiring: flags and environment, PostgreSQL
// (waiting for it, then migrations), Redis, the executor; then serving until SIGTERM/SIGINT.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "common/config.h"
#include "common/pg.h"
#include "common/redis.h"
#include "common/rpc.h"
#include "common/server.h"
#include "common/service_client.h"
#include "common/service_spec.h"

namespace safeharbor {

struct ServiceDeps {
  CommonConfig config;
  std::shared_ptr<prometheus::Registry> registry;
  std::unique_ptr<PgPool> pg;
  std::unique_ptr<RedisClient> redis;
  std::unique_ptr<RpcEnv> env;
};

// Call first in main (flags must be defined by then). `name` is the service's entry in
// services/services.json (its default ports). Logs the reason and returns an error when
// configuration, PostgreSQL or the migrations fail.
absl::StatusOr<ServiceDeps> PrepareService(int argc, char** argv, absl::string_view name,
                                           absl::string_view usage,
                                           const std::vector<Migration>& migrations);

// Options to call another SafeHarbor service (`peer`, e.g. "directory", at `address`) with this
// service's own certificate, whose identity is
// spiffe://safeharbor/org/safeharbor-<self>/role/service.
PeerOptions PeerFor(const ServiceDeps& deps, absl::string_view self, absl::string_view peer,
                    const std::string& address);

// Serves until SIGTERM/SIGINT; then runs `before_shutdown` (e.g. ends watch streams), drains
// and stops. Returns the process exit code.
int ServeUntilSignal(ServiceDeps& deps, const std::vector<grpc::Service*>& services,
                     const std::function<void()>& before_shutdown = {});

}  // namespace safeharbor
