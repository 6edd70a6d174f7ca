// beds-service: wiring only. The logic lives in BedsServiceImpl.
#include "absl/flags/flag.h"
#include "common/config.h"
#include "common/log.h"
#include "common/server.h"
#include "services/beds/beds_service.h"

ABSL_FLAG(int, stale_after_s, 12 * 3600,
          "A census older than this many seconds makes availability unknown.");
ABSL_FLAG(int, search_cache_ttl_s, 5, "Longest a cached availability answer lives.");
ABSL_FLAG(int, sweep_interval_ms, 1000, "How often expired holds are swept.");

namespace safeharbor::beds {
const std::vector<Migration>& Migrations();
}

int main(int argc, char** argv) {
  using namespace safeharbor;
  BlockTerminationSignals();
  log::SetServiceName("beds");
  ParseFlagsWithEnv(argc, argv,
                    "beds-service: SafeHarbor placement-bed availability (gRPC, mTLS).\n"
                    "Every flag may also be set as SAFEHARBOR_<FLAG>, e.g. SAFEHARBOR_GRPC_PORT.");
  auto config = CommonConfigFromFlags("beds", 50052, 9462);
  if (!config.ok()) {
    log::Error("bad_configuration", {{"error", config.status().message()}});
    return 2;
  }
  auto registry = std::make_shared<prometheus::Registry>();
  auto pg =
      PgPool::ConnectWithRetry(config->postgres, registry.get(), config->postgres_startup_wait);
  if (!pg.ok()) {
    log::Error("postgres_unavailable", {{"error", pg.status().message()}});
    return 1;
  }
  if (auto st = (*pg)->Migrate(beds::Migrations()); !st.ok()) {
    log::Error("migration_failed", {{"error", st.message()}});
    return 1;
  }
  RedisClient redis(config->redis, registry.get());
  RpcEnv env(static_cast<size_t>(config->worker_threads),
             static_cast<size_t>(config->max_queued_requests), config->server.insecure_dev_mode);
  beds::BedsOptions options;
  options.stale_after = absl::Seconds(absl::GetFlag(FLAGS_stale_after_s));
  options.search_cache_ttl = absl::Seconds(absl::GetFlag(FLAGS_search_cache_ttl_s));
  options.sweep_interval = absl::Milliseconds(absl::GetFlag(FLAGS_sweep_interval_ms));
  beds::BedsServiceImpl service(&env, pg->get(), &redis, *registry, WashingtonCounties(),
                                SystemClock::Get(), options);
  service.StartBackground();
  auto host = ServiceHost::Start(config->server, {&service}, registry);
  if (!host.ok()) {
    log::Error("start_failed", {{"error", host.status().message()}});
    return 1;
  }
  WaitForTerminationSignal();
  service.StopBackground();  // Ends open watch streams (clients resume with their cursor).
  (*host)->Shutdown();
  env.executor().Shutdown();
  return 0;
}
