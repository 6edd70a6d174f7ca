#include "common/config.h"

#include <cstdio>
#include <cstdlib>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"

ABSL_FLAG(std::string, listen_host, "127.0.0.1",
          "Address the gRPC and metrics servers bind to (0.0.0.0 in a container).");
ABSL_FLAG(int, grpc_port, 0, "gRPC port; 0 means the service's documented default.");
ABSL_FLAG(int, metrics_port, 0,
          "Prometheus /metrics port; 0 means the service's documented default, -1 disables.");
ABSL_FLAG(int, health_port, 0,
          "Plaintext port serving only grpc.health.v1, for Kubernetes gRPC probes; 0: none.");
ABSL_FLAG(std::string, certs_dir, ".run/certs",
          "Directory holding ca.crt and <service>.crt/.key, used when --tls_* are not given.");
ABSL_FLAG(std::string, tls_ca, "", "PEM file of the network CA (default <certs_dir>/ca.crt).");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate of this service (default <certs_dir>/<service>.crt).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key (default <certs_dir>/<service>.key).");
ABSL_FLAG(bool, insecure_dev_mode, false,
          "DANGER: serve plaintext without client certificates (local experiments only).");
ABSL_FLAG(std::string, postgres_url, "",
          "PostgreSQL URI (default postgresql://postgres@127.0.0.1:54320/safeharbor_<service>).");
ABSL_FLAG(int, postgres_pool_size, 8, "Maximum PostgreSQL connections.");
ABSL_FLAG(int, postgres_statement_timeout_ms, 5000, "Statement timeout in milliseconds.");
ABSL_FLAG(int, postgres_startup_wait_s, 30,
          "How long to wait for PostgreSQL at start-up before exiting.");
ABSL_FLAG(std::string, redis_url, "redis://127.0.0.1:63790", "Redis URL (cache and fan-out).");
ABSL_FLAG(std::string, redis_password, "",
          "Redis password (AUTH), e.g. from SAFEHARBOR_REDIS_PASSWORD; empty only for a Redis "
          "that nobody else can reach.");
ABSL_FLAG(std::string, cache_hmac_key, "",
          "Key (32+ characters, e.g. from SAFEHARBOR_CACHE_HMAC_KEY) authenticating every value "
          "cached in Redis; a value that fails the check is ignored. Empty: no caching.");
ABSL_FLAG(int, redis_timeout_ms, 200, "Redis connect and command timeout in milliseconds.");
ABSL_FLAG(int, worker_threads, 12,
          "Threads running blocking RPC work (database, cache); more than "
          "--postgres_max_in_flight, so a database that hangs cannot hold them all.");
ABSL_FLAG(int, max_queued_requests, 256,
          "Requests waiting for a worker before new ones get RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, postgres_call_timeout_ms, 6000,
          "Longest the service waits for one PostgreSQL statement's answer (the caller's "
          "deadline may end it sooner); a connection that did not answer is discarded.");
ABSL_FLAG(int, postgres_max_in_flight, 8,
          "Calls using PostgreSQL at once (holding or waiting for a connection; each holds a "
          "worker thread); more wait while the database answers and fail at once with "
          "UNAVAILABLE when it has not answered for a second. Must be below --worker_threads: "
          "the workers left over serve calls that do not need PostgreSQL while it hangs.");
ABSL_FLAG(int, peer_max_in_flight, 3,
          "Calls to one peer service at once (each holds a worker thread); more fail at once.");
ABSL_FLAG(int, breaker_failures, 3,
          "Consecutive failures or time-outs of a dependency that open its circuit breaker.");
ABSL_FLAG(int, breaker_open_ms, 1000,
          "How long an open breaker refuses calls before one probe call is let through.");
ABSL_FLAG(int, health_probe_interval_ms, 500,
          "How often PostgreSQL is probed; health is NOT_SERVING while it does not answer.");
ABSL_FLAG(int, health_probe_timeout_ms, 1000,
          "How long the probe waits for PostgreSQL; no answer also opens its breaker.");
ABSL_FLAG(int, org_max_concurrent_calls, 96,
          "Calls one organization may have queued or running at once (below "
          "--max_queued_requests, so that no organization fills the queue); 0: no limit.");
ABSL_FLAG(double, org_calls_per_second, 20000,
          "Sustained calls per second one organization may make; 0: no limit.");
ABSL_FLAG(double, org_call_burst, 20000,
          "Calls one organization may make at once above its sustained rate.");
ABSL_FLAG(int, org_max_open_streams, 64,
          "Server streams (watches) one organization may hold open at once; 0: no limit.");
ABSL_FLAG(int, watch_replay_horizon_h, 24 * 7,
          "Hours of events a watch cursor can resume from; older events are pruned and an older "
          "cursor is refused (FAILED_PRECONDITION: resync, then watch).");
ABSL_FLAG(int, watch_max_stream_age_s, 3600,
          "Seconds a watch stream stays open; then it ends (UNAVAILABLE) and the client resumes "
          "with its cursor.");
ABSL_FLAG(int, drain_ms, 0, "On SIGTERM, report NOT_SERVING this long before refusing calls.");
ABSL_FLAG(int, shutdown_grace_ms, 10000, "On SIGTERM, time in-flight calls get to finish.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warn or error.");

namespace safeharbor {

std::string EnvNameForFlag(absl::string_view flag) {
  return absl::StrCat("SAFEHARBOR_", absl::AsciiStrToUpper(flag));
}

std::vector<char*> ParseFlagsWithEnv(int argc, char** argv, absl::string_view usage) {
  absl::SetProgramUsageMessage(usage);
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    const char* value = std::getenv(EnvNameForFlag(name).c_str());
    if (value == nullptr) continue;
    std::string err;
    if (!flag->ParseFrom(value, &err)) {
      std::fprintf(stderr, "bad value in %s: %s\n", EnvNameForFlag(name).c_str(), err.c_str());
      std::exit(2);
    }
  }
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  log::Level level;
  if (!log::ParseLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    std::fprintf(stderr, "--log_level must be debug, info, warn or error\n");
    std::exit(2);
  }
  log::SetMinLevel(level);
  return rest;
}

namespace {

// How long the service waits on a dependency that hangs, and what it does then.
absl::StatusOr<CommonConfig> DependencyFlags(CommonConfig& c) {
  c.postgres.call_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_postgres_call_timeout_ms));
  c.breaker.failure_threshold = absl::GetFlag(FLAGS_breaker_failures);
  c.breaker.open_for = absl::Milliseconds(absl::GetFlag(FLAGS_breaker_open_ms));
  c.postgres.breaker = c.breaker;
  c.peer_max_in_flight = absl::GetFlag(FLAGS_peer_max_in_flight);
  c.postgres.max_in_flight = absl::GetFlag(FLAGS_postgres_max_in_flight);
  if (c.postgres.max_in_flight < 1 || c.postgres.max_in_flight >= c.worker_threads) {
    return absl::InvalidArgumentError("postgres_max_in_flight must be 1 to worker_threads - 1");
  }
  c.health_probe_interval = absl::Milliseconds(absl::GetFlag(FLAGS_health_probe_interval_ms));
  c.health_probe_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_health_probe_timeout_ms));
  if (c.peer_max_in_flight < 1 || c.breaker.failure_threshold < 1 ||
      c.postgres.call_timeout <= absl::ZeroDuration() ||
      c.health_probe_interval <= absl::ZeroDuration() ||
      c.health_probe_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "peer_max_in_flight, breaker_failures, postgres_call_timeout_ms and the health probe's "
        "interval and time-out must be positive");
  }
  return std::move(c);
}

absl::StatusOr<CommonConfig> QuotasFromFlags(CommonConfig c) {
  QuotaLimits& q = c.quotas;
  q.max_concurrent_calls = absl::GetFlag(FLAGS_org_max_concurrent_calls);
  q.calls_per_second = absl::GetFlag(FLAGS_org_calls_per_second);
  q.burst = absl::GetFlag(FLAGS_org_call_burst);
  q.max_open_streams = absl::GetFlag(FLAGS_org_max_open_streams);
  c.watch_replay_horizon = absl::Hours(absl::GetFlag(FLAGS_watch_replay_horizon_h));
  c.watch_max_stream_age = absl::Seconds(absl::GetFlag(FLAGS_watch_max_stream_age_s));
  if (c.watch_replay_horizon < absl::Hours(1) || c.watch_max_stream_age < absl::Seconds(1)) {
    return absl::InvalidArgumentError(
        "watch_replay_horizon_h must be at least 1 and watch_max_stream_age_s at least 1");
  }
  if (q.max_concurrent_calls >= c.max_queued_requests) {
    return absl::InvalidArgumentError(
        "org_max_concurrent_calls must be below max_queued_requests: one organization must not "
        "be able to fill the shared request queue");
  }
  if (q.calls_per_second > 0 && q.burst < 1) {
    return absl::InvalidArgumentError("org_call_burst must be at least 1");
  }
  return c;
}

}  // namespace

absl::StatusOr<CommonConfig> CommonConfigFromFlags(absl::string_view service_name,
                                                   int default_grpc_port,
                                                   int default_metrics_port) {
  CommonConfig c;
  const std::string name(service_name);
  const std::string host = absl::GetFlag(FLAGS_listen_host);
  int grpc_port = absl::GetFlag(FLAGS_grpc_port);
  if (grpc_port == 0) grpc_port = default_grpc_port;
  int metrics_port = absl::GetFlag(FLAGS_metrics_port);
  if (metrics_port == 0) metrics_port = default_metrics_port;
  if (grpc_port < 0 || grpc_port > 65535 || metrics_port > 65535) {
    return absl::InvalidArgumentError("ports must be between 1 and 65535");
  }
  c.server.service_name = name;
  c.server.listen_address = absl::StrCat(host, ":", grpc_port);
  if (metrics_port > 0) c.server.metrics_address = absl::StrCat(host, ":", metrics_port);
  if (int hp = absl::GetFlag(FLAGS_health_port); hp > 0 && hp <= 65535) {
    c.server.health_address = absl::StrCat(host, ":", hp);
  }
  const std::string dir = absl::GetFlag(FLAGS_certs_dir);
  auto or_default = [](std::string v, std::string d) { return v.empty() ? d : v; };
  c.server.tls.ca_cert = or_default(absl::GetFlag(FLAGS_tls_ca), dir + "/ca.crt");
  c.server.tls.cert = or_default(absl::GetFlag(FLAGS_tls_cert), dir + "/" + name + ".crt");
  c.server.tls.key = or_default(absl::GetFlag(FLAGS_tls_key), dir + "/" + name + ".key");
  c.server.insecure_dev_mode = absl::GetFlag(FLAGS_insecure_dev_mode);
  c.server.drain = absl::Milliseconds(absl::GetFlag(FLAGS_drain_ms));
  c.server.shutdown_grace = absl::Milliseconds(absl::GetFlag(FLAGS_shutdown_grace_ms));

  c.postgres.conninfo =
      or_default(absl::GetFlag(FLAGS_postgres_url),
                 absl::StrCat("postgresql://postgres@127.0.0.1:54320/safeharbor_", name));
  c.postgres.pool_size = absl::GetFlag(FLAGS_postgres_pool_size);
  c.postgres.statement_timeout_ms = absl::GetFlag(FLAGS_postgres_statement_timeout_ms);
  c.postgres_startup_wait = absl::Seconds(absl::GetFlag(FLAGS_postgres_startup_wait_s));

  auto redis = ParseRedisUrl(absl::GetFlag(FLAGS_redis_url));
  if (!redis.ok()) return redis.status();
  c.redis = *redis;
  c.redis.connect_timeout = c.redis.command_timeout =
      absl::Milliseconds(absl::GetFlag(FLAGS_redis_timeout_ms));
  c.redis.password = absl::GetFlag(FLAGS_redis_password);
  c.redis.cache_key = absl::GetFlag(FLAGS_cache_hmac_key);
  if (!c.redis.cache_key.empty() && c.redis.cache_key.size() < 32) {
    return absl::InvalidArgumentError("cache_hmac_key must be at least 32 characters");
  }
  if (c.redis.password.empty()) {
    log::Warn("redis_without_password", {{"message", "set --redis_password (requirepass)"}});
  }

  c.worker_threads = absl::GetFlag(FLAGS_worker_threads);
  c.max_queued_requests = absl::GetFlag(FLAGS_max_queued_requests);
  if (c.worker_threads < 1 || c.worker_threads > 256 || c.max_queued_requests < 1 ||
      c.postgres.pool_size < 1) {
    return absl::InvalidArgumentError(
        "worker_threads (1-256), max_queued_requests and postgres_pool_size must be positive");
  }
  SH_ASSIGN_OR_RETURN(CommonConfig with_quotas, QuotasFromFlags(std::move(c)));
  return DependencyFlags(with_quotas);
}

}  // namespace safeharbor
