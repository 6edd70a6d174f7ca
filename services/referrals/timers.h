// The referral service's durable timers and its routing workers, claimed in PostgreSQL so that
// each step happens once across workers and replicas. One PeriodicTask per process: offers past
// their acceptance deadline go back to routing, holds left in the outbox are released,
// placements waiting for the beds service are confirmed, statutory timers that fell due unfiled
// fire (statutory_timers.h); gauges are refreshed. Routing runs on
// `routing_workers` threads of its own (never a gRPC thread): each claims the next waiting
// referral (emergency, then urgent, then routine; the longest in the system first) with SKIP
// LOCKED and routes it, until none is left; then it waits for a wake (a referral created or sent
// back to routing in this process) or the tick (those of other replicas, retries).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/periodic.h"
#include "common/pg.h"
#include "services/referrals/advocate.h"
#include "services/referrals/changes.h"
#include "services/referrals/escalation_watch.h"
#include "services/referrals/hold_follower.h"
#include "services/referrals/metrics.h"
#include "services/referrals/network.h"
#include "services/referrals/options.h"
#include "services/referrals/router.h"
#include "services/referrals/statutory_timers.h"

namespace safeharbor::referrals {

// What an operator watches of routing (labels: urgency, outcome; both bounded).
struct RoutingMetrics {
  explicit RoutingMetrics(prometheus::Registry& registry);

  prometheus::Family<prometheus::Gauge>& queue;           // {urgency}
  prometheus::Family<prometheus::Gauge>& oldest_waiting;  // {urgency}
  prometheus::Family<prometheus::Counter>& attempts;      // {outcome}
  prometheus::Histogram& seconds;
  prometheus::Gauge& busy;
  prometheus::Gauge& workers;
};

class Timers {
 public:
  Timers(PgPool* pg, const Clock* clock, Network* network, ReferralChanges* changes, Router* router,
         ReferralMetrics* metrics, const ReferralOptions& options, prometheus::Registry* registry);
  ~Timers();

  // The timer task and the routing workers.
  void Start();
  void Stop();
  // Work for routing and for the timers (a referral back in routing, a placement to confirm).
  void Wake();
  // A referral waits for routing: one more worker claims at once. Bounded: wakes beyond the
  // number of workers coalesce, and it never blocks.
  void WakeRouting();
  // One pass of every timer, routing up to `batch` referrals on the caller's thread (tests).
  // Returns how many referrals it routed or escalated.
  absl::StatusOr<int> RunOnce();
  absl::Status RefreshGauges();
  // The law's clocks (issue 14): started by the hand-off, fired by each pass.
  StatutoryTimers& statutory() { return statutory_; }
  // Advocate response targets (issue 14): arrivals recorded by the RPC, misses marked each pass.
  AdvocateResponse& advocate() { return advocate_; }

 private:
  // What became of one claim.
  enum class Claim { kNone, kRouted, kUnchanged, kRetry, kOutage };
  // One pass of the timers; routing too when `route` (else the workers route).
  absl::StatusOr<int> Pass(bool route);
  absl::StatusOr<int> ExpireDueOffers();
  absl::StatusOr<int> RouteWaiting();
  // Claims the next waiting referral and routes it.
  absl::StatusOr<Claim> RouteNext();
  Claim Settle(const std::string& id, int64_t claim, const absl::StatusOr<bool>& done);
  absl::Status ConfirmPendingPlacements();
  void Work();  // one routing worker's loop

  PgPool* pg_;
  const Clock* clock_;
  Network* network_;
  ReferralChanges* changes_;
  Router* router_;
  ReferralMetrics* metrics_;
  const ReferralOptions& options_;
  RoutingMetrics routing_;
  StatutoryTimers statutory_;
  HoldFollower holds_;  // issue 14: accepted placements' holds extended; overdue hand-offs
  // Issue 14: advocate response targets.
  AdvocateResponse advocate_;
  BedWatch bed_watch_;  // issue 14: escalated placements, the office told when a bed appears
  PeriodicTask timers_;
  PeriodicTask gauges_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int wakes_ ABSL_GUARDED_BY(mu_) = 0;  // at most the number of workers
  std::vector<std::thread> workers_;
};

}  // namespace safeharbor::referrals
