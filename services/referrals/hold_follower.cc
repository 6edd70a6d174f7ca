#include "services/referrals/hold_follower.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "services/referrals/router.h"
#include "services/referrals/webhook_store.h"
#include "services/referrals/webhooks.h"

namespace safeharbor::referrals {

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
  if (r.bed_hold_id().empty()) return false;
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

absl::Status HoldFollower::ExtendQueued() {
  std::vector<HoldFollowStore::Queued> due;
  SH_RETURN_IF_ERROR(pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        SH_ASSIGN_OR_RETURN(due, HoldFollowStore::Due(tx, clock_->Now(), options_.batch));
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true));
  for (const HoldFollowStore::Queued& q : due) {
    SH_ASSIGN_OR_RETURN(const bool outage, ExtendOne(q));
    if (outage) break;  // Beds is out: the rest on a later tick.
  }
  return absl::OkStatus();
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
  extensions_.Add({{"outcome", "retry"}}).Increment();
  log::Warn("hold_extension_deferred", {{"referral_id", q.referral_id},
                                        {"hold_id", q.hold_id},
                                        {"attempts", absl::StrCat(q.attempts + 1)},
                                        {"error", answer.status().message()}});
  const absl::Time next =
      clock_->Now() + WebhookBackoff(q.attempts + 1, options_.tick, absl::Minutes(5));
  SH_RETURN_IF_ERROR(
      pg_->Transact([&](PgTx& tx) { return HoldFollowStore::Retry(tx, q.hold_id, next); }));
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
