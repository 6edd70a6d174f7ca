// Webhooks (issue 15): the pure parts (events derived from a change, payload, signature, URLs,
// backoff) and the outbox against real PostgreSQL with an injected clock and a scripted
// endpoint: the feed filled by triggers in the change's transaction, retries then delivery,
// leases that a killed worker leaves behind, the per-endpoint limit, dead letters and replay,
// reminders dropped once their condition no longer holds, escalations to child welfare.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/testing/harness.h"
#include "services/referrals/referral_store.h"
#include "services/referrals/webhook_sender.h"
#include "services/referrals/webhook_store.h"
#include "services/referrals/webhook_worker.h"
#include "services/referrals/webhooks.h"

namespace safeharbor::referrals {
const std::vector<Migration>& Migrations();
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1795000000);

v1::Referral OfferedView(const std::string& id, const std::string& provider, absl::Time offered) {
  v1::Referral r;
  r.set_id(id);
  r.set_county_fips("53033");
  r.set_status(v1::REFERRAL_STATUS_OFFERED);
  r.mutable_youth()->set_youth_reference("SPD-2026-0042");
  r.mutable_youth()->set_age(15);
  auto* o = r.add_offers();
  o->set_provider_organization_id(provider);
  o->set_service_id("svc-1");
  o->set_state(v1::OFFER_STATE_PENDING);
  *o->mutable_offered_time() = ToProtoTime(offered);
  *o->mutable_respond_by() = ToProtoTime(offered + absl::Minutes(30));
  return r;
}

TEST(WebhookPure, SignatureIsHmacSha256OfTimestampDotBody) {
  // The same value Python's hmac gives (scripts/webhook-receiver verifies with it).
  EXPECT_EQ(WebhookSignature("whsec_test", 1795000000, "{\"a\":1}"),
            "v1=14cdf372534acd098c83cbb3a5b7081138ef9e1e2ce9f43221f2a73884581201");
  EXPECT_NE(WebhookSignature("whsec_other", 1795000000, "{\"a\":1}"),
            WebhookSignature("whsec_test", 1795000000, "{\"a\":1}"));
}

TEST(WebhookPure, SecretsAreLongAndRandom) {
  const std::string a = NewWebhookSecret(), b = NewWebhookSecret();
  EXPECT_TRUE(absl::StartsWith(a, "whsec_"));
  EXPECT_GE(a.size(), 6u + 43u);  // 32 bytes in base64url
  EXPECT_NE(a, b);
}

TEST(WebhookPure, UrlsAreHttpsOrLoopbackHttpInDevelopment) {
  EXPECT_TRUE(CheckWebhookUrl("https://hooks.example.org/safeharbor", false).ok());
  EXPECT_FALSE(CheckWebhookUrl("http://hooks.example.org/x", false).ok());
  EXPECT_FALSE(CheckWebhookUrl("http://127.0.0.1:8600/x", false).ok());
  EXPECT_TRUE(CheckWebhookUrl("http://127.0.0.1:8600/x", true).ok());
  EXPECT_TRUE(CheckWebhookUrl("http://localhost:8600/", true).ok());
  EXPECT_TRUE(CheckWebhookUrl("http://[::1]:8600/", true).ok());
  EXPECT_FALSE(CheckWebhookUrl("http://hooks.example.org/x", true).ok());
  EXPECT_FALSE(CheckWebhookUrl("http://127.0.0.1.evil.example/x", true).ok());
  EXPECT_FALSE(CheckWebhookUrl("https://user:pw@hooks.example.org/", false).ok());
  EXPECT_FALSE(CheckWebhookUrl("ftp://hooks.example.org/", false).ok());
  EXPECT_FALSE(CheckWebhookUrl("https:///nohost", false).ok());
  EXPECT_FALSE(CheckWebhookUrl("https://a.example/x#frag", false).ok());
}

TEST(WebhookPure, BackoffDoublesUpToItsCap) {
  const absl::Duration base = absl::Seconds(5), max = absl::Minutes(1);
  EXPECT_EQ(WebhookBackoff(1, base, max), absl::Seconds(5));
  EXPECT_EQ(WebhookBackoff(2, base, max), absl::Seconds(10));
  EXPECT_EQ(WebhookBackoff(4, base, max), absl::Seconds(40));
  EXPECT_EQ(WebhookBackoff(30, base, max), absl::Minutes(1));
}

TEST(WebhookPure, AnOfferMeansOfferMadeAndALapseReminderWithStableIds) {
  WebhookOptions o;
  const v1::Referral view = OfferedView("ref-1", "prov-a", kNow);
  const auto events = DeriveProviderEvents(view, "prov-a", kNow + absl::Seconds(1), o);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, v1::WEBHOOK_EVENT_TYPE_OFFER_MADE);
  EXPECT_EQ(events[0].deadline, kNow + absl::Minutes(30));
  EXPECT_EQ(events[1].type, v1::WEBHOOK_EVENT_TYPE_OFFER_LAPSING);
  EXPECT_EQ(events[1].due, kNow + absl::Minutes(25));
  EXPECT_EQ(events[1].guard, kGuardOfferPending);
  // The same offer seen again (another change while it is pending): the same ids.
  const auto again = DeriveProviderEvents(view, "prov-a", kNow + absl::Minutes(3), o);
  EXPECT_EQ(again[0].event_id, events[0].event_id);
  EXPECT_NE(events[0].event_id, events[1].event_id);
  EXPECT_TRUE(DeriveProviderEvents(view, "prov-b", kNow, o).empty());
}

TEST(WebhookPure, AcceptanceMeansAHandoffDeadlineReminder) {
  WebhookOptions o;
  v1::Referral view = OfferedView("ref-1", "prov-a", kNow);
  view.set_status(v1::REFERRAL_STATUS_ACCEPTED);
  view.mutable_offers(0)->set_state(v1::OFFER_STATE_ACCEPTED);
  view.mutable_handoff()->set_provider_organization_id("prov-a");
  *view.mutable_accepted_time() = ToProtoTime(kNow + absl::Minutes(5));
  const auto events = DeriveProviderEvents(view, "prov-a", kNow + absl::Minutes(5), o);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, v1::WEBHOOK_EVENT_TYPE_HANDOFF_DEADLINE);
  EXPECT_EQ(events[0].deadline, kNow + absl::Minutes(5) + o.handoff_window);
  EXPECT_EQ(events[0].guard, kGuardAwaitingHandoff);
}

TEST(WebhookPure, AStatutoryTimerDueIsOneEventPerTimerWithItsDueTimeAsDeadline) {
  const absl::Time due = absl::FromUnixSeconds(1796166000);
  const absl::Time now = due + absl::Seconds(7);
  const WebhookEvent e = StatutoryTimerEvent("ref-1", "dcyf_notice", due, now);
  EXPECT_EQ(e.type, v1::WEBHOOK_EVENT_TYPE_STATUTORY_TIMER_DUE);
  EXPECT_EQ(e.deadline, due);
  EXPECT_EQ(e.due, now);
  EXPECT_TRUE(e.guard.empty());
  // The same timer fired again (another replica, a retry) is the same event; another is not.
  EXPECT_EQ(e.event_id,
            StatutoryTimerEvent("ref-1", "dcyf_notice", due, now + absl::Hours(1)).event_id);
  EXPECT_NE(e.event_id,
            StatutoryTimerEvent("ref-1", "crisis_residential_report", due, now).event_id);
  const std::string body = WebhookPayload(e, "cw-king");
  EXPECT_NE(body.find("\"event_type\":\"statutory_timer_due\""), std::string::npos) << body;
  EXPECT_NE(body.find("\"referral_id\":\"ref-1\""), std::string::npos) << body;
  EXPECT_NE(body.find("\"deadline\":\"2026-12-01T23:00:00.000Z\""), std::string::npos) << body;
}

TEST(WebhookPure, PayloadCarriesNoYouthData) {
  WebhookOptions o;
  v1::Referral view = OfferedView("ref-1", "prov-a", kNow);
  view.mutable_youth()->mutable_identifying()->set_name("Jane Doe");
  const auto events = DeriveProviderEvents(view, "prov-a", kNow, o);
  const std::string body = WebhookPayload(events[0], "prov-a");
  EXPECT_EQ(body,
            absl::StrCat("{\"event_id\":\"", events[0].event_id,
                         "\",\"event_type\":\"offer_made\",\"organization_id\":\"prov-a\","
                         "\"referral_id\":\"ref-1\",\"deadline\":\"2026-11-18T11:36:40.000Z\","
                         "\"occurred_at\":\"2026-11-18T11:06:40.000Z\"}"));
  for (const char* youth : {"SPD-2026", "Jane", "15", "53033"}) {
    EXPECT_FALSE(absl::StrContains(body, youth)) << youth;
  }
}

// A local HTTPS endpoint (Python's ssl) with the development CA's "referrals" certificate (valid
// for localhost): the production sender refuses it, as that CA is not in the system's store, and
// accepts it once told to trust that CA; plain http is refused before any connection.
TEST(WebhookSender, VerifiesCertificatesAndRefusesPlainHttp) {
  auto& servers = safeharbor::testing::TestServers::Get();
  const TlsFiles tls = servers.ServerTls("referrals");
  const int port = safeharbor::testing::FreePort();
  const std::string code =
      "import http.server, ssl, sys\n"
      "class H(http.server.BaseHTTPRequestHandler):\n"
      "  def do_POST(self):\n"
      "    self.rfile.read(int(self.headers.get('Content-Length', '0')))\n"
      "    self.send_response(204); self.end_headers()\n"
      "  def log_message(self, *a): pass\n"
      "s = http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H)\n"
      "c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain(sys.argv[2], sys.argv[3])\n"
      "s.socket = c.wrap_socket(s.socket, server_side=True)\n"
      "s.serve_forever()\n";
  const std::string port_s = std::to_string(port);
  std::vector<char*> argv = {const_cast<char*>("/usr/bin/python3"),
                             const_cast<char*>("-c"),
                             const_cast<char*>(code.c_str()),
                             const_cast<char*>(port_s.c_str()),
                             const_cast<char*>(tls.cert.c_str()),
                             const_cast<char*>(tls.key.c_str()),
                             nullptr};
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ), 0);
  WebhookRequest req;
  req.url = absl::StrCat("https://localhost:", port, "/hook");
  req.body = "{}";
  req.timeout = absl::Seconds(5);
  CurlWebhookSender production(false, "", /*internal=*/true),
      trusting(false, tls.ca_cert, /*internal=*/true), trusting_outside_only(false, tls.ca_cert);
  absl::StatusOr<int> trusted = absl::UnavailableError("not yet");
  for (int i = 0; i < 100 && !trusted.ok(); ++i) {  // until the server listens
    absl::SleepFor(absl::Milliseconds(50));
    trusted = trusting.Post(req);
  }
  const absl::StatusOr<int> refused = production.Post(req);
  const absl::StatusOr<int> inward = trusting_outside_only.Post(req);  // localhost: internal
  WebhookRequest plain = req;
  plain.url = absl::StrCat("http://127.0.0.1:", port, "/hook");
  const absl::StatusOr<int> http = production.Post(plain);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  ASSERT_TRUE(trusted.ok()) << trusted.status();
  EXPECT_EQ(*trusted, 204);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  EXPECT_EQ(http.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(inward.status().code(), absl::StatusCode::kUnavailable) << inward.status();
  EXPECT_EQ(inward.status().message(), "destination address not allowed");
  std::cout << "https endpoint with a private CA: refused by the production sender ("
            << refused.status().message() << "), 204 when that CA is trusted\n";
}

// An officer's certificate cannot make the network post into itself: the resolved address is
// checked, whatever the URL's name.
TEST(Webhooks, InternalAddressesAreRecognizedWhateverTheirForm) {
  auto v4 = [](const char* text) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    EXPECT_EQ(inet_pton(AF_INET, text, &a.sin_addr), 1) << text;
    return a;
  };
  auto v6 = [](const char* text) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    EXPECT_EQ(inet_pton(AF_INET6, text, &a.sin6_addr), 1) << text;
    return a;
  };
  for (const char* inside : {"127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
                             "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "192.0.0.8",
                             "198.18.0.1", "203.0.113.9", "255.255.255.255"}) {
    const sockaddr_in a = v4(inside);
    EXPECT_TRUE(IsInternalAddress(reinterpret_cast<const sockaddr*>(&a))) << inside;
  }
  for (const char* outside : {"8.8.8.8", "172.32.0.1", "100.128.0.1", "193.168.1.1"}) {
    const sockaddr_in a = v4(outside);
    EXPECT_FALSE(IsInternalAddress(reinterpret_cast<const sockaddr*>(&a))) << outside;
  }
  for (const char* inside :
       {"::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "::ffff:10.0.0.1",
        "::ffff:127.0.0.1", "64:ff9b::a00:5", "64:ff9b:1::a00:5", "2002:a00:5::1",
        "2001:0:a00:5::1", "2001:db8::1", "::a00:5"}) {
    const sockaddr_in6 a = v6(inside);
    EXPECT_TRUE(IsInternalAddress(reinterpret_cast<const sockaddr*>(&a))) << inside;
  }
  for (const char* global : {"2001:4860:4860::8888", "2606:4700::1111", "2a00:1450::1"}) {
    const sockaddr_in6 outside = v6(global);
    EXPECT_FALSE(IsInternalAddress(reinterpret_cast<const sockaddr*>(&outside))) << global;
  }
  const sockaddr_in6 mapped_loopback = v6("::ffff:127.0.0.1");
  EXPECT_TRUE(IsLoopbackAddress(reinterpret_cast<const sockaddr*>(&mapped_loopback)));
  const sockaddr_in private_v4 = v4("10.0.0.1");
  EXPECT_FALSE(IsLoopbackAddress(reinterpret_cast<const sockaddr*>(&private_v4)));
  // The development sender reaches loopback, never the private network.
  CurlWebhookSender dev(/*allow_loopback_http=*/true);
  const sockaddr_in loopback = v4("127.0.0.1");
  EXPECT_TRUE(dev.AllowsConnectionTo(reinterpret_cast<const sockaddr*>(&loopback)));
  EXPECT_FALSE(dev.AllowsConnectionTo(reinterpret_cast<const sockaddr*>(&private_v4)));
}

// An endpoint that answers from a script: HTTP statuses in order, then 200.
class ScriptedSender final : public WebhookSender {
 public:
  absl::StatusOr<int> Post(const WebhookRequest& req) override {
    std::lock_guard<std::mutex> l(mu);
    posts.push_back(req);
    if (script.empty()) return 200;
    const int status = script.front();
    script.pop_front();
    if (status == 0) return absl::DeadlineExceededError("timeout");
    return status;
  }
  std::mutex mu;
  std::deque<int> script;
  std::vector<WebhookRequest> posts;
};

// The directory's word on subscribers, as a test sets it (NOT_FOUND for organizations it does
// not list).
class FakeDirectory final : public SubscriberDirectory {
 public:
  absl::StatusOr<SubscriberStanding> Standing(const std::string& org) override {
    std::lock_guard<std::mutex> l(mu);
    ++asked;
    auto it = orgs.find(org);
    if (it == orgs.end()) return absl::NotFoundError("not in the directory");
    return it->second;
  }
  void Set(const std::string& org, absl::StatusOr<SubscriberStanding> s) {
    std::lock_guard<std::mutex> l(mu);
    orgs.insert_or_assign(org, std::move(s));
  }
  void Forget(const std::string& org) {
    std::lock_guard<std::mutex> l(mu);
    orgs.erase(org);
  }
  std::mutex mu;
  std::map<std::string, absl::StatusOr<SubscriberStanding>> orgs;
  int asked = 0;
};

SubscriberStanding ProviderStanding() {
  return {directory::v1::ORGANIZATION_KIND_SERVICE_PROVIDER, {"53033"}};
}

SubscriberStanding OfficeStanding(std::vector<std::string> counties) {
  return {directory::v1::ORGANIZATION_KIND_CHILD_WELFARE_OFFICE, std::move(counties)};
}

class WebhookOutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& s = safeharbor::testing::TestServers::Get();
    auto pool = PgPool::Connect(s.PgOptionsFor(s.NewDatabase("wh")), nullptr);
    ASSERT_TRUE(pool.ok());
    pg_ = *std::move(pool);
    ASSERT_TRUE(pg_->Migrate(Migrations()).ok());
    options_.backoff_base = absl::Seconds(5);
    options_.retry_window = absl::Minutes(10);
    options_.endpoint_concurrency = 1;
    // The tests below that move the clock by hours keep the directory's word fresh enough.
    options_.standing_max_age = absl::Hours(24 * 90);
    worker_ = std::make_unique<WebhookWorker>(pg_.get(), &clock_, &sealer_, &sender_, &directory_,
                                              options_, registry_);
  }

  // A subscription of `org`; returns its secret.
  std::string Subscribe(const std::string& id, const std::string& org,
                        std::vector<std::string> counties = {}) {
    v1::WebhookSubscription s;
    s.set_id(id);
    s.set_organization_id(org);
    s.set_url("https://hooks.example.org/" + id);
    for (int e = 1; e <= 5; ++e) s.add_events(static_cast<v1::WebhookEventType>(e));
    *s.mutable_create_time() = ToProtoTime(clock_.Now());
    const std::string secret = NewWebhookSecret();
    const std::string sealed = *sealer_.Seal(secret, id);
    EXPECT_TRUE(pg_->Transact([&](PgTx& tx) {
                     return WebhookStore::Create(
                         tx, s, counties.empty() ? "provider" : "child_welfare", counties, sealed);
                   })
                    .ok());
    // The directory lists it as what it subscribed as (unless a test said otherwise), and has
    // vouched for it.
    if (directory_.orgs.count(org) == 0) {
      directory_.Set(org, counties.empty() ? ProviderStanding() : OfficeStanding(counties));
    }
    EXPECT_TRUE(worker_->RefreshStandingOnce().ok());
    return secret;
  }

  // A referral offered to `provider`, with its watch event committed (the change feed).
  void Offer(const std::string& rid, const std::string& provider,
             const std::string& county = "53033") {
    v1::Referral r = OfferedView(rid, provider, clock_.Now());
    r.set_county_fips(county);
    r.mutable_youth()->mutable_identifying()->set_name("Jane Doe");
    Caller officer{"seattle-pd", Role::kLawEnforcement, ""};
    ASSERT_TRUE(pg_->Transact([&](PgTx& tx) -> absl::Status {
                     if (auto s = ReferralStore::Insert(tx, r, officer, sealer_, clock_.Now());
                         !s.ok()) {
                       return s;
                     }
                     r.mutable_youth()->clear_identifying();
                     return ReferralStore::AppendEvent(tx, provider, r, clock_.Now()).status();
                   })
                    .ok());
  }

  int64_t Count(const std::string& where) {
    auto r = pg_->Query(absl::StrCat("SELECT count(*) AS n FROM webhook_deliveries WHERE ", where));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->Int64(0, "n") : -1;
  }

  // The referral escalated (a transition to ESCALATED: the change feed's trigger).
  void Escalate(const std::string& rid) {
    ASSERT_TRUE(pg_->Transact([&](PgTx& tx) {
                     v1::Transition t;
                     t.set_from_status(v1::REFERRAL_STATUS_OFFERED);
                     t.set_to_status(v1::REFERRAL_STATUS_ESCALATED);
                     t.set_actor_organization_id("referral-service");
                     t.set_actor_role("service");
                     *t.mutable_time() = ToProtoTime(clock_.Now());
                     return ReferralStore::AppendTransition(tx, rid, t);
                   })
                    .ok());
  }

  double Metric(const std::string& name, const std::string& outcome = "") {
    for (const auto& family : registry_.Collect()) {
      if (family.name != name) continue;
      double total = 0;
      for (const auto& m : family.metric) {
        bool match = outcome.empty();
        for (const auto& l : m.label) match = match || (l.name == "outcome" && l.value == outcome);
        if (match) total += m.counter.value + m.gauge.value;
      }
      return total;
    }
    return -1;
  }

  FakeClock clock_{kNow};
  Sealer sealer_ = *Sealer::Create({{1, std::string(32, 'k')}}, 1, std::string(32, 'f'));
  prometheus::Registry registry_;
  FakeDirectory directory_;
  ScriptedSender sender_;
  WebhookOptions options_;
  std::unique_ptr<PgPool> pg_;
  std::unique_ptr<WebhookWorker> worker_;
};

TEST_F(WebhookOutboxTest, FailsThreeTimesThenDeliversOneSignedEvent) {
  const std::string secret = Subscribe("whs-a", "prov-a");
  Offer("ref-1", "prov-a");
  ASSERT_EQ(*worker_->DeriveOnce(), 1);
  EXPECT_EQ(Count("state = 0"), 2);  // offer made, and its lapse reminder (due later)
  sender_.script = {500, 503, 0};
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(*worker_->DeliverOnce(), 1) << "attempt " << i + 1;
    EXPECT_EQ(*worker_->DeliverOnce(), 0) << "nothing due before the backoff";
    clock_.Advance(WebhookBackoff(i + 1, options_.backoff_base, options_.backoff_max));
  }
  ASSERT_EQ(sender_.posts.size(), 4u);
  std::set<std::string> ids;
  for (const WebhookRequest& p : sender_.posts) {
    std::map<std::string, std::string> h(p.headers.begin(), p.headers.end());
    ids.insert(h["SafeHarbor-Event-Id"]);
    const int64_t ts = std::stoll(h["SafeHarbor-Timestamp"]);
    EXPECT_EQ(h["SafeHarbor-Signature"], WebhookSignature(secret, ts, p.body));
    EXPECT_FALSE(absl::StrContains(p.body, "Jane"));
    EXPECT_FALSE(absl::StrContains(p.body, "SPD-2026"));
  }
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(Count("state = 1 AND attempts = 4"), 1);
  std::cout << "scripted endpoint: " << sender_.posts.size() << " posts, " << ids.size()
            << " event id, delivered on attempt 4\n";
}

TEST_F(WebhookOutboxTest, AClaimLeftByAKilledWorkerIsRetriedAfterItsLease) {
  Subscribe("whs-a", "prov-a");
  Offer("ref-1", "prov-a");
  ASSERT_EQ(*worker_->DeriveOnce(), 1);
  // A worker claims the delivery and dies before answering (nothing recorded).
  int obsolete = 0;
  ASSERT_TRUE(pg_->Transact([&](PgTx& tx) -> absl::Status {
                   auto c = WebhookStore::Claim(tx, clock_.Now(), options_.lease, 1, &obsolete);
                   EXPECT_TRUE(c.ok() && c->has_value());
                   return absl::OkStatus();
                 })
                  .ok());
  EXPECT_EQ(*worker_->DeliverOnce(), 0) << "leased: neither delivered twice nor over the limit";
  clock_.Advance(options_.lease + absl::Seconds(1));
  EXPECT_EQ(*worker_->DeliverOnce(), 1);
  EXPECT_EQ(Count("state = 1"), 1);
  EXPECT_EQ(sender_.posts.size(), 1u);
}

// A worker whose lease lapsed answers late, after another claimed the delivery again: its
// answer changes nothing (found by a review: a late failure past the retry window turned a
// delivery the second worker made into a dead letter).
TEST_F(WebhookOutboxTest, ALateAnswerFromAWorkerWhoseLeaseLapsedChangesNothing) {
  Subscribe("whs-a", "prov-a");
  Offer("ref-1", "prov-a");
  ASSERT_EQ(*worker_->DeriveOnce(), 1);
  const auto claim = [&] {
    std::optional<ClaimedDelivery> d;
    int obsolete = 0;
    EXPECT_TRUE(pg_->Transact([&](PgTx& tx) -> absl::Status {
                     SH_ASSIGN_OR_RETURN(
                         d, WebhookStore::Claim(tx, clock_.Now(), options_.lease, 1, &obsolete));
                     return absl::OkStatus();
                   })
                    .ok());
    return d;
  };
  const auto first = claim();
  ASSERT_TRUE(first.has_value());
  clock_.Advance(options_.lease + absl::Seconds(1));
  const auto second = claim();
  ASSERT_TRUE(second.has_value());
  ASSERT_EQ(second->id, first->id);
  EXPECT_EQ(second->attempts, first->attempts + 1);
  ASSERT_TRUE(pg_->Transact([&](PgTx& tx) -> absl::Status {
                   SH_ASSIGN_OR_RETURN(
                       const bool dead,
                       WebhookStore::Failed(tx, first->id, first->attempts, "timed out",
                                            first->retry_until + absl::Seconds(1)));
                   EXPECT_FALSE(dead);
                   return absl::OkStatus();
                 })
                  .ok());
  EXPECT_EQ(Count("state = 0 AND lease_until IS NOT NULL"), 1);  // still the second's
  ASSERT_TRUE(pg_->Transact([&](PgTx& tx) {
                   return WebhookStore::Delivered(tx, second->id, second->attempts, clock_.Now());
                 })
                  .ok());
  EXPECT_EQ(Count("state = 1"), 1);
}

TEST_F(WebhookOutboxTest, OneEndpointHasAtMostItsLimitInFlight) {
  Subscribe("whs-a", "prov-a");
  Subscribe("whs-b", "prov-b");
  for (int i = 0; i < 3; ++i) Offer(absl::StrCat("ref-a", i), "prov-a");
  Offer("ref-b0", "prov-b");
  ASSERT_EQ(*worker_->DeriveOnce(), 4);
  std::vector<std::string> claimed;
  for (int i = 0; i < 4; ++i) {
    int obsolete = 0;
    ASSERT_TRUE(pg_->Transact([&](PgTx& tx) -> absl::Status {
                     auto c = WebhookStore::Claim(tx, clock_.Now(), options_.lease, 1, &obsolete);
                     if (c.ok() && c->has_value()) claimed.push_back((*c)->subscription_id);
                     return c.status();
                   })
                    .ok());
  }
  std::sort(claimed.begin(), claimed.end());
  EXPECT_EQ(claimed, (std::vector<std::string>{"whs-a", "whs-b"}))
      << "one in flight per endpoint (limit 1), the other endpoint not held up";
}

// Two replicas' workers (two threads each) on one database: every event is posted exactly once
// when the endpoint answers (claims FOR UPDATE SKIP LOCKED, outbox rows unique per event).
TEST_F(WebhookOutboxTest, EachEventIsPostedOnceAcrossReplicas) {
  for (int s = 0; s < 4; ++s) Subscribe(absl::StrCat("whs-", s), absl::StrCat("prov-", s));
  for (int i = 0; i < 40; ++i) Offer(absl::StrCat("ref-", i), absl::StrCat("prov-", i % 4));
  prometheus::Registry other_registry;
  WebhookOptions wide = options_;
  wide.endpoint_concurrency = 4;
  WebhookWorker a(pg_.get(), &clock_, &sealer_, &sender_, &directory_, wide, registry_);
  WebhookWorker b(pg_.get(), &clock_, &sealer_, &sender_, &directory_, wide, other_registry);
  std::vector<std::thread> threads;
  for (WebhookWorker* w : {&a, &b, &a, &b}) {
    threads.emplace_back([w] {
      for (int round = 0; round < 20; ++round) {
        EXPECT_TRUE(w->DeriveOnce().ok());
        EXPECT_TRUE(w->DeliverOnce().ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  std::map<std::string, int> posts;
  for (const WebhookRequest& p : sender_.posts) {
    for (const auto& [name, value] : p.headers) {
      if (name == "SafeHarbor-Event-Id") ++posts[value];
    }
  }
  EXPECT_EQ(posts.size(), 40u) << "every offer made, told once";
  int most = 0;
  for (const auto& [id, n] : posts) most = std::max(most, n);
  EXPECT_EQ(most, 1);
  EXPECT_EQ(Count("state = 1"), 40);
  std::cout << "two replicas x two workers: " << sender_.posts.size() << " posts for "
            << posts.size() << " events (at most " << most << " per event)\n";
}

TEST_F(WebhookOutboxTest, DeadLetterAfterTheRetryWindowThenReplayed) {
  Subscribe("whs-a", "prov-a");
  Offer("ref-1", "prov-a");
  ASSERT_EQ(*worker_->DeriveOnce(), 1);
  sender_.script = std::deque<int>(50, 500);
  int attempts = 0;
  while (Count("state = 2") == 0 && attempts < 50) {
    attempts += *worker_->DeliverOnce();
    clock_.Advance(absl::Minutes(1));
  }
  EXPECT_EQ(Count("state = 2"), 1);
  std::vector<v1::WebhookDelivery> dead;
  ASSERT_TRUE(pg_->Transact([&](PgTx& tx) -> absl::Status {
                   auto d = WebhookStore::DeadLetters(tx, "prov-a", 50);
                   if (d.ok()) dead = *d;
                   EXPECT_TRUE(WebhookStore::DeadLetters(tx, "prov-b", 50)->empty());
                   return d.status();
                 })
                  .ok());
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].last_error(), "HTTP 500");
  EXPECT_EQ(dead[0].event_type(), v1::WEBHOOK_EVENT_TYPE_OFFER_MADE);
  const absl::Status gauges = worker_->RefreshGauges();
  ASSERT_TRUE(gauges.ok()) << gauges;
  ASSERT_TRUE(pg_->Transact([&](PgTx& tx) -> absl::Status {
                   auto failing =
                       WebhookStore::FailingOrganizations(tx, clock_.Now(), absl::Minutes(10));
                   EXPECT_TRUE(failing.ok() && *failing == 1) << "prov-a's dead letter";
                   auto oldest = WebhookStore::OldestUndeliveredSeconds(tx, clock_.Now());
                   EXPECT_TRUE(oldest.ok() && *oldest == 0) << "nothing left to deliver";
                   return absl::OkStatus();
                 })
                  .ok());
  sender_.script.clear();
  int32_t replayed = 0;
  ASSERT_TRUE(pg_->Transact([&](PgTx& tx) -> absl::Status {
                   auto n =
                       WebhookStore::Replay(tx, "prov-a", {}, clock_.Now(), options_.retry_window);
                   if (n.ok()) replayed = *n;
                   return n.status();
                 })
                  .ok());
  EXPECT_EQ(replayed, 1);
  EXPECT_GE(*worker_->DeliverOnce(), 1);
  EXPECT_EQ(Count("state = 1 AND event_type = 1"), 1);
  std::cout << "dead letter after " << attempts << " attempts in the retry window, replayed, "
            << "delivered\n";
}

TEST_F(WebhookOutboxTest, ALapseReminderIsDroppedOnceTheOfferIsAnswered) {
  Subscribe("whs-a", "prov-a");
  Offer("ref-1", "prov-a");
  ASSERT_EQ(*worker_->DeriveOnce(), 1);
  ASSERT_EQ(*worker_->DeliverOnce(), 1);  // offer made
  // No pending offer row: the offer was answered (or never stored as pending).
  clock_.Advance(absl::Minutes(26));
  EXPECT_EQ(*worker_->DeliverOnce(), 0);
  EXPECT_EQ(Count("state = 3 AND event_type = 2"), 1);
  EXPECT_EQ(sender_.posts.size(), 1u);
  // Still pending at the reminder's time: told.
  Offer("ref-2", "prov-a");
  ASSERT_TRUE(pg_->Query("INSERT INTO offers (referral_id, provider_org, service_id, state, "
                         "offered_time, respond_by) VALUES ($1, 'prov-a', 'svc-1', 1, $2, $3)",
                         {"ref-2", PgTime(clock_.Now()), PgTime(clock_.Now() + absl::Minutes(30))})
                  .ok());
  ASSERT_EQ(*worker_->DeriveOnce(), 1);
  ASSERT_EQ(*worker_->DeliverOnce(), 1);
  clock_.Advance(absl::Minutes(26));
  EXPECT_EQ(*worker_->DeliverOnce(), 1);
  ASSERT_EQ(sender_.posts.size(), 3u);
  EXPECT_TRUE(absl::StrContains(sender_.posts[2].body, "\"offer_lapsing\""));
}

TEST_F(WebhookOutboxTest, AnEscalationReachesTheCountysChildWelfareOnly) {
  Subscribe("whs-cw", "cw-king", {"53033"});
  Subscribe("whs-cw2", "cw-spokane", {"53063"});
  Offer("ref-1", "prov-a");  // prov-a has no subscription: no feed row for it
  ASSERT_TRUE(pg_->Transact([&](PgTx& tx) {
                   v1::Transition t;
                   t.set_from_status(v1::REFERRAL_STATUS_OFFERED);
                   t.set_to_status(v1::REFERRAL_STATUS_ESCALATED);
                   t.set_actor_organization_id("referral-service");
                   t.set_actor_role("service");
                   *t.mutable_time() = ToProtoTime(clock_.Now());
                   return ReferralStore::AppendTransition(tx, "ref-1", t);
                 })
                  .ok());
  ASSERT_EQ(*worker_->DeriveOnce(), 1);
  ASSERT_EQ(*worker_->DeliverOnce(), 1);
  ASSERT_EQ(sender_.posts.size(), 1u);
  EXPECT_EQ(sender_.posts[0].url, "https://hooks.example.org/whs-cw");
  EXPECT_TRUE(absl::StrContains(sender_.posts[0].body, "\"escalation_received\""));
}

TEST_F(WebhookOutboxTest, AnotherOrganizationsSubscriptionIsNotFound) {
  Subscribe("whs-a", "prov-a");
  Subscribe("whs-b", "prov-b");
  const std::string sealed = *sealer_.Seal("whsec_x", "whs-b");
  EXPECT_EQ(pg_->Transact([&](PgTx& tx) {
                 return WebhookStore::Rotate(tx, "prov-a", "whs-b", sealed, clock_.Now()).status();
               })
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(
      pg_->Transact([&](PgTx& tx) { return WebhookStore::Delete(tx, "prov-a", "whs-b"); }).code(),
      absl::StatusCode::kNotFound);
  EXPECT_TRUE(
      pg_->Transact([&](PgTx& tx) { return WebhookStore::Delete(tx, "prov-b", "whs-b"); }).ok());
}

TEST_F(WebhookOutboxTest, ARolledBackChangeTellsNothing) {
  Subscribe("whs-a", "prov-a");
  Offer("ref-1", "prov-a");
  const v1::Referral r = OfferedView("ref-1", "prov-a", clock_.Now());
  EXPECT_FALSE(pg_->Transact([&](PgTx& tx) -> absl::Status {
                    EXPECT_TRUE(ReferralStore::AppendEvent(tx, "prov-a", r, clock_.Now()).ok());
                    return absl::FailedPreconditionError("rolled back");
                  })
                   .ok());
  EXPECT_EQ(*worker_->DeriveOnce(), 1) << "only the committed change's feed row";
}

// ---- After review (issue 15): authority read live, fairness and bounds, retention. ----

TEST(WebhookPure, OnlyAnOrganizationListedAsWhatItSubscribedAsMayHear) {
  EXPECT_TRUE(StandingAllows(ProviderStanding(), "provider"));
  EXPECT_FALSE(StandingAllows(ProviderStanding(), "child_welfare"));
  EXPECT_TRUE(StandingAllows(OfficeStanding({"53033"}), "child_welfare"));
  EXPECT_FALSE(StandingAllows(OfficeStanding({"53033"}), "provider"));
  SubscriberStanding agency{directory::v1::ORGANIZATION_KIND_STATE_AGENCY, {}};
  EXPECT_FALSE(StandingAllows(agency, "provider"));
  EXPECT_FALSE(StandingAllows(agency, "child_welfare"));
}

// W1: the office's region is the directory's now, not the one copied when it subscribed.
TEST_F(WebhookOutboxTest, AnEscalationFollowsTheOfficesRegionAsTheDirectoryHasItNow) {
  Subscribe("whs-cw", "cw-king", {"53033"});
  directory_.Set("cw-king", OfficeStanding({"53063"}));  // the office now serves Spokane
  clock_.Advance(options_.standing_refresh + absl::Seconds(1));
  ASSERT_EQ(*worker_->RefreshStandingOnce(), 1);
  Offer("ref-king", "prov-x", "53033");
  Escalate("ref-king");
  Offer("ref-spokane", "prov-x", "53063");
  Escalate("ref-spokane");
  ASSERT_TRUE(worker_->DeriveOnce().ok());
  while (*worker_->DeliverOnce() > 0) {
  }
  ASSERT_EQ(sender_.posts.size(), 1u);
  EXPECT_TRUE(absl::StrContains(sender_.posts[0].body, "\"ref-spokane\""));
  EXPECT_FALSE(absl::StrContains(sender_.posts[0].body, "ref-king"));
}

// W1 at delivery: queued while the county was the office's, withheld once it is no longer.
TEST_F(WebhookOutboxTest, AnEscalationQueuedBeforeTheRegionChangedIsWithheld) {
  Subscribe("whs-cw", "cw-king", {"53033"});
  Offer("ref-1", "prov-x");
  Escalate("ref-1");
  ASSERT_EQ(*worker_->DeriveOnce(), 1);
  EXPECT_EQ(Count("state = 0"), 1);
  directory_.Set("cw-king", OfficeStanding({"53063"}));
  clock_.Advance(options_.standing_refresh + absl::Seconds(1));
  ASSERT_EQ(*worker_->RefreshStandingOnce(), 1);
  EXPECT_EQ(*worker_->DeliverOnce(), 0);
  EXPECT_TRUE(sender_.posts.empty());
  EXPECT_EQ(Count("state = 3"), 1);
  EXPECT_EQ(Metric("safeharbor_webhook_deliveries_total", "withheld"), 1);
}

// W1: an organization the directory no longer lists, or lists as something else, hears nothing
// more — neither what was queued for it nor what comes after.
TEST_F(WebhookOutboxTest, AnOrganizationNoLongerListedOrOfAnotherKindHearsNothing) {
  Subscribe("whs-a", "prov-a");
  Subscribe("whs-b", "prov-b");
  Offer("ref-a1", "prov-a");
  Offer("ref-b1", "prov-b");
  ASSERT_EQ(*worker_->DeriveOnce(), 2);
  directory_.Forget("prov-a");
  directory_.Set("prov-b", SubscriberStanding{directory::v1::ORGANIZATION_KIND_STATE_AGENCY, {}});
  clock_.Advance(options_.standing_refresh + absl::Seconds(1));
  ASSERT_EQ(*worker_->RefreshStandingOnce(), 2);
  EXPECT_EQ(Count("state = 3"), 4) << "offer made and its reminder, for each";
  Offer("ref-a2", "prov-a");
  Offer("ref-b2", "prov-b");
  ASSERT_EQ(*worker_->DeriveOnce(), 2);
  EXPECT_EQ(Count("state = 0"), 0) << "nothing queued for an inactive subscriber";
  EXPECT_EQ(*worker_->DeliverOnce(), 0);
  EXPECT_TRUE(sender_.posts.empty());
  // Listed again as a provider: it hears again.
  directory_.Set("prov-a", ProviderStanding());
  clock_.Advance(options_.standing_refresh + absl::Seconds(1));
  ASSERT_EQ(*worker_->RefreshStandingOnce(), 2);
  Offer("ref-a3", "prov-a");
  ASSERT_EQ(*worker_->DeriveOnce(), 1);
  EXPECT_EQ(*worker_->DeliverOnce(), 1);
  std::cout << "withheld for organizations the directory no longer vouches for: "
            << Metric("safeharbor_webhook_deliveries_total", "withheld") << "\n";
}

// W1: when the directory cannot say, deliveries wait (fail closed) and go once it answers.
TEST_F(WebhookOutboxTest, NoDeliveryWhileTheDirectoryCannotVouchForTheSubscriber) {
  WebhookOptions o = options_;
  o.standing_max_age = absl::Minutes(10);
  o.retry_window = absl::Hours(1);
  prometheus::Registry other;
  WebhookWorker w(pg_.get(), &clock_, &sealer_, &sender_, &directory_, o, other);
  Subscribe("whs-a", "prov-a");
  Offer("ref-1", "prov-a");
  ASSERT_EQ(*w.DeriveOnce(), 1);
  directory_.Set("prov-a", absl::UnavailableError("directory down"));
  clock_.Advance(absl::Minutes(11));
  EXPECT_EQ(*w.RefreshStandingOnce(), 0);
  EXPECT_EQ(*w.DeliverOnce(), 0) << "the directory's word is 11 minutes old";
  directory_.Set("prov-a", ProviderStanding());
  EXPECT_EQ(*w.RefreshStandingOnce(), 1);
  EXPECT_EQ(*w.DeliverOnce(), 1);
  EXPECT_EQ(sender_.posts.size(), 1u);
}

// An endpoint that never answers: each POST takes the whole timeout (the fake clock moves on by
// it); the others answer at once.
class StallingSender final : public WebhookSender {
 public:
  StallingSender(FakeClock* clock, absl::Duration timeout) : clock_(clock), timeout_(timeout) {}
  absl::StatusOr<int> Post(const WebhookRequest& req) override {
    std::lock_guard<std::mutex> l(mu);
    ++posts[req.url];
    if (absl::StrContains(req.url, "slow")) {
      clock_->Advance(timeout_);
      return absl::DeadlineExceededError("timeout");
    }
    return 200;
  }
  std::mutex mu;
  std::map<std::string, int> posts;

 private:
  FakeClock* clock_;
  absl::Duration timeout_;
};

// W2: one organization's dead endpoint cannot hold a round past its budget, and its breaker
// opens so that the next rounds skip it until the cool-down, then probe it once.
TEST_F(WebhookOutboxTest, AStallingEndpointIsBoundedByTheRoundAndItsBreaker) {
  WebhookOptions o = options_;
  o.endpoint_concurrency = 4;
  o.round_budget = absl::Seconds(20);
  o.breaker_failures = 3;
  o.breaker_open_for = absl::Minutes(5);
  StallingSender stalling(&clock_, o.request_timeout);
  prometheus::Registry reg;
  WebhookWorker w(pg_.get(), &clock_, &sealer_, &stalling, &directory_, o, reg);
  Subscribe("whs-1slow", "prov-slow");
  Subscribe("whs-2fast", "prov-fast");
  for (int i = 0; i < 20; ++i) Offer(absl::StrCat("ref-s", i), "prov-slow");
  for (int i = 0; i < 3; ++i) Offer(absl::StrCat("ref-f", i), "prov-fast");
  ASSERT_EQ(*w.DeriveOnce(), 23);
  const absl::Time start = clock_.Now();
  ASSERT_TRUE(w.DeliverOnce().ok());
  const absl::Duration round = clock_.Now() - start;
  const std::string slow = "https://hooks.example.org/whs-1slow";
  const std::string fast = "https://hooks.example.org/whs-2fast";
  // A round stops claiming once its budget is spent: at most one POST in flight runs past it.
  EXPECT_LT(round, o.round_budget + o.request_timeout) << "one round, bounded";
  EXPECT_EQ(stalling.posts[slow], 2) << "the budget, not the breaker, ended this round";
  EXPECT_EQ(stalling.posts[fast], 1) << "served in turn, between the slow one's posts";
  clock_.Advance(absl::Seconds(1));
  while (*w.DeliverOnce() > 0) clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(stalling.posts[fast], 3) << "the other organization was served";
  EXPECT_EQ(stalling.posts[slow], 3) << "its breaker opened after 3 failures";
  double opened = -1;
  for (const auto& f : reg.Collect()) {
    if (f.name == "safeharbor_webhook_breaker_opened_total") opened = f.metric[0].counter.value;
  }
  EXPECT_EQ(opened, 1);
  clock_.Advance(o.breaker_open_for);
  EXPECT_EQ(*w.DeliverOnce(), 1) << "one probe after the cool-down";
  EXPECT_EQ(stalling.posts[slow], 4);
  std::cout << "stalling endpoint: first round " << absl::FormatDuration(round) << " (budget "
            << absl::FormatDuration(o.round_budget) << "), " << stalling.posts[slow]
            << " posts to it in all, breaker opened " << opened << " time(s); the other endpoint "
            << stalling.posts[fast] << "/3 delivered\n";
}

// W2: a round serves each subscription at most per_subscription_per_round, in turn.
TEST_F(WebhookOutboxTest, ARoundServesEachSubscriptionInTurn) {
  WebhookOptions o = options_;
  o.endpoint_concurrency = 4;
  o.per_subscription_per_round = 4;
  prometheus::Registry reg;
  WebhookWorker w(pg_.get(), &clock_, &sealer_, &sender_, &directory_, o, reg);
  Subscribe("whs-a", "prov-a");
  Subscribe("whs-b", "prov-b");
  for (int i = 0; i < 12; ++i) Offer(absl::StrCat("ref-a", i), "prov-a");
  for (int i = 0; i < 3; ++i) Offer(absl::StrCat("ref-b", i), "prov-b");
  ASSERT_EQ(*w.DeriveOnce(), 15);
  EXPECT_EQ(*w.DeliverOnce(), 7) << "4 of the busy one's, the other's 3";
  std::map<std::string, int> per;
  std::string order;
  for (const WebhookRequest& p : sender_.posts) {
    ++per[p.url];
    order += p.url.back();
  }
  EXPECT_EQ(per["https://hooks.example.org/whs-a"], 4);
  EXPECT_EQ(per["https://hooks.example.org/whs-b"], 3);
  EXPECT_EQ(order.substr(0, 6), "ababab") << order;
  EXPECT_EQ(*w.DeliverOnce(), 4);
  EXPECT_EQ(*w.DeliverOnce(), 4);
  EXPECT_EQ(Count("state = 1"), 15);
}

// W2: organizations take turns, whatever their number of subscriptions.
TEST_F(WebhookOutboxTest, ARoundTakesOrganizationsInTurn) {
  for (const char* id : {"whs-a1", "whs-a2", "whs-a3"}) Subscribe(id, "prov-a");
  Subscribe("whs-b", "prov-b");
  for (int i = 0; i < 2; ++i) Offer(absl::StrCat("ref-a", i), "prov-a");  // 2 for each of 3
  for (int i = 0; i < 3; ++i) Offer(absl::StrCat("ref-b", i), "prov-b");
  ASSERT_EQ(*worker_->DeriveOnce(), 5);
  EXPECT_EQ(*worker_->DeliverOnce(), 9);
  std::string order;
  for (const WebhookRequest& p : sender_.posts) {
    order += absl::StrContains(p.url, "whs-a") ? 'a' : 'b';
  }
  EXPECT_EQ(order, "abababaaa") << "prov-a's three endpoints count as one organization's turn";
}

// W2: the change feed has a task of its own: a delivery round stuck on an endpoint does not
// keep other organizations' changes from becoming deliveries.
TEST_F(WebhookOutboxTest, TheFeedIsNotHeldUpByADeliveryInFlight) {
  class BlockingSender final : public WebhookSender {
   public:
    absl::StatusOr<int> Post(const WebhookRequest&) override {
      std::unique_lock<std::mutex> l(mu);
      ++in_flight;
      cv.notify_all();
      cv.wait(l, [&] { return released; });
      return 200;
    }
    std::mutex mu;
    std::condition_variable cv;
    int in_flight = 0;
    bool released = false;
  } blocking;
  WebhookOptions o = options_;
  o.workers = 1;
  o.poll = absl::Milliseconds(20);
  prometheus::Registry reg;
  WebhookWorker w(pg_.get(), &clock_, &sealer_, &blocking, &directory_, o, reg);
  Subscribe("whs-a", "prov-a");
  Subscribe("whs-b", "prov-b");
  Offer("ref-a", "prov-a");
  w.Start();
  {
    std::unique_lock<std::mutex> l(blocking.mu);
    ASSERT_TRUE(
        blocking.cv.wait_for(l, std::chrono::seconds(20), [&] { return blocking.in_flight > 0; }));
  }
  Offer("ref-b", "prov-b");
  w.Wake();
  bool derived = false;
  for (int i = 0; i < 400 && !derived; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
    derived = Count("org_id = 'prov-b'") > 0;
  }
  {
    std::lock_guard<std::mutex> l(blocking.mu);
    EXPECT_EQ(blocking.in_flight, 1) << "the first delivery is still in flight";
    blocking.released = true;
    blocking.cv.notify_all();
  }
  w.Stop();
  EXPECT_TRUE(derived) << "prov-b's offer became a delivery while prov-a's POST hung";
}

// W2: replay is bounded per call and per organization per window.
TEST_F(WebhookOutboxTest, ReplayIsBoundedPerCallAndPerOrganization) {
  Subscribe("whs-a", "prov-a");
  for (int i = 0; i < 6; ++i) Offer(absl::StrCat("ref-", i), "prov-a");
  ASSERT_EQ(*worker_->DeriveOnce(), 6);
  ASSERT_TRUE(pg_->Query("UPDATE webhook_deliveries SET state = 2 WHERE event_type = 1").ok());
  const ReplayLimits limits{.per_call = 2, .per_window = 3, .window = absl::Hours(1)};
  auto replay = [&](std::vector<std::string> ids) {
    absl::StatusOr<int32_t> n = 0;
    absl::Status s = pg_->Transact([&](PgTx& tx) -> absl::Status {
      n = WebhookStore::Replay(tx, "prov-a", ids, clock_.Now(), options_.retry_window, limits);
      return n.status();
    });
    return s.ok() ? n : absl::StatusOr<int32_t>(s);
  };
  EXPECT_EQ(replay({"a", "b", "c"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*replay({}), 2);
  EXPECT_EQ(*replay({}), 1) << "the window's budget: 3";
  const auto refused = replay({});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "try again after")) << refused.status();
  clock_.Advance(absl::Hours(1));
  EXPECT_EQ(*replay({}), 2);
  EXPECT_EQ(Count("state = 2"), 1);
}

// W3: finished deliveries are deleted after their retention, a bounded batch per pass.
TEST_F(WebhookOutboxTest, RetentionDeletesDeliveredThenDeadLetters) {
  WebhookOptions o = options_;
  o.retention_batch = 2;
  prometheus::Registry reg;
  WebhookWorker w(pg_.get(), &clock_, &sealer_, &sender_, &directory_, o, reg);
  Subscribe("whs-a", "prov-a");
  for (int i = 0; i < 3; ++i) Offer(absl::StrCat("ref-", i), "prov-a");
  ASSERT_EQ(*w.DeriveOnce(), 3);
  ASSERT_EQ(*w.DeliverOnce(), 3);  // three offers made; their reminders pending
  ASSERT_TRUE(pg_->Query("UPDATE webhook_deliveries SET state = 2, next_attempt = $1 WHERE "
                         "referral_id = 'ref-0' AND event_type = 2",
                         {PgTime(clock_.Now())})
                  .ok());
  EXPECT_EQ(*w.PruneOnce(), 0) << "nothing old enough";
  clock_.Advance(o.keep_delivered + absl::Hours(1));
  EXPECT_EQ(*w.PruneOnce(), 2) << "a bounded batch";
  EXPECT_EQ(*w.PruneOnce(), 1);
  EXPECT_EQ(*w.PruneOnce(), 0);
  EXPECT_EQ(Count("state = 1"), 0);
  EXPECT_EQ(Count("state = 2"), 1) << "a dead letter is kept longer";
  EXPECT_EQ(Count("state = 0"), 2) << "pending deliveries are never deleted";
  clock_.Advance(o.keep_dead - o.keep_delivered);
  EXPECT_EQ(*w.PruneOnce(), 1);
  EXPECT_EQ(Count("state = 2"), 0);
}

// W3: a secret that cannot be opened is a failed attempt (backoff, then a dead letter), not a
// claim taken again and again on its lease forever.
TEST_F(WebhookOutboxTest, AnUnreadableSecretEndsInADeadLetter) {
  Subscribe("whs-a", "prov-a");
  ASSERT_TRUE(
      pg_->Query("UPDATE webhook_subscriptions SET secret_sealed = '\\x00' WHERE id = 'whs-a'")
          .ok());
  Offer("ref-1", "prov-a");
  ASSERT_EQ(*worker_->DeriveOnce(), 1);
  int rounds = 0;
  while (Count("state = 2") == 0 && rounds < 100) {
    ASSERT_TRUE(worker_->DeliverOnce().ok());
    clock_.Advance(absl::Minutes(1));
    ++rounds;
  }
  EXPECT_EQ(Count("state = 2 AND event_type = 1"), 1) << "after " << rounds << " rounds";
  EXPECT_TRUE(sender_.posts.empty());
  auto err = pg_->Query("SELECT last_error, attempts FROM webhook_deliveries WHERE state = 2");
  ASSERT_TRUE(err.ok() && err->rows() == 1);
  EXPECT_EQ(err->String(0, "last_error"), "the subscription's secret cannot be opened");
  std::cout << "unreadable secret: a dead letter after " << err->Int32(0, "attempts")
            << " attempts in " << rounds << " one-minute rounds\n";
}

// W3: a delivery claimed only after its retry window closed (held back meanwhile) is a dead
// letter at once, not sent.
TEST_F(WebhookOutboxTest, ADeliveryPastItsRetryWindowIsDeadLetteredOnClaim) {
  Subscribe("whs-a", "prov-a");
  Offer("ref-1", "prov-a");
  ASSERT_EQ(*worker_->DeriveOnce(), 1);
  clock_.Advance(options_.retry_window + absl::Minutes(30));  // past the reminder's too
  EXPECT_EQ(*worker_->DeliverOnce(), 0);
  EXPECT_TRUE(sender_.posts.empty());
  EXPECT_EQ(Count("state = 2 AND last_error = 'retry window closed'"), 2);
  EXPECT_EQ(Metric("safeharbor_webhook_deliveries_total", "dead"), 2);
}

// W3: the cap of subscriptions per organization holds under concurrent creates.
TEST_F(WebhookOutboxTest, TheSubscriptionCapHoldsUnderConcurrentCreates) {
  std::atomic<int> made{0}, refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 3; ++i) {
        v1::WebhookSubscription s;
        s.set_id(absl::StrCat("whs-", t, "-", i));
        s.set_organization_id("prov-a");
        s.set_url("https://hooks.example.org/x");
        s.add_events(v1::WEBHOOK_EVENT_TYPE_OFFER_MADE);
        *s.mutable_create_time() = ToProtoTime(clock_.Now());
        const absl::Status st = pg_->Transact(
            [&](PgTx& tx) { return WebhookStore::Create(tx, s, "provider", {}, "sealed", 10); });
        if (st.ok()) {
          ++made;
        } else {
          EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
          ++refused;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(made.load(), 10);
  EXPECT_EQ(refused.load(), 14);
  auto n = pg_->Query("SELECT count(*) AS n FROM webhook_subscriptions WHERE org_id = 'prov-a'");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->Int64(0, "n"), 10);
  // A deleted one frees its place.
  ASSERT_TRUE(
      pg_->Transact([&](PgTx& tx) { return WebhookStore::Delete(tx, "prov-a", "whs-0-0"); }).ok());
  v1::WebhookSubscription again;
  again.set_id("whs-again");
  again.set_organization_id("prov-a");
  again.set_url("https://hooks.example.org/x");
  again.add_events(v1::WEBHOOK_EVENT_TYPE_OFFER_MADE);
  EXPECT_TRUE(pg_->Transact([&](PgTx& tx) {
                   return WebhookStore::Create(tx, again, "provider", {}, "sealed", 10);
                 })
                  .ok());
  std::cout << "8 threads x 3 concurrent creates: " << made.load() << " made, " << refused.load()
            << " refused (cap 10)\n";
}

// Review #6: an event the feed cannot read (a stored body that does not parse) is skipped and
// counted; the changes behind it are still told.
TEST_F(WebhookOutboxTest, AnUnreadableFeedRowIsSkippedAndTheRowsBehindItAreTold) {
  Subscribe("whs-1", "prov-a");
  for (const char* rid : {"ref-1", "ref-2", "ref-3"}) Offer(rid, "prov-a");
  ASSERT_TRUE(pg_->Query("UPDATE referral_events SET payload = '\\xffff'::bytea WHERE seq = "
                         "(SELECT min(seq) FROM referral_events)")
                  .ok());
  ASSERT_EQ(*worker_->DeriveOnce(), 3) << "every row consumed, the unreadable one too";
  EXPECT_EQ(Metric("safeharbor_webhook_feed_unreadable_total"), 1);
  EXPECT_EQ(*worker_->DeriveOnce(), 0) << "the feed is not stuck on it";
  ASSERT_EQ(*worker_->DeliverOnce(), 2);
  std::set<std::string> told;
  for (const auto& p : sender_.posts) {
    for (const char* rid : {"ref-1", "ref-2", "ref-3"}) {
      if (absl::StrContains(p.body, absl::StrCat("\"", rid, "\""))) told.insert(rid);
    }
  }
  EXPECT_EQ(told, (std::set<std::string>{"ref-2", "ref-3"}));
  std::cout << "feed: 3 rows, 1 unreadable skipped, " << sender_.posts.size() << " told\n";
}

// Review #15: an escalation's webhook says when the referral was escalated, not when the feed
// got to it.
TEST_F(WebhookOutboxTest, AnEscalationSaysWhenItHappenedNotWhenItWasDerived) {
  Subscribe("whs-cw", "cw-king", {"53033"});
  Offer("ref-1", "prov-a");
  const absl::Time escalated = clock_.Now();
  Escalate("ref-1");
  clock_.Advance(absl::Minutes(7));  // the feed is behind
  ASSERT_EQ(*worker_->DeriveOnce(), 1);
  ASSERT_EQ(*worker_->DeliverOnce(), 1);
  ASSERT_EQ(sender_.posts.size(), 1u);
  EXPECT_TRUE(absl::StrContains(sender_.posts[0].body,
                                absl::StrCat("\"occurred_at\":\"", Rfc3339Millis(escalated))))
      << sender_.posts[0].body;
}

// A sender whose every POST takes `each` of real time (a slow endpoint within its timeout).
class SlowSender final : public WebhookSender {
 public:
  explicit SlowSender(absl::Duration each) : each_(each) {}
  absl::StatusOr<int> Post(const WebhookRequest&) override {
    posts.fetch_add(1);
    absl::SleepFor(each_);
    return 200;
  }
  std::atomic<int> posts{0};

 private:
  absl::Duration each_;
};

// Review #7: stopping ends a delivery round after the request in flight, not after the round's
// budget (here unbounded by the injected clock, which does not move).
TEST_F(WebhookOutboxTest, StopEndsARoundAfterTheRequestInFlight) {
  WebhookOptions o = options_;
  o.endpoint_concurrency = 30;
  o.per_subscription_per_round = 100;
  o.batch = 100;
  o.poll = absl::Milliseconds(20);
  o.workers = 1;
  SlowSender slow(absl::Milliseconds(200));
  prometheus::Registry reg;
  WebhookWorker w(pg_.get(), &clock_, &sealer_, &slow, &directory_, o, reg);
  Subscribe("whs-1", "prov-a");
  for (int i = 0; i < 20; ++i) Offer(absl::StrCat("ref-", i), "prov-a");
  ASSERT_EQ(*w.DeriveOnce(), 20);
  w.Start();
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (slow.posts.load() == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_GT(slow.posts.load(), 0) << "the round started";
  w.Stop();
  const int posted = slow.posts.load();
  std::cout << "stop: 20 due, " << posted << " posted before Stop returned\n";
  EXPECT_EQ(posted, 1) << "Stop waited for the round instead of the request in flight";
  EXPECT_EQ(Count("delivered IS NOT NULL"), posted) << "the rest wait for the next start";
}

}  // namespace
}  // namespace safeharbor::referrals
