#include "common/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace safeharbor {

bool IsLoopbackListenAddress(absl::string_view address) {
  const size_t colon = address.rfind(':');
  absl::string_view host = colon == absl::string_view::npos ? address : address.substr(0, colon);
  if (host == "localhost" || host == "[::1]") return true;
  std::vector<absl::string_view> octets = absl::StrSplit(host, '.');
  if (octets.size() != 4 || octets[0] != "127") return false;
  for (absl::string_view o : octets) {
    int v = 0;
    if (!absl::SimpleAtoi(o, &v) || v < 0 || v > 255) return false;
  }
  return true;
}

namespace {

// Development mode serves without TLS and takes identity from a header: loopback only.
absl::Status LoopbackOnly(const ServerOptions& options) {
  for (const std::string& a :
       {options.listen_address, options.metrics_address, options.health_address}) {
    if (!a.empty() && !IsLoopbackListenAddress(a)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "insecure_dev_mode serves without TLS and takes identity from a header: it listens "
          "only on loopback (--listen_host=127.0.0.1), not on ",
          a));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServiceHost>> ServiceHost::Start(
    const ServerOptions& options, const std::vector<grpc::Service*>& services,
    std::shared_ptr<prometheus::Registry> registry) {
  std::unique_ptr<ServiceHost> host(new ServiceHost());
  host->options_ = options;

  std::shared_ptr<grpc::ServerCredentials> creds;
  if (options.insecure_dev_mode) {
    SH_RETURN_IF_ERROR(LoopbackOnly(options));
    log::Warn("insecure_dev_mode",
              {{"message",
                "TLS IS OFF: development mode, plaintext, identity taken from a header. "
                "Never use this with real data."}});
    creds = grpc::InsecureServerCredentials();
  } else {
    auto c = MakeServerCredentials(options.tls);
    if (!c.ok()) return c.status();
    creds = *c;
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, creds, &host->port_);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  builder.SetMaxSendMessageSize(64 << 20);
  for (grpc::Service* s : services) builder.RegisterService(s);

  auto grpc_metrics = std::make_shared<GrpcServerMetrics>(*registry);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(std::make_unique<GrpcMetricsInterceptorFactory>(grpc_metrics));
  builder.experimental().SetInterceptorCreators(std::move(creators));

  host->server_ = builder.BuildAndStart();
  if (!host->server_ || host->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen_address));
  }
  if (!options.metrics_address.empty()) {
    auto m = StartMetricsEndpoint(options.metrics_address, registry);
    if (!m.ok()) {
      host->server_->Shutdown();
      return m.status();
    }
    host->metrics_ = *std::move(m);
  }
  if (!options.health_address.empty()) {
    // Only the default health service: no application method is reachable without mTLS.
    grpc::ServerBuilder health;
    health.AddListeningPort(options.health_address, grpc::InsecureServerCredentials(),
                            &host->health_port_);
    host->health_server_ = health.BuildAndStart();
    if (!host->health_server_ || host->health_port_ == 0) {
      host->server_->Shutdown();
      return absl::UnavailableError(absl::StrCat("cannot listen on ", options.health_address));
    }
  }
  host->SetServing(true);
  log::Info("serving", {{"grpc_port", absl::StrCat(host->port_)},
                        {"health_port", absl::StrCat(host->health_port_)},
                        {"metrics_port", absl::StrCat(host->metrics_port())},
                        {"tls", options.insecure_dev_mode ? "off" : "mtls"}});
  return host;
}

ServiceHost::~ServiceHost() { Shutdown(); }

void ServiceHost::SetServing(bool serving) {
  for (grpc::Server* s : {server_.get(), health_server_.get()}) {
    if (s == nullptr) continue;
    // Kubernetes' liveness probe asks for "liveness": SERVING while the process runs, so that a
    // dependency that does not answer takes the pod out of traffic (readiness, "") without
    // restarting it. Draining ends both.
    if (serving) s->GetHealthCheckService()->SetServingStatus(kLivenessService, true);
    s->GetHealthCheckService()->SetServingStatus(serving);
  }
}

void ServiceHost::SetDependenciesHealthy(bool healthy, absl::string_view why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (healthy == dependencies_healthy_ || shut_down_) return;
  dependencies_healthy_ = healthy;
  for (grpc::Server* s : {server_.get(), health_server_.get()}) {
    if (s != nullptr) s->GetHealthCheckService()->SetServingStatus("", healthy);
  }
  if (healthy) {
    log::Info("health_serving", {{"reason", "its dependencies answer again"}});
  } else {
    log::Error("health_not_serving", {{"reason", "a dependency does not answer"}, {"error", why}});
  }
}

void ServiceHost::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shut_down_ || !server_) return;
    shut_down_ = true;
    SetServing(false);
  }
  log::Info("draining",
            {{"drain_ms", absl::StrCat(absl::ToInt64Milliseconds(options_.drain))},
             {"grace_ms", absl::StrCat(absl::ToInt64Milliseconds(options_.shutdown_grace))}});
  if (options_.drain > absl::ZeroDuration()) absl::SleepFor(options_.drain);
  server_->Shutdown(std::chrono::system_clock::now() +
                    absl::ToChronoMilliseconds(options_.shutdown_grace));
  server_->Wait();
  if (health_server_) {
    health_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    health_server_->Wait();
  }
  log::Info("stopped");
}

void BlockTerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForTerminationSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  sigwait(&set, &sig);
  log::Info("signal", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  return sig;
}

}  // namespace safeharbor
