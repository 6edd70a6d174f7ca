// The referral service's durable timers, run by one PeriodicTask per process and claimed in
// PostgreSQL so that each fires once across replicas: offers past their acceptance deadline go
// back to routing, waiting referrals are routed, holds left in the outbox are released,
// placements waiting for the beds service are confirmed; gauges are refreshed.
#pragma once

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/periodic.h"
#include "common/pg.h"
#include "services/referrals/changes.h"
#include "services/referrals/metrics.h"
#include "services/referrals/network.h"
#include "services/referrals/options.h"
#include "services/referrals/router.h"

namespace safeharbor::referrals {

class Timers {
 public:
  Timers(PgPool* pg, const Clock* clock, Network* network, ReferralChanges* changes, Router* router,
         ReferralMetrics* metrics, const ReferralOptions& options, prometheus::Registry* registry);

  void Start();
  void Stop();
  void Wake() { timers_.Wake(); }
  // One pass of every timer. Returns how many referrals it routed or escalated.
  absl::StatusOr<int> RunOnce();
  absl::Status RefreshGauges();

 private:
  absl::StatusOr<int> ExpireDueOffers();
  absl::StatusOr<int> RouteWaiting();
  absl::Status ConfirmPendingPlacements();

  PgPool* pg_;
  const Clock* clock_;
  Network* network_;
  ReferralChanges* changes_;
  Router* router_;
  ReferralMetrics* metrics_;
  const ReferralOptions& options_;
  PeriodicTask timers_;
  PeriodicTask gauges_;
};

}  // namespace safeharbor::referrals
