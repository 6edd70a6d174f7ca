#include "services/referrals/waitlist.h"

#include <string>
#include <vector>

#include "common/status_macros.h"
#include "services/referrals/referral_store.h"
#include "services/referrals/requests.h"

namespace safeharbor::referrals {

absl::StatusOr<int> LapseDueWaitlists(PgPool* pg, ReferralChanges* changes, absl::Time now,
                                      int batch) {
  std::vector<std::string> due;
  SH_RETURN_IF_ERROR(pg->Transact(
      [&](PgTx& tx) -> absl::Status {
        SH_ASSIGN_OR_RETURN(due, ReferralStore::DueWaitlists(tx, now, batch));
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true));
  int changed = 0;
  for (const std::string& id : due) {
    bool lapsed = false;
    const Mutation lapse = [&](PgTx&, v1::Referral& r, Actor, absl::Time at,
                               Change& ch) -> absl::Status {
      lapsed = LapseWaitlisted(r, at) > 0;
      ch.noop = !lapsed;  // accepted, declined or lapsed by another replica meanwhile
      ch.reason = "waitlist time reached";
      return absl::OkStatus();
    };
    SH_RETURN_IF_ERROR(changes->Apply(nullptr, id, "waitlist_lapsed", lapse).status());
    changed += lapsed ? 1 : 0;
  }
  return changed;
}

}  // namespace safeharbor::referrals
