#include "services/referrals/referral_store.h"

#include <algorithm>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/stored_resource.h"
#include "services/referrals/advocate.h"

namespace safeharbor::referrals {

namespace {
constexpr absl::string_view kClaimLostPayload = "safeharbor.referrals/routing-claim-lost";
}  // namespace

absl::Status RoutingClaimLost() {
  absl::Status s = absl::AbortedError("another worker claimed this referral for routing");
  s.SetPayload(kClaimLostPayload, absl::Cord("1"));
  return s;
}

bool IsRoutingClaimLost(const absl::Status& s) {
  return s.code() == absl::StatusCode::kAborted && s.GetPayload(kClaimLostPayload).has_value();
}

absl::Status ReferralStore::Insert(PgTx& tx, const v1::Referral& referral, const Caller& referrer,
                                   const Sealer& sealer, absl::Time now) {
  v1::Referral body;
  body.ParseFromString(StoredBody(referral));
  PgParam sealed(nullptr);
  if (body.youth().has_identifying()) {
    auto s = sealer.Seal(body.youth().identifying().SerializeAsString(), referral.id());
    if (!s.ok()) return s.status();
    sealed = PgParam::Bytea(*s);
    body.mutable_youth()->clear_identifying();
  }
  (void)tx.Send(
      "INSERT INTO referrals (id, referrer_org, referrer_role, county_fips, status, urgency, "
      "needs_placement, acceptance_deadline, body, identity_sealed, create_time, update_time, "
      "route_after, parent_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, "
      "CASE WHEN $5::smallint = 1 THEN $11::timestamptz END, NULLIF($12, ''))",
      {referral.id(), referrer.org_id, std::string(RoleName(referrer.role)), referral.county_fips(),
       int32_t{referral.status()}, int32_t{referral.urgency()},
       referral.needs().placement_tonight(),
       referral.has_acceptance_deadline() ? PgTime(FromProtoTime(referral.acceptance_deadline()))
                                          : PgParam(nullptr),
       PgParam::Bytea(body.SerializeAsString()), sealed, PgTime(now), referral.parent_id()});
  SendAdvocateTarget(tx, referral);  // issue 14: the advocate response target's column
  return absl::OkStatus();
}

absl::StatusOr<v1::Referral> ReferralStore::Get(PgTx& tx, absl::string_view id, bool for_update) {
  auto r = tx.Exec(absl::StrCat("SELECT body, revision, create_time, update_time FROM referrals "
                                "WHERE id = $1",
                                for_update ? " FOR UPDATE" : ""),
                   {id});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return absl::NotFoundError(absl::StrCat("referral '", id, "' not found"));
  v1::Referral out;
  if (!out.ParseFromString(r->Bytea(0, "body"))) {
    return absl::InternalError("stored referral is unreadable");
  }
  *out.mutable_create_time() = ToProtoTime(r->Time(0, "create_time"));
  *out.mutable_update_time() = ToProtoTime(r->Time(0, "update_time"));
  out.set_etag(absl::StrCat(r->Int64(0, "revision")));
  auto history = tx.Exec(
      "SELECT from_status, to_status, actor_org, actor_role, at, reason FROM transitions "
      "WHERE referral_id = $1 ORDER BY id LIMIT 1000",
      {id});
  if (!history.ok()) return history.status();
  out.clear_history();
  for (int i = 0; i < history->rows(); ++i) {
    auto* t = out.add_history();
    t->set_from_status(static_cast<v1::ReferralStatus>(history->Int32(i, "from_status")));
    t->set_to_status(static_cast<v1::ReferralStatus>(history->Int32(i, "to_status")));
    t->set_actor_organization_id(history->String(i, "actor_org"));
    t->set_actor_role(history->String(i, "actor_role"));
    *t->mutable_time() = ToProtoTime(history->Time(i, "at"));
    t->set_reason(history->String(i, "reason"));
  }
  return out;
}

absl::StatusOr<std::vector<v1::Referral>> ReferralStore::Parts(
    PgTx& tx, const std::vector<std::string>& lead_ids) {
  std::vector<v1::Referral> out;
  if (lead_ids.empty()) return out;
  SH_ASSIGN_OR_RETURN(PgResult r,
                      tx.Exec("SELECT body, revision, create_time, update_time FROM referrals "
                              "WHERE parent_id = ANY($1::text[]) ORDER BY parent_id, id",
                              {PgTextArray(lead_ids)}));
  out.resize(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    v1::Referral& part = out[static_cast<size_t>(i)];
    if (!part.ParseFromString(r.Bytea(i, "body"))) {
      return absl::InternalError("stored referral is unreadable");
    }
    *part.mutable_create_time() = ToProtoTime(r.Time(i, "create_time"));
    *part.mutable_update_time() = ToProtoTime(r.Time(i, "update_time"));
    part.set_etag(absl::StrCat(r.Int64(i, "revision")));
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> ReferralStore::RowsOf(PgTx& tx, absl::string_view id) {
  SH_ASSIGN_OR_RETURN(
      PgResult r,
      tx.Exec("SELECT f.id FROM referrals n JOIN referrals f ON f.id = COALESCE(n.parent_id, n.id) "
              "OR f.parent_id = COALESCE(n.parent_id, n.id) WHERE n.id = $1 "
              "ORDER BY f.parent_id IS NOT NULL, f.id",
              {id}));
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.String(i, "id"));
  return out;
}

absl::StatusOr<v1::IdentifyingDetails> ReferralStore::OpenIdentity(PgTx& tx, absl::string_view id,
                                                                   const Sealer& sealer) {
  auto r = tx.Exec("SELECT identity_sealed FROM referrals WHERE id = $1", {id});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return absl::NotFoundError(absl::StrCat("referral '", id, "' not found"));
  v1::IdentifyingDetails out;
  if (r->IsNull(0, "identity_sealed")) return out;
  auto opened = sealer.Open(r->Bytea(0, "identity_sealed"), id);
  if (!opened.ok()) return opened.status();
  if (!out.ParseFromString(*opened)) return absl::DataLossError("identifying details unreadable");
  return out;
}

absl::Status ReferralStore::Update(PgTx& tx, v1::Referral* referral,
                                   const v1::Transition* transition, absl::Time now) {
  v1::Referral body;
  body.ParseFromString(StoredBody(*referral));
  body.clear_history();  // Kept in the transitions table.
  body.mutable_youth()->clear_identifying();
  const bool accepted = referral->has_accepted_time();
  auto r = tx.Exec(
      "UPDATE referrals SET status = $2, accepted_provider = NULLIF($3, ''), "
      "acceptance_deadline = $4, body = $5, revision = revision + 1, update_time = $6, "
      "accepted_time = $7, reroutes = $8, placement_unavailable = $9, outcome_code = $10, "
      "routing_failures = CASE WHEN $2::smallint = 1 THEN routing_failures ELSE 0 END "
      "WHERE id = $1 RETURNING revision",
      {referral->id(), int32_t{referral->status()},
       accepted ? referral->handoff().provider_organization_id() : std::string(),
       referral->has_acceptance_deadline() ? PgTime(FromProtoTime(referral->acceptance_deadline()))
                                           : PgParam(nullptr),
       PgParam::Bytea(body.SerializeAsString()), PgTime(now),
       accepted ? PgTime(FromProtoTime(referral->accepted_time())) : PgParam(nullptr),
       int32_t{referral->reroutes()}, referral->placement_unavailable(),
       int32_t{referral->outcome_code()}});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return absl::NotFoundError("referral vanished");
  // At most a few dozen per referral, written in provider order: the provider_load counters
  // their triggers update are locked in that order by every transaction (no deadlock).
  std::vector<const v1::Offer*> offers;
  for (const v1::Offer& o : referral->offers()) offers.push_back(&o);
  std::stable_sort(offers.begin(), offers.end(), [](const v1::Offer* a, const v1::Offer* b) {
    return a->provider_organization_id() < b->provider_organization_id();
  });
  for (const v1::Offer* offer : offers) {
    const v1::Offer& o = *offer;
    auto w = tx.Exec(
        "INSERT INTO offers (referral_id, provider_org, service_id, state, offered_time, "
        "respond_by, decline_reason, decline_code, waitlisted_until) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
        "ON CONFLICT (referral_id, provider_org, service_id) DO UPDATE SET state = $4, "
        "respond_by = $6, decline_reason = $7, decline_code = $8, waitlisted_until = $9",
        {referral->id(), o.provider_organization_id(),
         o.service_id().empty() ? o.facility_id() : o.service_id(), int32_t{o.state()},
         PgTime(FromProtoTime(o.offered_time())), PgTime(FromProtoTime(o.respond_by())),
         o.decline_reason(), int32_t{o.decline_code()},
         o.has_waitlisted_until() ? PgTime(FromProtoTime(o.waitlisted_until()))
                                  : PgParam(nullptr)});
    if (!w.ok()) return w.status();
  }
  referral->set_etag(absl::StrCat(r->Int64(0, "revision")));
  *referral->mutable_update_time() = ToProtoTime(now);
  if (transition == nullptr) return absl::OkStatus();
  *referral->add_history() = *transition;
  return AppendTransition(tx, referral->id(), *transition);
}

absl::Status ReferralStore::AppendTransition(PgTx& tx, absl::string_view referral_id,
                                             const v1::Transition& t) {
  return SendTransition(tx, referral_id, t).Get().status();
}

PgPending ReferralStore::SendTransition(PgTx& tx, absl::string_view referral_id,
                                        const v1::Transition& t) {
  return tx.Send(
      "INSERT INTO transitions (referral_id, from_status, to_status, actor_org, actor_role, "
      "at, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)",
      {referral_id, int32_t{t.from_status()}, int32_t{t.to_status()}, t.actor_organization_id(),
       t.actor_role(), PgTime(FromProtoTime(t.time())), t.reason()});
}

absl::Status ReferralStore::Audit(PgTx& tx, const Caller& caller, absl::string_view action,
                                  absl::string_view referral_id, absl::string_view detail,
                                  absl::Time now) {
  return SendAudit(tx, caller, action, referral_id, detail, now).Get().status();
}

PgPending ReferralStore::SendAudit(PgTx& tx, const Caller& caller, absl::string_view action,
                                   absl::string_view referral_id, absl::string_view detail,
                                   absl::Time now) {
  return tx.Send(
      "INSERT INTO audit_log (at, actor_org, actor_role, action, referral_id, detail) "
      "VALUES ($1, $2, $3, $4, $5, $6)",
      {PgTime(now), caller.org_id, std::string(RoleName(caller.role)), action, referral_id,
       detail});
}

absl::StatusOr<std::vector<std::string>> ReferralStore::DueOffers(PgTx& tx, absl::Time now,
                                                                  int limit) {
  auto r = tx.Exec(
      "SELECT id FROM referrals WHERE status = 2 AND acceptance_deadline <= $1 "
      "ORDER BY acceptance_deadline LIMIT $2 FOR UPDATE SKIP LOCKED",
      {PgTime(now), int32_t{limit}});
  if (!r.ok()) return r.status();
  std::vector<std::string> out;
  for (int i = 0; i < r->rows(); ++i) out.push_back(r->String(i, "id"));
  return out;
}

absl::StatusOr<std::vector<ReferralStore::Claimed>> ReferralStore::ClaimForRouting(
    PgTx& tx, absl::Time now, absl::Duration lease, int limit) {
  // A lease need not wait for the disk: lost in a crash, it lets another worker route the
  // referral, whose offer still commits once (under the referral's lock, on its revision).
  (void)tx.Send("SET LOCAL synchronous_commit = off");  // with the claim: no round trip of its own
  auto r = tx.Exec(
      "UPDATE referrals SET route_after = $2, routing_claim = routing_claim + 1 WHERE id IN ("
      "  SELECT id FROM referrals WHERE status = 1 AND route_after <= $1 "
      "  ORDER BY urgency DESC, create_time LIMIT $3 FOR UPDATE SKIP LOCKED) "
      "RETURNING id, body, revision, create_time, update_time, pending_hold, routing_claim",
      {PgTime(now), PgTime(now + lease), int32_t{limit}});
  if (!r.ok()) return r.status();
  std::vector<Claimed> out(static_cast<size_t>(r->rows()));
  for (int i = 0; i < r->rows(); ++i) {
    Claimed& c = out[static_cast<size_t>(i)];
    if (!c.referral.ParseFromString(r->Bytea(i, "body"))) {
      // Claimed (its lease commits) but not routed: one broken row must not stop routing.
      c.referral.Clear();
      c.referral.set_id(r->String(i, "id"));
      c.unreadable = true;
      continue;
    }
    *c.referral.mutable_create_time() = ToProtoTime(r->Time(i, "create_time"));
    *c.referral.mutable_update_time() = ToProtoTime(r->Time(i, "update_time"));
    c.referral.set_etag(absl::StrCat(r->Int64(i, "revision")));
    if (!r->IsNull(i, "pending_hold")) c.pending_hold = r->String(i, "pending_hold");
    c.claim = r->Int64(i, "routing_claim");
  }
  return out;
}

absl::Status ReferralStore::SetRouteAfter(PgTx& tx, absl::string_view id,
                                          std::optional<absl::Time> when) {
  return tx
      .Exec("UPDATE referrals SET route_after = $2 WHERE id = $1",
            {id, when ? PgTime(*when) : PgParam(nullptr)})
      .status();
}

absl::Status ReferralStore::SetPlacementPending(PgTx& tx, absl::string_view id, bool pending) {
  return tx.Exec("UPDATE referrals SET placement_pending = $2 WHERE id = $1", {id, pending})
      .status();
}

absl::Status ReferralStore::SetPendingHold(PgTx& tx, absl::string_view id,
                                           std::optional<std::string> pending, int64_t claim) {
  auto r = tx.Exec(
      "UPDATE referrals SET pending_hold = $2 WHERE id = $1 AND routing_claim = $3 RETURNING id",
      {id, pending ? PgParam(*pending) : PgParam(nullptr), claim});
  if (!r.ok()) return r.status();
  return r->rows() == 1 ? absl::OkStatus() : RoutingClaimLost();
}

absl::StatusOr<bool> ReferralStore::StillClaimed(PgTx& tx, absl::string_view id, int64_t claim) {
  auto r = tx.Exec("SELECT routing_claim = $2 AS mine FROM referrals WHERE id = $1", {id, claim});
  if (!r.ok()) return r.status();
  return r->rows() == 1 && r->Bool(0, "mine");
}

void ReferralStore::SendEndRoutingClaim(PgTx& tx, absl::string_view id) {
  (void)tx.Send("UPDATE referrals SET routing_claim = routing_claim + 1 WHERE id = $1", {id});
}

absl::Status ReferralStore::RetryRoutingAfter(PgTx& tx, absl::string_view id, absl::Time when,
                                              int64_t claim) {
  return tx
      .Exec("UPDATE referrals SET route_after = $2 WHERE id = $1 AND routing_claim = $3",
            {id, PgTime(when), claim})
      .status();
}

absl::StatusOr<int32_t> ReferralStore::CountRoutingFailure(PgTx& tx, absl::string_view id) {
  auto r = tx.Exec(
      "UPDATE referrals SET routing_failures = routing_failures + 1 WHERE id = $1 "
      "RETURNING routing_failures",
      {id});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return absl::NotFoundError("referral vanished");
  return r->Int32(0, "routing_failures");
}

absl::Status ReferralStore::QueueHoldRelease(PgTx& tx, absl::string_view hold_id,
                                             absl::string_view referral_id, absl::Time now) {
  return tx
      .Exec(
          "INSERT INTO hold_releases (hold_id, referral_id, created) VALUES ($1, $2, $3) "
          "ON CONFLICT DO NOTHING",
          {hold_id, referral_id, PgTime(now)})
      .status();
}

absl::Status ReferralStore::HoldReleased(PgTx& tx, absl::string_view hold_id) {
  return tx.Exec("DELETE FROM hold_releases WHERE hold_id = $1", {hold_id}).status();
}

absl::StatusOr<std::vector<std::string>> ReferralStore::HoldsToRelease(PgTx& tx, int limit) {
  auto r = tx.Exec("SELECT hold_id FROM hold_releases ORDER BY created LIMIT $1", {int32_t{limit}});
  if (!r.ok()) return r.status();
  std::vector<std::string> out;
  for (int i = 0; i < r->rows(); ++i) out.push_back(r->String(i, "hold_id"));
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ReferralStore::PendingPlacements(
    PgTx& tx, int limit) {
  auto r = tx.Exec(
      "SELECT id, body FROM referrals WHERE placement_pending ORDER BY update_time LIMIT $1",
      {int32_t{limit}});
  if (!r.ok()) return r.status();
  std::vector<std::pair<std::string, std::string>> out;
  for (int i = 0; i < r->rows(); ++i) {
    v1::Referral body;
    if (!body.ParseFromString(r->Bytea(i, "body"))) {
      return absl::InternalError("stored referral is unreadable");
    }
    out.emplace_back(r->String(i, "id"), body.bed_hold_id());
  }
  return out;
}

absl::StatusOr<std::map<std::string, int32_t>> ReferralStore::ProviderLoad(
    PgTx& tx, const std::vector<std::string>& provider_orgs) {
  auto r = tx.Exec(
      "SELECT provider_org, open_offers FROM provider_load WHERE provider_org = ANY($1::text[])",
      {PgTextArray(provider_orgs)});
  if (!r.ok()) return r.status();
  std::map<std::string, int32_t> out;
  for (int i = 0; i < r->rows(); ++i) {
    out[r->String(i, "provider_org")] = r->Int32(i, "open_offers");
  }
  return out;
}

// No lock serializes appends (migration 010): the event is numbered from the sequence after a
// shared advisory lock keyed by the sequence's last value marks this transaction as a writer
// whose number is above it, until it ends; readers stop below the lowest marker still held. The
// CTEs run in order: the marker is held before the number is taken.
PgPending ReferralStore::SendEvent(PgTx& tx, absl::string_view provider_org,
                                   const v1::Referral& view, absl::Time now) {
  return tx.Send(
      "WITH marker AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared("
      "coalesce(pg_sequence_last_value('referral_events_seq'), 0)) IS NULL AS held), "
      "numbered AS MATERIALIZED (SELECT nextval('referral_events_seq') AS seq FROM marker) "
      "INSERT INTO referral_events (seq, provider_org, referral_id, at, payload) "
      "SELECT seq, $1, $2, $3, $4 FROM numbered RETURNING seq",
      {provider_org, view.id(), PgTime(now), PgParam::Bytea(view.SerializeAsString())});
}

absl::StatusOr<int64_t> ReferralStore::AppendEvent(PgTx& tx, absl::string_view provider_org,
                                                   const v1::Referral& view, absl::Time now) {
  SH_ASSIGN_OR_RETURN(PgResult r, SendEvent(tx, provider_org, view, now).Get());
  return r.Int64(0, "seq");
}

// Events up to the safe horizon only (migration 010), read by a statement that starts after the
// horizon was taken (READ COMMITTED: its own snapshot), so every event at or below it that
// committed is seen; both go out in one round trip.
absl::StatusOr<std::vector<ReferralStore::Event>> ReferralStore::EventsAfter(PgTx& tx,
                                                                             int64_t after_seq,
                                                                             int limit) {
  (void)tx.Send(
      "SELECT set_config('safeharbor.events_horizon', referral_events_horizon()::text, true)");
  auto r = tx.Exec(
      "SELECT seq, provider_org, payload FROM referral_events WHERE seq > $1 "
      "AND seq <= current_setting('safeharbor.events_horizon')::bigint ORDER BY seq LIMIT $2",
      {after_seq, int32_t{limit}});
  if (!r.ok()) return r.status();
  std::vector<Event> out(static_cast<size_t>(r->rows()));
  for (int i = 0; i < r->rows(); ++i) {
    Event& e = out[static_cast<size_t>(i)];
    e.seq = r->Int64(i, "seq");
    e.provider_org = r->String(i, "provider_org");
    if (!e.view.ParseFromString(r->Bytea(i, "payload"))) {
      return absl::InternalError("stored referral event is unreadable");
    }
  }
  return out;
}

// Where a watch "from now" starts: the safe horizon (an event below it still in flight is
// delivered when it commits).
absl::StatusOr<int64_t> ReferralStore::LastEventSeq(PgTx& tx) {
  auto r = tx.Exec("SELECT referral_events_horizon() AS s");
  if (!r.ok()) return r.status();
  return r->Int64(0, "s");
}

absl::StatusOr<std::vector<v1::Referral>> ReferralStore::List(PgTx& tx, const ListQuery& q) {
  static const char* kScopes[] = {
      "r.referrer_org = $1 AND r.parent_id IS NULL",  // the referrer: never a part (issue 14)
      "r.id IN (SELECT o.referral_id FROM offers o WHERE o.provider_org = $1 "
      "AND (o.state IN (1, 2) OR o.state = 6))",  // pending, accepted; waitlisted (issue 14)
      "(r.referrer_org = $1 OR r.county_fips = ANY($2::text[]))",
  };
  const std::string sql = absl::StrCat(
      "SELECT r.body, r.revision, r.create_time, r.update_time FROM referrals r WHERE ",
      kScopes[static_cast<int>(q.scope)],
      " AND $2::text[] IS NOT NULL AND ($3::smallint = 0 OR r.status = $3::smallint)"
      " AND ($4::timestamptz IS NULL OR (r.create_time, r.id) < ($4::timestamptz, $5::text))"
      " ORDER BY r.create_time DESC, r.id DESC LIMIT $6");
  auto r = tx.Exec(sql, {q.org_id, PgTextArray(q.counties), int32_t{q.status},
                         q.before ? PgTime(q.before->first) : PgParam(nullptr),
                         q.before ? PgParam(q.before->second) : PgParam(""), int32_t{q.limit}});
  if (!r.ok()) return r.status();
  std::vector<v1::Referral> out(static_cast<size_t>(r->rows()));
  for (int i = 0; i < r->rows(); ++i) {
    v1::Referral& ref = out[static_cast<size_t>(i)];
    if (!ref.ParseFromString(r->Bytea(i, "body"))) {
      return absl::InternalError("stored referral is unreadable");
    }
    *ref.mutable_create_time() = ToProtoTime(r->Time(i, "create_time"));
    *ref.mutable_update_time() = ToProtoTime(r->Time(i, "update_time"));
    ref.set_etag(absl::StrCat(r->Int64(i, "revision")));
  }
  return out;
}

absl::StatusOr<StatsCounts> ReferralStore::Stats(PgTx& tx, absl::Time from, absl::Time to) {
  StatsCounts out;
  auto by = tx.Exec(
      "SELECT status, count(*) AS n FROM referrals WHERE create_time >= $1 AND create_time < $2 "
      "GROUP BY status ORDER BY status",
      {PgTime(from), PgTime(to)});
  if (!by.ok()) return by.status();
  for (int i = 0; i < by->rows(); ++i) {
    out.by_status.emplace_back(static_cast<v1::ReferralStatus>(by->Int32(i, "status")),
                               by->Int64(i, "n"));
  }
  auto agg = tx.Exec(
      "SELECT count(*) FILTER (WHERE EXISTS (SELECT 1 FROM transitions t WHERE "
      "  t.referral_id = r.id AND t.to_status = 10)) AS escalations, "
      "coalesce(sum(reroutes), 0) AS reroutes, "
      "count(*) FILTER (WHERE reroutes > 0) AS rerouted, "
      "count(*) FILTER (WHERE accepted_time IS NOT NULL) AS accepted, "
      "count(*) FILTER (WHERE placement_unavailable) AS placement_unavailable, "
      "coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM "
      "  accepted_time - create_time)) FILTER (WHERE accepted_time IS NOT NULL), 0) "
      "  AS median_s, "
      "count(*) FILTER (WHERE parent_id IS NULL) AS referrals, count(*) AS needs "
      "FROM referrals r WHERE create_time >= $1 AND create_time < $2",
      {PgTime(from), PgTime(to)});
  if (!agg.ok()) return agg.status();
  out.escalations = agg->Int64(0, "escalations");
  out.reroutes = agg->Int64(0, "reroutes");
  out.rerouted_referrals = agg->Int64(0, "rerouted");
  out.accepted = agg->Int64(0, "accepted");
  out.placement_unavailable = agg->Int64(0, "placement_unavailable");
  out.median_minutes_to_acceptance = agg->Double(0, "median_s") / 60.0;
  out.referrals = agg->Int64(0, "referrals");
  out.needs = agg->Int64(0, "needs");
  SH_RETURN_IF_ERROR(OutcomeStats(tx, from, to, &out));
  SH_RETURN_IF_ERROR(ReasonStats(tx, from, to, &out));
  return out;
}

absl::Status ReferralStore::ReasonStats(PgTx& tx, absl::Time from, absl::Time to,
                                        StatsCounts* out) {
  auto declines = tx.Exec(
      "SELECT o.decline_code AS code, count(DISTINCT o.referral_id) AS n FROM offers o "
      "JOIN referrals r ON r.id = o.referral_id WHERE r.create_time >= $1 AND "
      "r.create_time < $2 AND o.state = 3 GROUP BY 1 ORDER BY 1",
      {PgTime(from), PgTime(to)});
  if (!declines.ok()) return declines.status();
  for (int i = 0; i < declines->rows(); ++i) {
    out->declines_by_code.emplace_back(static_cast<v1::ReasonCode>(declines->Int32(i, "code")),
                                       declines->Int64(i, "n"));
  }
  auto outcomes = tx.Exec(
      "SELECT outcome_code AS code, count(*) AS n FROM referrals WHERE create_time >= $1 AND "
      "create_time < $2 AND status IN (6, 7, 8) GROUP BY 1 ORDER BY 1",
      {PgTime(from), PgTime(to)});
  if (!outcomes.ok()) return outcomes.status();
  for (int i = 0; i < outcomes->rows(); ++i) {
    out->outcomes_by_code.emplace_back(static_cast<v1::ReasonCode>(outcomes->Int32(i, "code")),
                                       outcomes->Int64(i, "n"));
  }
  auto waitlisted = tx.Exec(
      "SELECT count(DISTINCT o.referral_id) AS n FROM offers o JOIN referrals r ON "
      "r.id = o.referral_id WHERE r.create_time >= $1 AND r.create_time < $2 AND "
      "o.waitlisted_until IS NOT NULL",
      {PgTime(from), PgTime(to)});
  if (!waitlisted.ok()) return waitlisted.status();
  out->waitlisted = waitlisted->Int64(0, "n");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ReferralStore::DueWaitlists(PgTx& tx, absl::Time now,
                                                                     int limit) {
  auto r = tx.Exec(
      "SELECT DISTINCT referral_id FROM offers WHERE state = 6 AND respond_by <= $1 LIMIT $2",
      {PgTime(now), int32_t{limit}});
  if (!r.ok()) return r.status();
  std::vector<std::string> out;
  for (int i = 0; i < r->rows(); ++i) out.push_back(r->String(i, "referral_id"));
  return out;
}

namespace {

// Median and 90th percentile of `seconds_sql` (a query returning one column `s` per referral,
// over referrals created in [$1, $2)).
absl::StatusOr<StatsCounts::Durations> DurationStats(PgTx& tx, absl::string_view seconds_sql,
                                                     absl::Time from, absl::Time to) {
  auto r =
      tx.Exec(absl::StrCat("SELECT count(*) AS n, "
                           "coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY s), 0) AS p50, "
                           "coalesce(percentile_cont(0.9) WITHIN GROUP (ORDER BY s), 0) AS p90 "
                           "FROM (",
                           seconds_sql, ") d"),
              {PgTime(from), PgTime(to)});
  if (!r.ok()) return r.status();
  return StatsCounts::Durations{r->Int64(0, "n"), r->Double(0, "p50"), r->Double(0, "p90")};
}

// Closed referrals (completed, youth declined, could not contact, cancelled) by `column` and
// outcome.
absl::StatusOr<std::vector<StatsCounts::OutcomeCell>> OutcomeCells(PgTx& tx,
                                                                   absl::string_view column,
                                                                   absl::Time from, absl::Time to) {
  auto r = tx.Exec(absl::StrCat("SELECT ", column,
                                " AS who, status, count(*) AS n FROM referrals "
                                "WHERE create_time >= $1 AND create_time < $2 AND status IN "
                                "(6, 7, 8, 9) AND ",
                                column, " IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2"),
                   {PgTime(from), PgTime(to)});
  if (!r.ok()) return r.status();
  std::vector<StatsCounts::OutcomeCell> cells;
  const bool county = column == "county_fips";
  for (int i = 0; i < r->rows(); ++i) {
    StatsCounts::OutcomeCell c;
    (county ? c.county_fips : c.provider_org) = r->String(i, "who");
    c.outcome = static_cast<v1::ReferralStatus>(r->Int32(i, "status"));
    c.count = r->Int64(i, "n");
    cells.push_back(std::move(c));
  }
  return cells;
}

}  // namespace

absl::Status ReferralStore::OutcomeStats(PgTx& tx, absl::Time from, absl::Time to,
                                         StatsCounts* out) {
  SH_ASSIGN_OR_RETURN(out->outcomes_by_county, OutcomeCells(tx, "county_fips", from, to));
  SH_ASSIGN_OR_RETURN(out->outcomes_by_provider, OutcomeCells(tx, "accepted_provider", from, to));
  SH_ASSIGN_OR_RETURN(
      out->to_acceptance,
      DurationStats(tx,
                    "SELECT extract(epoch FROM accepted_time - create_time) AS s FROM referrals "
                    "WHERE create_time >= $1 AND create_time < $2 AND accepted_time IS NOT NULL",
                    from, to));
  SH_ASSIGN_OR_RETURN(
      out->to_handoff,
      DurationStats(tx,
                    "SELECT extract(epoch FROM min(t.at) - r.create_time) AS s FROM referrals r "
                    "JOIN transitions t ON t.referral_id = r.id AND t.to_status = 4 "
                    "WHERE r.create_time >= $1 AND r.create_time < $2 GROUP BY r.id",
                    from, to));
  auto months = tx.Exec(
      "SELECT to_char(create_time AT TIME ZONE 'America/Los_Angeles', 'YYYY-MM') AS month, "
      "count(*) AS n FROM referrals WHERE create_time >= $1 AND create_time < $2 "
      "AND placement_unavailable GROUP BY 1 ORDER BY 1",
      {PgTime(from), PgTime(to)});
  if (!months.ok()) return months.status();
  for (int i = 0; i < months->rows(); ++i) {
    out->placement_unavailable_by_month.emplace_back(months->String(i, "month"),
                                                     months->Int64(i, "n"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<int, int64_t>> ReferralStore::CountByStatus(PgTx& tx) {
  auto r = tx.Exec("SELECT status, count(*) AS n FROM referrals GROUP BY status");
  if (!r.ok()) return r.status();
  std::map<int, int64_t> out;
  for (int i = 0; i < r->rows(); ++i) out[r->Int32(i, "status")] = r->Int64(i, "n");
  return out;
}

absl::StatusOr<int64_t> ReferralStore::OverdueOffers(PgTx& tx, absl::Time now,
                                                     absl::Duration grace) {
  auto r =
      tx.Exec("SELECT count(*) AS n FROM referrals WHERE status = 2 AND acceptance_deadline < $1",
              {PgTime(now - grace)});
  if (!r.ok()) return r.status();
  return r->Int64(0, "n");
}

absl::StatusOr<std::map<int, ReferralStore::Waiting>> ReferralStore::RoutingQueue(PgTx& tx,
                                                                                  absl::Time now) {
  auto r = tx.Exec(
      "SELECT urgency, count(*) AS n, "
      "coalesce(extract(epoch FROM $1::timestamptz - min(update_time)), 0)::bigint AS s "
      "FROM referrals WHERE status = 1 GROUP BY urgency",
      {PgTime(now)});
  if (!r.ok()) return r.status();
  std::map<int, Waiting> out;
  for (int i = 0; i < r->rows(); ++i) {
    out[r->Int32(i, "urgency")] = Waiting{r->Int64(i, "n"), std::max<int64_t>(r->Int64(i, "s"), 0)};
  }
  return out;
}

}  // namespace safeharbor::referrals
