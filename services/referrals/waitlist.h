// Issue 14: waitlisted offers lapse at the time the provider gave. Run by the timers on every
// tick (any replica): each referral is changed under its row lock through ReferralChanges, so a
// lapse happens once whichever replica gets there first.
#pragma once

#include "absl/status/statusor.h"
#include "common/pg.h"
#include "services/referrals/changes.h"

namespace safeharbor::referrals {

// Lapses (EXPIRED) the waitlisted offers whose time is `now` or earlier, at most `batch`
// referrals; returns how many referrals changed.
absl::StatusOr<int> LapseDueWaitlists(PgPool* pg, ReferralChanges* changes, absl::Time now,
                                      int batch);

}  // namespace safeharbor::referrals
