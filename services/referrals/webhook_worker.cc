#include "services/referrals/webhook_worker.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace safeharbor::referrals {

namespace {

constexpr size_t kMaxBreakers = 4096;

// The directory through the referral service's network (its organization cache).
class NetworkSubscriberDirectory final : public SubscriberDirectory {
 public:
  explicit NetworkSubscriberDirectory(Network* network) : network_(network) {}
  absl::StatusOr<SubscriberStanding> Standing(const std::string& org_id) override {
    SH_ASSIGN_OR_RETURN(const directory::v1::Organization org,
                        network_->DirectoryOrganization(org_id));
    SubscriberStanding s;
    s.kind = org.kind();
    if (!org.county_fips().empty()) s.counties.push_back(org.county_fips());
    for (const auto& l : org.locations()) {
      if (!l.county_fips().empty()) s.counties.push_back(l.county_fips());
    }
    std::sort(s.counties.begin(), s.counties.end());
    s.counties.erase(std::unique(s.counties.begin(), s.counties.end()), s.counties.end());
    return s;
  }

 private:
  Network* network_;
};

prometheus::Counter& OneCounter(prometheus::Registry& r, const char* name, const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

prometheus::Gauge& OneGauge(prometheus::Registry& r, const char* name, const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

}  // namespace

bool StandingAllows(const SubscriberStanding& standing, absl::string_view role) {
  if (role == "provider") return standing.kind == directory::v1::ORGANIZATION_KIND_SERVICE_PROVIDER;
  if (role == "child_welfare") {
    return standing.kind == directory::v1::ORGANIZATION_KIND_CHILD_WELFARE_OFFICE;
  }
  return false;
}

WebhookMetrics::WebhookMetrics(prometheus::Registry& r)
    : deliveries(prometheus::BuildCounter()
                     .Name("safeharbor_webhook_deliveries_total")
                     .Help("Webhook delivery attempts by outcome: delivered, retried (the "
                           "endpoint failed; tried again later), dead (a dead letter after the "
                           "retry window), obsolete (a reminder whose condition no longer held), "
                           "withheld (the organization may no longer see the referral: no longer "
                           "listed in the directory as what it subscribed as, or outside its "
                           "region).")
                     .Register(r)),
      oldest_undelivered(OneGauge(r, "safeharbor_webhook_oldest_undelivered_seconds",
                                  "Age of the oldest due webhook event not yet delivered.")),
      failing_organizations(OneGauge(r, "safeharbor_webhook_failing_organizations",
                                     "Organizations whose webhook deliveries have been failing "
                                     "for longer than the failing period (or went dead).")),
      breaker_opened(OneCounter(r, "safeharbor_webhook_breaker_opened_total",
                                "Times a webhook endpoint's circuit breaker opened (consecutive "
                                "failed deliveries; the endpoint is skipped for a cool-down).")),
      open_breakers(OneGauge(r, "safeharbor_webhook_open_breakers",
                             "Webhook endpoints whose circuit breaker is open on this replica.")),
      standing_errors(OneCounter(r, "safeharbor_webhook_standing_errors_total",
                                 "Directory look-ups of a webhook subscriber that failed (its "
                                 "deliveries wait until the directory answers).")),
      pruned(OneCounter(r, "safeharbor_webhook_pruned_total",
                        "Finished webhook deliveries deleted by retention.")),
      feed_unreadable(OneCounter(r, "safeharbor_webhook_feed_unreadable_total",
                                 "Change-feed rows skipped because the event they point to could "
                                 "not be read (nobody was told of that change by webhook).")) {
  for (const char* outcome : {"delivered", "retried", "dead", "obsolete", "withheld"}) {
    deliveries.Add({{"outcome", outcome}});
  }
}

WebhookWorker::WebhookWorker(PgPool* pg, const Clock* clock, const Sealer* sealer,
                             WebhookSender* sender, Network* network, WebhookOptions options,
                             prometheus::Registry& registry)
    : WebhookWorker(pg, clock, sealer, sender, static_cast<SubscriberDirectory*>(nullptr),
                    std::move(options), registry) {
  owned_directory_ = std::make_unique<NetworkSubscriberDirectory>(network);
  directory_ = owned_directory_.get();
}

WebhookWorker::WebhookWorker(PgPool* pg, const Clock* clock, const Sealer* sealer,
                             WebhookSender* sender, SubscriberDirectory* directory,
                             WebhookOptions options, prometheus::Registry& registry)
    : pg_(pg),
      clock_(clock),
      sealer_(sealer),
      sender_(sender),
      directory_(directory),
      options_(std::move(options)),
      metrics_(registry) {
  for (int i = 0; i < std::max(1, options_.workers); ++i) {
    tasks_.push_back(std::make_unique<PeriodicTask>(
        absl::StrCat("webhooks_", i), options_.poll, [this] { return DeliverOnce().status(); },
        &registry));
  }
  feed_ = std::make_unique<PeriodicTask>(
      "webhook_feed", options_.poll, [this] { return DeriveOnce().status(); }, &registry);
  standing_ = std::make_unique<PeriodicTask>(
      "webhook_standing", std::min(options_.standing_refresh, absl::Seconds(5)),
      [this] { return RefreshStandingOnce().status(); }, &registry);
  gauges_ = std::make_unique<PeriodicTask>(
      "webhook_gauges", options_.maintenance_interval, [this] { return Maintain(); }, &registry);
}

WebhookWorker::~WebhookWorker() { Stop(); }

void WebhookWorker::Start() {
  stopping_ = false;
  for (auto& t : tasks_) t->Start();
  for (PeriodicTask* t : {feed_.get(), standing_.get(), gauges_.get()}) t->Start();
}

void WebhookWorker::Stop() {
  stopping_ = true;  // before joining any: every round sees it at its next step
  for (auto& t : tasks_) t->Stop();
  for (PeriodicTask* t : {feed_.get(), standing_.get(), gauges_.get()}) t->Stop();
}

void WebhookWorker::Wake() {
  feed_->Wake();
  for (auto& t : tasks_) t->Wake();
}

void WebhookWorker::Subscribed() { standing_->Wake(); }

absl::Status WebhookWorker::Maintain() {
  SH_RETURN_IF_ERROR(RefreshGauges());
  return PruneOnce().status();
}

absl::Status WebhookWorker::DeriveRow(PgTx& tx, const FeedRow& row, absl::Time now) {
  if (row.kind == "escalated") {
    SH_ASSIGN_OR_RETURN(const auto targets, WebhookStore::ForCounty(tx, row.county_fips));
    const WebhookEvent e = EscalationEvent(row.referral_id, row.ref, row.occurred, now);
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
      const absl::Status derived = DeriveRow(tx, row, now);
      // An event that cannot be read (a stored body that does not parse, before any statement
      // failed) is skipped, counted and logged, so that one bad row does not stop the feed for
      // everyone behind it. Any other error (the database) retries the whole batch.
      if (absl::IsDataLoss(derived)) {
        metrics_.feed_unreadable.Increment();
        log::Error("webhook_feed_row_unreadable",
                   {{"feed_id", absl::StrCat(row.id)}, {"referral_id", row.referral_id}});
      } else if (!derived.ok()) {
        return derived;
      }
      SH_RETURN_IF_ERROR(WebhookStore::DeleteFeed(tx, row.id));
      ++consumed;
    }
    return absl::OkStatus();
  }));
  return consumed;
}

absl::StatusOr<std::optional<ClaimedDelivery>> WebhookWorker::ClaimOne(const ClaimPolicy& policy) {
  std::optional<ClaimedDelivery> claimed;
  ClaimTally tally;
  SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) -> absl::Status {
    tally = ClaimTally{};
    SH_ASSIGN_OR_RETURN(claimed,
                        WebhookStore::Claim(tx, clock_->Now(), options_.lease,
                                            options_.endpoint_concurrency, policy, &tally));
    return absl::OkStatus();
  }));
  for (const auto& [outcome, n] : {std::pair<const char*, int>{"obsolete", tally.obsolete},
                                   {"withheld", tally.withheld},
                                   {"dead", tally.expired}}) {
    if (n > 0) metrics_.deliveries.Add({{"outcome", outcome}}).Increment(static_cast<double>(n));
  }
  return claimed;
}

absl::StatusOr<int> WebhookWorker::DeliverOnce() {
  const absl::Time started = clock_->Now();
  ClaimPolicy policy;
  policy.standing_since = started - options_.standing_max_age;
  policy.admit = [this](const std::string& sid) { return BreakerFor(sid)->Allow(); };
  std::map<std::string, int> served;
  int attempted = 0;
  while (attempted < options_.batch && clock_->Now() - started < options_.round_budget &&
         !stopping_) {
    SH_ASSIGN_OR_RETURN(const std::optional<ClaimedDelivery> d, ClaimOne(policy));
    if (!d.has_value()) break;
    ++attempted;
    if (++served[d->subscription_id] >= options_.per_subscription_per_round) {
      policy.skip.push_back(d->subscription_id);  // the others' turn
    }
    SH_RETURN_IF_ERROR(Send(*d));
  }
  return attempted;
}

std::shared_ptr<Breaker> WebhookWorker::BreakerFor(const std::string& sid) {
  std::lock_guard<std::mutex> lock(breakers_mu_);
  auto it = breakers_.find(sid);
  if (it != breakers_.end()) return it->second;
  if (breakers_.size() >= kMaxBreakers) {  // bounded: closed ones are forgotten first
    for (auto i = breakers_.begin(); i != breakers_.end();) {
      i = i->second->state() == BreakerState::kClosed ? breakers_.erase(i) : std::next(i);
    }
  }
  const BreakerOptions o{.failure_threshold = std::max(1, options_.breaker_failures),
                         .open_for = options_.breaker_open_for};
  auto observe = [this, was = std::make_shared<bool>(false)](BreakerState s) {
    const bool open = s != BreakerState::kClosed;
    if (s == BreakerState::kOpen) metrics_.breaker_opened.Increment();
    if (open != *was) metrics_.open_breakers.Increment(open ? 1 : -1);
    *was = open;
  };
  auto made = std::make_shared<Breaker>(absl::StrCat("webhook endpoint ", sid), clock_, o,
                                        std::move(observe));
  return breakers_.emplace(sid, std::move(made)).first->second;
}

void WebhookWorker::Tell(const std::string& sid, bool ok) {
  const std::shared_ptr<Breaker> b = BreakerFor(sid);
  ok ? b->Succeeded() : b->Failed();
}

absl::Status WebhookWorker::Send(const ClaimedDelivery& d) {
  const absl::StatusOr<std::string> secret = sealer_->Open(d.secret_sealed, d.subscription_id);
  if (!secret.ok()) {
    // Not the endpoint's fault: retried with backoff like a failure, and a dead letter when
    // its window closes (never claimed again and again on its lease).
    log::Error("webhook_secret_unreadable", {{"subscription_id", d.subscription_id}});
    return Record(d, absl::InternalError("the subscription's secret cannot be opened"));
  }
  const int64_t timestamp = absl::ToUnixSeconds(clock_->Now());
  WebhookRequest req;
  req.url = d.url;
  req.body = WebhookPayload(d.event, d.org_id);
  req.timeout = options_.request_timeout;
  req.connect_timeout = options_.connect_timeout;
  req.headers = {{"SafeHarbor-Event-Id", d.event.event_id},
                 {"SafeHarbor-Event-Type", WebhookEventName(d.event.type)},
                 {"SafeHarbor-Timestamp", absl::StrCat(timestamp)},
                 {"SafeHarbor-Signature", WebhookSignature(*secret, timestamp, req.body)}};
  const absl::StatusOr<int> answer = sender_->Post(req);
  Tell(d.subscription_id, answer.ok() && *answer >= 200 && *answer < 300);
  return Record(d, answer);
}

absl::Status WebhookWorker::Record(const ClaimedDelivery& d, const absl::StatusOr<int>& answer) {
  const absl::Time now = clock_->Now();
  const bool ok = answer.ok() && *answer >= 200 && *answer < 300;
  if (ok) {
    SH_RETURN_IF_ERROR(pg_->Transact(
        [&](PgTx& tx) { return WebhookStore::Delivered(tx, d.id, d.attempts, now); }));
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
    SH_ASSIGN_OR_RETURN(dead, WebhookStore::Failed(tx, d.id, d.attempts, error, next));
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

absl::StatusOr<int> WebhookWorker::RefreshStandingOnce() {
  std::vector<StandingTarget> due;
  SH_RETURN_IF_ERROR(pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        SH_ASSIGN_OR_RETURN(due,
                            WebhookStore::StandingDue(tx, clock_->Now() - options_.standing_refresh,
                                                      options_.standing_batch));
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true));
  int answered = 0;
  for (const StandingTarget& t : due) {
    if (stopping_) break;
    // A directory call: outside any transaction.
    const absl::StatusOr<SubscriberStanding> standing = directory_->Standing(t.org_id);
    if (!standing.ok() && standing.status().code() != absl::StatusCode::kNotFound) {
      metrics_.standing_errors.Increment();
      log::Warn("webhook_standing_unknown",
                {{"by", t.org_id}, {"error", standing.status().message()}});
      continue;  // its deliveries wait (claimed only while the standing is fresh)
    }
    const bool active = standing.ok() && StandingAllows(*standing, t.role);
    const std::vector<std::string> counties =
        standing.ok() ? standing->counties : std::vector<std::string>();
    int64_t withheld = 0;
    SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) -> absl::Status {
      SH_ASSIGN_OR_RETURN(withheld,
                          WebhookStore::RecordStanding(tx, t, active, counties, clock_->Now()));
      return absl::OkStatus();
    }));
    if (withheld > 0) {
      metrics_.deliveries.Add({{"outcome", "withheld"}}).Increment(static_cast<double>(withheld));
    }
    if (!active) log::Warn("webhook_subscriber_inactive", {{"by", t.org_id}, {"role", t.role}});
    ++answered;
  }
  return answered;
}

absl::StatusOr<int64_t> WebhookWorker::PruneOnce() {
  int64_t pruned = 0;
  SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) -> absl::Status {
    const absl::Time now = clock_->Now();
    SH_ASSIGN_OR_RETURN(
        pruned, WebhookStore::Prune(tx, now - options_.keep_delivered, now - options_.keep_dead,
                                    options_.retention_batch));
    return absl::OkStatus();
  }));
  metrics_.pruned.Increment(static_cast<double>(pruned));
  return pruned;
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
