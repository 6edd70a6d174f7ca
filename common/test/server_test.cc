// A real in-process gRPC round trip through the shared runtime: mTLS identity, health,
// the executor hand-off, status mapping and the Prometheus endpoint.
#include "common/server.h"

#include <grpcpp/health_check_service_interface.h>
#include <gtest/gtest.h>

#include <thread>

#include "common/test/echo_service.h"
#include "common/testing/harness.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace safeharbor {
namespace {

using safeharbor::testing::TestServers;
using safeharbor::testing::v1::EchoRequest;
using safeharbor::testing::v1::EchoResponse;
using safeharbor::testing::v1::EchoService;

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_ = std::make_shared<prometheus::Registry>();
    env_ = std::make_unique<RpcEnv>(2, 16, false);
    echo_ = std::make_unique<testing::EchoServiceImpl>(env_.get());
    ServerOptions opts;
    opts.service_name = "directory";
    opts.tls = TestServers::Get().ServerTls("directory");
    opts.metrics_address = "127.0.0.1:0";
    opts.health_address = "127.0.0.1:0";
    auto host = ServiceHost::Start(opts, {echo_.get()}, registry_);
    ASSERT_TRUE(host.ok()) << host.status();
    host_ = *std::move(host);
  }
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<RpcEnv> env_;
  std::unique_ptr<testing::EchoServiceImpl> echo_;
  std::unique_ptr<ServiceHost> host_;
};

TEST_F(ServerTest, CallerIdentityComesFromTheClientCertificate) {
  auto stub = EchoService::NewStub(TestServers::Get().Channel(host_->port(), "org-echo", "fiscal"));
  grpc::ClientContext ctx;
  EchoRequest req;
  req.set_message("hi");
  EchoResponse resp;
  grpc::Status st = stub->Echo(&ctx, req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.message(), "hi");
  EXPECT_EQ(resp.caller_org_id(), "org-echo");
  EXPECT_EQ(resp.caller_role(), "fiscal");
}

TEST_F(ServerTest, ErrorsKeepTheirCodeAcrossTheEdge) {
  auto stub = EchoService::NewStub(TestServers::Get().Channel(host_->port(), "org-echo", "fiscal"));
  grpc::ClientContext ctx;
  EchoRequest req;
  req.set_message("fail");
  EchoResponse resp;
  EXPECT_EQ(stub->Echo(&ctx, req, &resp).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(ServerTest, CallWithoutClientCertificateIsRefused) {
  auto stub = EchoService::NewStub(TestServers::Get().ChannelWithoutClientCert(host_->port()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  EchoRequest req;
  EchoResponse resp;
  grpc::Status st = stub->Echo(&ctx, req, &resp);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);  // The TLS handshake fails.
}

TEST_F(ServerTest, HealthServingThenNotServingWhileDraining) {
  auto channel = TestServers::Get().Channel(host_->port(), "org-echo", "auditor");
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
  host_->server()->GetHealthCheckService()->SetServingStatus(false);
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  }
}

// Health follows the dependencies' probe (readiness, ""), and says SERVING again without a
// restart; "liveness" stays SERVING meanwhile, on both the mTLS and the plaintext probe port.
TEST_F(ServerTest, HealthFollowsTheDependenciesWhileLivenessStaysServing) {
  auto tls = grpc::health::v1::Health::NewStub(
      TestServers::Get().Channel(host_->port(), "org-echo", "auditor"));
  auto plain = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", host_->health_port()), grpc::InsecureChannelCredentials()));
  auto status = [](grpc::health::v1::Health::Stub* stub, const std::string& service) {
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    grpc::ClientContext ctx;
    EXPECT_TRUE(stub->Check(&ctx, req, &resp).ok());
    return resp.status();
  };
  using R = grpc::health::v1::HealthCheckResponse;
  host_->SetDependenciesHealthy(false, "postgres did not answer the probe in time");
  for (auto* stub : {tls.get(), plain.get()}) {
    EXPECT_EQ(status(stub, ""), R::NOT_SERVING);
    EXPECT_EQ(status(stub, kLivenessService), R::SERVING);
  }
  host_->SetDependenciesHealthy(true);
  for (auto* stub : {tls.get(), plain.get()}) {
    EXPECT_EQ(status(stub, ""), R::SERVING);
    EXPECT_EQ(status(stub, kLivenessService), R::SERVING);
  }
}

TEST_F(ServerTest, PlaintextHealthPortServesOnlyHealthAndFollowsDraining) {
  auto plain = grpc::CreateChannel(absl::StrCat("127.0.0.1:", host_->health_port()),
                                   grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(plain);
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
  // No application method is reachable there.
  auto echo = EchoService::NewStub(plain);
  grpc::ClientContext ctx;
  EchoRequest ereq;
  EchoResponse eresp;
  EXPECT_EQ(echo->Echo(&ctx, ereq, &eresp).error_code(), grpc::StatusCode::UNIMPLEMENTED);

  // A host with a drain period: during it the probe port already says NOT_SERVING.
  ServerOptions opts;
  opts.service_name = "directory";
  opts.tls = TestServers::Get().ServerTls("directory");
  opts.health_address = "127.0.0.1:0";
  opts.drain = absl::Milliseconds(1500);
  testing::EchoServiceImpl second(env_.get());  // A service is registered with one server.
  auto draining = ServiceHost::Start(opts, {&second}, std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(draining.ok());
  auto probe = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", (*draining)->health_port()), grpc::InsecureChannelCredentials()));
  std::thread drain([&] { (*draining)->Shutdown(); });
  absl::SleepFor(absl::Milliseconds(400));
  grpc::ClientContext during;
  ASSERT_TRUE(probe->Check(&during, req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  drain.join();
}

TEST_F(ServerTest, GrpcMetricsCountHandledCallsByCode) {
  auto stub = EchoService::NewStub(TestServers::Get().Channel(host_->port(), "org-echo", "fiscal"));
  for (const char* m : {"a", "fail", "b"}) {
    grpc::ClientContext ctx;
    EchoRequest req;
    req.set_message(m);
    EchoResponse resp;
    (void)stub->Echo(&ctx, req, &resp);
  }
  const std::map<std::string, std::string> echo = {
      {"grpc_service", "safeharbor.testing.v1.EchoService"}, {"grpc_method", "Echo"}};
  auto with = [&](std::string code) {
    auto l = echo;
    l["grpc_code"] = code;
    return l;
  };
  EXPECT_EQ(SumCounter(*registry_, "grpc_server_started_total", echo), 3);
  EXPECT_EQ(SumCounter(*registry_, "grpc_server_handled_total", with("OK")), 2);
  EXPECT_EQ(SumCounter(*registry_, "grpc_server_handled_total", with("FAILED_PRECONDITION")), 1);
  EXPECT_GT(host_->metrics_port(), 0);
}

// Development mode (no TLS, identity from a header) serves only on loopback.
TEST(DevMode, RefusesToListenOnAnythingButLoopback) {
  EXPECT_TRUE(IsLoopbackListenAddress("127.0.0.1:50051"));
  EXPECT_TRUE(IsLoopbackListenAddress("127.10.0.3:0"));
  EXPECT_TRUE(IsLoopbackListenAddress("localhost:9461"));
  EXPECT_TRUE(IsLoopbackListenAddress("[::1]:50051"));
  EXPECT_FALSE(IsLoopbackListenAddress("0.0.0.0:50051"));
  EXPECT_FALSE(IsLoopbackListenAddress("[::]:50051"));
  EXPECT_FALSE(IsLoopbackListenAddress("10.0.0.7:50051"));
  EXPECT_FALSE(IsLoopbackListenAddress("127.0.0.1.example.org:50051"));
  EXPECT_FALSE(IsLoopbackListenAddress("127.0.0.300:1"));

  auto registry = std::make_shared<prometheus::Registry>();
  RpcEnv env(1, 4, true);
  testing::EchoServiceImpl echo(&env);
  ServerOptions opts;
  opts.service_name = "directory";
  opts.insecure_dev_mode = true;
  opts.listen_address = "0.0.0.0:0";
  auto refused = ServiceHost::Start(opts, {&echo}, registry);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("only on loopback"), std::string::npos);
  opts.listen_address = "127.0.0.1:0";
  opts.metrics_address = "0.0.0.0:0";  // every address it would serve on
  EXPECT_FALSE(ServiceHost::Start(opts, {&echo}, registry).ok());
  opts.metrics_address = "";
  auto host = ServiceHost::Start(opts, {&echo}, registry);
  ASSERT_TRUE(host.ok()) << host.status();
  (*host)->Shutdown();
}

}  // namespace
}  // namespace safeharbor
