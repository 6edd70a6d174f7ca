// Pure rules of the referral lifecycle (FHIR Task-aligned) and of what each party may see.
#pragma once

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "safeharbor/referrals/v1/referrals.pb.h"

namespace safeharbor::referrals {

// Who is asking for a transition, as the service determined it from the caller and the record.
enum class Actor {
  kReferrer,          // the referring agency (law enforcement or child welfare intake)
  kOfferedProvider,   // a provider with a pending offer
  kAcceptedProvider,  // the provider that accepted
  kChildWelfare,      // child welfare for the referral's county
  kSystem,            // routing, deadlines, escalation
  // Issue 14, escalation keeps the loop closed: the on-call child-welfare office an ESCALATED
  // referral is with (child welfare too: it may cancel), and that office once it accepted the
  // referral itself (the accepted party, as a provider would be, and still child welfare).
  kEscalationOffice,
  kAcceptedOffice,
};

// OK when `actor` may move a referral from `from` to `to`; FAILED_PRECONDITION naming both
// statuses otherwise (an illegal transition, or one this actor may not make).
absl::Status CheckTransition(v1::ReferralStatus from, v1::ReferralStatus to, Actor actor);

bool IsTerminal(v1::ReferralStatus status);

// What the law-enforcement referrer sees: after the hand-off only "connected to services",
// whatever happens next (including that the youth declined).
v1::ReferrerView::Stage ReferrerStage(v1::ReferralStatus status);

// Offers (issue 14): OK when `actor` may move an offer from `from` to `to`, FAILED_PRECONDITION
// otherwise. The offered provider answers a pending offer (accept, decline, "waitlist until
// T"), and may still accept or decline a waitlisted one; the system lapses (EXPIRED) and
// withdraws (another provider accepted first, the referral was cancelled or escalated) open
// ones. A waitlisted offer is not waitlisted again, and answered offers never change.
absl::Status CheckOfferTransition(v1::OfferState from, v1::OfferState to, Actor actor);

// Open: the provider may still accept (pending, or waitlisted until its respond_by).
bool IsOpenOffer(v1::OfferState state);

// The longest "waitlist until" a provider may give.
inline constexpr absl::Duration kMaxWaitlist = absl::Hours(24);

// OK when `until` is after `now` and at most kMaxWaitlist ahead; INVALID_ARGUMENT naming
// `until` otherwise.
absl::Status CheckWaitlistUntil(absl::Time now, absl::Time until);

struct DeadlinePolicy {
  absl::Duration routine = absl::Minutes(30);
  absl::Duration urgent = absl::Minutes(15);
  absl::Duration emergency = absl::Minutes(10);
};

// How long an offered provider has to accept.
absl::Duration AcceptanceWindow(v1::Urgency urgency, const DeadlinePolicy& policy);

}  // namespace safeharbor::referrals
