// The hold follows the referral (issue 14), the I/O part, run by the timers (never an RPC thread,
// never inside the accepting transaction). AcceptReferral writes the hand-off deadline and, for a
// placement, a row of the hold_extensions outbox (migration 011) in its own transaction; each
// timer pass then asks the beds service to extend the hold to the deadline (idempotent on a
// request id of the hold and the deadline, so replicas and restarts repeat it harmlessly), and
// records the answer on the referral under its row lock, once. Outages are retried a bounded
// number of times; a hold gone for good is marked on the referral and alerted (metric, log).
// Accepted referrals past their hand-off deadline are counted and told to the county's
// child-welfare office once (a HANDOFF_DEADLINE webhook to the county's subscriptions).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/pg.h"
#include "services/referrals/changes.h"
#include "services/referrals/hold_follow.h"
#include "services/referrals/network.h"
#include "services/referrals/options.h"

namespace safeharbor::referrals {

// The SQL of the outbox and the hand-off deadlines (inside the caller's transaction).
class HoldFollowStore {
 public:
  struct Queued {
    std::string hold_id;
    std::string referral_id;
    absl::Time expire_time;
    int attempts = 0;
  };
  // A fresh hold to take for a placement accepted from the waitlist (migration 017).
  struct HoldRequest {
    std::string referral_id;
    std::string request_id;
    std::string provider_org;
    std::string for_org;
    std::string facility_id;
    int32_t bed_type = 0;
    absl::Time expire_time;
    int attempts = 0;
  };
  struct Overdue {
    std::string referral_id;
    std::string county_fips;
    std::string provider_org;
    absl::Time deadline;
  };
  // At acceptance: the deadline (a column, for the overdue timer) and, with a bed hold, its
  // extension to the outbox.
  static absl::Status SetHandoffDeadline(PgTx& tx, absl::string_view referral_id,
                                         absl::Time deadline);
  static absl::Status QueueExtension(PgTx& tx, absl::string_view hold_id,
                                     absl::string_view referral_id, absl::Time expire_time,
                                     absl::Time now);
  static absl::StatusOr<std::vector<Queued>> Due(PgTx& tx, absl::Time now, int limit);
  static absl::Status Retry(PgTx& tx, absl::string_view hold_id, absl::Time next_attempt);
  // Removes the row; false when another replica removed it first.
  static absl::StatusOr<bool> Done(PgTx& tx, absl::string_view hold_id);
  static absl::Status QueueHold(PgTx& tx, const HoldRequest& h, absl::Time now);
  static absl::StatusOr<std::vector<HoldRequest>> DueHolds(PgTx& tx, absl::Time now, int limit);
  static absl::Status RetryHold(PgTx& tx, absl::string_view referral_id, absl::Time next_attempt);
  // Removes the request; false when another replica removed it first.
  static absl::StatusOr<bool> HoldDone(PgTx& tx, const HoldRequest& h);
  // Accepted referrals past their deadline not yet told, marked told (SKIP LOCKED: each once).
  static absl::StatusOr<std::vector<Overdue>> ClaimOverdue(PgTx& tx, absl::Time now, int limit);
};

// At acceptance, inside the accepting transaction: the referral's hand-off deadline (`now` +
// options.handoff_deadline) and, for a held bed, the extension queued; for a placement offer
// accepted without a hold (from the waitlist: its hold was let go when the referral went back
// to routing), a fresh hold at the offer's facility queued instead. True when either was queued
// (the timers have work).
absl::StatusOr<bool> FollowWithHold(PgTx& tx, v1::Referral& r, absl::Time now,
                                    const ReferralOptions& options);

class HoldFollower {
 public:
  // None owned.
  HoldFollower(PgPool* pg, const Clock* clock, Network* network, ReferralChanges* changes,
               const ReferralOptions& options, prometheus::Registry* registry);

  // One pass over the due outbox rows, fresh holds first (stops at an outage: the next tick
  // tries again).
  absl::Status ExtendQueued();
  // Accepted referrals past their hand-off deadline: told to the county, once each.
  absl::Status NoteOverdue();
  // The overdue hand-offs and pending extensions gauges.
  absl::Status RefreshGauges();

 private:
  // Returns whether the beds service was out (stop the pass).
  absl::StatusOr<bool> ExtendOne(const HoldFollowStore::Queued& q);
  absl::Status Settle(const HoldFollowStore::Queued& q, ExtensionStep step,
                      const absl::StatusOr<absl::Time>& answer);
  absl::Status TakeQueued();
  // An attempt the beds service did not answer: counted, and `retry` records when it is next due
  // (backoff by the attempts made).
  absl::Status Deferred(int attempts, const std::function<absl::Status(PgTx&, absl::Time)>& retry);
  absl::StatusOr<bool> TakeOne(const HoldFollowStore::HoldRequest& h);
  absl::Status SettleHold(const HoldFollowStore::HoldRequest& h, ExtensionStep step,
                          const absl::StatusOr<std::string>& answer);
  absl::Status TellCounty(PgTx& tx, const HoldFollowStore::Overdue& o, absl::Time now);

  PgPool* pg_;
  const Clock* clock_;
  Network* network_;
  ReferralChanges* changes_;
  const ReferralOptions& options_;
  prometheus::Family<prometheus::Counter>& extensions_;  // {outcome}
  prometheus::Gauge& pending_;
  prometheus::Gauge& overdue_;
  prometheus::Counter& overdue_noted_;
};

}  // namespace safeharbor::referrals
