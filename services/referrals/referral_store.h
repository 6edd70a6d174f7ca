// The referral service's SQL. Functions run inside the caller's transaction. Identifying
// details are sealed before they reach the database and opened only on request.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/pg.h"
#include "common/sealer.h"
#include "safeharbor/referrals/v1/referrals.pb.h"

namespace safeharbor::referrals {

class ReferralStore {
 public:
  // Stores the referral; its youth.identifying (if any) is sealed and removed from the body.
  static absl::Status Insert(PgTx& tx, const v1::Referral& referral, const Caller& referrer,
                             const Sealer& sealer, absl::Time now);
  // The stored referral without identifying details; FOR UPDATE when for_update.
  static absl::StatusOr<v1::Referral> Get(PgTx& tx, absl::string_view id, bool for_update);
  // Opens the sealed identifying details (empty when none were given).
  static absl::StatusOr<v1::IdentifyingDetails> OpenIdentity(PgTx& tx, absl::string_view id,
                                                             const Sealer& sealer);
  // Writes the new state (body without identity) and appends the transition, if any.
  static absl::Status Update(PgTx& tx, v1::Referral* referral, const v1::Transition* transition,
                             absl::Time now);
  // Appends one audit row: who read or changed the youth data of a referral, and what.
  static absl::Status Audit(PgTx& tx, const Caller& caller, absl::string_view action,
                            absl::string_view referral_id, absl::string_view detail,
                            absl::Time now);
  // Referrals offered past their deadline, locked so that each is handled by one replica.
  static absl::StatusOr<std::vector<std::string>> DueOffers(PgTx& tx, absl::Time now, int limit);
};

}  // namespace safeharbor::referrals
