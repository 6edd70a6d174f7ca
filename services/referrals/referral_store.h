// The referral service's SQL. Functions run inside the caller's transaction. Identifying
// details are sealed before they reach the database and opened only on request.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/pg.h"
#include "common/sealer.h"
#include "safeharbor/referrals/v1/referrals.pb.h"
#include "services/referrals/views.h"

namespace safeharbor::referrals {

// ABORTED: another worker claimed the referral for routing since this one did (its lease lapsed
// mid-routing). Not a failure of routing: the other worker routes it.
absl::Status RoutingClaimLost();
bool IsRoutingClaimLost(const absl::Status& s);

class ReferralStore {
 public:
  // Stores the referral; its youth.identifying (if any) is sealed and removed from the body.
  // Sent without waiting (with the commit, at the latest): an insert that fails fails the
  // transaction.
  static absl::Status Insert(PgTx& tx, const v1::Referral& referral, const Caller& referrer,
                             const Sealer& sealer, absl::Time now);
  // The stored referral without identifying details; FOR UPDATE when for_update.
  static absl::StatusOr<v1::Referral> Get(PgTx& tx, absl::string_view id, bool for_update);
  // Issue 14, one referral, several needs: the parts of these leads (bodies, no history), by
  // lead then id.
  static absl::StatusOr<std::vector<v1::Referral>> Parts(PgTx& tx,
                                                         const std::vector<std::string>& lead_ids);
  // Every row of the referral that row `id` (the lead or a part) belongs to: the lead first,
  // then its parts by id (the order the rows of a referral are locked in); empty when `id` is
  // not stored.
  static absl::StatusOr<std::vector<std::string>> RowsOf(PgTx& tx, absl::string_view id);
  // Opens the sealed identifying details (empty when none were given).
  static absl::StatusOr<v1::IdentifyingDetails> OpenIdentity(PgTx& tx, absl::string_view id,
                                                             const Sealer& sealer);
  static absl::Status AppendTransition(PgTx& tx, absl::string_view referral_id,
                                       const v1::Transition& transition);
  // AppendTransition and Audit sent without waiting (CreateReferral's, with its commit).
  static PgPending SendTransition(PgTx& tx, absl::string_view referral_id,
                                  const v1::Transition& transition);
  static PgPending SendAudit(PgTx& tx, const Caller& caller, absl::string_view action,
                             absl::string_view referral_id, absl::string_view detail,
                             absl::Time now);
  // Writes the new state (body without identity) and appends the transition, if any.
  static absl::Status Update(PgTx& tx, v1::Referral* referral, const v1::Transition* transition,
                             absl::Time now);
  // Appends one audit row: who read or changed the youth data of a referral, and what.
  static absl::Status Audit(PgTx& tx, const Caller& caller, absl::string_view action,
                            absl::string_view referral_id, absl::string_view detail,
                            absl::Time now);
  // Referrals offered past their deadline, locked so that each is handled by one replica.
  static absl::StatusOr<std::vector<std::string>> DueOffers(PgTx& tx, absl::Time now, int limit);

  // Routing claims: REQUESTED referrals whose route_after has come, emergency before urgent
  // before routine and the longest in the system first, pushed `lease` ahead so that no other
  // worker or replica routes them meanwhile (and another does if this one dies). SKIP LOCKED:
  // concurrent claims take the next referrals instead of waiting. The claim's commit does not
  // wait for the WAL flush (a lease lost in a crash only lets another worker route it again).
  // Each comes with what routing reads of it (one round trip for the claim and the reads).
  struct Claimed {
    v1::Referral referral;  // as stored, without history or identity; etag set
    std::optional<std::string> pending_hold;
    int64_t claim = 0;        // the fencing token: routing writes only while it is still this
    bool unreadable = false;  // the stored body does not parse (only the id is set)
  };
  static absl::StatusOr<std::vector<Claimed>> ClaimForRouting(PgTx& tx, absl::Time now,
                                                              absl::Duration lease, int limit);
  // When the referral may next be routed; nullopt when it is not waiting for routing.
  static absl::Status SetRouteAfter(PgTx& tx, absl::string_view id, std::optional<absl::Time> when);
  static absl::Status SetPlacementPending(PgTx& tx, absl::string_view id, bool pending);
  // The HoldBed about to be made (or none); the one recorded before a crash comes with the
  // routing claim. Only under routing claim `claim`: ABORTED (RoutingClaimLost) once another
  // worker claimed the referral.
  static absl::Status SetPendingHold(PgTx& tx, absl::string_view id,
                                     std::optional<std::string> pending, int64_t claim);
  // Whether routing claim `claim` is still the referral's latest (read under its row lock).
  static absl::StatusOr<bool> StillClaimed(PgTx& tx, absl::string_view id, int64_t claim);
  // The referral leaves REQUESTED (accepted from a waitlist, cancelled, offered, escalated):
  // its routing claim ends, so a worker still routing it is fenced (RoutingClaimLost) from its
  // next write on. Sent without waiting (with the commit, at the latest).
  static void SendEndRoutingClaim(PgTx& tx, absl::string_view id);
  // SetRouteAfter under routing claim `claim`; a claim lost meanwhile changes nothing.
  static absl::Status RetryRoutingAfter(PgTx& tx, absl::string_view id, absl::Time when,
                                        int64_t claim);
  // Counts a routing attempt that failed for another reason than an outage; returns the count.
  static absl::StatusOr<int32_t> CountRoutingFailure(PgTx& tx, absl::string_view id);
  // The outbox of holds to release at the beds service.
  static absl::Status QueueHoldRelease(PgTx& tx, absl::string_view hold_id,
                                       absl::string_view referral_id, absl::Time now);
  static absl::Status HoldReleased(PgTx& tx, absl::string_view hold_id);
  static absl::StatusOr<std::vector<std::string>> HoldsToRelease(PgTx& tx, int limit);
  // Handed-off referrals whose placement the beds service has not confirmed yet, with their
  // bed hold: (referral id, hold id).
  static absl::StatusOr<std::vector<std::pair<std::string, std::string>>> PendingPlacements(
      PgTx& tx, int limit);

  // Open offers (pending or accepted, of a referral not closed) per provider: its current load,
  // a counter kept with the offers by triggers (migration 005); absent providers have none.
  static absl::StatusOr<std::map<std::string, int32_t>> ProviderLoad(
      PgTx& tx, const std::vector<std::string>& provider_orgs);

  // WatchReferrals events: one per provider concerned, payload = that provider's view. No lock
  // orders the writers; EventsAfter and LastEventSeq read only up to the safe horizon (every
  // event at or below it committed or rolled back for good). SendEvent goes out with the next
  // wait; AppendEvent waits for the sequence number.
  static PgPending SendEvent(PgTx& tx, absl::string_view provider_org, const v1::Referral& view,
                             absl::Time now);
  static absl::StatusOr<int64_t> AppendEvent(PgTx& tx, absl::string_view provider_org,
                                             const v1::Referral& view, absl::Time now);
  struct Event {
    int64_t seq;
    std::string provider_org;
    v1::Referral view;
  };
  static absl::StatusOr<std::vector<Event>> EventsAfter(PgTx& tx, int64_t after_seq, int limit);
  static absl::StatusOr<int64_t> LastEventSeq(PgTx& tx);

  // Newest first, keyset (create_time, id) below `before` (none: from the newest).
  struct ListQuery {
    enum class Scope { kReferrer, kProvider, kRegion };
    Scope scope = Scope::kReferrer;
    std::string org_id;
    std::vector<std::string> counties;  // kRegion: the caller's own referrals or these counties
    v1::ReferralStatus status = v1::REFERRAL_STATUS_UNSPECIFIED;
    std::optional<std::pair<absl::Time, std::string>> before;
    int limit = 50;
  };
  static absl::StatusOr<std::vector<v1::Referral>> List(PgTx& tx, const ListQuery& q);

  // The counts of referrals created in [from, to) (StatsView suppresses the small ones).
  static absl::StatusOr<StatsCounts> Stats(PgTx& tx, absl::Time from, absl::Time to);
  // Outcomes by county and provider, times to acceptance and hand-off, placement unavailable
  // per month, for referrals created in [from, to).
  static absl::Status OutcomeStats(PgTx& tx, absl::Time from, absl::Time to, StatsCounts* out);
  // Issue 14: declines and outcomes by reason code, and waitlist answers, for referrals
  // created in [from, to).
  static absl::Status ReasonStats(PgTx& tx, absl::Time from, absl::Time to, StatsCounts* out);
  // Referrals with a waitlisted offer whose time has come (lapsed under the referral's lock).
  static absl::StatusOr<std::vector<std::string>> DueWaitlists(PgTx& tx, absl::Time now, int limit);
  // Referrals by status now, for the gauges; and how many offers are past their deadline.
  static absl::StatusOr<std::map<int, int64_t>> CountByStatus(PgTx& tx);
  static absl::StatusOr<int64_t> OverdueOffers(PgTx& tx, absl::Time now, absl::Duration grace);
  // The referrals waiting for routing (REQUESTED) by urgency: how many, and the seconds the
  // oldest has waited since it (last) entered routing. Urgencies with none are absent.
  struct Waiting {
    int64_t count = 0;
    int64_t oldest_seconds = 0;
  };
  static absl::StatusOr<std::map<int, Waiting>> RoutingQueue(PgTx& tx, absl::Time now);
};

}  // namespace safeharbor::referrals
