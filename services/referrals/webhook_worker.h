// Webhook delivery (issue 15): bounded worker threads of their own (never RPC threads) that
// turn the committed change feed into deliveries, claim due deliveries across replicas (FOR
// UPDATE SKIP LOCKED, with a lease that a killed replica's claim outlives only until it
// expires), POST them signed, and retry with exponential backoff until the retry window closes
// (then a dead letter). At least once: a receiver deduplicates on the event id.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/periodic.h"
#include "common/pg.h"
#include "common/sealer.h"
#include "services/referrals/webhook_sender.h"
#include "services/referrals/webhook_store.h"
#include "services/referrals/webhooks.h"

namespace safeharbor::referrals {

struct WebhookMetrics {
  explicit WebhookMetrics(prometheus::Registry& registry);
  prometheus::Family<prometheus::Counter>& deliveries;  // {outcome}
  prometheus::Gauge& oldest_undelivered;
  prometheus::Gauge& failing_organizations;
};

class WebhookWorker {
 public:
  // None owned; all outlive this object.
  WebhookWorker(PgPool* pg, const Clock* clock, const Sealer* sealer, WebhookSender* sender,
                WebhookOptions options, prometheus::Registry& registry);
  ~WebhookWorker();

  void Start();
  void Stop();
  void Wake();  // a change committed: look at the feed now

  // One pass over the feed: deliveries enqueued for what committed changes mean. Returns how
  // many feed rows it consumed.
  absl::StatusOr<int> DeriveOnce();
  // Due deliveries sent, at most `batch`; returns how many were attempted.
  absl::StatusOr<int> DeliverOnce();
  absl::Status RefreshGauges();

  const WebhookOptions& options() const { return options_; }

 private:
  absl::Status DeriveRow(PgTx& tx, const FeedRow& row, absl::Time now);
  // Claims one due delivery; nullopt when none.
  absl::StatusOr<std::optional<ClaimedDelivery>> ClaimOne();
  absl::Status Send(const ClaimedDelivery& d);
  absl::Status RunWorker();

  PgPool* pg_;
  const Clock* clock_;
  const Sealer* sealer_;
  WebhookSender* sender_;
  const WebhookOptions options_;
  WebhookMetrics metrics_;
  std::vector<std::unique_ptr<PeriodicTask>> tasks_;
  std::unique_ptr<PeriodicTask> gauges_;
};

}  // namespace safeharbor::referrals
