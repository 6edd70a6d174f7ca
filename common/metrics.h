// Prometheus metrics: the registry every service writes to, the conventional gRPC server
// metrics (grpc_server_started_total, grpc_server_handled_total, grpc_server_handling_seconds)
// recorded by a server interceptor, and process memory.
#pragma once

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace safeharbor {

class GrpcServerMetrics {
 public:
  explicit GrpcServerMetrics(prometheus::Registry& registry);

  prometheus::Family<prometheus::Counter>& started;
  prometheus::Family<prometheus::Counter>& handled;
  prometheus::Family<prometheus::Histogram>& handling_seconds;
};

// Latency buckets in seconds, shared by every latency histogram.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets();

class GrpcMetricsInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit GrpcMetricsInterceptorFactory(std::shared_ptr<GrpcServerMetrics> metrics)
      : metrics_(std::move(metrics)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  std::shared_ptr<GrpcServerMetrics> metrics_;
};

// Starts the /metrics HTTP endpoint on `address` ("host:port"; port 0 picks one). Besides the
// registry it serves process_resident_memory_bytes, process_virtual_memory_bytes and
// process_start_time_seconds, read at scrape time.
class MetricsEndpoint {
 public:
  MetricsEndpoint(std::unique_ptr<prometheus::Exposer> exposer,
                  std::vector<std::shared_ptr<prometheus::Collectable>> owned)
      : owned_(std::move(owned)), exposer_(std::move(exposer)) {}
  int port() const;

 private:
  // The exposer holds collectables weakly: keep them alive as long as it serves.
  std::vector<std::shared_ptr<prometheus::Collectable>> owned_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> StartMetricsEndpoint(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry);

// Splits "/pkg.Service/Method" into service and method.
void SplitGrpcMethod(const std::string& full, std::string* service, std::string* method);

// Sums the values of a counter family's series whose labels include `labels` (for tests and
// diagnostics; reads the registry as a scrape would).
double SumCounter(prometheus::Registry& registry, const std::string& name,
                  const std::map<std::string, std::string>& labels = {});
// A histogram family's series whose labels include `labels`, summed: how many observations,
// their sum, and how many were at most `bound` (one of its bucket boundaries).
struct HistogramTotals {
  uint64_t count = 0;
  double sum = 0;
  uint64_t at_most = 0;
};
HistogramTotals SumHistogram(prometheus::Registry& registry, const std::string& name,
                             const std::map<std::string, std::string>& labels, double bound);

}  // namespace safeharbor
