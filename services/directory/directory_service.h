// The directory's RPC logic, separate from its wiring in main.cc. Each RPC checks the caller's
// role, validates, and runs on the RpcEnv's executor; PostgreSQL is the system of record and
// Redis caches SearchServices answers (fail-open).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <atomic>
#include <memory>

#include "common/clock.h"
#include "common/counties.h"
#include "common/pg.h"
#include "common/redis.h"
#include "common/rpc.h"
#include "common/versioned_cache.h"
#include "safeharbor/directory/v1/directory.grpc.pb.h"

namespace safeharbor::directory {

struct DirectoryOptions {
  absl::Duration search_cache_ttl = absl::Seconds(60);
  // Prefix of every Redis key, so that directories sharing one Redis never mix answers.
  std::string cache_namespace = "directory";
  size_t max_hsds_bytes = 32 << 20;
};

class DirectoryServiceImpl final : public v1::DirectoryService::CallbackService {
 public:
  // `redis` may be null (no cache). None are owned; all must outlive this object.
  DirectoryServiceImpl(RpcEnv* env, PgPool* pg, RedisClient* redis, prometheus::Registry& registry,
                       const CountyTable& counties, DirectoryOptions options = {});

  // Blocking logic, callable directly in tests; the RPC overrides below run these on the executor.
  absl::Status CreateOrganization(const Caller& c, const v1::CreateOrganizationRequest& req,
                                  v1::CreateOrganizationResponse* resp);
  absl::Status GetOrganization(const Caller& c, const v1::GetOrganizationRequest& req,
                               v1::GetOrganizationResponse* resp);
  absl::Status UpdateOrganization(const Caller& c, const v1::UpdateOrganizationRequest& req,
                                  v1::UpdateOrganizationResponse* resp);
  absl::Status ListOrganizations(const Caller& c, const v1::ListOrganizationsRequest& req,
                                 v1::ListOrganizationsResponse* resp);
  absl::Status CreateService(const Caller& c, const v1::CreateServiceRequest& req,
                             v1::CreateServiceResponse* resp);
  absl::Status GetService(const Caller& c, const v1::GetServiceRequest& req,
                          v1::GetServiceResponse* resp);
  absl::Status UpdateService(const Caller& c, const v1::UpdateServiceRequest& req,
                             v1::UpdateServiceResponse* resp);
  absl::Status ListServices(const Caller& c, const v1::ListServicesRequest& req,
                            v1::ListServicesResponse* resp);
  absl::Status SearchServices(const Caller& c, const v1::SearchServicesRequest& req,
                              v1::SearchServicesResponse* resp);
  absl::Status ImportHsds(const Caller& c, const v1::ImportHsdsRequest& req,
                          v1::ImportHsdsResponse* resp);
  absl::Status ExportHsds(const Caller& c, const v1::ExportHsdsRequest& req,
                          v1::ExportHsdsResponse* resp);
  absl::Status ListCounties(const Caller& c, const v1::ListCountiesRequest& req,
                            v1::ListCountiesResponse* resp);

  SAFEHARBOR_UNARY_RPC(CreateOrganization)
  SAFEHARBOR_UNARY_RPC(GetOrganization)
  SAFEHARBOR_UNARY_RPC(UpdateOrganization)
  SAFEHARBOR_UNARY_RPC(ListOrganizations)
  SAFEHARBOR_UNARY_RPC(CreateService)
  SAFEHARBOR_UNARY_RPC(GetService)
  SAFEHARBOR_UNARY_RPC(UpdateService)
  SAFEHARBOR_UNARY_RPC(ListServices)
  SAFEHARBOR_UNARY_RPC(SearchServices)
  SAFEHARBOR_UNARY_RPC(ImportHsds)
  SAFEHARBOR_UNARY_RPC(ExportHsds)
  SAFEHARBOR_UNARY_RPC(ListCounties)

 private:
  absl::Status CanWriteOrganization(const Caller& c, absl::string_view org_id) const;
  // After every committed write that can change a search answer.
  void InvalidateSearchCache() { search_cache_.Invalidate(); }
  void CountWrite(absl::string_view resource, absl::string_view op);

  RpcEnv* env_;
  PgPool* pg_;
  const CountyTable& counties_;
  const DirectoryOptions options_;
  VersionedCache search_cache_;
  prometheus::Family<prometheus::Counter>& writes_;
};

}  // namespace safeharbor::directory
