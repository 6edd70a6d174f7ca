// Escalation keeps the loop closed (issue 14, branch escalation), the pure part: who routing
// asks again once the on-call office sends an escalated referral back to routing, what routing
// again changes on the referral, and when the office is told that a bed appeared. The I/O is in
// escalation_watch.* (the periodic bed check) and escalation_rpcs.cc (RouteReferralAgain).
#pragma once

#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "safeharbor/referrals/v1/referrals.pb.h"
#include "services/referrals/lifecycle.h"
#include "services/referrals/routing.h"

namespace safeharbor::referrals {

// Whether the provider of `offer`, made before the referral was last routed again, may be asked
// again: it did not answer (EXPIRED), its open offer was withdrawn at the escalation (a
// waitlist answer: it had no bed then), or it declined at capacity (a full bed may be free
// now). A decline for any other reason (not eligible, a safety concern, the youth declined,
// referred elsewhere, other) is about this youth: never asked again.
bool AskedAgainAfterRoutingAgain(const v1::Offer& offer);

// The providers routing does not offer this referral to: every provider asked since it was last
// routed again (or ever, if it never was: today's rule), and, of those asked before, each whose
// offer AskedAgainAfterRoutingAgain refuses.
std::set<std::string> NotAskedAgain(const v1::Referral& r);

// `options` less those of providers routing would not ask if the office routed the referral
// again now (NotAskedAgain once every offer made so far is of an earlier round): what the bed
// check of an escalated referral looks for.
std::vector<Option> AskableIfRoutedAgain(const v1::Referral& r, std::vector<Option> options);

// RouteReferralAgain's change, as `actor`, for `request_id`: false (nothing changed) when that
// request already routed it again (a retry); FAILED_PRECONDITION unless the referral is
// ESCALATED; PERMISSION_DENIED unless the actor is the office it was escalated to. Counts the
// routing again (and the reroute), marks where this round's offers begin, and keeps the office's
// hand-off as escalation_office (an escalation again goes back to it) while routing finds a new
// one.
absl::StatusOr<bool> RouteAgain(v1::Referral& r, Actor actor, const std::string& request_id);

// The on-call office takes an escalated referral itself (AcceptReferral by child welfare), as
// `actor`, at `now`: FAILED_PRECONDITION unless the referral is ESCALATED; PERMISSION_DENIED
// unless the actor is the office it was escalated to. The office becomes the accepted party, its
// hand-off place the office (as the escalation set it). It never sees the identifying details:
// the youth's consent is to share them with the accepting provider only, and an office is not
// one. Returns the transition's reason.
absl::StatusOr<std::string> AcceptEscalated(v1::Referral& r, Actor actor, absl::Time now);

// What one check of an escalated placement for a bed means.
enum class BedNotice {
  kNone,  // as before: nothing to tell or record
  kTell,  // a bed appeared (none at the last check): the office is told, once
  kGone,  // the bed seen before is gone: a later appearance is told again
};
BedNotice NextBedNotice(bool seen_at_last_check, bool found_now);

}  // namespace safeharbor::referrals
