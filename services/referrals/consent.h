// Consent to keep and share a youth's identifying details, and when they must be purged
// (DOMAIN.md §2): informed and time-limited; a youth of 13 or older may consent for themselves
// (RCW 43.185C.180(2)), otherwise a guardian consents. Identifying details are stored only under
// a consent that covers them, and purged when the consent is revoked or expires, or a retention
// period after the referral closes — whichever comes first. Pure: the service stores the record
// and runs the purge; these functions decide.
#pragma once

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace safeharbor::referrals {

enum class ConsentGiver { kYouth, kGuardian };

// Who may see the identifying details under the consent (a bit set).
enum ConsentScope : uint32_t {
  kShareWithAcceptingProvider = 1u << 0,
  kShareWithChildWelfare = 1u << 1,
};
inline constexpr uint32_t kAllConsentScopes = kShareWithAcceptingProvider | kShareWithChildWelfare;

struct Consent {
  ConsentGiver giver = ConsentGiver::kYouth;
  int32_t youth_age_years = 0;  // when it was given
  uint32_t scopes = 0;          // ConsentScope bits
  absl::Time given_at;
  absl::Time expires_at;
  std::optional<absl::Time> revoked_at;
};

struct ConsentPolicy {
  int32_t self_consent_min_age_years = 13;  // RCW 43.185C.180(2)
  absl::Duration max_duration = absl::Hours(24 * 365);
  // Identifying details kept after the referral closes (then purged).
  absl::Duration retention_after_close = absl::Hours(24 * 90);
};

// INVALID_ARGUMENT naming the problem: a youth under the self-consent age consenting for
// themselves, no scope or an unknown one, an expiry not after it was given or beyond
// max_duration, a consent given in the future (after `now`).
absl::Status ValidateConsent(const Consent& consent, const ConsentPolicy& policy, absl::Time now);

// Whether the consent lets identifying details be shared within `scope` at `now`: given, not
// yet expired, not revoked.
bool ConsentPermits(const Consent& consent, ConsentScope scope, absl::Time now);

// When identifying details kept under `consent` must be purged: the earliest of its revocation,
// its expiry, and `retention_after_close` after the referral closed (`closed_at`, absent while
// open). Details without a consent are due at once (InfinitePast).
absl::Time PurgeDue(const std::optional<Consent>& consent, std::optional<absl::Time> closed_at,
                    const ConsentPolicy& policy);

}  // namespace safeharbor::referrals
