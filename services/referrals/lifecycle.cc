#include "services/referrals/lifecycle.h"

#include "absl/strings/str_cat.h"

namespace safeharbor::referrals {
namespace {

using S = v1::ReferralStatus;

bool Allowed(S from, S to, Actor a) {
  const bool referrer_side = a == Actor::kReferrer || a == Actor::kChildWelfare ||
                             a == Actor::kEscalationOffice || a == Actor::kAcceptedOffice;
  // The accepted party: the provider that accepted, or the on-call office that accepted an
  // escalated referral itself (issue 14).
  const bool accepted = a == Actor::kAcceptedProvider || a == Actor::kAcceptedOffice;
  switch (from) {
    case v1::REFERRAL_STATUS_REQUESTED:
      // A provider that answered "waitlist until" may accept while the referral is routed
      // again (only a waitlisted offer is open on a REQUESTED referral).
      return (to == v1::REFERRAL_STATUS_ACCEPTED && a == Actor::kOfferedProvider) ||
             (to == v1::REFERRAL_STATUS_OFFERED && a == Actor::kSystem) ||
             (to == v1::REFERRAL_STATUS_ESCALATED && a == Actor::kSystem) ||
             (to == v1::REFERRAL_STATUS_CANCELLED && referrer_side);
    case v1::REFERRAL_STATUS_OFFERED:
      return (to == v1::REFERRAL_STATUS_ACCEPTED && a == Actor::kOfferedProvider) ||
             // Every offer declined or expired: offered again to the next candidates, or
             // back to routing when none answers now, or escalated when none is left.
             (to == v1::REFERRAL_STATUS_OFFERED && a == Actor::kSystem) ||
             (to == v1::REFERRAL_STATUS_REQUESTED && a == Actor::kSystem) ||
             (to == v1::REFERRAL_STATUS_ESCALATED && a == Actor::kSystem) ||
             (to == v1::REFERRAL_STATUS_CANCELLED && referrer_side);
    case v1::REFERRAL_STATUS_ACCEPTED:
      return (to == v1::REFERRAL_STATUS_HANDED_OFF && accepted) ||
             (to == v1::REFERRAL_STATUS_CANCELLED && referrer_side);
    case v1::REFERRAL_STATUS_HANDED_OFF:
      return accepted &&
             (to == v1::REFERRAL_STATUS_IN_PROGRESS || to == v1::REFERRAL_STATUS_COMPLETED ||
              to == v1::REFERRAL_STATUS_YOUTH_DECLINED ||
              to == v1::REFERRAL_STATUS_COULD_NOT_CONTACT);
    case v1::REFERRAL_STATUS_IN_PROGRESS:
      return accepted &&
             (to == v1::REFERRAL_STATUS_COMPLETED || to == v1::REFERRAL_STATUS_YOUTH_DECLINED ||
              to == v1::REFERRAL_STATUS_COULD_NOT_CONTACT);
    case v1::REFERRAL_STATUS_ESCALATED:
      // The on-call office carries it on (issue 14): back to routing, or takes it itself; child
      // welfare may close it.
      return ((to == v1::REFERRAL_STATUS_REQUESTED || to == v1::REFERRAL_STATUS_ACCEPTED) &&
              a == Actor::kEscalationOffice) ||
             (to == v1::REFERRAL_STATUS_CANCELLED &&
              (a == Actor::kChildWelfare || a == Actor::kEscalationOffice));
    default:
      return false;  // Terminal or unspecified.
  }
}

bool OfferAllowed(v1::OfferState from, v1::OfferState to, Actor a) {
  const bool provider = a == Actor::kOfferedProvider;
  const bool system = a == Actor::kSystem;
  switch (from) {
    case v1::OFFER_STATE_PENDING:
      return ((to == v1::OFFER_STATE_ACCEPTED || to == v1::OFFER_STATE_DECLINED ||
               to == v1::OFFER_STATE_WAITLISTED) &&
              provider) ||
             ((to == v1::OFFER_STATE_EXPIRED || to == v1::OFFER_STATE_WITHDRAWN) && system);
    case v1::OFFER_STATE_WAITLISTED:
      // Still the provider's to take until its time; lapses at it.
      return ((to == v1::OFFER_STATE_ACCEPTED || to == v1::OFFER_STATE_DECLINED) && provider) ||
             ((to == v1::OFFER_STATE_EXPIRED || to == v1::OFFER_STATE_WITHDRAWN) && system);
    default:
      return false;  // Answered, lapsed or withdrawn: final.
  }
}

}  // namespace

absl::Status CheckOfferTransition(v1::OfferState from, v1::OfferState to, Actor actor) {
  if (OfferAllowed(from, to, actor)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("an offer cannot go from ",
                                                    v1::OfferState_Name(from), " to ",
                                                    v1::OfferState_Name(to), " for this caller"));
}

bool IsOpenOffer(v1::OfferState state) {
  return state == v1::OFFER_STATE_PENDING || state == v1::OFFER_STATE_WAITLISTED;
}

absl::Status CheckWaitlistUntil(absl::Time now, absl::Time until) {
  if (until <= now) return absl::InvalidArgumentError("until must be in the future");
  if (until - now > kMaxWaitlist) {
    return absl::InvalidArgumentError("until must be at most 24 hours ahead");
  }
  return absl::OkStatus();
}

absl::Status CheckTransition(v1::ReferralStatus from, v1::ReferralStatus to, Actor actor) {
  if (Allowed(from, to, actor)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "a referral cannot go from ", v1::ReferralStatus_Name(from), " to ",
      v1::ReferralStatus_Name(to), IsTerminal(from) ? " (it is closed)" : " for this caller"));
}

bool IsTerminal(v1::ReferralStatus s) {
  return s == v1::REFERRAL_STATUS_COMPLETED || s == v1::REFERRAL_STATUS_YOUTH_DECLINED ||
         s == v1::REFERRAL_STATUS_COULD_NOT_CONTACT || s == v1::REFERRAL_STATUS_CANCELLED;
}

v1::ReferrerView::Stage ReferrerStage(v1::ReferralStatus s) {
  switch (s) {
    case v1::REFERRAL_STATUS_REQUESTED:
    case v1::REFERRAL_STATUS_OFFERED:
      return v1::ReferrerView::STAGE_ROUTING;
    case v1::REFERRAL_STATUS_ACCEPTED:
      return v1::ReferrerView::STAGE_READY_FOR_HANDOFF;
    case v1::REFERRAL_STATUS_HANDED_OFF:
    case v1::REFERRAL_STATUS_IN_PROGRESS:
    case v1::REFERRAL_STATUS_COMPLETED:
    case v1::REFERRAL_STATUS_YOUTH_DECLINED:
    case v1::REFERRAL_STATUS_COULD_NOT_CONTACT:
      return v1::ReferrerView::STAGE_CONNECTED_TO_SERVICES;
    case v1::REFERRAL_STATUS_ESCALATED:
      return v1::ReferrerView::STAGE_WITH_CHILD_WELFARE;
    case v1::REFERRAL_STATUS_CANCELLED:
      return v1::ReferrerView::STAGE_CANCELLED;
    default:
      return v1::ReferrerView::STAGE_UNSPECIFIED;
  }
}

absl::Duration AcceptanceWindow(v1::Urgency urgency, const DeadlinePolicy& p) {
  switch (urgency) {
    case v1::URGENCY_EMERGENCY:
      return p.emergency;
    case v1::URGENCY_URGENT:
      return p.urgent;
    default:
      return p.routine;
  }
}

}  // namespace safeharbor::referrals
