#include "services/referrals/webhook_store.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/proto_time.h"
#include "common/status_macros.h"

namespace safeharbor::referrals {
namespace {

constexpr int16_t kDelivered = 1, kDead = 2, kObsolete = 3;  // 0: pending
constexpr int kMaxObsoletePerClaim = 20;
constexpr int kMaxRefusedPerClaim = 20;  // subscriptions passed over (refused, or busy), per claim

// "{1,3}" (an integer[] as text) → {1, 3}.
std::vector<int> IntArray(absl::string_view text) {
  std::vector<int> out;
  text = absl::StripSuffix(absl::StripPrefix(text, "{"), "}");
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int v = 0;
    if (absl::SimpleAtoi(part, &v)) out.push_back(v);
  }
  return out;
}

std::string IntArrayLiteral(const google::protobuf::RepeatedField<int>& values) {
  return absl::StrCat("{", absl::StrJoin(values, ","), "}");
}

constexpr const char* kSubscriptionColumns =
    "id, org_id, url, events::text AS events, created, rotated";

v1::WebhookSubscription SubscriptionAt(const PgResult& r, int i) {
  v1::WebhookSubscription s;
  s.set_id(r.String(i, "id"));
  s.set_organization_id(r.String(i, "org_id"));
  s.set_url(r.String(i, "url"));
  for (int e : IntArray(r.Text(i, "events"))) {
    s.add_events(static_cast<v1::WebhookEventType>(e));
  }
  *s.mutable_create_time() = ToProtoTime(r.Time(i, "created"));
  *s.mutable_secret_rotate_time() = ToProtoTime(r.Time(i, "rotated"));
  return s;
}

std::vector<SubscriptionTarget> TargetsOf(const PgResult& r) {
  std::vector<SubscriptionTarget> out(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    SubscriptionTarget& t = out[static_cast<size_t>(i)];
    t.id = r.String(i, "id");
    t.org_id = r.String(i, "org_id");
    t.events = IntArray(r.Text(i, "events"));
  }
  return out;
}

// Whether a reminder's condition still holds.
absl::StatusOr<bool> GuardHolds(PgTx& tx, const ClaimedDelivery& d) {
  if (d.event.guard.empty()) return true;
  if (d.event.guard == kGuardOfferPending) {
    SH_ASSIGN_OR_RETURN(auto r, tx.Exec("SELECT 1 FROM offers WHERE referral_id = $1 AND "
                                        "provider_org = $2 AND state = 1 AND respond_by = $3",
                                        {d.event.referral_id, d.org_id,
                                         PgTime(d.event.deadline.value_or(absl::InfinitePast()))}));
    return r.rows() > 0;
  }
  if (d.event.guard == kGuardAwaitingHandoff) {
    SH_ASSIGN_OR_RETURN(auto r, tx.Exec("SELECT 1 FROM referrals WHERE id = $1 AND status = 3 AND "
                                        "accepted_provider = $2",
                                        {d.event.referral_id, d.org_id}));
    return r.rows() > 0;
  }
  return false;  // A guard this version does not know: never delivered blindly.
}

// Whether the subscriber may still see the referral: a child-welfare office only while the
// referral's county is in its region as the directory last gave it (webhook_subscriptions.
// counties, refreshed by RecordStanding).
absl::StatusOr<bool> MaySee(PgTx& tx, const ClaimedDelivery& d) {
  SH_ASSIGN_OR_RETURN(auto r, tx.Exec("SELECT 1 FROM webhook_subscriptions s WHERE s.id = $2 AND "
                                      "(s.role <> 'child_welfare' OR EXISTS (SELECT 1 FROM "
                                      "referrals r WHERE r.id = $1 AND r.county_fips = ANY "
                                      "(s.counties)))",
                                      {d.event.referral_id, d.subscription_id}));
  return r.rows() > 0;
}

ClaimedDelivery ClaimedAt(const PgResult& r) {
  ClaimedDelivery d;
  d.id = r.Int64(0, "id");
  d.subscription_id = r.String(0, "subscription_id");
  d.org_id = r.String(0, "org_id");
  d.url = r.String(0, "url");
  d.secret_sealed = r.Bytea(0, "secret_sealed");
  d.event.event_id = r.String(0, "event_id");
  d.event.type = static_cast<v1::WebhookEventType>(r.Int32(0, "event_type"));
  d.event.referral_id = r.String(0, "referral_id");
  if (!r.IsNull(0, "deadline")) d.event.deadline = r.Time(0, "deadline");
  d.event.occurred = r.Time(0, "occurred");
  d.event.guard = r.String(0, "guard");
  d.attempts = r.Int32(0, "attempts") + 1;
  d.retry_until = r.Time(0, "retry_until");
  return d;
}

}  // namespace

bool SubscriptionTarget::Wants(v1::WebhookEventType t) const {
  return std::find(events.begin(), events.end(), static_cast<int>(t)) != events.end();
}

absl::Status WebhookStore::Create(PgTx& tx, const v1::WebhookSubscription& s,
                                  absl::string_view role, const std::vector<std::string>& counties,
                                  absl::string_view secret_sealed, int max_per_organization) {
  // One statement: concurrent creates queue on the organization's row and each sees the count
  // the one before it left.
  SH_ASSIGN_OR_RETURN(
      auto counted,
      tx.Exec("INSERT INTO webhook_org_limits AS l (org_id, subscriptions) VALUES ($1, 1) "
              "ON CONFLICT (org_id) DO UPDATE SET subscriptions = l.subscriptions + 1 "
              "WHERE l.subscriptions < $2 RETURNING subscriptions",
              {s.organization_id(), int32_t{max_per_organization}}));
  if (counted.rows() == 0 || counted.Int32(0, "subscriptions") > max_per_organization) {
    return absl::FailedPreconditionError(
        absl::StrCat("at most ", max_per_organization, " webhook subscriptions per organization"));
  }
  return tx
      .Exec(
          "INSERT INTO webhook_subscriptions (id, org_id, role, url, events, counties, "
          "secret_sealed, created, rotated) VALUES ($1, $2, $3, $4, $5::integer[], $6::text[], "
          "$7, $8, $8)",
          {s.id(), s.organization_id(), role, s.url(), IntArrayLiteral(s.events()),
           PgTextArray(counties), PgParam::Bytea(secret_sealed),
           PgTime(FromProtoTime(s.create_time()))})
      .status();
}

absl::StatusOr<std::vector<v1::WebhookSubscription>> WebhookStore::List(PgTx& tx,
                                                                        absl::string_view org) {
  SH_ASSIGN_OR_RETURN(auto r, tx.Exec(absl::StrCat("SELECT ", kSubscriptionColumns,
                                                   " FROM webhook_subscriptions WHERE org_id = $1 "
                                                   "AND NOT deleted ORDER BY created, id"),
                                      {org}));
  std::vector<v1::WebhookSubscription> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(SubscriptionAt(r, i));
  return out;
}

absl::Status WebhookStore::Delete(PgTx& tx, absl::string_view org, absl::string_view id) {
  SH_ASSIGN_OR_RETURN(auto r, tx.Exec("UPDATE webhook_subscriptions SET deleted = true WHERE "
                                      "id = $1 AND org_id = $2 AND NOT deleted RETURNING id",
                                      {id, org}));
  if (r.rows() == 0) return absl::NotFoundError("no such webhook subscription");
  SH_RETURN_IF_ERROR(tx.Exec("UPDATE webhook_org_limits SET subscriptions = subscriptions - 1 "
                             "WHERE org_id = $1 AND subscriptions > 0",
                             {org})
                         .status());
  return tx
      .Exec(
          "UPDATE webhook_deliveries SET state = $2, lease_until = NULL "
          "WHERE subscription_id = $1 AND state = 0",
          {id, int32_t{kObsolete}})
      .status();
}

absl::StatusOr<v1::WebhookSubscription> WebhookStore::Rotate(PgTx& tx, absl::string_view org,
                                                             absl::string_view id,
                                                             absl::string_view secret_sealed,
                                                             absl::Time now) {
  SH_ASSIGN_OR_RETURN(
      auto r, tx.Exec(absl::StrCat("UPDATE webhook_subscriptions SET secret_sealed = $3, "
                                   "rotated = $4 WHERE id = $1 AND org_id = $2 AND NOT deleted "
                                   "RETURNING ",
                                   kSubscriptionColumns),
                      {id, org, PgParam::Bytea(secret_sealed), PgTime(now)}));
  if (r.rows() == 0) return absl::NotFoundError("no such webhook subscription");
  return SubscriptionAt(r, 0);
}

absl::StatusOr<std::vector<FeedRow>> WebhookStore::ClaimFeed(PgTx& tx, int limit) {
  SH_ASSIGN_OR_RETURN(
      auto r, tx.Exec("SELECT id, kind, coalesce(event_seq, 0) AS event_seq, referral_id, "
                      "coalesce(org_id, '') AS org_id, coalesce(county_fips, '') AS county_fips, "
                      "coalesce(ref, 0) AS ref, coalesce((SELECT t.at FROM transitions t WHERE "
                      "t.id = webhook_feed.ref), created) AS occurred FROM webhook_feed "
                      "ORDER BY id LIMIT $1 FOR UPDATE OF webhook_feed SKIP LOCKED",
                      {int32_t{limit}}));
  std::vector<FeedRow> out(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    FeedRow& f = out[static_cast<size_t>(i)];
    f.id = r.Int64(i, "id");
    f.kind = r.String(i, "kind");
    f.event_seq = r.Int64(i, "event_seq");
    f.referral_id = r.String(i, "referral_id");
    f.org_id = r.String(i, "org_id");
    f.county_fips = r.String(i, "county_fips");
    f.ref = r.Int64(i, "ref");
    f.occurred = r.Time(i, "occurred");
  }
  return out;
}

absl::Status WebhookStore::DeleteFeed(PgTx& tx, int64_t id) {
  return tx.Exec("DELETE FROM webhook_feed WHERE id = $1", {id}).status();
}

absl::StatusOr<std::optional<v1::Referral>> WebhookStore::EventView(PgTx& tx, int64_t seq) {
  SH_ASSIGN_OR_RETURN(auto r, tx.Exec("SELECT payload FROM referral_events WHERE seq = $1", {seq}));
  if (r.rows() == 0) return std::optional<v1::Referral>();
  v1::Referral view;
  if (!view.ParseFromString(r.Bytea(0, "payload"))) {
    return absl::DataLossError("stored referral event is unreadable");
  }
  return std::optional<v1::Referral>(std::move(view));
}

absl::StatusOr<std::vector<SubscriptionTarget>> WebhookStore::ForOrganization(
    PgTx& tx, absl::string_view org) {
  SH_ASSIGN_OR_RETURN(auto r, tx.Exec("SELECT id, org_id, events::text AS events FROM "
                                      "webhook_subscriptions WHERE org_id = $1 AND NOT deleted AND "
                                      "NOT inactive",
                                      {org}));
  return TargetsOf(r);
}

absl::StatusOr<std::vector<SubscriptionTarget>> WebhookStore::ForCounty(PgTx& tx,
                                                                        absl::string_view county) {
  SH_ASSIGN_OR_RETURN(auto r,
                      tx.Exec("SELECT id, org_id, events::text AS events FROM "
                              "webhook_subscriptions WHERE $1 = ANY (counties) AND NOT deleted "
                              "AND NOT inactive",
                              {county}));
  return TargetsOf(r);
}

absl::Status WebhookStore::Enqueue(PgTx& tx, const SubscriptionTarget& s, const WebhookEvent& e,
                                   absl::Time now, absl::Duration retry_window) {
  const absl::Time due = std::max(e.due, now);
  return tx
      .Exec(
          "INSERT INTO webhook_deliveries (subscription_id, org_id, event_id, event_type, "
          "referral_id, deadline, occurred, guard, next_attempt, retry_until, created) VALUES "
          "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
          "ON CONFLICT (subscription_id, event_id) DO NOTHING",
          {s.id, s.org_id, e.event_id, int32_t{e.type}, e.referral_id,
           e.deadline.has_value() ? PgTime(*e.deadline) : PgParam(nullptr), PgTime(e.occurred),
           e.guard, PgTime(due), PgTime(due + retry_window), PgTime(now)})
      .status();
}

namespace {

// The subscription to claim from: vouched for recently, below its concurrency limit, with a due
// delivery, not skipped; of the organization served longest ago, and of its subscriptions the
// one served longest ago (round-robin between organizations, then their endpoints); its row
// locked (serializing claims for one endpoint across replicas).
absl::StatusOr<std::optional<std::string>> PickSubscription(PgTx& tx, absl::Time now,
                                                            int endpoint_concurrency,
                                                            const ClaimPolicy& policy,
                                                            const std::vector<std::string>& skip) {
  SH_ASSIGN_OR_RETURN(
      auto sub,
      tx.Exec("SELECT s.id FROM webhook_subscriptions s WHERE NOT s.deleted AND NOT s.inactive "
              "AND s.standing_checked >= $3 AND NOT (s.id = ANY ($4::text[])) AND EXISTS "
              "(SELECT 1 FROM webhook_deliveries d WHERE d.subscription_id = s.id AND "
              "d.state = 0 AND d.next_attempt <= $1 AND (d.lease_until IS NULL OR "
              "d.lease_until <= $1)) AND (SELECT count(*) FROM webhook_deliveries d WHERE "
              "d.subscription_id = s.id AND d.state = 0 AND d.lease_until > $1) < $2 "
              "ORDER BY (SELECT max(o.claim_turn) FROM webhook_subscriptions o WHERE "
              "o.org_id = s.org_id AND NOT o.deleted) NULLS FIRST, s.claim_turn NULLS FIRST, "
              "s.id LIMIT 1 FOR UPDATE OF s SKIP LOCKED",
              {PgTime(now), int32_t{endpoint_concurrency}, PgTime(policy.standing_since),
               PgTextArray(skip)}));
  if (sub.rows() == 0) return std::optional<std::string>();
  const std::string sid = sub.String(0, "id");
  // Its leases in flight counted again after the lock (a fresh snapshot).
  SH_ASSIGN_OR_RETURN(auto busy, tx.Exec("SELECT count(*) AS n FROM webhook_deliveries WHERE "
                                         "subscription_id = $1 AND state = 0 AND lease_until > $2",
                                         {sid, PgTime(now)}));
  if (busy.Int64(0, "n") >= endpoint_concurrency) return std::optional<std::string>();
  return std::optional<std::string>(sid);
}

absl::StatusOr<std::optional<ClaimedDelivery>> PickDelivery(PgTx& tx, const std::string& sid,
                                                            absl::Time now) {
  SH_ASSIGN_OR_RETURN(
      auto r, tx.Exec("SELECT d.id, d.subscription_id, d.org_id, s.url, s.secret_sealed, "
                      "d.event_id, d.event_type, d.referral_id, d.deadline, d.occurred, d.guard, "
                      "d.attempts, d.retry_until FROM webhook_deliveries d JOIN "
                      "webhook_subscriptions s ON s.id = d.subscription_id WHERE "
                      "d.subscription_id = $1 AND d.state = 0 AND d.next_attempt <= $2 AND "
                      "(d.lease_until IS NULL OR d.lease_until <= $2) ORDER BY d.next_attempt, "
                      "d.id LIMIT 1 FOR UPDATE OF d SKIP LOCKED",
                      {sid, PgTime(now)}));
  if (r.rows() == 0) return std::optional<ClaimedDelivery>();
  return std::optional<ClaimedDelivery>(ClaimedAt(r));
}

// Whether the claimed delivery is still to be sent; if not it is set aside (obsolete, withheld
// or dead) and counted.
absl::StatusOr<bool> Vet(PgTx& tx, const ClaimedDelivery& d, absl::Time now, ClaimTally* tally) {
  if (now > d.retry_until) {  // e.g. held back by its breaker or standing past its window
    ++tally->expired;
    SH_RETURN_IF_ERROR(tx.Exec("UPDATE webhook_deliveries SET state = $2, next_attempt = $3, "
                               "lease_until = NULL, last_error = CASE WHEN last_error = '' THEN "
                               "'retry window closed' ELSE last_error END WHERE id = $1",
                               {d.id, int32_t{kDead}, PgTime(now)})
                           .status());
    return false;
  }
  SH_ASSIGN_OR_RETURN(const bool holds, GuardHolds(tx, d));
  bool may_see = holds;
  if (holds) {
    SH_ASSIGN_OR_RETURN(may_see, MaySee(tx, d));
  }
  if (holds && may_see) return true;
  ++(holds ? tally->withheld : tally->obsolete);
  SH_RETURN_IF_ERROR(
      tx.Exec("UPDATE webhook_deliveries SET state = $2 WHERE id = $1", {d.id, int32_t{kObsolete}})
          .status());
  return false;
}

}  // namespace

absl::StatusOr<std::optional<ClaimedDelivery>> WebhookStore::Claim(PgTx& tx, absl::Time now,
                                                                   absl::Duration lease,
                                                                   int endpoint_concurrency,
                                                                   int* obsolete) {
  ClaimTally tally;
  auto claimed = Claim(tx, now, lease, endpoint_concurrency, ClaimPolicy{}, &tally);
  *obsolete += tally.Total();
  return claimed;
}

absl::StatusOr<std::optional<ClaimedDelivery>> WebhookStore::Claim(PgTx& tx, absl::Time now,
                                                                   absl::Duration lease,
                                                                   int endpoint_concurrency,
                                                                   const ClaimPolicy& policy,
                                                                   ClaimTally* tally) {
  std::vector<std::string> skip = policy.skip;
  int refused = 0;
  // Bounded: at most kMaxObsoletePerClaim set aside and kMaxRefusedPerClaim refused per claim.
  while (tally->Total() < kMaxObsoletePerClaim && refused < kMaxRefusedPerClaim) {
    SH_ASSIGN_OR_RETURN(const std::optional<std::string> sid,
                        PickSubscription(tx, now, endpoint_concurrency, policy, skip));
    if (!sid.has_value()) return std::optional<ClaimedDelivery>();
    if (policy.admit && !policy.admit(*sid)) {
      ++refused;
      skip.push_back(*sid);
      continue;
    }
    SH_ASSIGN_OR_RETURN(std::optional<ClaimedDelivery> d, PickDelivery(tx, *sid, now));
    if (!d.has_value()) {  // its due one taken by another worker meanwhile: the next endpoint
      ++refused;
      skip.push_back(*sid);
      continue;
    }
    SH_ASSIGN_OR_RETURN(const bool send, Vet(tx, *d, now, tally));
    if (!send) continue;
    SH_RETURN_IF_ERROR(tx.Exec("UPDATE webhook_deliveries SET lease_until = $2, attempts = "
                               "attempts + 1 WHERE id = $1",
                               {d->id, PgTime(now + lease)})
                           .status());
    SH_RETURN_IF_ERROR(tx.Exec("UPDATE webhook_subscriptions SET claim_turn = "
                               "nextval('webhook_claim_turns') WHERE id = $1",
                               {*sid})
                           .status());
    return d;
  }
  return std::optional<ClaimedDelivery>();
}

absl::Status WebhookStore::Delivered(PgTx& tx, int64_t id, int32_t attempt, absl::Time now) {
  return tx
      .Exec(
          "UPDATE webhook_deliveries SET state = $2, delivered = $3, lease_until = NULL, "
          "last_error = '' WHERE id = $1 AND state = 0 AND attempts = $4",
          {id, int32_t{kDelivered}, PgTime(now), attempt})
      .status();
}

absl::StatusOr<bool> WebhookStore::Failed(PgTx& tx, int64_t id, int32_t attempt,
                                          absl::string_view error, absl::Time next) {
  SH_ASSIGN_OR_RETURN(
      auto r, tx.Exec("UPDATE webhook_deliveries SET state = CASE WHEN $3 > retry_until THEN $4 "
                      "ELSE state END, next_attempt = $3, lease_until = NULL, last_error = $2 "
                      "WHERE id = $1 AND state = 0 AND attempts = $5 RETURNING state",
                      {id, error, PgTime(next), int32_t{kDead}, attempt}));
  return r.rows() > 0 && r.Int32(0, "state") == kDead;
}

absl::StatusOr<std::vector<v1::WebhookDelivery>> WebhookStore::DeadLetters(PgTx& tx,
                                                                           absl::string_view org,
                                                                           int limit) {
  SH_ASSIGN_OR_RETURN(
      auto r, tx.Exec("SELECT event_id, subscription_id, event_type, referral_id, attempts, "
                      "last_error, created FROM webhook_deliveries WHERE org_id = $1 AND "
                      "state = 2 ORDER BY id LIMIT $2",
                      {org, int32_t{limit}}));
  std::vector<v1::WebhookDelivery> out(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    v1::WebhookDelivery& d = out[static_cast<size_t>(i)];
    d.set_event_id(r.String(i, "event_id"));
    d.set_subscription_id(r.String(i, "subscription_id"));
    d.set_event_type(static_cast<v1::WebhookEventType>(r.Int32(i, "event_type")));
    d.set_referral_id(r.String(i, "referral_id"));
    d.set_attempts(r.Int32(i, "attempts"));
    d.set_last_error(r.String(i, "last_error"));
    *d.mutable_create_time() = ToProtoTime(r.Time(i, "created"));
  }
  return out;
}

absl::StatusOr<int32_t> WebhookStore::Replay(PgTx& tx, absl::string_view org,
                                             const std::vector<std::string>& event_ids,
                                             absl::Time now, absl::Duration retry_window,
                                             const ReplayLimits& limits) {
  if (event_ids.size() > static_cast<size_t>(limits.per_call)) {
    return absl::InvalidArgumentError(
        absl::StrCat("event_ids: at most ", limits.per_call, " per call"));
  }
  // The organization's window: its row locked until commit, so concurrent replays count in turn.
  SH_ASSIGN_OR_RETURN(
      auto budget,
      tx.Exec("INSERT INTO webhook_replay_budget AS b (org_id, window_start, replayed) VALUES "
              "($1, $2, 0) ON CONFLICT (org_id) DO UPDATE SET window_start = CASE WHEN "
              "b.window_start <= $3 THEN $2 ELSE b.window_start END, replayed = CASE WHEN "
              "b.window_start <= $3 THEN 0 ELSE b.replayed END RETURNING replayed, window_start",
              {org, PgTime(now), PgTime(now - limits.window)}));
  const int64_t left = limits.per_window - budget.Int64(0, "replayed");
  if (left <= 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("at most ", limits.per_window, " dead letters replayed per organization per ",
                     absl::FormatDuration(limits.window), "; try again after ",
                     Rfc3339Seconds(budget.Time(0, "window_start") + limits.window)));
  }
  SH_ASSIGN_OR_RETURN(
      auto r, tx.Exec("UPDATE webhook_deliveries d SET state = 0, attempts = 0, next_attempt = $3, "
                      "retry_until = $4, lease_until = NULL WHERE d.id IN (SELECT d.id FROM "
                      "webhook_deliveries d JOIN webhook_subscriptions s ON s.id = "
                      "d.subscription_id WHERE NOT s.deleted AND NOT s.inactive AND d.org_id = $1 "
                      "AND d.state = 2 AND (cardinality($2::text[]) = 0 OR d.event_id = ANY ($2)) "
                      "ORDER BY d.id LIMIT $5) RETURNING d.id",
                      {org, PgTextArray(event_ids), PgTime(now), PgTime(now + retry_window),
                       std::min<int64_t>(left, limits.per_call)}));
  SH_RETURN_IF_ERROR(tx.Exec("UPDATE webhook_replay_budget SET replayed = replayed + $2 WHERE "
                             "org_id = $1",
                             {org, int64_t{r.rows()}})
                         .status());
  return static_cast<int32_t>(r.rows());
}

absl::StatusOr<std::vector<StandingTarget>> WebhookStore::StandingDue(PgTx& tx,
                                                                      absl::Time stale_before,
                                                                      int limit) {
  SH_ASSIGN_OR_RETURN(
      auto r, tx.Exec("SELECT org_id, role FROM webhook_subscriptions WHERE NOT deleted GROUP BY "
                      "org_id, role HAVING min(coalesce(standing_checked, '-infinity')) < $1 "
                      "ORDER BY min(coalesce(standing_checked, '-infinity')), org_id LIMIT $2",
                      {PgTime(stale_before), int32_t{limit}}));
  std::vector<StandingTarget> out(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    out[static_cast<size_t>(i)] = {r.String(i, "org_id"), r.String(i, "role")};
  }
  return out;
}

absl::StatusOr<int64_t> WebhookStore::RecordStanding(PgTx& tx, const StandingTarget& t, bool active,
                                                     const std::vector<std::string>& counties,
                                                     absl::Time now) {
  SH_RETURN_IF_ERROR(tx.Exec("UPDATE webhook_subscriptions SET standing_checked = $3, inactive = "
                             "$4, counties = CASE WHEN role = 'child_welfare' THEN $5::text[] "
                             "ELSE counties END WHERE org_id = $1 AND role = $2 AND NOT deleted",
                             {t.org_id, t.role, PgTime(now), !active, PgTextArray(counties)})
                         .status());
  if (active) return int64_t{0};
  SH_ASSIGN_OR_RETURN(
      auto r, tx.Exec("UPDATE webhook_deliveries d SET state = $3, lease_until = NULL FROM "
                      "webhook_subscriptions s WHERE s.id = d.subscription_id AND s.org_id = $1 "
                      "AND s.role = $2 AND d.state = 0 RETURNING d.id",
                      {t.org_id, t.role, int32_t{kObsolete}}));
  return int64_t{r.rows()};
}

absl::StatusOr<int64_t> WebhookStore::Prune(PgTx& tx, absl::Time delivered_before,
                                            absl::Time dead_before, int limit) {
  SH_ASSIGN_OR_RETURN(
      auto r,
      tx.Exec("DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM "
              "webhook_deliveries WHERE state <> 0 AND coalesce(delivered, next_attempt) "
              "< greatest($1::timestamptz, $2::timestamptz) AND "
              "coalesce(delivered, next_attempt) < CASE WHEN state = $3 THEN $2::timestamptz ELSE "
              "$1::timestamptz END "
              "LIMIT $4) RETURNING id",
              {PgTime(delivered_before), PgTime(dead_before), int32_t{kDead}, int32_t{limit}}));
  SH_RETURN_IF_ERROR(
      tx.Exec("DELETE FROM webhook_subscriptions WHERE id IN (SELECT s.id FROM "
              "webhook_subscriptions s WHERE s.deleted AND NOT EXISTS (SELECT 1 FROM "
              "webhook_deliveries d WHERE d.subscription_id = s.id) LIMIT $1)",
              {int32_t{limit}})
          .status());
  return int64_t{r.rows()};
}

absl::StatusOr<double> WebhookStore::OldestUndeliveredSeconds(PgTx& tx, absl::Time now) {
  SH_ASSIGN_OR_RETURN(
      auto r, tx.Exec("SELECT coalesce(extract(epoch FROM ($1::timestamptz - min(created))), "
                      "0)::float8 AS age FROM webhook_deliveries WHERE state = 0 "
                      "AND next_attempt <= $1",
                      {PgTime(now)}));
  return std::max(0.0, r.Double(0, "age"));
}

absl::StatusOr<int64_t> WebhookStore::FailingOrganizations(PgTx& tx, absl::Time now,
                                                           absl::Duration failing_after) {
  SH_ASSIGN_OR_RETURN(
      auto r, tx.Exec("SELECT count(DISTINCT org_id) AS n FROM webhook_deliveries WHERE "
                      "(state = 0 AND attempts > 0 AND last_error <> '' AND created <= $1) OR "
                      "(state = 2 AND next_attempt > $1)",
                      {PgTime(now - failing_after)}));
  return r.Int64(0, "n");
}

}  // namespace safeharbor::referrals
