// The law's clocks as durable timers (issue 14, DOMAIN.md §7), built on statutory_clocks.h
// (the calendar and the due times): the rows of migration 007, created in the transaction of
// the hand-off confirmation; due ones claimed FOR UPDATE SKIP LOCKED by the referral service's
// periodic work, marked fired and their STATUTORY_TIMER_DUE webhook event queued in the same
// transaction (so each fires once across replicas); marked filed through RecordStatutoryFiling.
//
// Which clocks a hand-off starts (FactsAtHandoff):
//   - the crisis residential center's report, when the accepted offer is one (the candidate's
//     category, recorded at routing);
//   - the DCYF notice, when an officer took custody (the referral came from law enforcement),
//     counted from the referral's creation;
//   - the emergency placement window, when the referral was a placement (a bed tonight).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/auth.h"
#include "common/clock.h"
#include "common/pg.h"
#include "safeharbor/referrals/v1/referrals.pb.h"
#include "services/referrals/statutory_clocks.h"
#include "services/referrals/webhooks.h"

namespace safeharbor::referrals {

v1::StatutoryTimerKind TimerKindOf(StatutoryClock clock);
// The clock of a known kind; INVALID_ARGUMENT (naming `kind`) for an unspecified or unknown one.
absl::StatusOr<StatutoryClock> ClockOf(int kind);

// Pure: RecordStatutoryFiling's request (request_id is checked by the method table).
absl::Status ValidateStatutoryFiling(const v1::RecordStatutoryFilingRequest& req);

// Pure: what the referral tells of its hand-off at `now` (the confirmation).
// `police_custody`: the referral came from law enforcement.
HandOffFacts FactsAtHandoff(const v1::Referral& r, bool police_custody, absl::Time now);
// The accepted offer's candidate was a crisis residential center.
bool DeliveredToCrisisResidentialCenter(const v1::Referral& r);

// Pure: who marks a timer filed. The accepting provider the crisis residential report (the
// center receives the officer's report); child welfare the DCYF notice and the emergency
// placement window. PERMISSION_DENIED otherwise (after CanRead has admitted the caller).
absl::Status CanRecordFiling(const Caller& c, const v1::Referral& r, StatutoryClock clock);

// Pure: the timer as shown, `overdue` at `now`.
void MarkOverdue(v1::StatutoryTimer& t, absl::Time now);

struct StatutoryTimerMetrics {
  explicit StatutoryTimerMetrics(prometheus::Registry& registry);
  prometheus::Family<prometheus::Gauge>& open;            // {kind, state: pending|overdue}
  prometheus::Family<prometheus::Counter>& fired;         // {kind}
  prometheus::Family<prometheus::Gauge>& oldest_overdue;  // {kind}
};

class StatutoryTimers {
 public:
  // None owned. INTERNAL at construction is impossible: main refuses to start without the
  // time zone database (LegalCalendar::Washington).
  StatutoryTimers(PgPool* pg, const Clock* clock, const WebhookOptions& webhooks,
                  prometheus::Registry& registry);

  // In the hand-off's transaction: stores the clocks the hand-off starts; returns them.
  absl::StatusOr<std::vector<v1::StatutoryTimer>> StartAtHandoff(PgTx& tx, const v1::Referral& r,
                                                                 absl::Time now) const;
  // A referral's timers as shown at `now`.
  static absl::StatusOr<std::vector<v1::StatutoryTimer>> List(PgTx& tx,
                                                              absl::string_view referral_id,
                                                              absl::Time now);
  // Marks the timer filed by `org` (a timer already filed answers as it is: idempotent).
  // FAILED_PRECONDITION when the referral has no such timer.
  static absl::StatusOr<v1::StatutoryTimer> RecordFiling(PgTx& tx, absl::string_view referral_id,
                                                         StatutoryClock clock,
                                                         absl::string_view org, absl::Time now);
  // Claims up to `batch` due, unfired, unfiled timers (SKIP LOCKED), marks them fired and queues
  // their webhook events, in one transaction. Returns how many fired.
  absl::StatusOr<int> FireDue(int batch);
  absl::Status RefreshGauges(PgTx& tx, absl::Time now);
  const LegalCalendar& calendar() const { return calendar_; }

 private:
  // To the accepting provider's subscriptions and those of the county's child welfare.
  absl::Status Enqueue(PgTx& tx, const std::string& county, const std::string& provider,
                       const WebhookEvent& e, absl::Time now) const;

  PgPool* pg_;
  const Clock* clock_;
  const WebhookOptions& webhooks_;
  const LegalCalendar calendar_;
  StatutoryTimerMetrics metrics_;
};

}  // namespace safeharbor::referrals
