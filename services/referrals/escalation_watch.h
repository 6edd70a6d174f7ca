// Escalation keeps the loop closed (issue 14, branch escalation), the periodic bed check, run by
// the timers (never an RPC thread). An escalated referral that needed a placement is watched
// (migration 016: `bed_watch_after`, `bed_seen`): each pass claims up to `batch` rows due for a
// check with SKIP LOCKED and pushes their next check out by --escalation_bed_check_s in the
// same statement (so each row is checked at most that often, by one replica), asks the beds
// service what routing would (FindBeds with the referral, less the providers routing would not
// ask if it were routed again now, through the same hard constraints as routing's ranking), and
// when a bed appears (none at the last check) tells the office it is with once: a BED_AVAILABLE
// webhook event to the office's subscriptions and the referral's bed_available_time, written under
// the referral's row lock with the `bed_seen` flag, so two replicas never tell one appearance
// twice.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/pg.h"
#include "services/referrals/changes.h"
#include "services/referrals/network.h"
#include "services/referrals/options.h"

namespace safeharbor::referrals {

class BedWatch {
 public:
  // None owned.
  BedWatch(PgPool* pg, const Clock* clock, Network* network, ReferralChanges* changes,
           const ReferralOptions& options, prometheus::Registry* registry);

  // Inside the transaction that moves `r` from `from` to its status: watched from `now` when it
  // is escalated and needed a placement, no longer once it leaves ESCALATED.
  static absl::Status Track(PgTx& tx, const v1::Referral& r, v1::ReferralStatus from,
                            absl::Time now);

  // One pass (stops at an outage: the rows claimed are checked again after the interval).
  absl::Status CheckDue();

 private:
  struct Due {
    std::string referral_id;
    bool seen = false;
  };
  absl::StatusOr<std::vector<Due>> Claim();
  // Whether a bed routing could offer exists now; an outage is returned.
  absl::StatusOr<bool> BedFor(const v1::Referral& r);
  absl::Status Tell(const std::string& id);
  absl::Status Gone(const std::string& id);

  PgPool* pg_;
  const Clock* clock_;
  Network* network_;
  ReferralChanges* changes_;
  const ReferralOptions& options_;
  prometheus::Counter& notices_;
};

}  // namespace safeharbor::referrals
