// The service kit on a real in-process gRPC server over mTLS: roles, organization scope,
// validation before the handler, scope decided on stored data, invariants counted, the caller's
// deadline reaching the handler's thread; and PeriodicTask.
#include "common/rpc_kit.h"

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <thread>

#include "common/deadline.h"
#include "common/invariant.h"
#include "common/metrics.h"
#include "common/periodic.h"
#include "common/server.h"
#include "common/service_client.h"
#include "common/service_spec.h"
#include "common/test/echo_service.h"
#include "common/testing/harness.h"

namespace safeharbor {
namespace {

using safeharbor::testing::EchoServiceImpl;
using safeharbor::testing::TestServers;
using safeharbor::testing::v1::EchoRequest;
using safeharbor::testing::v1::EchoResponse;
using safeharbor::testing::v1::EchoService;

// Calls Echo through `peer`: its deadline, budget and breaker.
std::function<absl::Status()> EchoThrough(const Peer& peer) {
  std::shared_ptr<EchoService::Stub> stub = EchoService::NewStub(peer.channel());
  return [&peer, stub] {
    return peer.CallIdempotent([&](grpc::ClientContext* ctx) {
      EchoRequest req;
      EchoResponse resp;
      return stub->Echo(ctx, req, &resp);
    });
  };
}

// One echo service with `policy` (and `handler`) on its own server.
struct Kit {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  RpcEnv env{2, 16, false};
  std::unique_ptr<EchoServiceImpl> echo;
  std::unique_ptr<ServiceHost> host;

  explicit Kit(MethodPolicy policy, EchoServiceImpl::Handler handler = {},
               const QuotaLimits& quotas = {}, EchoServiceImpl::FastPath fast_path = {}) {
    env.SetQuotaLimits(quotas);
    echo = std::make_unique<EchoServiceImpl>(&env, policy, std::move(handler), registry.get(),
                                             std::move(fast_path));
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

// Issue 13: work queued with AfterReply (a fan-out the caller need not wait for) runs after the
// answer reached the caller, on the call's worker.
TEST(RpcKit, WorkAfterTheReplyRunsOnceTheAnswerIsOut) {
  std::mutex mu;
  std::condition_variable cv;
  bool answered = false;
  bool ran = false;
  bool ran_after_answer = false;
  Kit kit({.roles = RoleSet::Every()},
          [&](CallContext& ctx, const EchoRequest&, EchoResponse* out) {
            out->set_message("done");
            ctx.AfterReply([&] {
              std::unique_lock<std::mutex> lock(mu);
              cv.wait_for(lock, std::chrono::seconds(3), [&] { return answered; });
              ran_after_answer = answered;
              ran = true;
              cv.notify_all();
            });
            return absl::OkStatus();
          });
  EchoResponse resp;
  const grpc::Status st = kit.Call("org-a", "auditor", "hi", &resp, /*deadline_s=*/2);
  {
    std::unique_lock<std::mutex> lock(mu);
    answered = true;
    cv.notify_all();
    cv.wait_for(lock, std::chrono::seconds(10), [&] { return ran; });
  }
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.message(), "done");
  EXPECT_TRUE(ran);
  EXPECT_TRUE(ran_after_answer) << "the answer did not wait for the work after it";
}

// Per-organization limits in the kit. 30 calls of one organization against 2 workers and a queue
// of 16: without a limit they fill the queue and every other caller is told "server busy"; with
// 4 calls in flight per organization the rest of the flood is refused and another organization's
// call is queued and answered.
TEST(RpcKit, OneOrganizationsFloodDoesNotFillTheSharedQueue) {
  std::atomic<bool> release{false};
  Kit kit({.roles = RoleSet::Every()},
          [&](CallContext&, const EchoRequest& r, EchoResponse*) {
            for (int i = 0; r.message() == "hold" && !release.load() && i < 20000; ++i) {
              absl::SleepFor(absl::Milliseconds(1));
            }
            return absl::OkStatus();
          },
          {.max_concurrent_calls = 4, .calls_per_second = 0});
  std::atomic<int> ok{0}, exhausted{0};
  std::vector<std::thread> flood;
  for (int i = 0; i < 30; ++i) {
    flood.emplace_back([&] {
      const grpc::Status st = kit.Call("org-flood", "law_enforcement", "hold");
      if (st.ok()) ++ok;
      if (st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
          st.error_message().find("calls in progress") != std::string::npos) {
        ++exhausted;
      }
    });
  }
  for (int i = 0; i < 2000 && exhausted.load() < 26; ++i) absl::SleepFor(absl::Milliseconds(10));
  grpc::Status other;
  std::thread other_call([&] { other = kit.Call("org-other", "child_welfare", "hi"); });
  absl::SleepFor(absl::Milliseconds(200));  // queued behind the flood's four
  release = true;
  other_call.join();
  for (auto& t : flood) t.join();
  std::cout << "flood: " << ok.load() << " admitted, " << exhausted.load()
            << " refused; other organization: " << other.error_code() << "\n";
  EXPECT_EQ(ok.load(), 4);
  EXPECT_EQ(exhausted.load(), 26);
  EXPECT_TRUE(other.ok()) << other.error_message();
  EXPECT_EQ(kit.Metric("safeharbor_quota_refused_total{caller_role=\"law_enforcement\","
                       "limit=\"concurrent_calls\"} "),
            26);
  EXPECT_TRUE(kit.Call("org-flood", "law_enforcement", "hi").ok());  // slots given back
}

TEST(RpcKit, CallRatePerOrganization) {
  Kit kit({.roles = RoleSet::Every()}, {},
          {.max_concurrent_calls = 0, .calls_per_second = 0.01, .burst = 3});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(kit.Call("org-a", "auditor", "hi").ok()) << i;
  const grpc::Status st = kit.Call("org-a", "auditor", "hi");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(st.error_message().find("call rate"), std::string::npos) << st.error_message();
  EXPECT_TRUE(kit.Call("org-b", "auditor", "hi").ok());
  EXPECT_EQ(kit.Metric("safeharbor_quota_refused_total{caller_role=\"auditor\","
                       "limit=\"call_rate\"} "),
            1);
}

TEST(RpcKit, RequestsOverTheMethodsSizeAreRefusedBeforeValidation) {
  std::atomic<int> ran{0};
  Kit kit({.roles = RoleSet::Every(), .max_request_bytes = 100},
          [&](CallContext&, const EchoRequest&, EchoResponse*) {
            ++ran;
            return absl::OkStatus();
          });
  EXPECT_TRUE(kit.Call("org-a", "auditor", std::string(90, 'x')).ok());
  const grpc::Status st = kit.Call("org-a", "auditor", std::string(200, 'x'));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("Echo accepts at most 100"), std::string::npos)
      << st.error_message();
  EXPECT_EQ(ran.load(), 1);
  EXPECT_EQ(MaxReceiveBytes({kit.echo.get()}, 7), 100);
  EXPECT_EQ(MaxReceiveBytes({}, 7), 7);
}

// A fast path answers on the reactor thread, but only calls every check of the entry admitted:
// role, quota, validation and scope refuse exactly as for a call that goes to the handler.
TEST(RpcKit, AFastPathAnswersOnlyAdmittedCallsAndIsCounted) {
  std::atomic<int> fast{0}, slow{0};
  Kit kit(
      {.roles = {Role::kProvider}, .scope = Scope::kOwnOrganization},
      [&](CallContext&, const EchoRequest& r, EchoResponse* out) {
        ++slow;
        out->set_message("slow:" + r.message());
        return absl::OkStatus();
      },
      {.max_concurrent_calls = 0, .calls_per_second = 0.01, .burst = 3},
      [&](CallContext& c, const EchoRequest& r, EchoResponse* out) {
        ++fast;
        if (c.caller().org_id == "org-slow") return false;  // not known: the handler answers
        out->set_message("fast:" + r.message());
        return true;
      });
  EchoResponse resp;
  ASSERT_TRUE(kit.Call("org-a", "provider", "org-a", &resp).ok());
  EXPECT_EQ(resp.message(), "fast:org-a");
  EXPECT_EQ(kit.Call("org-a", "auditor", "org-a").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);  // role
  EXPECT_EQ(kit.Call("org-a", "provider", "invalid").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // validation
  EXPECT_EQ(kit.Call("org-a", "provider", "org-b").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);  // scope
  EXPECT_EQ(kit.Call("org-a", "provider", "org-a").error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);  // quota: three calls took the burst
  EXPECT_EQ(fast.load(), 1);
  ASSERT_TRUE(kit.Call("org-slow", "provider", "org-slow", &resp).ok());
  EXPECT_EQ(resp.message(), "slow:org-slow");
  EXPECT_EQ(fast.load(), 2);
  EXPECT_EQ(slow.load(), 1);
  EXPECT_EQ(kit.Metric("safeharbor_rpc_fast_path_total{grpc_method=\"Echo\"} "), 1);
  EXPECT_EQ(kit.Metric("safeharbor_quota_refused_total{caller_role=\"provider\","
                       "limit=\"call_rate\"} "),
            1);
}

// A fast path of a method whose scope is decided on stored data must decide it too.
TEST(RpcKit, AFastAnswerWithoutAScopeDecisionIsRefused) {
  Kit kit({.roles = RoleSet::Every(), .scope = Scope::kStored}, {}, {},
          [](CallContext& c, const EchoRequest& r, EchoResponse* out) {
            if (r.message() == "decided") (void)c.Authorize(absl::OkStatus());
            out->set_message(r.message());
            return true;
          });
  EXPECT_TRUE(kit.Call("org-a", "auditor", "decided").ok());
  EXPECT_EQ(kit.Call("org-a", "auditor", "forgot").error_code(), grpc::StatusCode::INTERNAL);
}

TEST(RpcKit, RoleServiceOnlyForTheKnownServices) {
  Kit kit({.roles = {Role::kService}});
  EXPECT_TRUE(kit.Call("safeharbor-beds", "service", "hi").ok());
  EXPECT_TRUE(kit.Call("safeharbor-referrals", "service", "hi").ok());
  const grpc::Status st = kit.Call("org-a", "service", "hi");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find("own identities"), std::string::npos) << st.error_message();
  EXPECT_EQ(kit.Call("safeharbor-unknown", "service", "hi").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(IsServiceIdentity("spiffe://safeharbor/org/safeharbor-fees/role/service"));
  EXPECT_FALSE(IsServiceIdentity("spiffe://safeharbor/org/safeharbor-fees/role/auditor"));
}

// A slow peer behind a fast caller: the outgoing call gets what the incoming call has left, not
// the peer's 2 s cap; the budget of calls in flight to one peer fails the extra call at once.
TEST(Peer, DeadlineFromTheCallerAndABoundedBudget) {
  std::atomic<int> slow_calls{0};
  Kit slow({.roles = RoleSet::Every()}, [&](CallContext&, const EchoRequest&, EchoResponse*) {
    ++slow_calls;
    absl::SleepFor(absl::Milliseconds(1500));
    return absl::OkStatus();
  });
  PeerOptions o;
  o.name = "slow";
  o.address = absl::StrCat("localhost:", slow.host->port());
  o.tls = TestServers::Get().ServerTls("referrals");
  o.deadline = absl::Seconds(2);
  o.max_in_flight = 1;
  auto peer = Peer::Connect(o);
  ASSERT_TRUE(peer.ok()) << peer.status();
  const auto call_peer = EchoThrough(**peer);
  absl::Duration took;
  absl::Status outgoing;
  Kit front({.roles = RoleSet::Every()}, [&](CallContext&, const EchoRequest&, EchoResponse*) {
    const absl::Time start = absl::Now();
    outgoing = call_peer();
    took = absl::Now() - start;
    return absl::OkStatus();
  });
  // The caller allows 1 s: the peer call ends after about that, UNAVAILABLE naming the peer.
  auto stub_front =
      EchoService::NewStub(TestServers::Get().Channel(front.host->port(), "org-front", "auditor"));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(1000));
  EchoRequest req;
  EchoResponse resp;
  (void)stub_front->Echo(&ctx, req, &resp);  // DEADLINE_EXCEEDED: the caller gave up
  for (int i = 0; i < 300 && took == absl::ZeroDuration(); ++i)
    absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(outgoing.code(), absl::StatusCode::kUnavailable) << outgoing;
  EXPECT_NE(outgoing.message().find("slow"), std::string::npos);
  EXPECT_LT(took, absl::Milliseconds(1400)) << took;  // not the 1.5 s the peer takes, nor 2 s
  // Budget: with one call in flight, a second fails at once.
  std::thread first([&] { (void)call_peer(); });
  for (int i = 0; i < 200 && (*peer)->in_flight() == 0; ++i) absl::SleepFor(absl::Milliseconds(5));
  const absl::Time start = absl::Now();
  absl::Status second = call_peer();
  EXPECT_EQ(second.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.message().find("busy"), std::string::npos) << second;
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(100));
  first.join();
  std::cout << "peer: " << slow_calls.load() << " calls reached the slow peer; the bounded call "
            << "ended after " << absl::FormatDuration(took) << "\n";
}

// A peer that stops answering: after three time-outs its breaker opens and calls fail at once,
// naming it, without reaching it; after the open period one probe call goes through, and its
// answer closes the breaker. The breaker runs on an injected clock.
TEST(Peer, AHungPeerOpensItsBreakerAndOneProbeClosesIt) {
  std::atomic<bool> hung{true};
  std::atomic<int> reached{0};
  Kit peer_kit({.roles = RoleSet::Every()}, [&](CallContext&, const EchoRequest&, EchoResponse*) {
    ++reached;
    if (hung) absl::SleepFor(absl::Milliseconds(600));
    return absl::OkStatus();
  });
  FakeClock clock(absl::FromUnixSeconds(1'800'000'000));
  auto registry = std::make_shared<prometheus::Registry>();
  PeerOptions o;
  o.name = "directory";
  o.address = absl::StrCat("localhost:", peer_kit.host->port());
  o.tls = TestServers::Get().ServerTls("referrals");
  o.background_deadline = absl::Milliseconds(200);
  o.max_attempts = 1;
  o.breaker = {.failure_threshold = 3, .open_for = absl::Seconds(1)};
  o.clock = &clock;
  o.registry = registry.get();
  auto peer = Peer::Connect(o);
  ASSERT_TRUE(peer.ok()) << peer.status();
  const auto call_peer = EchoThrough(**peer);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(call_peer().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*peer)->breaker_state(), BreakerState::kOpen);
  const int before = reached.load();
  const absl::Time start = absl::Now();
  absl::Status refused = call_peer();
  const absl::Duration refused_after = absl::Now() - start;
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(refused.message().find("directory"), std::string::npos) << refused;
  EXPECT_NE(refused.message().find("circuit breaker"), std::string::npos) << refused;
  EXPECT_LT(refused_after, absl::Milliseconds(100));  // at once, not the 200 ms time-out
  hung = false;
  absl::SleepFor(absl::Milliseconds(700));  // the hung handlers finish
  EXPECT_EQ(reached.load(), before);        // the refused call never reached the peer
  clock.Advance(absl::Seconds(1));
  EXPECT_TRUE(call_peer().ok());  // the probe
  EXPECT_EQ((*peer)->breaker_state(), BreakerState::kClosed);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(call_peer().ok()) << i;
  prometheus::TextSerializer text;
  const std::string metrics = text.Serialize(registry->Collect());
  EXPECT_NE(metrics.find("safeharbor_dependency_timeouts_total{dependency=\"directory\"} 3"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("safeharbor_dependency_breaker_state{dependency=\"directory\"} 0"),
            std::string::npos);
  std::cout << "hung peer: 3 calls timed out after 200 ms, then refused in "
            << absl::FormatDuration(refused_after) << "; closed by one probe\n";
}

// A caller that leaves too little time is not the peer's failure: its calls time out by their own
// deadline, the breaker stays closed and no time-out is counted; calls given the peer's cap open
// it.
TEST(Peer, ACallersShortDeadlineDoesNotOpenThePeersBreaker) {
  Kit peer_kit({.roles = RoleSet::Every()}, [&](CallContext&, const EchoRequest&, EchoResponse*) {
    absl::SleepFor(absl::Milliseconds(600));
    return absl::OkStatus();
  });
  auto registry = std::make_shared<prometheus::Registry>();
  PeerOptions o;
  o.name = "directory";
  o.address = absl::StrCat("localhost:", peer_kit.host->port());
  o.tls = TestServers::Get().ServerTls("referrals");
  o.deadline = o.background_deadline = absl::Milliseconds(400);
  o.max_attempts = 1;
  o.breaker = {.failure_threshold = 3, .open_for = absl::Seconds(30)};
  o.registry = registry.get();
  auto peer = Peer::Connect(o);
  ASSERT_TRUE(peer.ok()) << peer.status();
  const auto call_peer = EchoThrough(**peer);
  const auto timeouts = [&] {
    return SumCounter(*registry, "safeharbor_dependency_timeouts_total",
                      {{"dependency", "directory"}});
  };
  for (int i = 0; i < 5; ++i) {
    DeadlineScope caller(absl::Now() + absl::Milliseconds(100));  // under half the 400 ms cap
    EXPECT_EQ(call_peer().code(), absl::StatusCode::kUnavailable);
  }
  EXPECT_EQ((*peer)->breaker_state(), BreakerState::kClosed);
  EXPECT_EQ(timeouts(), 0);
  for (int i = 0; i < 3; ++i) {
    DeadlineScope caller(absl::Now() + absl::Seconds(20));  // the peer's whole cap
    EXPECT_EQ(call_peer().code(), absl::StatusCode::kUnavailable);
  }
  EXPECT_EQ((*peer)->breaker_state(), BreakerState::kOpen);
  EXPECT_EQ(timeouts(), 3);
  std::cout << "slow peer: 5 calls timed out by their callers' 100 ms, breaker closed; 3 given "
            << "the 400 ms cap opened it\n";
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
