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
      if (AcceptedBy(r, c.org_id)) return Actor::kAcceptedProvider;
      if (ActiveOfferTo(r, c.org_id) != nullptr) return Actor::kOfferedProvider;
      return denied;
    case Role::kLawEnforcement:
      // Issue 14: the referrer holds the lead; a part is refused like another's referral.
      if (r.referrer_organization_id() == c.org_id && r.parent_id().empty()) {
        return Actor::kReferrer;
      }
      return denied;
    case Role::kChildWelfare:
      // Issue 14: the on-call office an escalated referral is with carries it on, and once it
      // accepted the referral itself it is the accepted party. CanRead checks the region.
      if (AcceptedBy(r, c.org_id)) return Actor::kAcceptedOffice;
      if (EscalatedTo(r, c.org_id)) return Actor::kEscalationOffice;
      return Actor::kChildWelfare;
    default:
      return absl::PermissionDeniedError(
          absl::StrCat("role '", RoleName(c.role), "' may not act on referrals"));
  }
}

bool EscalatedTo(const v1::Referral& r, absl::string_view org) {
  return r.status() == v1::REFERRAL_STATUS_ESCALATED && !org.empty() &&
         r.handoff().provider_organization_id() == org;
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
  // The on-call office a referral was escalated to owns it, wherever it is, and keeps it once
  // it accepted it itself (issue 14).
  if (EscalatedTo(r, c.org_id) || AcceptedBy(r, c.org_id)) return absl::OkStatus();
  return absl::PermissionDeniedError("this referral is outside your child-welfare region");
}

v1::Referral ChangedView(const Caller& c, const v1::Referral& r) {
  if (c.role == Role::kProvider) return ProviderViewOf(r, c.org_id);
  v1::Referral v = r;
  v.mutable_youth()->clear_identifying();  // Child welfare: never the identity.
  return v;
}

absl::Status CanReadFhir(const Caller& c, const v1::Referral& r) {
  if (c.role != Role::kProvider) return absl::OkStatus();
  if (AcceptedBy(r, c.org_id)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      "the FHIR view of a referral is for the provider that accepted it");
}

}  // namespace safeharbor::referrals
