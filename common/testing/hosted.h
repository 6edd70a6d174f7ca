// The one test fixture for services: hosts any SafeHarbor service in process on a real gRPC
// server over mTLS, with its own PostgreSQL database (migrated), Redis, executor and metrics
// registry from TestServers. Build the service from the public members, then Serve:
//   Hosted<BedsServiceImpl> beds;
//   beds.Connect("beds", beds::Migrations());
//   beds.service = std::make_unique<BedsServiceImpl>(beds.env.get(), beds.pg.get(), …);
//   beds.Serve("beds");
//   auto stub = beds.Stub<beds::v1::BedsService>("prov-a", "provider");
#pragma once

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/pg.h"
#include "common/redis.h"
#include "common/rpc.h"
#include "common/rpc_kit.h"
#include "common/server.h"
#include "common/testing/harness.h"

namespace safeharbor::testing {

template <typename Impl>
struct Hosted {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<PgPool> pg;
  std::unique_ptr<RedisClient> redis;
  std::unique_ptr<RpcEnv> env;
  std::unique_ptr<Impl> service;
  std::unique_ptr<ServiceHost> host;
  std::string db_url;

  // A fresh database named after `prefix` (or the one at `url`), migrated; Redis unless
  // `with_redis` is false; an executor of `threads` workers.
  void Connect(const std::string& prefix, const std::vector<Migration>& migrations, int threads = 4,
               int pool_size = 8, bool with_redis = true, const std::string& url = "") {
    auto& s = TestServers::Get();
    db_url = url.empty() ? s.NewDatabase(prefix) : url;
    PgOptions options = s.PgOptionsFor(db_url);
    options.pool_size = pool_size;
    auto pool = PgPool::Connect(options, registry.get());
    ASSERT_TRUE(pool.ok()) << pool.status();
    pg = *std::move(pool);
    ASSERT_TRUE(pg->Migrate(migrations).ok());
    if (with_redis) redis = std::make_unique<RedisClient>(s.redis_options(), registry.get());
    env = std::make_unique<RpcEnv>(static_cast<size_t>(threads), static_cast<size_t>(threads) * 64,
                                   false);
  }

  // Serves `service` over mTLS with the server certificate of `name`.
  void Serve(const std::string& name) {
    ServerOptions o;
    o.service_name = name;
    o.tls = TestServers::Get().ServerTls(name);
    o.max_receive_message_bytes = MaxReceiveBytes({service.get()}, o.max_receive_message_bytes);
    auto h = ServiceHost::Start(o, {service.get()}, registry);
    ASSERT_TRUE(h.ok()) << h.status();
    host = *std::move(h);
  }

  void Shutdown() {
    if (host) host->Shutdown();
  }

  int port() const { return host->port(); }
  std::string address() const { return absl::StrCat("localhost:", host->port()); }
  std::shared_ptr<grpc::Channel> Channel(const std::string& org, const std::string& role) const {
    return TestServers::Get().Channel(host->port(), org, role);
  }
  template <typename Service>
  std::unique_ptr<typename Service::Stub> Stub(const std::string& org,
                                               const std::string& role) const {
    return Service::NewStub(Channel(org, role));
  }
};

}  // namespace safeharbor::testing
