// The referral's state-change path: the one way a referral changes after intake. Under the
// referral's row lock the caller's part is checked, the mutation applied and checked against
// the lifecycle, then stored with its transition, audit row and the watch events of every
// provider concerned; bed holds to release go to an outbox in the same transaction and are
// released after commit. RPCs call it with their context; routing and timers as the system.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/pg.h"
#include "common/rpc_kit.h"
#include "common/sealer.h"
#include "safeharbor/referrals/v1/referrals.pb.h"
#include "services/referrals/consent.h"
#include "services/referrals/lifecycle.h"
#include "services/referrals/metrics.h"
#include "services/referrals/network.h"

namespace safeharbor::referrals {

// What a mutation decides, applied under the referral's row lock.
struct Change {
  v1::ReferralStatus to = v1::REFERRAL_STATUS_UNSPECIFIED;  // unspecified: status unchanged
  bool as_system = false;      // the status change is routing's consequence, not the caller's
  bool noop = false;           // nothing to store (a retry of a change already made)
  bool open_identity = false;  // return the identifying details (audited)
  bool wake = false;           // the router has work (a placement to confirm)
  std::string reason;
  std::vector<std::string> holds_to_release;  // after commit
  std::string purge_identity;  // a kPurge… reason: the identifying details go now (retention.h)
};

// A change refused to the law-enforcement referrer, told only the stage it sees.
absl::Status RefusedToReferrer(v1::ReferrerView::Stage stage);

using Mutation = std::function<absl::Status(PgTx& tx, v1::Referral& referral, Actor actor,
                                            absl::Time now, Change& change)>;

class ReferralChanges {
 public:
  // None owned. `committed` runs after every stored change (wakes watchers); `wake_router` when
  // the router has work.
  ReferralChanges(PgPool* pg, const Clock* clock, const Sealer* sealer, Network* network,
                  ReferralMetrics* metrics, std::function<void()> committed,
                  std::function<void()> wake_router);

  // `ctx`: an RPC's context (its caller must be a party, its transaction is used); null: the
  // system (routing, timers). Returns the referral as stored (with the identity when opened).
  // `target`, when the action's status is known beforehand: the transition is checked before
  // the mutation runs, so a refusal takes the same path whatever state the referral is in.
  absl::StatusOr<v1::Referral> Apply(CallContext* ctx, absl::string_view id,
                                     absl::string_view action, const Mutation& mutate,
                                     v1::ReferralStatus target = v1::REFERRAL_STATUS_UNSPECIFIED);

  // Issue 14, one referral, several needs: a change of the whole referral. In one transaction,
  // `mutate` as Apply would on every row of the referral `id` belongs to (the lead and its
  // parts, locked in that order): row `id` as the caller (refused as Apply refuses), every other
  // row as the same party (the caller's part in row `id`), those whose status does not allow
  // `target` to that party being left as they are. Named on a part, only that part changes
  // unless `from_part`. Returns how many rows changed.
  absl::StatusOr<int> ApplyToReferral(CallContext* ctx, absl::string_view id,
                                      absl::string_view action, const Mutation& mutate,
                                      v1::ReferralStatus target, bool from_part);

  // A child-welfare office's counties (from the directory; empty for other roles). Never called
  // inside a transaction.
  absl::StatusOr<std::vector<std::string>> RegionOf(const Caller& c);
  // Releases one hold at the beds service and removes it from the outbox.
  absl::Status ReleaseHold(const std::string& hold_id);
  // Holds left in the outbox (the beds service did not answer after a commit).
  absl::Status ReleaseQueuedHolds(int batch);
  const Caller& system() const { return system_; }
  // Identifying details of a referral that closes are kept this long (then purged).
  void SetRetentionAfterClose(absl::Duration d) { retention_after_close_ = d; }

 private:
  struct Applied {
    v1::Referral out;
    Change change;
    v1::ReferralStatus from = v1::REFERRAL_STATUS_UNSPECIFIED;
  };
  absl::Status ApplyLocked(PgTx& tx, CallContext* ctx, absl::string_view id,
                           absl::string_view action, const std::vector<std::string>& region,
                           const Mutation& mutate, v1::ReferralStatus target, Applied& a,
                           std::optional<Actor> as = std::nullopt);
  // The rest of a change that is not a no-op: stored, with its outboxes and audit row.
  absl::Status Finish(PgTx& tx, v1::Referral r, const v1::Referral& before,
                      const Caller& actor_caller, absl::string_view action, absl::Time now,
                      Applied& a);
  // Commits the body with its transition (if the status moved) and the watch events of every
  // provider concerned.
  absl::Status Store(PgTx& tx, v1::Referral& r, const v1::Referral& before, const Caller& actor,
                     const std::string& reason, absl::Time now);
  void AfterCommit(const Applied& a, const Caller& actor);

  PgPool* pg_;
  const Clock* clock_;
  const Sealer* sealer_;
  absl::Duration retention_after_close_ = ConsentPolicy().retention_after_close;
  Network* network_;
  ReferralMetrics* metrics_;
  const std::function<void()> committed_;
  const std::function<void()> wake_router_;
  const Caller system_{"referral-service", Role::kService, ""};
};

}  // namespace safeharbor::referrals
