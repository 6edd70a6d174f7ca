#include "common/service_main.h"

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "common/periodic.h"
#include "common/rpc_kit.h"

namespace safeharbor {

absl::StatusOr<ServiceDeps> PrepareService(int argc, char** argv, absl::string_view name,
                                           absl::string_view usage,
                                           const std::vector<Migration>& migrations) {
  BlockTerminationSignals();
#ifdef NDEBUG
  // Abseil's lock-order graph (on in Debian's build) costs every lock; debug and sanitizer builds
  // keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  log::SetServiceName(name);
  ParseFlagsWithEnv(argc, argv, usage);
  ServiceDeps deps;
  const ServiceSpec& spec = SpecOf(name);
  auto config = CommonConfigFromFlags(name, spec.grpc_port, spec.metrics_port);
  if (!config.ok()) {
    log::Error("bad_configuration", {{"error", config.status().message()}});
    return config.status();
  }
  deps.config = *std::move(config);
  deps.registry = std::make_shared<prometheus::Registry>();
  auto pg = PgPool::ConnectWithRetry(deps.config.postgres, deps.registry.get(),
                                     deps.config.postgres_startup_wait);
  if (!pg.ok()) {
    log::Error("postgres_unavailable", {{"error", pg.status().message()}});
    return pg.status();
  }
  deps.pg = *std::move(pg);
  if (auto st = deps.pg->Migrate(migrations); !st.ok()) {
    log::Error("migration_failed", {{"error", st.message()}});
    return st;
  }
  deps.redis = std::make_unique<RedisClient>(deps.config.redis, deps.registry.get());
  deps.env = std::make_unique<RpcEnv>(static_cast<size_t>(deps.config.worker_threads),
                                      static_cast<size_t>(deps.config.max_queued_requests),
                                      deps.config.server.insecure_dev_mode);
  deps.env->SetQuotaLimits(deps.config.quotas);
  return deps;
}

PeerOptions PeerFor(const ServiceDeps& deps, absl::string_view self, absl::string_view peer,
                    const std::string& address) {
  PeerOptions o;
  o.name = std::string(peer);
  o.address = address;
  o.tls = deps.config.server.tls;
  o.insecure_dev_mode = deps.config.server.insecure_dev_mode;
  o.dev_identity = ServiceIdentity(self);
  o.max_in_flight = deps.config.peer_max_in_flight;
  o.breaker = deps.config.breaker;
  o.registry = deps.registry.get();
  return o;
}

int ServeUntilSignal(ServiceDeps& deps, const std::vector<grpc::Service*>& services,
                     const std::function<void()>& before_shutdown) {
  // gRPC refuses what no method of the tables would accept (each method has its own limit).
  deps.config.server.max_receive_message_bytes =
      MaxReceiveBytes(services, deps.config.server.max_receive_message_bytes);
  auto host = ServiceHost::Start(deps.config.server, services, deps.registry);
  if (!host.ok()) {
    log::Error("start_failed", {{"error", host.status().message()}});
    return 1;
  }
  // Health tells the truth: NOT_SERVING while PostgreSQL does not answer, SERVING again when it
  // does. The probe has a connection of its own and a bounded wait.
  ServiceHost* served = host->get();
  PgPool* pg = deps.pg.get();
  const absl::Duration probe_timeout = deps.config.health_probe_timeout;
  PeriodicTask probe("postgres_probe", deps.config.health_probe_interval, [=] {
    absl::Status st = pg->Probe(probe_timeout);
    served->SetDependenciesHealthy(st.ok(), st.message());
    return absl::OkStatus();  // a failure is logged once, when health changes
  });
  probe.Start();
  WaitForTerminationSignal();
  probe.Stop();
  if (before_shutdown) before_shutdown();
  (*host)->Shutdown();
  deps.env->executor().Shutdown();
  return 0;
}

}  // namespace safeharbor
