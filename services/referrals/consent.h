// Consent to keep and share a youth's identifying details, and when they must be purged
// (DOMAIN.md §2): informed and time-limited; a youth of 13 or older may consent for themselves
// (RCW 43.185C.180(2)), otherwise a guardian consents. Identifying details are stored only under
// a consent that covers them, and purged when the consent is revoked or expires, or a retention
// period after the referral closes — whichever comes first. Pure: the service stores the record
// and runs the purge (retention.*); these functions decide. The only party that ever sees the
// details is the provider that accepted the referral (DESIGN.md, "Non-punitive by
// construction"), so that is the only scope there is.
#pragma once

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "safeharbor/referrals/v1/referrals.pb.h"
#include "services/referrals/lifecycle.h"

namespace safeharbor::referrals {

enum class ConsentGiver { kYouth, kGuardian };

// Who may see the identifying details under the consent (a bit set).
enum ConsentScope : uint32_t {
  kShareWithAcceptingProvider = 1u << 0,
};
inline constexpr uint32_t kAllConsentScopes = kShareWithAcceptingProvider;

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
  // At most this many calendar years (a year spanning February 29 is 366 days).
  int32_t max_years = 1;
  // A consent recorded without an expiry lasts this long.
  absl::Duration default_duration = absl::Hours(24 * 90);
  // Identifying details kept after the referral closes (then purged).
  absl::Duration retention_after_close = absl::Hours(24 * 90);
};

// INVALID_ARGUMENT naming the problem: a youth under the self-consent age consenting for
// themselves, no scope or an unknown one, an expiry not after it was given or beyond
// max_years, a consent given in the future (after `now`).
absl::Status ValidateConsent(const Consent& consent, const ConsentPolicy& policy, absl::Time now);

// The latest expiry a consent given at `given_at` may have: the same date and time of day
// `max_years` later (UTC; February 29 goes to March 1).
absl::Time LatestExpiry(absl::Time given_at, const ConsentPolicy& policy);

// Whether the consent lets identifying details be shared within `scope` at `now`: given, not
// yet expired, not revoked.
bool ConsentPermits(const Consent& consent, ConsentScope scope, absl::Time now);

// When identifying details kept under `consent` must be purged: the earliest of its revocation,
// its expiry, and `retention_after_close` after the referral closed (`closed_at`, absent while
// open). Details without a consent are due at once (InfinitePast).
absl::Time PurgeDue(const std::optional<Consent>& consent, std::optional<absl::Time> closed_at,
                    const ConsentPolicy& policy);

// The record kept for a request's consent, as given at `now` by a youth of `age_years`: a
// consent without an expiry lasts `default_duration`; scopes the proto does not know are kept
// as an unknown bit so that ValidateConsent refuses them.
Consent ConsentFromProto(const v1::Consent& consent, int32_t age_years, absl::Time now,
                         const ConsentPolicy& policy);
Consent StoredConsent(const v1::Consent& stored, int32_t age_years);  // as recorded
void SetConsentProto(const Consent& consent, v1::Consent* out);

bool HasIdentifying(const v1::IdentifyingDetails& details);

// The intake's rule: identifying details only under a valid consent that lets the accepting
// provider see them; INVALID_ARGUMENT naming the field otherwise. A consent without details is
// accepted and keeps nothing.
absl::Status ValidateIntakeConsent(const v1::YouthProfile& youth, const ConsentPolicy& policy,
                                   absl::Time now);
// The youth profile as stored: its consent stamped with the time given and its expiry.
void StampConsent(v1::YouthProfile* youth, const ConsentPolicy& policy, absl::Time now);
// Who may revoke: the youth's consent is withdrawn through any party that is with them — the
// referrer, child welfare, the provider that accepted — but not a provider that has only an
// offer (it never held the details; PERMISSION_DENIED).
absl::Status CanRevokeConsent(Actor actor);
// Whether the accepting provider may see the stored details at `now`.
bool IdentityVisible(const v1::YouthProfile& stored, absl::Time now);

// What a purge leaves of a referral (or a party's view of it): no identifying details and none
// of the free text a provider, officer or office typed, which may identify the youth — the
// offers' decline and waitlist text, the outcome's text, the cancellation's text. Codes, times
// and the routing's own explanations stay. True when anything was removed.
bool ScrubPurged(v1::Referral* r);

}  // namespace safeharbor::referrals
