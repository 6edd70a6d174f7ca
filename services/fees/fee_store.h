// The fee service's SQL. Every function runs inside the caller's transaction; ledger rows are
// only ever inserted.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/civil_time.h"
#include "common/pg.h"
#include "safeharbor/fees/v1/fees.pb.h"
#include "services/fees/fee_logic.h"

namespace safeharbor::fees {

struct ScheduleRow {
  std::string citation;
  std::string fee_type;
  Tiers tiers;
};

struct PolicyRow {
  std::string id;
  std::vector<Share> shares;
};

struct StoredAssessment {
  v1::Assessment assessment;
  std::string fee_type;
};

class FeeStore {
 public:
  static absl::StatusOr<ScheduleRow> Schedule(PgTx& tx, v1::Statute statute, absl::CivilDay on);
  // The policy in effect on the date for the assessment's fee type: its jurisdiction's own, else
  // the statewide default. Sent without waiting (with the assessment's own statements);
  // FAILED_PRECONDITION naming the fee type when none is in effect.
  static PgPendingAs<PolicyRow> SendPolicyFor(PgTx& tx, absl::string_view assessment_id,
                                              absl::CivilDay on);
  static absl::StatusOr<std::vector<v1::FeeSchedule>> Schedules(PgTx& tx);
  static absl::StatusOr<std::vector<v1::DisbursementPolicy>> Policies(PgTx& tx);
  static absl::Status InsertPolicy(PgTx& tx, const v1::DisbursementPolicy& p);

  // Inserts the assessment and its ledger transaction (receivable +ordered, court -ordered).
  static absl::Status InsertAssessment(PgTx& tx, const v1::Assessment& a,
                                       absl::string_view fee_type);
  // With collected and outstanding filled; locks the row when for_update.
  static absl::StatusOr<StoredAssessment> GetAssessment(PgTx& tx, absl::string_view id,
                                                        bool for_update);
  // GetAssessment sent without waiting. The balance is read by a statement of its own after
  // the row lock, so it sees every payment committed before the lock came.
  static PgPendingAs<StoredAssessment> SendGetAssessment(PgTx& tx, absl::string_view id,
                                                         bool for_update);
  // The assessment's jurisdiction (NOT_FOUND when there is none), sent without waiting.
  static PgPendingAs<std::string> SendJurisdiction(PgTx& tx, absl::string_view id);
  // A ledger transaction: the receivable moves by -amount (+amount for a reversal) and each
  // disbursement is credited (debited). One statement, sent without waiting (a failure fails the
  // transaction); the payment or reversal inserted next names it (the session's last ledger
  // transaction).
  static absl::Status InsertMoneyTxn(PgTx& tx, absl::string_view kind, const StoredAssessment& a,
                                     absl::string_view payment_id, absl::CivilDay date,
                                     int64_t amount_cents,
                                     const std::vector<v1::Disbursement>& parts);
  // Sent without waiting; its ledger transaction is the one InsertMoneyTxn sent just before.
  static absl::Status InsertPayment(PgTx& tx, const v1::Payment& p);
  static absl::StatusOr<v1::Payment> GetPayment(PgTx& tx, absl::string_view id);
  static absl::StatusOr<std::vector<v1::Payment>> PaymentsOf(PgTx& tx,
                                                             absl::string_view assessment_id);
  // Its ledger transaction is the one InsertMoneyTxn sent just before.
  static absl::Status InsertReversal(PgTx& tx, absl::string_view payment_id, absl::CivilDay date);
  static absl::StatusOr<int64_t> SuspenseBalance(PgTx& tx);
};

}  // namespace safeharbor::fees
