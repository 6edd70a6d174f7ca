#include "services/referrals/timers.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "services/referrals/referral_store.h"
#include "services/referrals/waitlist.h"

namespace safeharbor::referrals {
namespace {

// Every pending offer of a referral past its deadline lapses; it goes back to routing.
absl::Status LapseOffers(v1::Referral& r, absl::Time now, Change& ch, bool* rerouted) {
  *rerouted = false;
  if (r.status() != v1::REFERRAL_STATUS_OFFERED || !r.has_acceptance_deadline() ||
      FromProtoTime(r.acceptance_deadline()) > now) {
    ch.noop = true;  // Accepted, declined or handled by another replica meanwhile.
    return absl::OkStatus();
  }
  std::vector<std::string> late;
  for (auto& o : *r.mutable_offers()) {
    if (o.state() == v1::OFFER_STATE_PENDING) {
      o.set_state(v1::OFFER_STATE_EXPIRED);
      late.push_back(o.provider_organization_id());
    }
  }
  if (!r.bed_hold_id().empty()) ch.holds_to_release.push_back(r.bed_hold_id());
  r.clear_bed_hold_id();
  r.clear_acceptance_deadline();
  r.set_reroutes(r.reroutes() + 1);
  ch.to = v1::REFERRAL_STATUS_REQUESTED;
  ch.reason = absl::StrCat("no answer by the deadline from ", absl::StrJoin(late, ", "));
  *rerouted = true;
  return absl::OkStatus();
}

}  // namespace

RoutingMetrics::RoutingMetrics(prometheus::Registry& r)
    : queue(prometheus::BuildGauge()
                .Name("safeharbor_referrals_routing_queue")
                .Help("Referrals waiting to be routed (status requested), by urgency.")
                .Register(r)),
      oldest_waiting(prometheus::BuildGauge()
                         .Name("safeharbor_referrals_routing_oldest_waiting_seconds")
                         .Help("Seconds the oldest referral waiting to be routed has waited since "
                               "it entered routing, by urgency.")
                         .Register(r)),
      attempts(prometheus::BuildCounter()
                   .Name("safeharbor_referrals_routing_attempts_total")
                   .Help("Referrals claimed for routing, by outcome: routed (offered or "
                         "escalated), unchanged (nothing to do), retry (a dependency did not "
                         "answer or a cap was reached), failed (retried, escalated after a few).")
                   .Register(r)),
      seconds(prometheus::BuildHistogram()
                  .Name("safeharbor_referrals_routing_seconds")
                  .Help("One referral's routing, from its claim to the offer or escalation.")
                  .Register(r)
                  .Add({}, prometheus::Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1,
                                                                   0.25, 0.5, 1, 2.5, 5, 10})),
      busy(prometheus::BuildGauge()
               .Name("safeharbor_referrals_routing_workers_busy")
               .Help("Routing workers routing a referral now (of safeharbor_referrals_routing_"
                     "workers).")
               .Register(r)
               .Add({})),
      workers(prometheus::BuildGauge()
                  .Name("safeharbor_referrals_routing_workers")
                  .Help("Routing workers of this process (--routing_workers).")
                  .Register(r)
                  .Add({})) {
  for (int u : {v1::URGENCY_ROUTINE, v1::URGENCY_URGENT, v1::URGENCY_EMERGENCY}) {
    queue.Add({{"urgency", UrgencyLabel(u)}});
    oldest_waiting.Add({{"urgency", UrgencyLabel(u)}});
  }
  for (const char* o : {"routed", "unchanged", "retry", "failed"}) attempts.Add({{"outcome", o}});
}

Timers::Timers(PgPool* pg, const Clock* clock, Network* network, ReferralChanges* changes,
               Router* router, ReferralMetrics* metrics, const ReferralOptions& options,
               prometheus::Registry* registry)
    : pg_(pg),
      clock_(clock),
      network_(network),
      changes_(changes),
      router_(router),
      metrics_(metrics),
      options_(options),
      routing_(*registry),
      statutory_(pg, clock, options.webhooks, *registry),
      holds_(pg, clock, network, changes, options, registry),
      advocate_(pg, clock, changes, options.webhooks, *registry),
      bed_watch_(pg, clock, network, changes, options, registry),
      timers_(
          "referral_timers", options.tick, [this] { return Pass(/*route=*/false).status(); },
          registry),
      gauges_(
          "referral_gauges", options.gauge_interval, [this] { return RefreshGauges(); }, registry) {
}

Timers::~Timers() { Stop(); }

void Timers::Start() {
  timers_.Start();
  gauges_.Start();
  gauges_.Wake();  // gauges from the start, then every gauge_interval
  std::lock_guard<std::mutex> lock(mu_);
  if (!workers_.empty()) return;
  stop_ = false;
  const int n = std::clamp(options_.routing_workers, 1, kMaxRoutingWorkers);
  routing_.workers.Set(n);
  wakes_ = n;  // Each worker claims once at start: what waited while no replica ran.
  for (int i = 0; i < n; ++i) workers_.emplace_back([this] { Work(); });
}

void Timers::Stop() {
  std::vector<std::thread> running;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    running.swap(workers_);
  }
  cv_.notify_all();
  for (std::thread& t : running) t.join();  // Each finishes the referral it is routing.
  timers_.Stop();
  gauges_.Stop();
}

void Timers::Wake() {
  WakeRouting();
  timers_.Wake();
}

void Timers::WakeRouting() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (wakes_ >= static_cast<int>(workers_.size())) return;  // Enough workers are on it.
    ++wakes_;
  }
  cv_.notify_one();
}

void Timers::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.tick),
                 [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || wakes_ > 0; });
    if (stop_) break;
    if (wakes_ > 0) --wakes_;
    lock.unlock();
    // Until nothing is left to claim (or a dependency is down: then the next tick).
    for (;;) {
      auto next = RouteNext();
      if (!next.ok()) {
        log::Warn("routing_claim_failed", {{"error", next.status().message()}});
        break;
      }
      if (*next == Claim::kNone || *next == Claim::kOutage) break;
      WakeRouting();  // More may wait: another worker joins in, up to all of them.
      if (std::lock_guard<std::mutex> stopping(mu_); stop_) break;
    }
    lock.lock();
  }
}

absl::StatusOr<int> Timers::RunOnce() { return Pass(/*route=*/true); }

absl::StatusOr<int> Timers::Pass(bool route) {
  SH_RETURN_IF_ERROR(ExpireDueOffers().status());
  // Issue 14 (coded reasons and waitlist): waitlisted offers lapse at their time.
  SH_RETURN_IF_ERROR(LapseDueWaitlists(pg_, changes_, clock_->Now(), options_.batch).status());
  int routed = 0;
  if (route) {
    SH_ASSIGN_OR_RETURN(routed, RouteWaiting());
  }
  if (auto s = changes_->ReleaseQueuedHolds(options_.batch); !s.ok()) {
    log::Warn("hold_release_deferred", {{"error", s.message()}});
  }
  if (auto s = ConfirmPendingPlacements(); !s.ok()) {
    log::Warn("placement_confirmation_deferred", {{"error", s.message()}});
  }
  if (auto s = statutory_.FireDue(options_.batch); !s.ok()) {
    log::Warn("statutory_timers_deferred", {{"error", s.status().message()}});
  }
  // The hold follows the referral (issue 14): the hold_extensions outbox, then hand-offs past
  // their deadline.
  if (auto s = holds_.ExtendQueued(); !s.ok()) {
    log::Warn("hold_extension_deferred", {{"error", s.message()}});
  }
  if (auto s = holds_.NoteOverdue(); !s.ok()) {
    log::Warn("handoff_overdue_deferred", {{"error", s.message()}});
  }
  if (auto s = advocate_.MarkMissed(options_.batch); !s.ok()) {  // issue 14
    log::Warn("advocate_response_deferred", {{"error", s.status().message()}});
  }
  if (auto s = bed_watch_.CheckDue(); !s.ok()) {  // issue 14: escalated placements
    log::Warn("bed_check_deferred", {{"error", s.message()}});
  }
  return routed;
}

absl::StatusOr<int> Timers::RouteWaiting() {
  int routed = 0;
  for (int i = 0; i < options_.batch; ++i) {
    SH_ASSIGN_OR_RETURN(const Claim c, RouteNext());
    if (c == Claim::kNone || c == Claim::kOutage) break;
    routed += c == Claim::kRouted ? 1 : 0;
  }
  return routed;
}

absl::StatusOr<Timers::Claim> Timers::RouteNext() {
  // One claim at a time: each referral's lease starts when its routing does.
  std::vector<ReferralStore::Claimed> claimed;
  SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) -> absl::Status {
    SH_ASSIGN_OR_RETURN(
        claimed, ReferralStore::ClaimForRouting(tx, clock_->Now(), options_.routing_lease, 1));
    return absl::OkStatus();
  }));
  if (claimed.empty()) return Claim::kNone;
  const ReferralStore::Claimed& next = claimed.front();
  if (next.unreadable) {
    // Claimed again after each lease, so logged and counted until someone repairs the row.
    log::Error("stored_referral_unreadable", {{"referral_id", next.referral.id()}});
    routing_.attempts.Add({{"outcome", "failed"}}).Increment();
    return Claim::kUnchanged;
  }
  routing_.busy.Increment();
  const absl::Time started = absl::Now();
  const Claim c = Settle(next.referral.id(), next.claim,
                         router_->Route(next.referral, next.pending_hold, next.claim));
  routing_.seconds.Observe(absl::ToDoubleSeconds(absl::Now() - started));
  routing_.busy.Decrement();
  return c;
}

Timers::Claim Timers::Settle(const std::string& id, int64_t claim,
                             const absl::StatusOr<bool>& done) {
  const auto count = [this](const char* outcome) {
    routing_.attempts.Add({{"outcome", outcome}}).Increment();
  };
  if (done.ok() || IsRoutingClaimLost(done.status())) {
    const bool routed = done.ok() && *done;
    count(routed ? "routed" : "unchanged");
    return routed ? Claim::kRouted : Claim::kUnchanged;
  }
  log::Warn("routing_deferred", {{"referral_id", id}, {"error", done.status().message()}});
  if (IsOutage(done.status())) {
    count("retry");
    // A dependency is down: try again shortly (not after the lease), and stop this pass.
    (void)pg_->Transact([&](PgTx& tx) {
      return ReferralStore::RetryRoutingAfter(tx, id, clock_->Now() + options_.routing_retry,
                                              claim);
    });
    // Exhausted is not down: one agency at its cap of bed holds must not hold up the others.
    return done.status().code() == absl::StatusCode::kResourceExhausted ? Claim::kRetry
                                                                        : Claim::kOutage;
  }
  count("failed");
  auto escalated = router_->GiveUpRouting(id, done.status(), claim);
  return escalated.ok() && *escalated ? Claim::kRouted : Claim::kUnchanged;
}

absl::StatusOr<int> Timers::ExpireDueOffers() {
  std::vector<std::string> due;
  SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) -> absl::Status {
    SH_ASSIGN_OR_RETURN(due, ReferralStore::DueOffers(tx, clock_->Now(), options_.batch));
    return absl::OkStatus();
  }));
  int expired = 0;
  for (const std::string& id : due) {
    bool rerouted = false;
    auto r = changes_->Apply(nullptr, id, "deadline",
                             [&](PgTx&, v1::Referral& r, Actor, absl::Time now, Change& ch) {
                               return LapseOffers(r, now, ch, &rerouted);
                             });
    if (!r.ok()) {
      log::Warn("deadline_handling_failed", {{"referral_id", id}, {"error", r.status().message()}});
      continue;
    }
    if (rerouted) {
      ++expired;
      metrics_->reroutes.Add({{"reason", "deadline"}}).Increment();
    }
  }
  return expired;
}

absl::Status Timers::ConfirmPendingPlacements() {
  std::vector<std::pair<std::string, std::string>> pending;  // referral, hold
  SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) -> absl::Status {
    SH_ASSIGN_OR_RETURN(pending, ReferralStore::PendingPlacements(tx, options_.batch));
    return absl::OkStatus();
  }));
  for (const auto& [id, hold] : pending) {
    absl::Status s = network_->ConfirmPlacement(absl::StrCat("placement-", id), hold);
    const bool lapsed = s.code() == absl::StatusCode::kFailedPrecondition ||
                        s.code() == absl::StatusCode::kNotFound;
    if (!s.ok() && !lapsed) return s;  // Outage or a transient error: retried on the next tick.
    if (lapsed) {
      // The hold lapsed before the hand-off was confirmed: the youth is there all the same,
      // and the provider's census must say so (alerted on this counter).
      metrics_->placements_unrecorded.Increment();
      log::Error("placement_not_recorded",
                 {{"referral_id", id}, {"hold_id", hold}, {"error", s.message()}});
    } else {
      log::Info("placement_confirmed", {{"referral_id", id}, {"hold_id", hold}});
    }
    SH_RETURN_IF_ERROR(
        pg_->Transact([&](PgTx& tx) { return ReferralStore::SetPlacementPending(tx, id, false); }));
  }
  return absl::OkStatus();
}

absl::Status Timers::RefreshGauges() {
  SH_RETURN_IF_ERROR(holds_.RefreshGauges());  // issue 14
  return pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        SH_ASSIGN_OR_RETURN(auto counts, ReferralStore::CountByStatus(tx));
        for (int s = v1::REFERRAL_STATUS_REQUESTED; s <= v1::REFERRAL_STATUS_ESCALATED; ++s) {
          auto it = counts.find(s);
          metrics_->by_status.Add({{"status", StatusLabel(static_cast<v1::ReferralStatus>(s))}})
              .Set(it == counts.end() ? 0.0 : static_cast<double>(it->second));
        }
        const absl::Time now = clock_->Now();
        SH_ASSIGN_OR_RETURN(const auto overdue,
                            ReferralStore::OverdueOffers(tx, now, options_.overdue_grace));
        metrics_->overdue.Set(static_cast<double>(overdue));
        SH_ASSIGN_OR_RETURN(const auto waiting, ReferralStore::RoutingQueue(tx, now));
        int64_t oldest = 0;
        for (int u : {v1::URGENCY_ROUTINE, v1::URGENCY_URGENT, v1::URGENCY_EMERGENCY}) {
          auto it = waiting.find(u);
          const ReferralStore::Waiting w =
              it == waiting.end() ? ReferralStore::Waiting{} : it->second;
          routing_.queue.Add({{"urgency", UrgencyLabel(u)}}).Set(static_cast<double>(w.count));
          routing_.oldest_waiting.Add({{"urgency", UrgencyLabel(u)}})
              .Set(static_cast<double>(w.oldest_seconds));
          oldest = std::max(oldest, w.oldest_seconds);
        }
        metrics_->oldest_unrouted.Set(static_cast<double>(oldest));
        SH_RETURN_IF_ERROR(advocate_.RefreshGauges(tx, now));  // issue 14
        return statutory_.RefreshGauges(tx, now);
      },
      Isolation::kReadCommitted, true);
}

}  // namespace safeharbor::referrals
