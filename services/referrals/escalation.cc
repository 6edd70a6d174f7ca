#include "services/referrals/escalation.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status_macros.h"

namespace safeharbor::referrals {

bool AskedAgainAfterRoutingAgain(const v1::Offer& offer) {
  switch (offer.state()) {
    case v1::OFFER_STATE_EXPIRED:
    case v1::OFFER_STATE_WITHDRAWN:
      return true;
    case v1::OFFER_STATE_DECLINED:
      return offer.decline_code() == v1::REASON_CODE_AT_CAPACITY;
    default:
      return false;  // Open or accepted: not a referral being routed again.
  }
}

namespace {

// The providers not asked in a round that began after offers[0..round_start).
std::set<std::string> NotAsked(const v1::Referral& r, int round_start) {
  std::set<std::string> out;
  round_start = std::clamp(round_start, 0, r.offers_size());
  for (int i = 0; i < r.offers_size(); ++i) {
    const v1::Offer& o = r.offers(i);
    if (i >= round_start || !AskedAgainAfterRoutingAgain(o))
      out.insert(o.provider_organization_id());
  }
  return out;
}

}  // namespace

std::set<std::string> NotAskedAgain(const v1::Referral& r) {
  return NotAsked(r, r.offers_before_routed_again());
}

std::vector<Option> AskableIfRoutedAgain(const v1::Referral& r, std::vector<Option> options) {
  const std::set<std::string> skip = NotAsked(r, r.offers_size());
  options.erase(
      std::remove_if(options.begin(), options.end(),
                     [&](const Option& o) { return skip.count(o.provider_organization_id) > 0; }),
      options.end());
  return options;
}

namespace {

// The on-call office an ESCALATED referral is with carries it on: FAILED_PRECONDITION (another
// status), PERMISSION_DENIED (another party).
absl::Status CheckOffice(const v1::Referral& r, Actor actor, absl::string_view done) {
  if (r.status() != v1::REFERRAL_STATUS_ESCALATED) {
    return absl::FailedPreconditionError(absl::StrCat("only an escalated referral is ", done,
                                                      " by child welfare (status ",
                                                      v1::ReferralStatus_Name(r.status()), ")"));
  }
  if (actor != Actor::kEscalationOffice) {
    return absl::PermissionDeniedError(absl::StrCat("an escalated referral is ", done,
                                                    " by the on-call office it was escalated to"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> AcceptEscalated(v1::Referral& r, Actor actor, absl::Time now) {
  SH_RETURN_IF_ERROR(CheckOffice(r, actor, "accepted"));
  *r.mutable_accepted_time() = ToProtoTime(now);
  return absl::StrCat("accepted by ", r.handoff().provider_organization_id(),
                      " (the on-call office)");
}

absl::StatusOr<bool> RouteAgain(v1::Referral& r, Actor actor, const std::string& request_id) {
  for (const std::string& done : r.routed_again_request_ids()) {
    if (done == request_id) return false;
  }
  SH_RETURN_IF_ERROR(CheckOffice(r, actor, "routed again"));
  r.set_routed_again(r.routed_again() + 1);
  r.add_routed_again_request_ids(request_id);
  r.set_reroutes(r.reroutes() + 1);
  r.set_offers_before_routed_again(r.offers_size());
  r.clear_routing_explanation();
  // Routed as any referral: no hand-off until one accepts; the office is kept for a new
  // escalation.
  *r.mutable_escalation_office() = r.handoff();
  r.clear_handoff();
  return true;
}

BedNotice NextBedNotice(bool seen_at_last_check, bool found_now) {
  if (found_now == seen_at_last_check) return BedNotice::kNone;
  return found_now ? BedNotice::kTell : BedNotice::kGone;
}

}  // namespace safeharbor::referrals
