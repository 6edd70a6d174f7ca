// directory-service: wiring only. The logic lives in DirectoryServiceImpl.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/log.h"
#include "common/server.h"
#include "services/directory/directory_service.h"

ABSL_FLAG(int, search_cache_ttl_s, 60,
          "Longest a cached search answer lives (writes invalidate it sooner).");

namespace safeharbor::directory {
const std::vector<Migration>& Migrations();
}

int main(int argc, char** argv) {
  using namespace safeharbor;
  BlockTerminationSignals();
  log::SetServiceName("directory");
  ParseFlagsWithEnv(argc, argv,
                    "directory-service: the SafeHarbor provider directory (gRPC, mTLS).\n"
                    "Every flag may also be set as SAFEHARBOR_<FLAG>, e.g. SAFEHARBOR_GRPC_PORT.");
  auto config = CommonConfigFromFlags("directory", 50051, 9461);
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
  if (auto st = (*pg)->Migrate(directory::Migrations()); !st.ok()) {
    log::Error("migration_failed", {{"error", st.message()}});
    return 1;
  }
  RedisClient redis(config->redis, registry.get());
  RpcEnv env(static_cast<size_t>(config->worker_threads),
             static_cast<size_t>(config->max_queued_requests), config->server.insecure_dev_mode);
  directory::DirectoryOptions options;
  options.search_cache_ttl = absl::Seconds(absl::GetFlag(FLAGS_search_cache_ttl_s));
  directory::DirectoryServiceImpl service(&env, pg->get(), &redis, *registry, WashingtonCounties(),
                                          options);
  config->server.max_receive_message_bytes = static_cast<int>(options.max_hsds_bytes) + (1 << 20);
  auto host = ServiceHost::Start(config->server, {&service}, registry);
  if (!host.ok()) {
    log::Error("start_failed", {{"error", host.status().message()}});
    return 1;
  }
  WaitForTerminationSignal();
  (*host)->Shutdown();
  env.executor().Shutdown();
  return 0;
}
