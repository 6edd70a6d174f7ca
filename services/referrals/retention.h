// Identifying details kept no longer than the youth's consent allows (issue 14, DOMAIN.md §2):
// purged when the consent is revoked (at once, in the revoking change's transaction), when it
// expires, or a retention period after the referral closes, whichever comes first. A purge
// leaves nothing of the details in any table: the sealed details go, and so do the keyed
// fingerprints of them in the intake's request_id record, and every copy of the free text typed
// about the youth (ScrubPurged: decline and waitlist text, the outcome's and the cancellation's
// text) in the body, the offers, the providers' watch events (which webhooks are built from) and
// the cancellation rows of the append-only transitions and audit log (migration 017); the audit
// log keeps one "identity_purged" row saying why, never what. A PeriodicTask per process purges
// what is due, each referral once across replicas (FOR UPDATE SKIP LOCKED).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <string>

#include "absl/status/statusor.h"
#include "common/auth.h"
#include "common/clock.h"
#include "common/periodic.h"
#include "common/pg.h"
#include "services/referrals/consent.h"

namespace safeharbor::referrals {

// Why identifying details were purged (audit detail and metric label; bounded).
inline constexpr absl::string_view kPurgeRevoked = "consent_revoked";
inline constexpr absl::string_view kPurgeExpired = "consent_expired";
inline constexpr absl::string_view kPurgeRetention = "retention_after_close";
inline constexpr absl::string_view kPurgeNoConsent = "no_consent_recorded";

class IdentityRetention {
 public:
  IdentityRetention(PgPool* pg, const Clock* clock, const Caller* system, ConsentPolicy policy,
                    prometheus::Registry& registry, absl::Duration interval = absl::Seconds(30),
                    int batch = 100);

  void Start() { task_.Start(); }
  void Stop() { task_.Stop(); }
  // Purges up to `batch` referrals' details that are due; how many (tests run it by hand).
  absl::StatusOr<int> RunOnce();
  // A purge made by a change (a revocation), counted after its commit.
  void Purged(absl::string_view reason);
  const ConsentPolicy& policy() const { return policy_; }

  // In the intake's transaction (sent, no round trip): when its details are due for purging,
  // and which request_id record holds their fingerprints.
  static void SendKept(PgTx& tx, absl::string_view id, absl::string_view request_id,
                       absl::Time purge_at);
  // In the change that closes the referral: due no later than `purge_at`.
  static void SendClosed(PgTx& tx, absl::string_view id, absl::Time purge_at);
  // Purges one referral's details now (sent, no round trip), audited as `by`.
  static void SendPurge(PgTx& tx, absl::string_view id, absl::string_view reason, const Caller& by,
                        absl::Time now);
  // In a change of the referral (its body `r`, scrubbed here, is stored by the change): the
  // purge, its free text with it.
  static absl::Status Purge(PgTx& tx, v1::Referral& r, absl::string_view reason, const Caller& by,
                            absl::Time now);
  // With SendPurge, the free text outside the body (the body itself is the caller's, scrubbed
  // with ScrubPurged): the offers' rows, the watch events' payloads, the cancellation's text in
  // transitions and the audit log.
  static absl::Status PurgeFreeText(PgTx& tx, absl::string_view id);

 private:
  absl::Status Run();

  PgPool* pg_;
  const Clock* clock_;
  const Caller* system_;
  const ConsentPolicy policy_;
  const int batch_;
  prometheus::Family<prometheus::Counter>& purged_;  // {reason}
  prometheus::Gauge& overdue_;
  PeriodicTask task_;
};

}  // namespace safeharbor::referrals
