#include "services/referrals/retention.h"

#include <prometheus/registry.h>

#include <utility>
#include <vector>

#include "common/log.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "safeharbor/referrals/v1/referrals.pb.h"
#include "services/referrals/referral_store.h"

namespace safeharbor::referrals {
namespace {

// Details are overdue when still kept this long after they were due (the alert's metric).
constexpr absl::Duration kOverdueAfter = absl::Minutes(10);

// Why the stored referral's details are due: its consent expired, or it closed.
absl::string_view DueReason(const v1::Referral& stored, absl::Time now) {
  if (!stored.youth().has_consent()) return kPurgeNoConsent;
  const v1::Consent& c = stored.youth().consent();
  if (c.has_revoke_time()) return kPurgeRevoked;
  if (FromProtoTime(c.expire_time()) <= now) return kPurgeExpired;
  return kPurgeRetention;
}

}  // namespace

IdentityRetention::IdentityRetention(PgPool* pg, const Clock* clock, const Caller* system,
                                     ConsentPolicy policy, prometheus::Registry& registry,
                                     absl::Duration interval, int batch)
    : pg_(pg),
      clock_(clock),
      system_(system),
      policy_(std::move(policy)),
      batch_(batch),
      purged_(prometheus::BuildCounter()
                  .Name("safeharbor_referrals_identity_purged_total")
                  .Help("Referrals whose identifying details were purged, by reason: "
                        "consent_revoked, consent_expired, retention_after_close, "
                        "no_consent_recorded.")
                  .Register(registry)),
      overdue_(prometheus::BuildGauge()
                   .Name("safeharbor_referrals_identity_purge_overdue")
                   .Help("Referrals whose identifying details are still kept more than 10 "
                         "minutes after they were due to be purged (should be 0).")
                   .Register(registry)
                   .Add({})),
      task_(
          "identity_retention", interval, [this] { return Run(); }, &registry) {}

void IdentityRetention::Purged(absl::string_view reason) {
  purged_.Add({{"reason", std::string(reason)}}).Increment();
}

void IdentityRetention::SendKept(PgTx& tx, absl::string_view id, absl::string_view request_id,
                                 absl::Time purge_at) {
  (void)tx.Send(
      "UPDATE referrals SET create_request_id = $2, identity_purge_at = $3 "
      "WHERE id = $1 AND identity_sealed IS NOT NULL",
      {id, request_id, PgTime(purge_at)});
}

void IdentityRetention::SendClosed(PgTx& tx, absl::string_view id, absl::Time purge_at) {
  (void)tx.Send(
      "UPDATE referrals SET identity_purge_at = LEAST(identity_purge_at, $2) "
      "WHERE id = $1 AND identity_sealed IS NOT NULL",
      {id, PgTime(purge_at)});
}

void IdentityRetention::SendPurge(PgTx& tx, absl::string_view id, absl::string_view reason,
                                  const Caller& by, absl::Time now) {
  // The sealed details, then the fingerprints of them in the intake's request_id record (keyed
  // digests, but of the details all the same).
  (void)tx.Send(
      "WITH purged AS (UPDATE referrals SET identity_sealed = NULL, identity_purge_at = NULL "
      "  WHERE id = $1 RETURNING referrer_org, create_request_id) "
      "UPDATE idempotency_keys k SET field_digests = "
      "  (SELECT COALESCE(jsonb_object_agg(key, value), '{}'::jsonb) "
      "     FROM jsonb_each(k.field_digests) WHERE key NOT LIKE 'youth.identifying%') "
      "FROM purged WHERE k.method = 'CreateReferral' AND k.caller_org = purged.referrer_org "
      "AND k.request_id = purged.create_request_id",
      {id});
  (void)ReferralStore::SendAudit(tx, by, "identity_purged", id, reason, now);
}

absl::Status IdentityRetention::Purge(PgTx& tx, v1::Referral& r, absl::string_view reason,
                                      const Caller& by, absl::Time now) {
  ScrubPurged(&r);
  SendPurge(tx, r.id(), reason, by, now);
  return PurgeFreeText(tx, r.id());
}

absl::Status IdentityRetention::PurgeFreeText(PgTx& tx, absl::string_view id) {
  (void)tx.Send(
      "UPDATE offers SET decline_reason = '' WHERE referral_id = $1 AND decline_reason <> ''",
      {id});
  // The one change the append-only tables allow, for this transaction's referral only.
  (void)tx.Send("SELECT set_config('safeharbor.purging_referral', $1, true)", {id});
  (void)tx.Send(
      "UPDATE transitions SET reason = '' WHERE referral_id = $1 AND to_status = $2 AND reason <> "
      "''",
      {id, int32_t{v1::REFERRAL_STATUS_CANCELLED}});
  (void)tx.Send(
      "UPDATE audit_log SET detail = '' WHERE referral_id = $1 AND action = 'cancel' AND detail <> "
      "''",
      {id});
  SH_ASSIGN_OR_RETURN(PgResult events,
                      tx.Exec("SELECT seq, payload FROM referral_events WHERE referral_id = $1 "
                              "ORDER BY seq FOR UPDATE",
                              {id}));
  for (int i = 0; i < events.rows(); ++i) {
    v1::Referral view;
    if (!view.ParseFromString(events.Bytea(i, "payload"))) {
      view.Clear();  // unreadable: nothing of it is kept
      view.set_id(std::string(id));
    } else if (!ScrubPurged(&view)) {
      continue;
    }
    (void)tx.Send("UPDATE referral_events SET payload = $2 WHERE seq = $1",
                  {events.Int64(i, "seq"), PgParam::Bytea(view.SerializeAsString())});
  }
  return absl::OkStatus();
}

absl::StatusOr<int> IdentityRetention::RunOnce() {
  const absl::Time now = clock_->Now();
  std::vector<std::string> reasons;
  SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) -> absl::Status {
    reasons.clear();
    SH_ASSIGN_OR_RETURN(PgResult due,
                        tx.Exec("SELECT id, body FROM referrals WHERE identity_sealed IS NOT NULL "
                                "AND identity_purge_at <= $1 ORDER BY identity_purge_at LIMIT $2 "
                                "FOR UPDATE SKIP LOCKED",
                                {PgTime(now), int32_t{batch_}}));
    for (int i = 0; i < due.rows(); ++i) {
      v1::Referral stored;
      const std::string id = due.String(i, "id");
      const bool readable = stored.ParseFromString(due.Bytea(i, "body"));
      if (!readable) stored.Clear();
      const absl::string_view reason = DueReason(stored, now);
      if (readable && ScrubPurged(&stored)) {
        (void)tx.Send("UPDATE referrals SET body = $2, revision = revision + 1 WHERE id = $1",
                      {id, PgParam::Bytea(stored.SerializeAsString())});
      }
      SendPurge(tx, id, reason, *system_, now);
      SH_RETURN_IF_ERROR(PurgeFreeText(tx, id));
      reasons.emplace_back(reason);
    }
    return absl::OkStatus();
  }));
  for (const std::string& reason : reasons) Purged(reason);
  if (!reasons.empty()) {
    log::Info("identity_purged", {{"referrals", std::to_string(reasons.size())}});
  }
  return static_cast<int>(reasons.size());
}

absl::Status IdentityRetention::Run() {
  SH_ASSIGN_OR_RETURN(const int purged, RunOnce());
  if (purged == batch_) task_.Wake();  // More may be due.
  const absl::Time now = clock_->Now();
  SH_ASSIGN_OR_RETURN(PgResult overdue,
                      pg_->Query("SELECT count(*) AS n FROM referrals WHERE identity_sealed IS "
                                 "NOT NULL AND identity_purge_at <= $1",
                                 {PgTime(now - kOverdueAfter)}));
  overdue_.Set(static_cast<double>(overdue.Int64(0, "n")));
  return absl::OkStatus();
}

}  // namespace safeharbor::referrals
