// Test harness: throwaway PostgreSQL and Redis servers on free loopback ports (started once per
// test binary, stopped at exit), fresh databases, development certificates, mTLS channels.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/pg.h"
#include "common/redis.h"
#include "common/tls.h"

namespace safeharbor::testing {

std::string SourceDir();
int FreePort();
// Runs a command (argv) and returns OK when it exits 0.
absl::Status Run(const std::vector<std::string>& argv);

// The test Redis requires this password; cached values are authenticated with this key.
inline constexpr absl::string_view kRedisPassword = "test-redis-password-3f9a1c";
inline constexpr absl::string_view kCacheKey = "test-cache-hmac-key-0123456789abcdef";

class TestServers {
 public:
  static TestServers& Get();

  int pg_port() const { return pg_port_; }
  int redis_port() const { return redis_port_; }

  // A new empty database; returns its postgresql:// URL.
  std::string NewDatabase(const std::string& prefix = "t");
  PgOptions PgOptionsFor(const std::string& url) const;
  RedisOptions redis_options() const;

  void StopRedis();
  void StartRedis();
  void StopPostgres();
  void StartPostgres();
  // SIGSTOP / SIGCONT of the postmaster and its backends: a server that hangs.
  void FreezePostgres();
  void ThawPostgres();
  void StopAll();

  const std::string& certs_dir() const { return certs_dir_; }
  TlsFiles ServerTls(const std::string& service) const;
  // Client TLS files for (org, role); issued on first use.
  TlsFiles ClientTls(const std::string& org, const std::string& role);

  std::shared_ptr<grpc::Channel> Channel(int port, const std::string& org, const std::string& role);
  std::shared_ptr<grpc::Channel> ChannelWithoutClientCert(int port);

 private:
  TestServers();
  std::string root_;
  std::string certs_dir_;
  int pg_port_ = 0;
  int redis_port_ = 0;
  int db_counter_ = 0;
};

// Waits until the channel connects (up to `seconds`).
bool WaitForReady(const std::shared_ptr<grpc::Channel>& channel, int seconds = 10);

}  // namespace safeharbor::testing
