#include "services/referrals/consent.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace safeharbor::referrals {

absl::Status ValidateConsent(const Consent& consent, const ConsentPolicy& policy, absl::Time now) {
  if (consent.giver == ConsentGiver::kYouth &&
      consent.youth_age_years < policy.self_consent_min_age_years) {
    return absl::InvalidArgumentError(
        absl::StrCat("consent: a youth under ", policy.self_consent_min_age_years,
                     " cannot consent for themselves; a guardian must (RCW 43.185C.180(2))"));
  }
  if (consent.scopes == 0 || (consent.scopes & ~kAllConsentScopes) != 0) {
    return absl::InvalidArgumentError("consent: name what may be shared, and with whom");
  }
  if (consent.given_at > now) {
    return absl::InvalidArgumentError("consent: given in the future");
  }
  if (consent.expires_at <= consent.given_at) {
    return absl::InvalidArgumentError("consent: the expiry must be after it was given");
  }
  if (consent.expires_at - consent.given_at > policy.max_duration) {
    return absl::InvalidArgumentError(absl::StrCat(
        "consent: at most ", absl::FormatDuration(policy.max_duration), " (time-limited)"));
  }
  return absl::OkStatus();
}

bool ConsentPermits(const Consent& consent, ConsentScope scope, absl::Time now) {
  if ((consent.scopes & scope) == 0) return false;
  if (consent.revoked_at && *consent.revoked_at <= now) return false;
  return consent.given_at <= now && now < consent.expires_at;
}

absl::Time PurgeDue(const std::optional<Consent>& consent, std::optional<absl::Time> closed_at,
                    const ConsentPolicy& policy) {
  if (!consent) return absl::InfinitePast();
  absl::Time due = consent->expires_at;
  if (consent->revoked_at) due = std::min(due, *consent->revoked_at);
  if (closed_at) due = std::min(due, *closed_at + policy.retention_after_close);
  return due;
}

}  // namespace safeharbor::referrals
