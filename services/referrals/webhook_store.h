// The webhooks' SQL (migration 006): subscriptions, the change feed the triggers fill, and the
// outbox of deliveries with its claims. Functions run inside the caller's transaction.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/pg.h"
#include "safeharbor/referrals/v1/referrals.pb.h"
#include "services/referrals/webhooks.h"

namespace safeharbor::referrals {

// A delivery claimed by this worker (its lease taken), with what sending it needs.
struct ClaimedDelivery {
  int64_t id = 0;
  std::string subscription_id;
  std::string org_id;
  std::string url;
  std::string secret_sealed;
  WebhookEvent event;
  int32_t attempts = 0;  // counting this one
  absl::Time retry_until;
};

struct FeedRow {
  int64_t id = 0;
  std::string kind;  // "provider_event" | "escalated"
  int64_t event_seq = 0;
  std::string referral_id;
  std::string org_id;
  std::string county_fips;
  int64_t ref = 0;
  // When the change happened: the escalation's transition time (escalated); else the row's.
  absl::Time occurred;
};

struct SubscriptionTarget {
  std::string id;
  std::string org_id;
  std::vector<int> events;
  bool Wants(v1::WebhookEventType t) const;
};

// How a claim chooses (issue 15 review): only subscriptions the directory vouched for recently
// (standing_checked at or after `standing_since`), not in `skip` (served enough this round),
// admitted by `admit` (the endpoint's circuit breaker; empty: all), the organization served
// longest ago first, then its subscription served longest ago (round-robin).
struct ClaimPolicy {
  absl::Time standing_since = absl::UnixEpoch();  // default: checked at least once
  std::vector<std::string> skip;
  std::function<bool(const std::string& subscription_id)> admit;
};

// What a claim set aside on its way: reminders whose condition no longer held, deliveries to an
// organization that may no longer see the referral (withheld), deliveries past their retry
// window (dead letters now).
struct ClaimTally {
  int obsolete = 0;
  int withheld = 0;
  int expired = 0;
  int Total() const { return obsolete + withheld + expired; }
};

// A subscriber whose standing in the directory is to be refreshed.
struct StandingTarget {
  std::string org_id;
  std::string role;  // "provider" | "child_welfare"
};

struct ReplayLimits {
  int per_call = 100;
  int per_window = 500;
  absl::Duration window = absl::Hours(1);
};

class WebhookStore {
 public:
  // FAILED_PRECONDITION when the organization has `max_per_organization` subscriptions already
  // (counted in one statement: concurrent creates cannot exceed it).
  static absl::Status Create(PgTx& tx, const v1::WebhookSubscription& s, absl::string_view role,
                             const std::vector<std::string>& counties,
                             absl::string_view secret_sealed, int max_per_organization = 10);
  static absl::StatusOr<std::vector<v1::WebhookSubscription>> List(PgTx& tx, absl::string_view org);
  // NOT_FOUND unless the organization has this subscription; its pending deliveries are dropped.
  static absl::Status Delete(PgTx& tx, absl::string_view org, absl::string_view id);
  static absl::StatusOr<v1::WebhookSubscription> Rotate(PgTx& tx, absl::string_view org,
                                                        absl::string_view id,
                                                        absl::string_view secret_sealed,
                                                        absl::Time now);

  // Feed rows to derive deliveries from, locked (SKIP LOCKED) until the transaction ends.
  static absl::StatusOr<std::vector<FeedRow>> ClaimFeed(PgTx& tx, int limit);
  static absl::Status DeleteFeed(PgTx& tx, int64_t id);
  // The provider's view of a watch event (nullopt when pruned already).
  static absl::StatusOr<std::optional<v1::Referral>> EventView(PgTx& tx, int64_t seq);
  static absl::StatusOr<std::vector<SubscriptionTarget>> ForOrganization(PgTx& tx,
                                                                         absl::string_view org);
  static absl::StatusOr<std::vector<SubscriptionTarget>> ForCounty(PgTx& tx,
                                                                   absl::string_view county);
  // Once per (subscription, event id): a second insert of the same event is ignored.
  static absl::Status Enqueue(PgTx& tx, const SubscriptionTarget& s, const WebhookEvent& e,
                              absl::Time now, absl::Duration retry_window);

  // One due delivery of a subscription below its concurrency limit, leased until now + lease;
  // nullopt when none. A reminder whose condition no longer holds is marked obsolete instead
  // (*obsolete counts them).
  static absl::StatusOr<std::optional<ClaimedDelivery>> Claim(PgTx& tx, absl::Time now,
                                                              absl::Duration lease,
                                                              int endpoint_concurrency,
                                                              int* obsolete);
  // The same, chosen by `policy`; also sets aside deliveries to organizations that may no longer
  // see the referral (a child-welfare office whose region no longer holds it) and dead-letters
  // those past their retry window, all counted in *tally (at most 20 per claim).
  static absl::StatusOr<std::optional<ClaimedDelivery>> Claim(PgTx& tx, absl::Time now,
                                                              absl::Duration lease,
                                                              int endpoint_concurrency,
                                                              const ClaimPolicy& policy,
                                                              ClaimTally* tally);
  // The answer to attempt `attempt` (a claim's ClaimedDelivery::attempts, its fencing token):
  // a worker whose lease lapsed and whose delivery was claimed again changes nothing.
  static absl::Status Delivered(PgTx& tx, int64_t id, int32_t attempt, absl::Time now);
  // Retried at `next`, or a dead letter when `next` is past its retry window. Returns true
  // when it became a dead letter.
  static absl::StatusOr<bool> Failed(PgTx& tx, int64_t id, int32_t attempt, absl::string_view error,
                                     absl::Time next);

  static absl::StatusOr<std::vector<v1::WebhookDelivery>> DeadLetters(PgTx& tx,
                                                                      absl::string_view org,
                                                                      int limit);
  // At most limits.per_call dead letters (the oldest, or of these event ids: INVALID_ARGUMENT
  // when more are named), and RESOURCE_EXHAUSTED once the organization has replayed
  // limits.per_window within limits.window.
  static absl::StatusOr<int32_t> Replay(PgTx& tx, absl::string_view org,
                                        const std::vector<std::string>& event_ids, absl::Time now,
                                        absl::Duration retry_window,
                                        const ReplayLimits& limits = {});

  // Subscribers whose standing was last checked before `stale_before` (or never), oldest first.
  static absl::StatusOr<std::vector<StandingTarget>> StandingDue(PgTx& tx, absl::Time stale_before,
                                                                 int limit);
  // The directory's answer: `active` (listed, of the subscribed kind) and, for child welfare,
  // the counties it serves now. An inactive subscriber's pending deliveries are withheld;
  // returns how many.
  static absl::StatusOr<int64_t> RecordStanding(PgTx& tx, const StandingTarget& t, bool active,
                                                const std::vector<std::string>& counties,
                                                absl::Time now);
  // Retention: delivered and obsolete deliveries finished before `delivered_before`, dead
  // letters before `dead_before`, and deleted subscriptions with no delivery left; at most
  // `limit` rows of each. Returns how many deliveries were deleted.
  static absl::StatusOr<int64_t> Prune(PgTx& tx, absl::Time delivered_before,
                                       absl::Time dead_before, int limit);

  // Age of the oldest delivery not yet made (0 when none), and how many organizations have had
  // a delivery failing for longer than `failing_after` (or a dead letter within it).
  static absl::StatusOr<double> OldestUndeliveredSeconds(PgTx& tx, absl::Time now);
  static absl::StatusOr<int64_t> FailingOrganizations(PgTx& tx, absl::Time now,
                                                      absl::Duration failing_after);
};

}  // namespace safeharbor::referrals
