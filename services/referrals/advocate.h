// Issue 14, advocate response (DOMAIN.md §1 and §7: Los Angeles County puts a survivor advocate
// with the youth within 90 minutes of the call). An advocacy row — a referral row whose needs are
// exactly {service_categories: [CSEC_ADVOCACY]}, i.e. a services-only referral asking only for
// advocacy, or the advocacy part of a larger referral — of an urgent or emergency referral:
//   - is offered only to services open 24/7 (routing.h's RoutingRequest::open_24_7_only);
//   - carries a response target, advocate_response_due = its creation (the call) plus
//     --advocate_response_target_s (90 minutes by default), stamped at intake, stored in the body
//     and in the referrals.advocate_due column (migration 015) for the timer;
//   - has its advocate's arrival recorded by the accepting provider (RecordAdvocateArrival; the
//     first arrival stands, a late one is recorded all the same and counted as late);
//   - past its due time with no arrival, and not closed, is marked advocate_response_missed once
//     across replicas by the timers' pass (claimed FOR UPDATE SKIP LOCKED, then re-checked under
//     the row lock), and the county's on-call child-welfare office is told by an
//     ADVOCATE_RESPONSE_MISSED webhook queued in the same transaction (no youth data).
// A routine advocacy row routes as before and has no target (an arrival may still be recorded).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/clock.h"
#include "common/pg.h"
#include "common/rpc_kit.h"
#include "safeharbor/referrals/v1/referrals.pb.h"
#include "services/referrals/changes.h"
#include "services/referrals/webhooks.h"

namespace safeharbor::referrals {

// Pure: the row's needs are exactly CSEC advocacy (no placement, one category).
bool IsAdvocacyRow(const v1::Referral& r);
// Pure: an advocacy row of an urgent or emergency referral: 24/7 services only, a target.
bool HasAdvocateTarget(const v1::Referral& r);
// Pure, at intake: sets advocate_response_due (create_time + target) when HasAdvocateTarget.
void StampAdvocateTarget(v1::Referral& r, absl::Duration target);
// In the intake's transaction (ReferralStore::Insert): the due time into its column, sent without
// waiting. Nothing for a row without a target.
void SendAdvocateTarget(PgTx& tx, const v1::Referral& r);

// Pure: the request alone. INVALID_ARGUMENT naming id, or arrival_time (malformed, or later than
// `now`); request_id is the method table's.
absl::Status ValidateAdvocateArrival(const v1::RecordAdvocateArrivalRequest& req, absl::Time now);
// Pure, on the stored row (after CanRead admitted the caller): PERMISSION_DENIED unless `c` is
// the provider that accepted the row.
absl::Status CanRecordArrival(const Caller& c, const v1::Referral& r);
// Pure: whether the accepting provider may record an advocate's arrival at `arrival` on the
// stored row now: FAILED_PRECONDITION unless it is an advocacy row that is not closed (accepted,
// handed off, in services); INVALID_ARGUMENT (arrival_time) before the row's creation.
absl::Status CheckArrival(const v1::Referral& r, absl::Time arrival);
// Pure: the row's target passed at `now` with no arrival recorded, and it is not closed.
bool AdvocateOverdue(const v1::Referral& r, absl::Time now);

// Labels: urgency ("routine", "urgent", "emergency"), timing ("on_time", "late", "untargeted").
struct AdvocateMetrics {
  explicit AdvocateMetrics(prometheus::Registry& registry);
  prometheus::Family<prometheus::Counter>& missed;     // {urgency}
  prometheus::Family<prometheus::Gauge>& overdue;      // {urgency}
  prometheus::Family<prometheus::Counter>& arrivals;   // {urgency, timing}
  prometheus::Family<prometheus::Histogram>& seconds;  // {urgency}: intake to arrival
};

class AdvocateResponse {
 public:
  // None owned.
  AdvocateResponse(PgPool* pg, const Clock* clock, ReferralChanges* changes,
                   const WebhookOptions& webhooks, prometheus::Registry& registry);

  // RecordAdvocateArrival (its request validated): records the arrival on the row as the
  // accepting provider, or answers with the first one recorded. Returns the row as stored.
  absl::StatusOr<v1::Referral> RecordArrival(CallContext& ctx,
                                             const v1::RecordAdvocateArrivalRequest& req);
  // One pass: rows past their target with no arrival, not closed and not yet marked, are marked
  // missed and told to the county (up to `batch`). Returns how many this pass marked.
  absl::StatusOr<int> MarkMissed(int batch);
  // The overdue gauge (in the gauges' transaction).
  absl::Status RefreshGauges(PgTx& tx, absl::Time now);

 private:
  // Under the row's lock: marks it (when still overdue) and queues the county's event.
  absl::Status MarkOne(PgTx& tx, v1::Referral& r, absl::Time now, Change& ch, bool* marked);

  PgPool* pg_;
  const Clock* clock_;
  ReferralChanges* changes_;
  const WebhookOptions& webhooks_;
  AdvocateMetrics metrics_;
};

}  // namespace safeharbor::referrals
