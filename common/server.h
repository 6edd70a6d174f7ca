// Runs one SafeHarbor gRPC service the same way everywhere: mTLS, health (NOT_SERVING while
// draining), reflection, /metrics with the conventional gRPC metrics, graceful shutdown.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "common/tls.h"

namespace safeharbor {

struct ServerOptions {
  std::string service_name;                    // e.g. "directory"
  std::string listen_address = "127.0.0.1:0";  // host:port; port 0 picks a free one
  std::string metrics_address;                 // host:port; empty: no /metrics endpoint
  // host:port of a plaintext server with only grpc.health.v1, for Kubernetes' native gRPC probes
  // (which cannot present a client certificate). Empty: none. It mirrors the main status.
  std::string health_address;
  TlsFiles tls;
  bool insecure_dev_mode = false;
  int max_receive_message_bytes = 4 << 20;
  absl::Duration drain = absl::ZeroDuration();        // NOT_SERVING before refusing new calls
  absl::Duration shutdown_grace = absl::Seconds(10);  // in-flight calls get this long
};

// The health service name Kubernetes' liveness probe asks for: SERVING as long as the process
// runs and is not shutting down. The overall status ("") is readiness: also NOT_SERVING while
// PostgreSQL does not answer.
inline constexpr char kLivenessService[] = "liveness";

// Pure: whether a "host:port" listen address binds only the loopback interface (127.0.0.0/8,
// [::1], localhost). Development mode (no TLS) serves nothing else.
bool IsLoopbackListenAddress(absl::string_view address);

class ServiceHost {
 public:
  // Builds and starts the server. `services` must outlive the host. In insecure_dev_mode every
  // address must be loopback (FAILED_PRECONDITION otherwise).
  static absl::StatusOr<std::unique_ptr<ServiceHost>> Start(
      const ServerOptions& options, const std::vector<grpc::Service*>& services,
      std::shared_ptr<prometheus::Registry> registry);
  ~ServiceHost();

  int port() const { return port_; }
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }
  int health_port() const { return health_port_; }
  grpc::Server* server() { return server_.get(); }

  // Health → NOT_SERVING, waits `drain`, stops accepting calls and gives in-flight ones
  // `shutdown_grace` to finish. Idempotent.
  void Shutdown();

  // What the dependencies' probe found (`why`: the failure, for the log): health is SERVING
  // only while they answer and the host is not shutting down. Thread-safe; logs changes.
  void SetDependenciesHealthy(bool healthy, absl::string_view why = "");

 private:
  ServiceHost() = default;

  ServerOptions options_;
  void SetServing(bool serving);

  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> health_server_;
  std::unique_ptr<MetricsEndpoint> metrics_;
  int port_ = 0;
  int health_port_ = 0;
  std::mutex mu_;  // health status changes
  bool shut_down_ = false;
  bool dependencies_healthy_ = true;
};

// Call first thing in main, before any thread starts: SIGTERM/SIGINT are then delivered only
// to WaitForTerminationSignal.
void BlockTerminationSignals();
// Blocks until SIGTERM or SIGINT; returns the signal number.
int WaitForTerminationSignal();

}  // namespace safeharbor
