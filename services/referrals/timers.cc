#include "services/referrals/timers.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "services/referrals/referral_store.h"

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
      timers_(
          "referral_timers", options.tick, [this] { return RunOnce().status(); }, registry),
      gauges_(
          "referral_gauges", options.gauge_interval, [this] { return RefreshGauges(); }, registry) {
}

void Timers::Start() {
  timers_.Start();
  gauges_.Start();
  gauges_.Wake();  // gauges from the start, then every gauge_interval
}

void Timers::Stop() {
  timers_.Stop();
  gauges_.Stop();
}

absl::StatusOr<int> Timers::RunOnce() {
  SH_RETURN_IF_ERROR(ExpireDueOffers().status());
  SH_ASSIGN_OR_RETURN(const int routed, RouteWaiting());
  if (auto s = changes_->ReleaseQueuedHolds(options_.batch); !s.ok()) {
    log::Warn("hold_release_deferred", {{"error", s.message()}});
  }
  if (auto s = ConfirmPendingPlacements(); !s.ok()) {
    log::Warn("placement_confirmation_deferred", {{"error", s.message()}});
  }
  return routed;
}

absl::StatusOr<int> Timers::RouteWaiting() {
  int routed = 0;
  // One claim at a time: each referral's lease starts when its routing does.
  for (int i = 0; i < options_.batch; ++i) {
    std::vector<std::string> claimed;
    SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) -> absl::Status {
      SH_ASSIGN_OR_RETURN(
          claimed, ReferralStore::ClaimForRouting(tx, clock_->Now(), options_.routing_lease, 1));
      return absl::OkStatus();
    }));
    if (claimed.empty()) break;
    const std::string& id = claimed.front();
    auto done = router_->Route(id);
    if (done.ok()) {
      routed += *done ? 1 : 0;
      continue;
    }
    log::Warn("routing_deferred", {{"referral_id", id}, {"error", done.status().message()}});
    if (IsOutage(done.status())) {
      // A dependency is down: try again shortly (not after the lease), and stop this pass.
      (void)pg_->Transact([&](PgTx& tx) {
        return ReferralStore::SetRouteAfter(tx, id, clock_->Now() + options_.routing_retry);
      });
      // Exhausted is not down: one agency at its cap of bed holds must not hold up the others.
      if (done.status().code() == absl::StatusCode::kResourceExhausted) continue;
      break;
    }
    if (auto escalated = router_->GiveUpRouting(id, done.status()); escalated.ok() && *escalated) {
      ++routed;
    }
  }
  return routed;
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
        SH_ASSIGN_OR_RETURN(const auto oldest, ReferralStore::OldestUnroutedSeconds(tx, now));
        metrics_->oldest_unrouted.Set(static_cast<double>(oldest));
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true);
}

}  // namespace safeharbor::referrals
