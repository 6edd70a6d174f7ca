// referral-service: wiring only. The logic lives in ReferralServiceImpl (and router.cc).
#include <algorithm>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/service_main.h"
#include "services/referrals/referral_service.h"

ABSL_FLAG(std::string, directory_address, safeharbor::DefaultAddress("directory"),
          "directory-service host:port.");
ABSL_FLAG(std::string, beds_address, safeharbor::DefaultAddress("beds"), "beds-service host:port.");
ABSL_FLAG(std::string, youth_data_keys, "",
          "Keys that encrypt identifying youth details at rest: \"<id>:<base64 32 bytes>,...\"; "
          "the first is used for new data, the others still open older data; an id given twice "
          "is refused. Required.");
ABSL_FLAG(std::string, fingerprint_secret, "",
          "Base64 of at least 32 random bytes, not one of the youth_data_keys: keys the "
          "fingerprints of identifying details kept in idempotency records. Kept when the "
          "encryption keys rotate (retries still match). Required.");
ABSL_FLAG(int, acceptance_deadline_s, 30 * 60, "How long a provider has to accept (routine).");
ABSL_FLAG(int, urgent_deadline_s, 15 * 60, "How long a provider has to accept (urgent).");
ABSL_FLAG(int, emergency_deadline_s, 10 * 60, "How long a provider has to accept (emergency).");
ABSL_FLAG(int, handoff_deadline_s, 4 * 3600,
          "From acceptance to the hand-off deadline: an accepted placement's bed hold is extended "
          "to it, and past it the county's child-welfare office is told (60 to 28800; at most the "
          "beds service's --max_hold_extension_s).");
// Issue 14, advocate response (branch advocate).
ABSL_FLAG(int, advocate_response_target_s, 90 * 60,
          "An urgent or emergency referral asking for CSEC advocacy alone (or its advocacy part) "
          "is offered only to 24/7 advocacy services, and its advocate is due with the youth this "
          "long after the call; past it with no arrival recorded, the county's on-call "
          "child-welfare office is told (300 to 86400; LA County's norm is 90 minutes).");
// Branch escalation (issue 14).
ABSL_FLAG(int, escalation_bed_check_s, 60,
          "How often an escalated placement is checked for a bed routing could offer (10 to "
          "3600); the on-call office is told once per appearance (a bed_available webhook).");
ABSL_FLAG(int, timer_interval_ms, 1000, "How often deadlines and waiting referrals are checked.");
ABSL_FLAG(int, routing_workers, 4,
          "Threads routing waiting referrals (1-32), emergency first; each claims the next one "
          "with SKIP LOCKED, so replicas and workers never route one twice. Each calls the "
          "directory and beds service (a budget of its own, besides --peer_max_in_flight) and "
          "uses a PostgreSQL connection while it reads or writes: keep it at most half of "
          "--postgres_pool_size.");
ABSL_FLAG(int, organization_cache_s, 300,
          "How long an organization read from the directory (a child-welfare office's region) "
          "is kept; 0: read it for every call.");

ABSL_FLAG(int, webhook_workers, 2, "Webhook delivery threads (each one POST at a time).");
ABSL_FLAG(int, webhook_endpoint_concurrency, 2,
          "Webhook deliveries in flight per subscription, across every replica.");
ABSL_FLAG(int, webhook_timeout_ms, 10000, "One webhook POST, connection included.");
ABSL_FLAG(int, webhook_retry_window_s, 24 * 3600,
          "How long a webhook delivery is retried before it becomes a dead letter.");
ABSL_FLAG(int, webhook_backoff_base_ms, 5000,
          "Wait before the second attempt of a webhook delivery; doubled for each further one.");
ABSL_FLAG(int, webhook_backoff_max_s, 1800, "Longest wait between two attempts of a delivery.");
ABSL_FLAG(int, webhook_lease_s, 30,
          "A claimed delivery is another replica's to retry after this long (longer than "
          "webhook_timeout_ms): a replica killed mid-delivery delays it at most this much.");
ABSL_FLAG(int, identity_retention_days, 90,
          "Days a closed referral's identifying details are kept (then purged), 1 to 365.");
ABSL_FLAG(int, consent_default_days, 90,
          "Days a consent recorded without an expiry lasts, 1 to 365.");
ABSL_FLAG(bool, webhook_allow_loopback_http, false,
          "Development only: webhook URLs may be plain http:// to loopback (127.0.0.0/8, ::1, "
          "localhost). Otherwise only https with certificate verification.");

ABSL_FLAG(bool, webhook_allow_internal_addresses, false,
          "Webhook endpoints may be on internal addresses (private, link-local, shared, "
          "loopback), e.g. a partner on the state's private network. Off: such a connection is "
          "refused at connect time, whatever the URL's name resolves to.");

ABSL_FLAG(int, webhook_round_budget_s, 30,
          "One webhook delivery round (a worker's pass) ends after this long; then the next "
          "round starts with the subscriptions served longest ago.");
ABSL_FLAG(int, webhook_per_subscription_per_round, 5,
          "Deliveries of one subscription per round at most (the others' turn after that).");
ABSL_FLAG(
    int, webhook_breaker_failures, 5,
    "Consecutive failed deliveries (no answer, or not 2xx) that open an endpoint's "
    "circuit breaker (per replica): it is skipped for --webhook_breaker_open_s, then probed.");
ABSL_FLAG(int, webhook_breaker_open_s, 60, "How long an endpoint's open breaker skips it.");
ABSL_FLAG(int, webhook_standing_refresh_s, 60,
          "How often the directory is asked whether a webhook subscriber is still listed as "
          "what it subscribed as, and (child welfare) which counties it serves now.");
ABSL_FLAG(int, webhook_standing_max_age_s, 600,
          "Deliveries go only to subscribers the directory vouched for within this long "
          "(a directory outage longer than this holds deliveries back).");
ABSL_FLAG(int, webhook_replay_max_per_call, 100,
          "Dead letters one ReplayWebhookDeadLetters replays.");
ABSL_FLAG(int, webhook_replay_max_per_hour, 500,
          "Dead letters one organization may replay per hour (RESOURCE_EXHAUSTED beyond).");
ABSL_FLAG(int, webhook_keep_delivered_h, 24 * 7,
          "Delivered (and obsolete or withheld) webhook deliveries are deleted after this long.");
ABSL_FLAG(int, webhook_keep_dead_h, 24 * 30, "Webhook dead letters are deleted after this long.");

namespace safeharbor::referrals {
const std::vector<Migration>& Migrations();
namespace {

// The directory and beds service, `max_in_flight` calls to each at once; `suffix` tells their
// breakers and metrics (label dependency) apart from another pair's.
absl::StatusOr<std::unique_ptr<Network>> ConnectNetwork(const ServiceDeps& deps,
                                                        const GrpcNetworkOptions& options,
                                                        int max_in_flight,
                                                        absl::string_view suffix) {
  PeerOptions d = PeerFor(deps, "referrals", "directory", absl::GetFlag(FLAGS_directory_address));
  PeerOptions b = PeerFor(deps, "referrals", "beds", absl::GetFlag(FLAGS_beds_address));
  d.max_in_flight = b.max_in_flight = max_in_flight;
  absl::StrAppend(&d.name, suffix);
  absl::StrAppend(&b.name, suffix);
  auto directory = Peer::Connect(d);
  if (!directory.ok()) return directory.status();
  auto beds = Peer::Connect(b);
  if (!beds.ok()) return beds.status();
  return std::unique_ptr<Network>(std::make_unique<GrpcNetwork>(
      *std::move(directory), *std::move(beds), WashingtonCounties(), options));
}

WebhookOptions WebhookOptionsFromFlags() {
  WebhookOptions w;
  w.workers = std::clamp(absl::GetFlag(FLAGS_webhook_workers), 1, 16);
  w.endpoint_concurrency = std::clamp(absl::GetFlag(FLAGS_webhook_endpoint_concurrency), 1, 16);
  w.request_timeout =
      absl::Milliseconds(std::clamp(absl::GetFlag(FLAGS_webhook_timeout_ms), 100, 60000));
  w.connect_timeout = std::min(w.request_timeout, absl::Seconds(5));
  w.retry_window = absl::Seconds(std::max(1, absl::GetFlag(FLAGS_webhook_retry_window_s)));
  w.backoff_base = absl::Milliseconds(std::max(10, absl::GetFlag(FLAGS_webhook_backoff_base_ms)));
  w.backoff_max = absl::Seconds(std::max(1, absl::GetFlag(FLAGS_webhook_backoff_max_s)));
  w.lease = std::max(absl::Seconds(absl::GetFlag(FLAGS_webhook_lease_s)),
                     w.request_timeout + absl::Seconds(1));
  w.allow_loopback_http = absl::GetFlag(FLAGS_webhook_allow_loopback_http);
  w.allow_internal_addresses = absl::GetFlag(FLAGS_webhook_allow_internal_addresses);
  w.round_budget = absl::Seconds(std::max(1, absl::GetFlag(FLAGS_webhook_round_budget_s)));
  w.per_subscription_per_round =
      std::max(1, absl::GetFlag(FLAGS_webhook_per_subscription_per_round));
  w.breaker_failures = std::max(1, absl::GetFlag(FLAGS_webhook_breaker_failures));
  w.breaker_open_for = absl::Seconds(std::max(1, absl::GetFlag(FLAGS_webhook_breaker_open_s)));
  w.standing_refresh = absl::Seconds(std::max(1, absl::GetFlag(FLAGS_webhook_standing_refresh_s)));
  w.standing_max_age = std::max(absl::Seconds(absl::GetFlag(FLAGS_webhook_standing_max_age_s)),
                                2 * w.standing_refresh);
  w.replay_max_per_call = std::clamp(absl::GetFlag(FLAGS_webhook_replay_max_per_call), 1, 1000);
  w.replay_max_per_window = std::max(1, absl::GetFlag(FLAGS_webhook_replay_max_per_hour));
  w.keep_delivered = absl::Hours(std::max(1, absl::GetFlag(FLAGS_webhook_keep_delivered_h)));
  w.keep_dead = absl::Hours(std::max(1, absl::GetFlag(FLAGS_webhook_keep_dead_h)));
  return w;
}

}  // namespace
}  // namespace safeharbor::referrals

int main(int argc, char** argv) {
  using namespace safeharbor;
  using referrals::ConnectNetwork;
  using referrals::WebhookOptionsFromFlags;
  auto deps = PrepareService(
      argc, argv, "referrals",
      "referral-service: SafeHarbor non-punitive referral routing (gRPC, mTLS).\n"
      "Every flag may also be set as SAFEHARBOR_<FLAG>, e.g. SAFEHARBOR_YOUTH_DATA_KEYS.",
      referrals::Migrations());
  if (!deps.ok()) return 1;
  auto sealer = Sealer::FromConfig(absl::GetFlag(FLAGS_youth_data_keys),
                                   absl::GetFlag(FLAGS_fingerprint_secret));
  if (!sealer.ok()) {
    log::Error("youth_data_keys_invalid", {{"error", sealer.status().message()}});
    return 1;
  }
  // The statutory timers count in Washington's days (issue 14): never in UTC instead.
  if (auto calendar = referrals::LegalCalendar::Washington(); !calendar.ok()) {
    log::Error("time_zone_missing", {{"error", calendar.status().message()}});
    return 1;
  }
  const int routing_workers = absl::GetFlag(FLAGS_routing_workers);
  if (routing_workers < 1 || routing_workers > referrals::kMaxRoutingWorkers ||
      routing_workers > std::max(1, deps->config.postgres.pool_size / 2)) {
    log::Error(
        "routing_workers_invalid",
        {{"error", "routing_workers must be 1 to 32 and at most half of postgres_pool_size"}});
    return 1;
  }
  referrals::GrpcNetworkOptions network_options;
  network_options.organization_cache_ttl = absl::Seconds(absl::GetFlag(FLAGS_organization_cache_s));
  // RPCs and routing each reach the directory and beds service through peers of their own: the
  // routing workers (and the timer pass) are a bulkhead of their own, apart from the RPC threads'.
  auto rpc_network = ConnectNetwork(*deps, network_options, deps->config.peer_max_in_flight, "");
  auto routing_network = ConnectNetwork(*deps, network_options, routing_workers + 1, "_routing");
  if (!rpc_network.ok() || !routing_network.ok()) {
    log::Error("peer_client_failed",
               {{"error", !rpc_network.ok() ? rpc_network.status().message()
                                            : routing_network.status().message()}});
    return 1;
  }
  referrals::ReferralOptions options;
  options.deadlines.routine = absl::Seconds(absl::GetFlag(FLAGS_acceptance_deadline_s));
  options.deadlines.urgent = absl::Seconds(absl::GetFlag(FLAGS_urgent_deadline_s));
  options.deadlines.emergency = absl::Seconds(absl::GetFlag(FLAGS_emergency_deadline_s));
  options.tick = absl::Milliseconds(absl::GetFlag(FLAGS_timer_interval_ms));
  options.handoff_deadline =
      absl::Seconds(std::clamp(absl::GetFlag(FLAGS_handoff_deadline_s), 60, 8 * 3600));
  options.routing_workers = routing_workers;
  options.advocate_response_target =
      absl::Seconds(std::clamp(absl::GetFlag(FLAGS_advocate_response_target_s), 300, 86400));
  options.escalation_bed_check =
      absl::Seconds(std::clamp(absl::GetFlag(FLAGS_escalation_bed_check_s), 10, 3600));
  options.watch.replay_horizon = deps->config.watch_replay_horizon;
  options.watch.max_stream_age = deps->config.watch_max_stream_age;
  options.webhooks = WebhookOptionsFromFlags();
  options.consent.retention_after_close =
      absl::Hours(24 * std::clamp(absl::GetFlag(FLAGS_identity_retention_days), 1, 365));
  options.consent.default_duration =
      absl::Hours(24 * std::clamp(absl::GetFlag(FLAGS_consent_default_days), 1, 365));
  referrals::ReferralServiceImpl service(
      deps->env.get(), deps->pg.get(), deps->redis.get(), *deps->registry, WashingtonCounties(),
      SystemClock::Get(), &*sealer, rpc_network->get(), options, routing_network->get());
  service.StartBackground();
  return ServeUntilSignal(*deps, {&service}, [&] { service.StopBackground(); });
}
