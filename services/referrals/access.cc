#include "services/referrals/access.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "services/referrals/views.h"

namespace safeharbor::referrals {

absl::StatusOr<Actor> ActorFor(const Caller& c, const v1::Referral& r) {
  const absl::Status denied =
      absl::PermissionDeniedError("this referral is not addressed to or made by your organization");
  switch (c.role) {
    case Role::kProvider:
      if (r.has_accepted_time() && r.handoff().provider_organization_id() == c.org_id) {
        return Actor::kAcceptedProvider;
      }
      if (ActiveOfferTo(r, c.org_id) != nullptr) return Actor::kOfferedProvider;
      return denied;
    case Role::kLawEnforcement:
      // Issue 14: the referrer holds the lead; a part is refused like another's referral.
      if (r.referrer_organization_id() == c.org_id && r.parent_id().empty()) {
        return Actor::kReferrer;
      }
      return denied;
    case Role::kChildWelfare:
      return Actor::kChildWelfare;  // CanRead checks the region.
    default:
      return absl::PermissionDeniedError(
          absl::StrCat("role '", RoleName(c.role), "' may not act on referrals"));
  }
}

absl::Status CanRead(const Caller& c, const v1::Referral& r,
                     const std::vector<std::string>& region) {
  auto actor = ActorFor(c, r);
  if (!actor.ok()) return actor.status();
  if (c.role != Role::kChildWelfare || r.referrer_organization_id() == c.org_id) {
    return absl::OkStatus();
  }
  if (std::find(region.begin(), region.end(), r.county_fips()) != region.end()) {
    return absl::OkStatus();
  }
  // The on-call office a referral was escalated to owns it, wherever it is.
  if (r.status() == v1::REFERRAL_STATUS_ESCALATED &&
      r.handoff().provider_organization_id() == c.org_id) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError("this referral is outside your child-welfare region");
}

absl::Status CanReadFhir(const Caller& c, const v1::Referral& r) {
  if (c.role != Role::kProvider) return absl::OkStatus();
  if (r.has_accepted_time() && r.handoff().provider_organization_id() == c.org_id) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      "the FHIR view of a referral is for the provider that accepted it");
}

}  // namespace safeharbor::referrals
