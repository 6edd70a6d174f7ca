// Webhook delivery (issue 15): bounded worker threads of their own (never RPC threads) that
// turn the committed change feed into deliveries, claim due deliveries across replicas (FOR
// UPDATE SKIP LOCKED, with a lease that a killed replica's claim outlives only until it
// expires), POST them signed, and retry with exponential backoff until the retry window closes
// (then a dead letter). At least once: a receiver deduplicates on the event id.
//
// Bounded (issue 15 review): the feed has a task of its own; a delivery round ends after
// round_budget and serves a subscription at most per_subscription_per_round times, the one
// served longest ago first; an endpoint that keeps failing is skipped by its circuit breaker;
// the directory's word on each subscriber is refreshed (standing_refresh) and a delivery goes
// only to an organization it vouched for recently; finished deliveries are deleted after their
// retention.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/breaker.h"
#include "common/clock.h"
#include "common/periodic.h"
#include "common/pg.h"
#include "common/sealer.h"
#include "services/referrals/network.h"
#include "services/referrals/webhook_sender.h"
#include "services/referrals/webhook_store.h"
#include "services/referrals/webhooks.h"

namespace safeharbor::referrals {

struct WebhookMetrics {
  explicit WebhookMetrics(prometheus::Registry& registry);
  prometheus::Family<prometheus::Counter>& deliveries;  // {outcome}
  prometheus::Gauge& oldest_undelivered;
  prometheus::Gauge& failing_organizations;
  prometheus::Counter& breaker_opened;   // an endpoint's breaker opened (or reopened)
  prometheus::Gauge& open_breakers;      // endpoints skipped now (this replica)
  prometheus::Counter& standing_errors;  // the directory could not say (try again later)
  prometheus::Counter& pruned;           // deliveries deleted by retention
  prometheus::Counter& feed_unreadable;  // feed rows skipped: their event could not be read
};

// The directory's word on a subscriber, now: NOT_FOUND when it no longer lists the organization;
// else its kind and the counties it serves (a child-welfare office's region).
struct SubscriberStanding {
  directory::v1::OrganizationKind kind = directory::v1::ORGANIZATION_KIND_UNSPECIFIED;
  std::vector<std::string> counties;
};

class SubscriberDirectory {
 public:
  virtual ~SubscriberDirectory() = default;
  virtual absl::StatusOr<SubscriberStanding> Standing(const std::string& org_id) = 0;
};

// Pure: whether an organization of this standing may hear as `role` ("provider": a service
// provider; "child_welfare": a child-welfare office).
bool StandingAllows(const SubscriberStanding& standing, absl::string_view role);

class WebhookWorker {
 public:
  // None owned; all outlive this object.
  WebhookWorker(PgPool* pg, const Clock* clock, const Sealer* sealer, WebhookSender* sender,
                SubscriberDirectory* directory, WebhookOptions options,
                prometheus::Registry& registry);
  // The directory reached through `network` (its organization cache bounds the staleness).
  WebhookWorker(PgPool* pg, const Clock* clock, const Sealer* sealer, WebhookSender* sender,
                Network* network, WebhookOptions options, prometheus::Registry& registry);
  ~WebhookWorker();

  void Start();
  // Bounded: the rounds in progress end after the request they are making (at most
  // request_timeout), not after their round budget.
  void Stop();
  void Wake();        // a change committed: look at the feed now
  void Subscribed();  // a subscription was made: ask the directory about it now

  // One pass over the feed: deliveries enqueued for what committed changes mean. Returns how
  // many feed rows it consumed.
  absl::StatusOr<int> DeriveOnce();
  // One delivery round: due deliveries sent, at most `batch`, for at most round_budget, at most
  // per_subscription_per_round of one subscription; returns how many were attempted.
  absl::StatusOr<int> DeliverOnce();
  absl::Status RefreshGauges();
  // The directory asked about subscribers not checked within standing_refresh (at most
  // standing_batch); returns how many it answered for.
  absl::StatusOr<int> RefreshStandingOnce();
  // One retention pass; returns how many deliveries it deleted.
  absl::StatusOr<int64_t> PruneOnce();

  const WebhookOptions& options() const { return options_; }

 private:
  absl::Status DeriveRow(PgTx& tx, const FeedRow& row, absl::Time now);
  // Claims one due delivery by `policy`; nullopt when none.
  absl::StatusOr<std::optional<ClaimedDelivery>> ClaimOne(const ClaimPolicy& policy);
  absl::Status Send(const ClaimedDelivery& d);
  absl::Status Record(const ClaimedDelivery& d, const absl::StatusOr<int>& answer);
  absl::Status Maintain();
  // The endpoint's breaker (created on first use; closed ones forgotten beyond kMaxBreakers).
  std::shared_ptr<Breaker> BreakerFor(const std::string& subscription_id);
  void Tell(const std::string& subscription_id, bool ok);

  PgPool* pg_;
  const Clock* clock_;
  const Sealer* sealer_;
  WebhookSender* sender_;
  std::unique_ptr<SubscriberDirectory> owned_directory_;
  SubscriberDirectory* directory_;
  const WebhookOptions options_;
  WebhookMetrics metrics_;
  std::mutex breakers_mu_;
  std::map<std::string, std::shared_ptr<Breaker>> breakers_ ABSL_GUARDED_BY(breakers_mu_);
  std::atomic<bool> stopping_{false};                 // set first by Stop: rounds end early
  std::vector<std::unique_ptr<PeriodicTask>> tasks_;  // delivery rounds
  std::unique_ptr<PeriodicTask> feed_;                // the change feed, on its own
  std::unique_ptr<PeriodicTask> standing_;            // the directory's word on subscribers
  std::unique_ptr<PeriodicTask> gauges_;              // gauges and retention
};

}  // namespace safeharbor::referrals
