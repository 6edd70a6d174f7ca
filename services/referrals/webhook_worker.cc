#include "services/referrals/webhook_worker.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace safeharbor::referrals {

WebhookMetrics::WebhookMetrics(prometheus::Registry& r)
    : deliveries(prometheus::BuildCounter()
                     .Name("safeharbor_webhook_deliveries_total")
                     .Help("Webhook delivery attempts by outcome: delivered, retried (the "
                           "endpoint failed; tried again later), dead (a dead letter after the "
                           "retry window), obsolete (a reminder whose condition no longer held).")
                     .Register(r)),
      oldest_undelivered(prometheus::BuildGauge()
                             .Name("safeharbor_webhook_oldest_undelivered_seconds")
                             .Help("Age of the oldest due webhook event not yet delivered.")
                             .Register(r)
                             .Add({})),
      failing_organizations(prometheus::BuildGauge()
                                .Name("safeharbor_webhook_failing_organizations")
                                .Help("Organizations whose webhook deliveries have been failing "
                                      "for longer than the failing period (or went dead).")
                                .Register(r)
                                .Add({})) {
  for (const char* outcome : {"delivered", "retried", "dead", "obsolete"}) {
    deliveries.Add({{"outcome", outcome}});
  }
}

WebhookWorker::WebhookWorker(PgPool* pg, const Clock* clock, const Sealer* sealer,
                             WebhookSender* sender, WebhookOptions options,
                             prometheus::Registry& registry)
    : pg_(pg),
      clock_(clock),
      sealer_(sealer),
      sender_(sender),
      options_(std::move(options)),
      metrics_(registry) {
  for (int i = 0; i < std::max(1, options_.workers); ++i) {
    tasks_.push_back(std::make_unique<PeriodicTask>(
        absl::StrCat("webhooks_", i), options_.poll, [this] { return RunWorker(); }, &registry));
  }
  gauges_ = std::make_unique<PeriodicTask>(
      "webhook_gauges", absl::Seconds(15), [this] { return RefreshGauges(); }, &registry);
}

WebhookWorker::~WebhookWorker() { Stop(); }

void WebhookWorker::Start() {
  for (auto& t : tasks_) t->Start();
  gauges_->Start();
}

void WebhookWorker::Stop() {
  for (auto& t : tasks_) t->Stop();
  gauges_->Stop();
}

void WebhookWorker::Wake() {
  for (auto& t : tasks_) t->Wake();
}

absl::Status WebhookWorker::RunWorker() {
  SH_RETURN_IF_ERROR(DeriveOnce().status());
  return DeliverOnce().status();
}

absl::Status WebhookWorker::DeriveRow(PgTx& tx, const FeedRow& row, absl::Time now) {
  if (row.kind == "escalated") {
    SH_ASSIGN_OR_RETURN(const auto targets, WebhookStore::ForCounty(tx, row.county_fips));
    const WebhookEvent e = EscalationEvent(row.referral_id, row.ref, now);
    for (const SubscriptionTarget& t : targets) {
      if (!t.Wants(e.type)) continue;
      SH_RETURN_IF_ERROR(WebhookStore::Enqueue(tx, t, e, now, options_.retry_window));
    }
    return absl::OkStatus();
  }
  SH_ASSIGN_OR_RETURN(const std::optional<v1::Referral> view,
                      WebhookStore::EventView(tx, row.event_seq));
  if (!view.has_value()) return absl::OkStatus();  // pruned past the replay horizon
  SH_ASSIGN_OR_RETURN(const auto targets, WebhookStore::ForOrganization(tx, row.org_id));
  for (const WebhookEvent& e : DeriveProviderEvents(*view, row.org_id, now, options_)) {
    for (const SubscriptionTarget& t : targets) {
      if (!t.Wants(e.type)) continue;
      SH_RETURN_IF_ERROR(WebhookStore::Enqueue(tx, t, e, now, options_.retry_window));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int> WebhookWorker::DeriveOnce() {
  int consumed = 0;
  SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) -> absl::Status {
    consumed = 0;
    const absl::Time now = clock_->Now();
    SH_ASSIGN_OR_RETURN(const auto rows, WebhookStore::ClaimFeed(tx, options_.batch));
    for (const FeedRow& row : rows) {
      SH_RETURN_IF_ERROR(DeriveRow(tx, row, now));
      SH_RETURN_IF_ERROR(WebhookStore::DeleteFeed(tx, row.id));
      ++consumed;
    }
    return absl::OkStatus();
  }));
  return consumed;
}

absl::StatusOr<std::optional<ClaimedDelivery>> WebhookWorker::ClaimOne() {
  std::optional<ClaimedDelivery> claimed;
  int obsolete = 0;
  SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) -> absl::Status {
    obsolete = 0;
    SH_ASSIGN_OR_RETURN(claimed, WebhookStore::Claim(tx, clock_->Now(), options_.lease,
                                                     options_.endpoint_concurrency, &obsolete));
    return absl::OkStatus();
  }));
  if (obsolete > 0) {
    metrics_.deliveries.Add({{"outcome", "obsolete"}}).Increment(static_cast<double>(obsolete));
  }
  return claimed;
}

absl::StatusOr<int> WebhookWorker::DeliverOnce() {
  int attempted = 0;
  while (attempted < options_.batch) {
    SH_ASSIGN_OR_RETURN(const std::optional<ClaimedDelivery> d, ClaimOne());
    if (!d.has_value()) break;
    ++attempted;
    SH_RETURN_IF_ERROR(Send(*d));
  }
  return attempted;
}

absl::Status WebhookWorker::Send(const ClaimedDelivery& d) {
  SH_ASSIGN_OR_RETURN(const std::string secret, sealer_->Open(d.secret_sealed, d.subscription_id));
  const int64_t timestamp = absl::ToUnixSeconds(clock_->Now());
  WebhookRequest req;
  req.url = d.url;
  req.body = WebhookPayload(d.event, d.org_id);
  req.timeout = options_.request_timeout;
  req.connect_timeout = options_.connect_timeout;
  req.headers = {{"SafeHarbor-Event-Id", d.event.event_id},
                 {"SafeHarbor-Event-Type", WebhookEventName(d.event.type)},
                 {"SafeHarbor-Timestamp", absl::StrCat(timestamp)},
                 {"SafeHarbor-Signature", WebhookSignature(secret, timestamp, req.body)}};
  const absl::StatusOr<int> answer = sender_->Post(req);
  const absl::Time now = clock_->Now();
  const bool ok = answer.ok() && *answer >= 200 && *answer < 300;
  if (ok) {
    SH_RETURN_IF_ERROR(
        pg_->Transact([&](PgTx& tx) { return WebhookStore::Delivered(tx, d.id, now); }));
    metrics_.deliveries.Add({{"outcome", "delivered"}}).Increment();
    log::Info("webhook_delivered", {{"event_id", d.event.event_id},
                                    {"subscription_id", d.subscription_id},
                                    {"attempts", absl::StrCat(d.attempts)},
                                    {"by", d.org_id}});
    return absl::OkStatus();
  }
  const std::string error =
      answer.ok() ? absl::StrCat("HTTP ", *answer) : std::string(answer.status().message());
  const absl::Time next =
      now + WebhookBackoff(d.attempts, options_.backoff_base, options_.backoff_max);
  bool dead = false;
  SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) -> absl::Status {
    SH_ASSIGN_OR_RETURN(dead, WebhookStore::Failed(tx, d.id, error, next));
    return absl::OkStatus();
  }));
  metrics_.deliveries.Add({{"outcome", dead ? "dead" : "retried"}}).Increment();
  log::Warn(dead ? "webhook_dead_letter" : "webhook_delivery_failed",
            {{"event_id", d.event.event_id},
             {"subscription_id", d.subscription_id},
             {"attempts", absl::StrCat(d.attempts)},
             {"error", error},
             {"by", d.org_id}});
  return absl::OkStatus();
}

absl::Status WebhookWorker::RefreshGauges() {
  return pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        const absl::Time now = clock_->Now();
        SH_ASSIGN_OR_RETURN(const double oldest, WebhookStore::OldestUndeliveredSeconds(tx, now));
        SH_ASSIGN_OR_RETURN(const int64_t failing,
                            WebhookStore::FailingOrganizations(tx, now, options_.failing_after));
        metrics_.oldest_undelivered.Set(oldest);
        metrics_.failing_organizations.Set(static_cast<double>(failing));
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true);
}

}  // namespace safeharbor::referrals
