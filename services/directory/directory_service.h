// The directory's RPC logic, separate from its wiring in main.cc. Its method table (Methods)
// declares who may call each RPC; PostgreSQL is the system of record and Redis caches
// SearchServices answers (fail-open).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <memory>

#include "common/clock.h"
#include "common/counties.h"
#include "common/pg.h"
#include "common/redis.h"
#include "common/rpc_kit.h"
#include "common/versioned_cache.h"
#include "safeharbor/directory/v1/directory.grpc.pb.h"
#include "services/directory/hsds.h"

namespace safeharbor::directory {

struct DirectoryOptions {
  absl::Duration search_cache_ttl = absl::Seconds(60);
  // Prefix of every Redis key, so that directories sharing one Redis never mix answers.
  std::string cache_namespace = "directory";
  // The in-process level in front of the Redis one (max_entries 0: none). A search it answers
  // is answered on the reactor thread, with no Redis round trip and no hand-off.
  LocalCacheOptions search_local_cache = {.max_entries = 20000, .max_bytes = 16 << 20};
  size_t max_hsds_bytes = 32 << 20;
};

class DirectoryServiceImpl final : public RpcService {
 public:
  // `redis` may be null (no cache). None are owned; all must outlive this object.
  DirectoryServiceImpl(RpcEnv* env, PgPool* pg, RedisClient* redis, prometheus::Registry& registry,
                       const CountyTable& counties, DirectoryOptions options = {});

 private:
  void Methods();
  absl::Status CreateOrganization(CallContext& ctx, const v1::CreateOrganizationRequest& req,
                                  v1::CreateOrganizationResponse* resp);
  absl::Status GetOrganization(CallContext& ctx, const v1::GetOrganizationRequest& req,
                               v1::GetOrganizationResponse* resp);
  absl::Status UpdateOrganization(CallContext& ctx, const v1::UpdateOrganizationRequest& req,
                                  v1::UpdateOrganizationResponse* resp);
  absl::Status ListOrganizations(CallContext& ctx, const v1::ListOrganizationsRequest& req,
                                 v1::ListOrganizationsResponse* resp);
  absl::Status CreateService(CallContext& ctx, const v1::CreateServiceRequest& req,
                             v1::CreateServiceResponse* resp);
  absl::Status GetService(CallContext& ctx, const v1::GetServiceRequest& req,
                          v1::GetServiceResponse* resp);
  absl::Status UpdateService(CallContext& ctx, const v1::UpdateServiceRequest& req,
                             v1::UpdateServiceResponse* resp);
  absl::Status ListServices(CallContext& ctx, const v1::ListServicesRequest& req,
                            v1::ListServicesResponse* resp);
  absl::Status SearchServices(CallContext& ctx, const v1::SearchServicesRequest& req,
                              v1::SearchServicesResponse* resp);
  // SearchServices' fast path: the answer from the in-process cache when known fresh.
  bool SearchServicesFresh(const v1::SearchServicesRequest& req, v1::SearchServicesResponse* resp);
  absl::Status ImportHsds(CallContext& ctx, const v1::ImportHsdsRequest& req,
                          v1::ImportHsdsResponse* resp);
  // An import's counts, problems and normalizations (pure).
  static void ReportHsds(const HsdsRead& read, v1::ImportHsdsResponse* resp);
  absl::Status ExportHsds(CallContext& ctx, const v1::ExportHsdsRequest& req,
                          v1::ExportHsdsResponse* resp);
  absl::Status ListCounties(CallContext& ctx, const v1::ListCountiesRequest& req,
                            v1::ListCountiesResponse* resp);
  absl::Status ListFactChanges(CallContext& ctx, const v1::ListFactChangesRequest& req,
                               v1::ListFactChangesResponse* resp);

  // After every committed write that can change a search answer.
  void Written(absl::string_view resource, absl::string_view op);

  PgPool* pg_;
  const CountyTable& counties_;
  const DirectoryOptions options_;
  VersionedCache search_cache_;
  prometheus::Family<prometheus::Counter>& writes_;
};

}  // namespace safeharbor::directory
