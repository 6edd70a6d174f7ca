// Webhooks, the pure part (issue 15): which events a committed change means for an organization,
// the payload (no youth data: event, referral id, deadline), the signature, the retry schedule
// and which URLs may be called. I/O lives in webhook_store.* (PostgreSQL), webhook_sender.*
// (libcurl) and webhook_worker.* (the bounded delivery workers).
//
// Extension point: a new kind of event is a new WebhookEventType, a guard if it is a reminder,
// and a Derive function fed from the change feed (migration 006's webhook_feed), or queued with
// WebhookStore::Enqueue in the transaction that decides it (statutory timers, issue 14: the
// timer's claim); delivery, retries and dead letters need no change.
#pragma once

#include <sys/socket.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "safeharbor/referrals/v1/referrals.pb.h"

namespace safeharbor::referrals {

struct WebhookOptions {
  int workers = 2;               // delivery threads (never RPC threads)
  int endpoint_concurrency = 2;  // deliveries in flight per subscription, across replicas
  absl::Duration request_timeout = absl::Seconds(10);  // one POST, connect included
  absl::Duration connect_timeout = absl::Seconds(5);
  absl::Duration lease = absl::Seconds(30);       // > request_timeout: a claim outlives its POST
  absl::Duration retry_window = absl::Hours(24);  // then the delivery is a dead letter
  absl::Duration backoff_base = absl::Seconds(5);
  absl::Duration backoff_max = absl::Minutes(30);
  absl::Duration poll = absl::Milliseconds(500);
  absl::Duration lapse_warning = absl::Minutes(5);  // before an offer's respond_by
  // From acceptance to the hand-off deadline: set from ReferralOptions::handoff_deadline (see
  // Resolved in options.h); a referral's stored handoff_deadline wins.
  absl::Duration handoff_window = absl::Hours(4);
  absl::Duration handoff_warning = absl::Minutes(15);
  absl::Duration failing_after = absl::Minutes(10);  // the failing-organizations gauge
  bool allow_loopback_http = false;                  // development: http://127.0.0.1 etc.
  // Endpoints on internal addresses (private, link-local, shared, loopback): refused at connect
  // unless allowed (a partner on a private network); loopback also with allow_loopback_http.
  bool allow_internal_addresses = false;
  int batch = 50;
  // Bounds (issue 15 review). The directory's word on a subscriber (listed, of the kind it
  // subscribed as, the counties it serves) is refreshed this often, and a delivery is claimed
  // only while it is at most standing_max_age old (the referral service's organization cache,
  // --organization_cache_s, adds to the staleness).
  absl::Duration standing_refresh = absl::Seconds(60);
  absl::Duration standing_max_age = absl::Minutes(10);
  int standing_batch = 50;  // organizations asked about per refresh pass
  // One delivery round (a worker's pass) ends after this long, and serves at most
  // per_subscription_per_round deliveries of one subscription (round-robin between them).
  absl::Duration round_budget = absl::Seconds(30);
  int per_subscription_per_round = 5;
  // Per-endpoint circuit breaker (per replica): this many consecutive failed deliveries
  // (no answer, or not 2xx) and the endpoint is skipped for breaker_open_for, then probed once.
  int breaker_failures = 5;
  absl::Duration breaker_open_for = absl::Seconds(60);
  // ReplayWebhookDeadLetters: at most replay_max_per_call per call, replay_max_per_window per
  // organization per replay_window (across replicas).
  int replay_max_per_call = 100;
  int replay_max_per_window = 500;
  absl::Duration replay_window = absl::Hours(1);
  // Retention: delivered and obsolete deliveries deleted after keep_delivered, dead letters after
  // keep_dead; at most retention_batch rows per pass, every maintenance_interval.
  absl::Duration keep_delivered = absl::Hours(24 * 7);
  absl::Duration keep_dead = absl::Hours(24 * 30);
  int retention_batch = 500;
  absl::Duration maintenance_interval = absl::Seconds(15);
  int max_subscriptions_per_organization = 10;
};

// Reminders are delivered only while their condition holds.
inline constexpr absl::string_view kGuardOfferPending = "offer_pending";
inline constexpr absl::string_view kGuardAwaitingHandoff = "awaiting_handoff";

struct WebhookEvent {
  std::string event_id;  // the same for the same event, whichever replica derives it
  v1::WebhookEventType type = v1::WEBHOOK_EVENT_TYPE_UNSPECIFIED;
  std::string referral_id;
  std::optional<absl::Time> deadline;
  absl::Time occurred;
  absl::Time due;     // not delivered before
  std::string guard;  // "" or a kGuard…
};

// "evt_" and 32 hex digits of SHA-256 over the parts: deterministic, so a change seen twice
// (two watch events of one offer) is one event.
std::string WebhookEventId(const std::vector<std::string>& parts);

// What a provider's watch event (its view of the referral after the change) tells it.
std::vector<WebhookEvent> DeriveProviderEvents(const v1::Referral& view, absl::string_view provider,
                                               absl::Time now, const WebhookOptions& options);
// A referral escalated (transition `transition_id`) to the child welfare of its county.
// `occurred`: when the referral was escalated (its transition's time), not when this was derived.
WebhookEvent EscalationEvent(absl::string_view referral_id, int64_t transition_id,
                             absl::Time occurred, absl::Time now);

// The webhook event of a missed target, for the county's child welfare: one id per row and due
// time. The payload names the row and the target, nothing about the youth.
WebhookEvent AdvocateResponseMissedEvent(absl::string_view referral_id, absl::Time due,
                                         absl::Time now);

// A statutory timer (`timer`: its ClockName) fell due unfiled at `due`: to the accepting provider
// and the county's child welfare. One id per referral, timer and due time.
WebhookEvent StatutoryTimerEvent(absl::string_view referral_id, absl::string_view timer,
                                 absl::Time due, absl::Time now);

// "offer_made", … (payload and metric label).
std::string WebhookEventName(v1::WebhookEventType type);

// The JSON body: event id and type, organization, referral id, deadline, occurred time. Nothing
// about the youth.
std::string WebhookPayload(const WebhookEvent& event, absl::string_view organization_id);

// "v1=" and hex HMAC-SHA256 under `secret` of "<timestamp>.<body>".
std::string WebhookSignature(absl::string_view secret, int64_t timestamp, absl::string_view body);

// A new signing secret: "whsec_" and base64url of 32 random bytes.
std::string NewWebhookSecret();

// Wait before attempt `attempts + 1`: base * 2^(attempts-1), at most `max`.
absl::Duration WebhookBackoff(int attempts, absl::Duration base, absl::Duration max);

// https with a host; plain http only when allowed and to loopback (127.0.0.0/8, ::1,
// localhost). No credentials or fragment in the URL; at most 2048 characters.
absl::Status CheckWebhookUrl(absl::string_view url, bool allow_loopback_http);

// Whether an address a webhook would connect to is internal: loopback, private (10/8, 172.16/12,
// 192.168/16), link-local (169.254/16, cloud metadata), shared (100.64/10), benchmarking
// (198.18/15), IETF and documentation ranges, unspecified, multicast, reserved; for IPv6 anything
// but global unicast (2000::/3), and within it 6to4, Teredo and documentation — so NAT64,
// IPv4-mapped and -compatible forms of an internal IPv4 address are internal too. Checked on the
// resolved address at connect time, so a name that resolves inward (or is re-pointed after the URL
// was checked) cannot reach inside the network.
bool IsInternalAddress(const struct sockaddr* address);
bool IsLoopbackAddress(const struct sockaddr* address);

// Request checks (pure): a known, non-empty list of events.
absl::Status ValidateWebhookEvents(const google::protobuf::RepeatedField<int>& events);
// The webhook RPCs' requests: the organization acted for, a URL allowed by CheckWebhookUrl,
// events; a subscription id.
absl::Status ValidateWebhookCreate(const v1::CreateWebhookSubscriptionRequest& r,
                                   bool allow_loopback_http);
absl::Status ValidateWebhookTarget(absl::string_view org, absl::string_view subscription_id);
absl::Status ValidateWebhookOrganization(absl::string_view org);

}  // namespace safeharbor::referrals
