// bench-echo-server: the ceiling for one unary call on this machine. A bare gRPC callback server
// with the same mTLS as the services, answering on the reactor thread with no work at all.
#include <grpcpp/grpcpp.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "safeharbor/testing/v1/echo.grpc.pb.h"

ABSL_FLAG(int, port, 50099, "listen port (127.0.0.1)");
ABSL_FLAG(std::string, certs_dir, ".run/certs", "ca.crt and <cert>.crt/.key");
ABSL_FLAG(std::string, cert, "directory", "server certificate base name");

namespace {

class BareEcho final : public safeharbor::testing::v1::EchoService::CallbackService {
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* ctx,
                                 const safeharbor::testing::v1::EchoRequest* req,
                                 safeharbor::testing::v1::EchoResponse* resp) override {
    resp->set_message(req->message());
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

volatile std::sig_atomic_t g_stop = 0;

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string dir = absl::GetFlag(FLAGS_certs_dir);
  grpc::SslServerCredentialsOptions tls(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  tls.pem_root_certs = ReadFile(dir + "/ca.crt");
  tls.pem_key_cert_pairs.push_back({ReadFile(dir + "/" + absl::GetFlag(FLAGS_cert) + ".key"),
                                    ReadFile(dir + "/" + absl::GetFlag(FLAGS_cert) + ".crt")});
  BareEcho service;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(absl::GetFlag(FLAGS_port)),
                           grpc::SslServerCredentials(tls));
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    std::fprintf(stderr, "cannot listen on port %d\n", absl::GetFlag(FLAGS_port));
    return 1;
  }
  std::signal(SIGTERM, [](int) { g_stop = 1; });
  std::signal(SIGINT, [](int) { g_stop = 1; });
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}
