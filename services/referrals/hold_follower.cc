#include "services/referrals/hold_follower.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "services/referrals/referral_store.h"
#include "services/referrals/router.h"
#include "services/referrals/webhook_store.h"
#include "services/referrals/webhooks.h"

namespace safeharbor::referrals {
namespace {

// One pass over an outbox: its due rows (`load`), each handled by `one` (which returns whether
// the beds service was out: then the rest wait for a later tick).
template <typename Row, typename Load, typename One>
absl::Status DuePass(PgPool* pg, absl::Time now, int batch, Load load, One one) {
  std::vector<Row> due;
  SH_RETURN_IF_ERROR(pg->Transact(
      [&](PgTx& tx) -> absl::Status {
        SH_ASSIGN_OR_RETURN(due, load(tx, now, batch));
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true));
  for (const Row& row : due) {
    SH_ASSIGN_OR_RETURN(const bool outage, one(row));
    if (outage) break;
  }
  return absl::OkStatus();
}

// The accepted placement offer whose facility has no hold for it (a winner from the waitlist):
// a fresh hold queued to the hand-off deadline. False when there is none to take.
absl::StatusOr<bool> QueueFreshHold(PgTx& tx, const v1::Referral& r, absl::Time deadline,
                                    absl::Time now) {
  const std::string& winner = r.handoff().provider_organization_id();
  for (const v1::Offer& o : r.offers()) {
    if (o.state() != v1::OFFER_STATE_ACCEPTED || o.provider_organization_id() != winner ||
        o.facility_id().empty()) {
      continue;
    }
    HoldFollowStore::HoldRequest h;
    h.referral_id = r.id();
    // The same id for the same acceptance, whichever replica or restart asks.
    h.request_id = absl::StrCat("accepted-", r.id(), "-",
                                absl::ToUnixMicros(FromProtoTime(r.accepted_time())));
    h.provider_org = winner;
    h.for_org = r.referrer_organization_id();
    h.facility_id = o.facility_id();
    h.bed_type = o.bed_type();
    for (const v1::Candidate& c : r.candidates()) {  // offers made before bed_type was kept
      if (h.bed_type == 0 && c.facility_id() == o.facility_id()) h.bed_type = c.bed_type();
    }
    h.expire_time = deadline;
    SH_RETURN_IF_ERROR(HoldFollowStore::QueueHold(tx, h, now));
    return true;
  }
  return false;
}

}  // namespace

absl::Status HoldFollowStore::SetHandoffDeadline(PgTx& tx, absl::string_view referral_id,
                                                 absl::Time deadline) {
  return tx
      .Exec(
          "UPDATE referrals SET handoff_deadline = $2, handoff_overdue_noted = false "
          "WHERE id = $1",
          {referral_id, PgTime(deadline)})
      .status();
}

absl::Status HoldFollowStore::QueueExtension(PgTx& tx, absl::string_view hold_id,
                                             absl::string_view referral_id, absl::Time expire_time,
                                             absl::Time now) {
  return tx
      .Exec(
          "INSERT INTO hold_extensions (hold_id, referral_id, expire_time, next_attempt, created) "
          "VALUES ($1, $2, $3, $4, $4) ON CONFLICT (hold_id) DO UPDATE SET "
          "expire_time = excluded.expire_time, attempts = 0, next_attempt = excluded.next_attempt",
          {hold_id, referral_id, PgTime(expire_time), PgTime(now)})
      .status();
}

absl::StatusOr<std::vector<HoldFollowStore::Queued>> HoldFollowStore::Due(PgTx& tx, absl::Time now,
                                                                          int limit) {
  SH_ASSIGN_OR_RETURN(auto r, tx.Exec("SELECT hold_id, referral_id, expire_time, attempts FROM "
                                      "hold_extensions WHERE next_attempt <= $1 "
                                      "ORDER BY next_attempt LIMIT $2",
                                      {PgTime(now), int32_t{limit}}));
  std::vector<Queued> out(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    Queued& q = out[static_cast<size_t>(i)];
    q.hold_id = r.String(i, "hold_id");
    q.referral_id = r.String(i, "referral_id");
    q.expire_time = r.Time(i, "expire_time");
    q.attempts = r.Int32(i, "attempts");
  }
  return out;
}

absl::Status HoldFollowStore::Retry(PgTx& tx, absl::string_view hold_id, absl::Time next_attempt) {
  return tx
      .Exec(
          "UPDATE hold_extensions SET attempts = attempts + 1, next_attempt = $2 "
          "WHERE hold_id = $1",
          {hold_id, PgTime(next_attempt)})
      .status();
}

absl::StatusOr<bool> HoldFollowStore::Done(PgTx& tx, absl::string_view hold_id) {
  SH_ASSIGN_OR_RETURN(auto r, tx.Exec("DELETE FROM hold_extensions WHERE hold_id = $1 "
                                      "RETURNING hold_id",
                                      {hold_id}));
  return r.rows() > 0;
}

absl::Status HoldFollowStore::QueueHold(PgTx& tx, const HoldRequest& h, absl::Time now) {
  return tx
      .Exec(
          "INSERT INTO hold_requests (referral_id, request_id, provider_org, for_org, facility_id, "
          "bed_type, expire_time, next_attempt, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
          "$8) ON CONFLICT (referral_id) DO UPDATE SET request_id = excluded.request_id, "
          "provider_org = excluded.provider_org, facility_id = excluded.facility_id, "
          "bed_type = excluded.bed_type, expire_time = excluded.expire_time, attempts = 0, "
          "next_attempt = excluded.next_attempt",
          {h.referral_id, h.request_id, h.provider_org, h.for_org, h.facility_id, h.bed_type,
           PgTime(h.expire_time), PgTime(now)})
      .status();
}

absl::StatusOr<std::vector<HoldFollowStore::HoldRequest>> HoldFollowStore::DueHolds(PgTx& tx,
                                                                                    absl::Time now,
                                                                                    int limit) {
  SH_ASSIGN_OR_RETURN(
      auto r, tx.Exec("SELECT referral_id, request_id, provider_org, for_org, facility_id, "
                      "bed_type, expire_time, attempts FROM hold_requests WHERE next_attempt <= $1 "
                      "ORDER BY next_attempt LIMIT $2",
                      {PgTime(now), int32_t{limit}}));
  std::vector<HoldRequest> out(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    HoldRequest& h = out[static_cast<size_t>(i)];
    h.referral_id = r.String(i, "referral_id");
    h.request_id = r.String(i, "request_id");
    h.provider_org = r.String(i, "provider_org");
    h.for_org = r.String(i, "for_org");
    h.facility_id = r.String(i, "facility_id");
    h.bed_type = r.Int32(i, "bed_type");
    h.expire_time = r.Time(i, "expire_time");
    h.attempts = r.Int32(i, "attempts");
  }
  return out;
}

absl::Status HoldFollowStore::RetryHold(PgTx& tx, absl::string_view referral_id,
                                        absl::Time next_attempt) {
  return tx
      .Exec(
          "UPDATE hold_requests SET attempts = attempts + 1, next_attempt = $2 "
          "WHERE referral_id = $1",
          {referral_id, PgTime(next_attempt)})
      .status();
}

absl::StatusOr<bool> HoldFollowStore::HoldDone(PgTx& tx, const HoldRequest& h) {
  SH_ASSIGN_OR_RETURN(auto r, tx.Exec("DELETE FROM hold_requests WHERE referral_id = $1 AND "
                                      "request_id = $2 RETURNING referral_id",
                                      {h.referral_id, h.request_id}));
  return r.rows() > 0;
}

absl::StatusOr<std::vector<HoldFollowStore::Overdue>> HoldFollowStore::ClaimOverdue(PgTx& tx,
                                                                                    absl::Time now,
                                                                                    int limit) {
  SH_ASSIGN_OR_RETURN(
      auto r, tx.Exec("UPDATE referrals SET handoff_overdue_noted = true WHERE id IN ("
                      "  SELECT id FROM referrals WHERE status = 3 AND handoff_deadline <= $1 "
                      "  AND NOT handoff_overdue_noted ORDER BY handoff_deadline LIMIT $2 "
                      "  FOR UPDATE SKIP LOCKED) "
                      "RETURNING id, county_fips, coalesce(accepted_provider, '') AS provider, "
                      "handoff_deadline",
                      {PgTime(now), int32_t{limit}}));
  std::vector<Overdue> out(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    Overdue& o = out[static_cast<size_t>(i)];
    o.referral_id = r.String(i, "id");
    o.county_fips = r.String(i, "county_fips");
    o.provider_org = r.String(i, "provider");
    o.deadline = r.Time(i, "handoff_deadline");
  }
  return out;
}

absl::StatusOr<bool> FollowWithHold(PgTx& tx, v1::Referral& r, absl::Time now,
                                    const ReferralOptions& options) {
  const absl::Time deadline = now + options.handoff_deadline;
  *r.mutable_handoff_deadline() = ToProtoTime(deadline);
  r.clear_bed_hold_expire_time();
  r.set_bed_hold_lost(false);
  SH_RETURN_IF_ERROR(HoldFollowStore::SetHandoffDeadline(tx, r.id(), deadline));
  if (r.bed_hold_id().empty()) return QueueFreshHold(tx, r, deadline, now);
  SH_RETURN_IF_ERROR(HoldFollowStore::QueueExtension(tx, r.bed_hold_id(), r.id(), deadline, now));
  return true;
}

HoldFollower::HoldFollower(PgPool* pg, const Clock* clock, Network* network,
                           ReferralChanges* changes, const ReferralOptions& options,
                           prometheus::Registry* registry)
    : pg_(pg),
      clock_(clock),
      network_(network),
      changes_(changes),
      options_(options),
      extensions_(prometheus::BuildCounter()
                      .Name("safeharbor_referrals_hold_extensions_total")
                      .Help("Attempts to extend an accepted placement's bed hold to its hand-off "
                            "deadline, by outcome: extended, retry (beds did not answer), lost "
                            "(the hold was gone), failed (refused, or retries ran out), moot (the "
                            "referral had moved on).")
                      .Register(*registry)),
      pending_(prometheus::BuildGauge()
                   .Name("safeharbor_referrals_hold_extensions_pending")
                   .Help("Bed hold extensions waiting in the outbox for the beds service.")
                   .Register(*registry)
                   .Add({})),
      overdue_(prometheus::BuildGauge()
                   .Name("safeharbor_referrals_handoffs_overdue")
                   .Help("Accepted referrals past their hand-off deadline, not handed off.")
                   .Register(*registry)
                   .Add({})),
      overdue_noted_(prometheus::BuildCounter()
                         .Name("safeharbor_referrals_handoffs_overdue_total")
                         .Help("Accepted referrals whose hand-off deadline passed without a "
                               "hand-off (each counted once, across replicas).")
                         .Register(*registry)
                         .Add({})) {
  for (const char* o : {"extended", "retry", "lost", "failed", "moot"}) {
    extensions_.Add({{"outcome", o}});
  }
}

absl::Status HoldFollower::TakeQueued() {
  return DuePass<HoldFollowStore::HoldRequest>(
      pg_, clock_->Now(), options_.batch, &HoldFollowStore::DueHolds,
      [this](const HoldFollowStore::HoldRequest& h) { return TakeOne(h); });
}

absl::Status HoldFollower::Deferred(int attempts,
                                    const std::function<absl::Status(PgTx&, absl::Time)>& retry) {
  extensions_.Add({{"outcome", "retry"}}).Increment();
  const absl::Time next =
      clock_->Now() + WebhookBackoff(attempts + 1, options_.tick, absl::Minutes(5));
  return pg_->Transact([&](PgTx& tx) { return retry(tx, next); });
}

absl::StatusOr<bool> HoldFollower::TakeOne(const HoldFollowStore::HoldRequest& h) {
  v1::Candidate bed;
  bed.set_facility_id(h.facility_id);
  bed.set_bed_type(static_cast<beds::v1::BedType>(h.bed_type));
  // To the hand-off deadline, within the beds service's cap on a new hold (4 hours).
  const absl::Duration ttl =
      std::clamp(h.expire_time - clock_->Now(), absl::Minutes(1), absl::Hours(4));
  const absl::StatusOr<std::string> answer =
      network_->HoldBed(h.request_id, bed, h.referral_id, h.for_org, ttl);
  const ExtensionStep step =
      ClassifyExtension(answer.status(), h.attempts, options_.hold_extension_attempts);
  const bool outage = !answer.ok() && IsOutage(answer.status());
  if (step != ExtensionStep::kRetry) {
    SH_RETURN_IF_ERROR(SettleHold(h, step, answer));
    return outage;
  }
  log::Warn("bed_hold_deferred", {{"referral_id", h.referral_id},
                                  {"attempts", absl::StrCat(h.attempts + 1)},
                                  {"error", answer.status().message()}});
  SH_RETURN_IF_ERROR(Deferred(h.attempts, [&](PgTx& tx, absl::Time next) {
    return HoldFollowStore::RetryHold(tx, h.referral_id, next);
  }));
  return outage;
}

// The fresh hold becomes the referral's bed, extended to the hand-off deadline by the extension
// pass (which confirms its expiry); a hold the referral no longer waits for is released. No bed
// (or no answer until the retries ran out) marks the referral bed_hold_lost and alerts, as a
// lost extension does: the accept stands, the county's office confirms the bed with the provider.
absl::Status HoldFollower::SettleHold(const HoldFollowStore::HoldRequest& h, ExtensionStep step,
                                      const absl::StatusOr<std::string>& answer) {
  bool applies = false;
  const Mutation record = [&](PgTx& tx, v1::Referral& r, Actor, absl::Time now,
                              Change& ch) -> absl::Status {
    SH_ASSIGN_OR_RETURN(const bool ours, HoldFollowStore::HoldDone(tx, h));
    // Handed off before the hold came (a quick hand-off): the youth is in that bed, so the hold
    // is kept and becomes the placement, never released to be offered to another youth.
    const bool placed = r.status() == v1::REFERRAL_STATUS_HANDED_OFF ||
                        r.status() == v1::REFERRAL_STATUS_IN_PROGRESS;
    applies = ours && (r.status() == v1::REFERRAL_STATUS_ACCEPTED || placed) &&
              r.bed_hold_id().empty() && r.handoff().provider_organization_id() == h.provider_org;
    ch.noop = !applies;
    if (!applies) {
      if (answer.ok() && r.bed_hold_id() != *answer) {
        SH_RETURN_IF_ERROR(ReferralStore::QueueHoldRelease(tx, *answer, h.referral_id, now));
      }
      return absl::OkStatus();
    }
    if (answer.ok()) {
      r.set_bed_hold_id(*answer);
      ch.reason = "bed held for the provider that accepted from the waitlist";
      if (placed) {
        ch.wake = true;  // the beds service records the placement, retried until it answers
        return ReferralStore::SetPlacementPending(tx, r.id(), true);
      }
      return HoldFollowStore::QueueExtension(tx, *answer, r.id(), h.expire_time, now);
    }
    r.set_bed_hold_lost(true);
    ch.reason = "no bed could be held for the provider that accepted from the waitlist";
    return absl::OkStatus();
  };
  SH_ASSIGN_OR_RETURN(
      const v1::Referral r,
      changes_->Apply(nullptr, h.referral_id, answer.ok() ? "bed_held" : "hold_lost", record));
  if (answer.ok()) return absl::OkStatus();  // counted when its extension is answered
  extensions_.Add({{"outcome", applies ? ExtensionStepLabel(step) : "moot"}}).Increment();
  if (!applies) return absl::OkStatus();
  log::Error("bed_hold_lost", {{"referral_id", r.id()},
                               {"facility_id", h.facility_id},
                               {"county_fips", r.county_fips()},
                               {"error", answer.status().message()}});
  return absl::OkStatus();
}

absl::Status HoldFollower::ExtendQueued() {
  if (auto s = TakeQueued(); !s.ok()) {
    log::Warn("bed_hold_deferred", {{"error", s.message()}});
  }
  return DuePass<HoldFollowStore::Queued>(
      pg_, clock_->Now(), options_.batch, &HoldFollowStore::Due,
      [this](const HoldFollowStore::Queued& q) { return ExtendOne(q); });
}

absl::StatusOr<bool> HoldFollower::ExtendOne(const HoldFollowStore::Queued& q) {
  // The same id for the same extension, whichever replica or restart makes it.
  const std::string request_id =
      absl::StrCat("extend-", q.hold_id, "-", absl::ToUnixMicros(q.expire_time));
  const absl::StatusOr<absl::Time> answer =
      network_->ExtendHold(request_id, q.hold_id, q.expire_time);
  const ExtensionStep step =
      ClassifyExtension(answer.status(), q.attempts, options_.hold_extension_attempts);
  const bool outage = !answer.ok() && IsOutage(answer.status());
  if (step != ExtensionStep::kRetry) {
    SH_RETURN_IF_ERROR(Settle(q, step, answer));
    return outage;
  }
  log::Warn("hold_extension_deferred", {{"referral_id", q.referral_id},
                                        {"hold_id", q.hold_id},
                                        {"attempts", absl::StrCat(q.attempts + 1)},
                                        {"error", answer.status().message()}});
  SH_RETURN_IF_ERROR(Deferred(q.attempts, [&](PgTx& tx, absl::Time next) {
    return HoldFollowStore::Retry(tx, q.hold_id, next);
  }));
  return outage;
}

absl::Status HoldFollower::Settle(const HoldFollowStore::Queued& q, ExtensionStep step,
                                  const absl::StatusOr<absl::Time>& answer) {
  const bool extended = step == ExtensionStep::kExtended;
  bool applies = false;
  const Mutation record = [&](PgTx& tx, v1::Referral& r, Actor, absl::Time,
                              Change& ch) -> absl::Status {
    SH_ASSIGN_OR_RETURN(const bool ours, HoldFollowStore::Done(tx, q.hold_id));
    // Removed by another replica, or the referral moved on (handed off, cancelled, re-routed):
    // the answer no longer matters; the row goes either way.
    applies = ours && AwaitsHandoffWithHold(r, q.hold_id);
    ch.noop = !applies;
    if (!applies) return absl::OkStatus();
    if (extended) {
      *r.mutable_bed_hold_expire_time() = ToProtoTime(*answer);
      ch.reason = "bed hold extended to the hand-off deadline";
    } else {
      r.set_bed_hold_lost(true);
      ch.reason = "the bed hold could not be extended to the hand-off deadline";
    }
    return absl::OkStatus();
  };
  SH_ASSIGN_OR_RETURN(
      const v1::Referral r,
      changes_->Apply(nullptr, q.referral_id, extended ? "hold_extended" : "hold_lost", record));
  extensions_.Add({{"outcome", applies ? ExtensionStepLabel(step) : "moot"}}).Increment();
  if (!applies) return absl::OkStatus();
  if (extended) {
    log::Info("bed_hold_extended", {{"referral_id", r.id()},
                                    {"hold_id", q.hold_id},
                                    {"expire_time", Rfc3339Seconds(*answer)}});
    return absl::OkStatus();
  }
  // The county's office is alerted on this (SafeHarborBedHoldLost); no youth data here.
  log::Error("bed_hold_lost", {{"referral_id", r.id()},
                               {"hold_id", q.hold_id},
                               {"county_fips", r.county_fips()},
                               {"error", answer.status().message()}});
  return absl::OkStatus();
}

absl::Status HoldFollower::TellCounty(PgTx& tx, const HoldFollowStore::Overdue& o, absl::Time now) {
  WebhookEvent e;
  e.type = v1::WEBHOOK_EVENT_TYPE_HANDOFF_DEADLINE;
  e.event_id = WebhookEventId({"handoff_overdue", o.referral_id, absl::FormatTime(o.deadline)});
  e.referral_id = o.referral_id;
  e.deadline = o.deadline;
  e.occurred = now;
  e.due = now;
  SH_ASSIGN_OR_RETURN(const auto targets, WebhookStore::ForCounty(tx, o.county_fips));
  for (const SubscriptionTarget& t : targets) {
    if (!t.Wants(e.type)) continue;
    SH_RETURN_IF_ERROR(WebhookStore::Enqueue(tx, t, e, now, options_.webhooks.retry_window));
  }
  return absl::OkStatus();
}

absl::Status HoldFollower::NoteOverdue() {
  std::vector<HoldFollowStore::Overdue> noted;
  SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) -> absl::Status {
    const absl::Time now = clock_->Now();
    SH_ASSIGN_OR_RETURN(noted, HoldFollowStore::ClaimOverdue(tx, now, options_.batch));
    for (const auto& o : noted) SH_RETURN_IF_ERROR(TellCounty(tx, o, now));
    return absl::OkStatus();
  }));
  for (const auto& o : noted) {
    overdue_noted_.Increment();
    log::Warn("handoff_overdue", {{"referral_id", o.referral_id},
                                  {"county_fips", o.county_fips},
                                  {"provider", o.provider_org},
                                  {"deadline", Rfc3339Seconds(o.deadline)}});
  }
  return absl::OkStatus();
}

absl::Status HoldFollower::RefreshGauges() {
  return pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        SH_ASSIGN_OR_RETURN(auto r,
                            tx.Exec("SELECT (SELECT count(*) FROM referrals WHERE status = 3 AND "
                                    "handoff_deadline <= $1) AS overdue, "
                                    "(SELECT count(*) FROM hold_extensions) AS pending",
                                    {PgTime(clock_->Now())}));
        overdue_.Set(static_cast<double>(r.Int64(0, "overdue")));
        pending_.Set(static_cast<double>(r.Int64(0, "pending")));
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true);
}

}  // namespace safeharbor::referrals
