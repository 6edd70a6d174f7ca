// Configuration shared by every service: command-line flags, each of which may instead be set
// by an environment variable SAFEHARBOR_<FLAG_NAME_UPPERCASE> (flags win over environment).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/pg.h"
#include "common/quota.h"
#include "common/redis.h"
#include "common/server.h"

namespace safeharbor {

struct CommonConfig {
  ServerOptions server;
  PgOptions postgres;
  RedisOptions redis;
  int worker_threads = 12;  // above postgres.max_in_flight: a bulkhead for PostgreSQL
  int max_queued_requests = 256;
  QuotaLimits quotas;  // per calling organization
  // Watch streams: how far back a cursor resumes (older events are pruned), and how long one
  // stream stays open before the client resumes with its cursor.
  absl::Duration watch_replay_horizon = absl::Hours(24 * 7);
  absl::Duration watch_max_stream_age = absl::Hours(1);
  absl::Duration postgres_startup_wait = absl::Seconds(30);
  // Dependencies that hang: each peer may hold at most this many worker threads at once
  // (well below worker_threads), breakers open after consecutive time-outs, and the health
  // endpoint follows a periodic PostgreSQL probe.
  int peer_max_in_flight = 3;
  BreakerOptions breaker;
  absl::Duration health_probe_interval = absl::Milliseconds(500);
  absl::Duration health_probe_timeout = absl::Seconds(1);
};

// Applies SAFEHARBOR_* environment variables to flags, then parses the command line.
// Exits with a message on a bad flag or variable. Returns the positional arguments.
std::vector<char*> ParseFlagsWithEnv(int argc, char** argv, absl::string_view usage);

// Builds the shared configuration; a flag left at 0 / empty takes the service's default.
absl::StatusOr<CommonConfig> CommonConfigFromFlags(absl::string_view service_name,
                                                   int default_grpc_port, int default_metrics_port);

// "SAFEHARBOR_" + upper-cased flag name (exposed for tests and docs).
std::string EnvNameForFlag(absl::string_view flag);

}  // namespace safeharbor
