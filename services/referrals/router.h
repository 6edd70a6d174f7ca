// Routing: a referral waiting in REQUESTED is matched against the network (directory services
// or beds with a free bed), ranked, offered to up to three providers with a bed held for a
// placement, or escalated to the county's on-call child-welfare office. Runs on the routing
// workers (timers.h; or from a test), several at once, never on an RPC thread; each referral is
// claimed in PostgreSQL first and every step is recorded there, so that it happens once across
// workers and replicas and survives a crash. Outgoing calls carry the network's background
// deadline (no incoming call waits on them).
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/pg.h"
#include "services/referrals/changes.h"
#include "services/referrals/metrics.h"
#include "services/referrals/network.h"
#include "services/referrals/options.h"

namespace safeharbor::referrals {

// A dependency that did not answer (down, too slow, or too busy): routing waits and retries.
bool IsOutage(const absl::Status& s);

class Router {
 public:
  Router(PgPool* pg, const Clock* clock, Network* network, ReferralChanges* changes,
         ReferralMetrics* metrics, const ReferralOptions& options);

  // Routes a referral claimed for routing (as the claim read it, with the HoldBed recorded as
  // about to be made, if any, and the claim's fencing token). True when it was offered or
  // escalated; an outage is returned as UNAVAILABLE; false, or ABORTED (IsRoutingClaimLost),
  // when another worker claimed it meanwhile: nothing of this attempt is kept but the release of
  // its own hold.
  absl::StatusOr<bool> Route(const v1::Referral& r, const std::optional<std::string>& pending_hold,
                             int64_t claim);
  // A routing failure that is not an outage: retried, and escalated after a few.
  absl::StatusOr<bool> GiveUpRouting(const std::string& id, const absl::Status& error,
                                     int64_t claim);

 private:
  struct Plan;  // the ranked candidates and the offers chosen from them
  // The referral as stored, read outside any lock (routing decides, then commits under one).
  absl::StatusOr<v1::Referral> Load(const std::string& id);
  // The options not asked before, with each provider's open offers (the provider_load counter).
  absl::StatusOr<std::vector<Option>> FreshOptions(const v1::Referral& r, bool placement);
  // Offers (and the bed held for them) chosen from the ranked candidates.
  absl::Status Choose(const v1::Referral& r, bool placement, const std::vector<Option>& fresh,
                      Plan& plan);
  // Records the offers under the referral's lock; false when another replica got there first.
  absl::StatusOr<bool> Offer(const v1::Referral& r, const Plan& plan);
  // No candidate left: to the county's on-call child-welfare office.
  absl::StatusOr<bool> Escalate(const v1::Referral& r, bool placement_needed,
                                const std::string& why, int64_t claim);
  // A HoldBed recorded as about to be made but never offered (a crash): released.
  absl::Status RecoverPendingHold(const std::string& id, const std::string& for_org,
                                  const std::string& pending, int64_t claim);

  PgPool* pg_;
  const Clock* clock_;
  Network* network_;
  ReferralChanges* changes_;
  ReferralMetrics* metrics_;
  const ReferralOptions& options_;
};

}  // namespace safeharbor::referrals
