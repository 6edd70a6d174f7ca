#include "common/metrics.h"

#include <unistd.h>

#include <chrono>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace safeharbor {

namespace {

absl::string_view CodeName(grpc::StatusCode code) {
  static constexpr absl::string_view kNames[] = {"OK",
                                                 "CANCELLED",
                                                 "UNKNOWN",
                                                 "INVALID_ARGUMENT",
                                                 "DEADLINE_EXCEEDED",
                                                 "NOT_FOUND",
                                                 "ALREADY_EXISTS",
                                                 "PERMISSION_DENIED",
                                                 "RESOURCE_EXHAUSTED",
                                                 "FAILED_PRECONDITION",
                                                 "ABORTED",
                                                 "OUT_OF_RANGE",
                                                 "UNIMPLEMENTED",
                                                 "INTERNAL",
                                                 "UNAVAILABLE",
                                                 "DATA_LOSS",
                                                 "UNAUTHENTICATED"};
  int i = static_cast<int>(code);
  if (i >= 0 && i < static_cast<int>(std::size(kNames))) return kNames[i];
  return "UNKNOWN";
}

absl::string_view RpcTypeName(grpc::experimental::ServerRpcInfo::Type type) {
  using T = grpc::experimental::ServerRpcInfo::Type;
  switch (type) {
    case T::UNARY:
      return "unary";
    case T::CLIENT_STREAMING:
      return "client_stream";
    case T::SERVER_STREAMING:
      return "server_stream";
    case T::BIDI_STREAMING:
      return "bidi_stream";
  }
  return "unary";
}

class MetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(grpc::experimental::ServerRpcInfo* info, GrpcServerMetrics* metrics)
      : metrics_(metrics), type_(RpcTypeName(info->type())) {
    SplitGrpcMethod(info->method() ? info->method() : "", &service_, &method_);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using H = grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(H::POST_RECV_INITIAL_METADATA)) {
      start_ = std::chrono::steady_clock::now();
      metrics_->started
          .Add({{"grpc_service", service_}, {"grpc_method", method_}, {"grpc_type", type_}})
          .Increment();
    }
    if (methods->QueryInterceptionHookPoint(H::PRE_SEND_STATUS)) {
      const std::string code(CodeName(methods->GetSendStatus().error_code()));
      metrics_->handled
          .Add({{"grpc_service", service_},
                {"grpc_method", method_},
                {"grpc_type", type_},
                {"grpc_code", code}})
          .Increment();
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      metrics_->handling_seconds
          .Add({{"grpc_service", service_}, {"grpc_method", method_}, {"grpc_type", type_}},
               LatencyBuckets())
          .Observe(seconds);
    }
    methods->Proceed();
  }

 private:
  GrpcServerMetrics* metrics_;
  std::string service_;
  std::string method_;
  std::string type_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

class ProcessCollector : public prometheus::Collectable {
 public:
  ProcessCollector() : start_seconds_(absl::ToUnixSeconds(absl::Now())) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    long pages_total = 0, pages_resident = 0;
    std::ifstream statm("/proc/self/statm");
    statm >> pages_total >> pages_resident;
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    std::vector<prometheus::MetricFamily> out;
    out.push_back(Gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
                        static_cast<double>(pages_resident) * page));
    out.push_back(Gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                        static_cast<double>(pages_total) * page));
    out.push_back(Gauge("process_start_time_seconds",
                        "Start time of the process since unix epoch in seconds.",
                        static_cast<double>(start_seconds_)));
    return out;
  }

 private:
  static prometheus::MetricFamily Gauge(std::string name, std::string help, double value) {
    prometheus::MetricFamily f;
    f.name = std::move(name);
    f.help = std::move(help);
    f.type = prometheus::MetricType::Gauge;
    prometheus::ClientMetric m;
    m.gauge.value = value;
    f.metric.push_back(std::move(m));
    return f;
  }
  int64_t start_seconds_;
};

}  // namespace

GrpcServerMetrics::GrpcServerMetrics(prometheus::Registry& registry)
    : started(prometheus::BuildCounter()
                  .Name("grpc_server_started_total")
                  .Help("Total number of RPCs started on the server.")
                  .Register(registry)),
      handled(prometheus::BuildCounter()
                  .Name("grpc_server_handled_total")
                  .Help("Total number of RPCs completed on the server, regardless of success.")
                  .Register(registry)),
      handling_seconds(prometheus::BuildHistogram()
                           .Name("grpc_server_handling_seconds")
                           .Help("Histogram of response latency of RPCs handled by the server.")
                           .Register(registry)) {}

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return *b;
}

grpc::experimental::Interceptor* GrpcMetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new MetricsInterceptor(info, metrics_.get());
}

int MetricsEndpoint::port() const {
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> StartMetricsEndpoint(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry) {
  try {  // prometheus-cpp (civetweb) reports bind failures by throwing; stop it here.
    auto exposer = std::make_unique<prometheus::Exposer>(address, 2);
    auto process = std::make_shared<ProcessCollector>();
    exposer->RegisterCollectable(registry);
    exposer->RegisterCollectable(process);
    return std::make_unique<MetricsEndpoint>(
        std::move(exposer),
        std::vector<std::shared_ptr<prometheus::Collectable>>{registry, process});
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": ", e.what()));
  }
}

void SplitGrpcMethod(const std::string& full, std::string* service, std::string* method) {
  // "/pkg.Service/Method"
  auto slash = full.rfind('/');
  if (full.empty() || full[0] != '/' || slash == 0 || slash == std::string::npos) {
    *service = "unknown";
    *method = full.empty() ? "unknown" : full;
    return;
  }
  *service = full.substr(1, slash - 1);
  *method = full.substr(slash + 1);
}

namespace {

bool HasLabels(const prometheus::ClientMetric& m,
               const std::map<std::string, std::string>& labels) {
  for (const auto& [k, v] : labels) {
    bool found = false;
    for (const auto& l : m.label) {
      if (l.name == k && l.value == v) found = true;
    }
    if (!found) return false;
  }
  return true;
}

}  // namespace

double SumCounter(prometheus::Registry& registry, const std::string& name,
                  const std::map<std::string, std::string>& labels) {
  double sum = 0;
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      if (!HasLabels(m, labels)) continue;
      sum += family.type == prometheus::MetricType::Gauge ? m.gauge.value : m.counter.value;
    }
  }
  return sum;
}

HistogramTotals SumHistogram(prometheus::Registry& registry, const std::string& name,
                             const std::map<std::string, std::string>& labels, double bound) {
  HistogramTotals out;
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      if (!HasLabels(m, labels)) continue;
      out.count += m.histogram.sample_count;
      out.sum += m.histogram.sample_sum;
      for (const auto& b : m.histogram.bucket) {
        if (b.upper_bound == bound) out.at_most += b.cumulative_count;
      }
    }
  }
  return out;
}

}  // namespace safeharbor
