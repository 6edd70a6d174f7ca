// The service kit on a real in-process gRPC server over mTLS: roles, organization scope,
// validation before the handler, scope decided on stored data, invariants counted, the caller's
// deadline reaching the handler's thread; and PeriodicTask.
#include "common/rpc_kit.h"

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <atomic>

#include "common/invariant.h"
#include "common/periodic.h"
#include "common/server.h"
#include "common/test/echo_service.h"
#include "common/testing/harness.h"

namespace safeharbor {
namespace {

using safeharbor::testing::EchoServiceImpl;
using safeharbor::testing::TestServers;
using safeharbor::testing::v1::EchoRequest;
using safeharbor::testing::v1::EchoResponse;
using safeharbor::testing::v1::EchoService;

// One echo service with `policy` (and `handler`) on its own server.
struct Kit {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  RpcEnv env{2, 16, false};
  std::unique_ptr<EchoServiceImpl> echo;
  std::unique_ptr<ServiceHost> host;

  explicit Kit(MethodPolicy policy, EchoServiceImpl::Handler handler = {}) {
    echo = std::make_unique<EchoServiceImpl>(&env, policy, std::move(handler), registry.get());
    ServerOptions opts;
    opts.service_name = "directory";
    opts.tls = TestServers::Get().ServerTls("directory");
    host = *ServiceHost::Start(opts, {echo.get()}, registry);
  }
  ~Kit() { host->Shutdown(); }

  grpc::Status Call(const std::string& org, const std::string& role, const std::string& message,
                    EchoResponse* resp = nullptr, int deadline_s = 10) {
    auto stub = EchoService::NewStub(TestServers::Get().Channel(host->port(), org, role));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(deadline_s));
    EchoRequest req;
    req.set_message(message);
    EchoResponse ignored;
    return stub->Echo(&ctx, req, resp ? resp : &ignored);
  }

  double Metric(const std::string& needle) const {
    const std::string text = prometheus::TextSerializer().Serialize(registry->Collect());
    const size_t at = text.find(needle);
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + needle.size()));
  }
};

TEST(RpcKit, RolesOutsideTheEntryAreRefusedBeforeAnythingElse) {
  std::atomic<int> ran{0};
  Kit kit({.roles = {Role::kFiscal}}, [&](CallContext&, const EchoRequest&, EchoResponse*) {
    ++ran;
    return absl::OkStatus();
  });
  grpc::Status st = kit.Call("org-a", "provider", "invalid");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find("fiscal"), std::string::npos) << st.error_message();
  EXPECT_EQ(kit.Call("org-a", "fiscal", "invalid").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ran.load(), 0);  // Refused and invalid calls never reach the handler.
  EXPECT_TRUE(kit.Call("org-a", "fiscal", "hi").ok());
  EXPECT_EQ(ran.load(), 1);
  EXPECT_EQ(kit.Metric(
                "safeharbor_rpc_refused_total{grpc_method=\"Echo\",reason=\"permission_denied\"} "),
            1);
}

TEST(RpcKit, OwnOrganizationScope) {
  Kit kit({.roles = {Role::kProvider, Role::kDirectoryAdmin},
           .scope = Scope::kOwnOrganization,
           .any_org = {Role::kDirectoryAdmin}});
  EXPECT_TRUE(kit.Call("org-a", "provider", "org-a").ok());
  EXPECT_EQ(kit.Call("org-a", "provider", "org-b").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(kit.Call("state", "directory_admin", "org-b").ok());
}

TEST(RpcKit, AnAnswerWithoutAScopeDecisionIsRefused) {
  Kit kit({.roles = RoleSet::Every(), .scope = Scope::kStored},
          [](CallContext& ctx, const EchoRequest& r, EchoResponse*) -> absl::Status {
            if (r.message() == "decided") return ctx.Authorize(absl::OkStatus());
            return absl::OkStatus();  // Forgot to decide: a programming error.
          });
  EXPECT_TRUE(kit.Call("org-a", "auditor", "decided").ok());
  EXPECT_EQ(kit.Call("org-a", "auditor", "forgot").error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(kit.Metric("safeharbor_invariant_violations_total{invariant=\"rpc.scope_decided\"} "),
            1);
}

TEST(RpcKit, InvariantViolationsAreInternalAndCounted) {
  Kit kit({.roles = RoleSet::Every()}, [](CallContext&, const EchoRequest& r, EchoResponse*) {
    auto check = [&]() -> absl::Status {
      SH_INVARIANT(r.message() != "break", "test.echo");
      return absl::OkStatus();
    };
    return check();
  });
  EXPECT_TRUE(kit.Call("org-a", "auditor", "fine").ok());
  grpc::Status st = kit.Call("org-a", "auditor", "break");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(st.error_message().find("break"), std::string::npos);  // No request data in it.
  ForceInvariantFailureForTest("test.echo", true);
  EXPECT_EQ(kit.Call("org-a", "auditor", "fine").error_code(), grpc::StatusCode::INTERNAL);
  ForceInvariantFailureForTest("test.echo", false);
  EXPECT_TRUE(kit.Call("org-a", "auditor", "fine").ok());
  EXPECT_EQ(kit.Metric("safeharbor_invariant_violations_total{invariant=\"test.echo\"} "), 2);
}

TEST(RpcKit, TheCallersDeadlineReachesTheHandlerThread) {
  absl::Time seen = absl::InfinitePast();
  absl::Time in_ctx = absl::InfinitePast();
  Kit kit({.roles = RoleSet::Every()}, [&](CallContext& ctx, const EchoRequest&, EchoResponse*) {
    seen = CurrentCallDeadline();
    in_ctx = ctx.deadline();
    return absl::OkStatus();
  });
  const absl::Time before = absl::Now();
  ASSERT_TRUE(kit.Call("org-a", "auditor", "hi", nullptr, /*deadline_s=*/7).ok());
  EXPECT_EQ(seen, in_ctx);
  EXPECT_GT(seen, before + absl::Seconds(6));
  EXPECT_LT(seen, before + absl::Seconds(8));
  EXPECT_EQ(CurrentCallDeadline(), absl::InfiniteFuture());  // Outside a call.
}

TEST(PeriodicTask, RunsOnTheIntervalWhenWokenAndStops) {
  std::atomic<int> runs{0};
  PeriodicTask task("test", absl::Hours(1), [&] {
    ++runs;
    return runs.load() == 2 ? absl::UnavailableError("second run fails") : absl::OkStatus();
  });
  EXPECT_TRUE(task.RunOnce().ok());
  EXPECT_EQ(runs.load(), 1);
  task.Start();
  task.Wake();  // Not an hour: at once.
  for (int i = 0; i < 200 && runs.load() < 2; ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(runs.load(), 2);
  task.Stop();
  task.Wake();
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(runs.load(), 2);  // Stopped: woken or not, it does not run.
}

}  // namespace
}  // namespace safeharbor
