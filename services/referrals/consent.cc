#include "services/referrals/consent.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"

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
  if (consent.expires_at > LatestExpiry(consent.given_at, policy)) {
    return absl::InvalidArgumentError(absl::StrCat("consent: at most ", policy.max_years,
                                                   " year(s) after it was given (time-limited)"));
  }
  return absl::OkStatus();
}

absl::Time LatestExpiry(absl::Time given_at, const ConsentPolicy& policy) {
  const absl::CivilSecond g = absl::ToCivilSecond(given_at, absl::UTCTimeZone());
  const absl::CivilSecond limit(g.year() + policy.max_years, g.month(), g.day(), g.hour(),
                                g.minute(), g.second());
  return absl::FromCivil(limit, absl::UTCTimeZone()) +
         (given_at - absl::FromCivil(g, absl::UTCTimeZone()));  // the sub-second part
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

namespace {

constexpr uint32_t kUnknownScope = 1u << 31;

ConsentGiver GiverOf(const v1::Consent& consent) {
  return consent.giver() == v1::Consent::GIVER_GUARDIAN ? ConsentGiver::kGuardian
                                                        : ConsentGiver::kYouth;
}

uint32_t ScopeBits(const v1::Consent& consent) {
  uint32_t bits = 0;
  for (int scope : consent.scopes()) {
    bits |= scope == v1::Consent::SCOPE_ACCEPTING_PROVIDER ? kShareWithAcceptingProvider
                                                           : kUnknownScope;
  }
  return bits;
}

}  // namespace

Consent ConsentFromProto(const v1::Consent& consent, int32_t age_years, absl::Time now,
                         const ConsentPolicy& policy) {
  Consent c;
  c.giver = GiverOf(consent);
  c.youth_age_years = age_years;
  c.scopes = ScopeBits(consent);
  c.given_at = now;
  c.expires_at = consent.has_expire_time() ? FromProtoTime(consent.expire_time())
                                           : now + policy.default_duration;
  return c;
}

Consent StoredConsent(const v1::Consent& stored, int32_t age_years) {
  Consent c;
  c.giver = GiverOf(stored);
  c.youth_age_years = age_years;
  c.scopes = ScopeBits(stored);
  c.given_at = FromProtoTime(stored.give_time());
  c.expires_at = FromProtoTime(stored.expire_time());
  if (stored.has_revoke_time()) c.revoked_at = FromProtoTime(stored.revoke_time());
  return c;
}

void SetConsentProto(const Consent& consent, v1::Consent* out) {
  out->set_giver(consent.giver == ConsentGiver::kGuardian ? v1::Consent::GIVER_GUARDIAN
                                                          : v1::Consent::GIVER_YOUTH);
  out->clear_scopes();
  if ((consent.scopes & kShareWithAcceptingProvider) != 0) {
    out->add_scopes(v1::Consent::SCOPE_ACCEPTING_PROVIDER);
  }
  *out->mutable_give_time() = ToProtoTime(consent.given_at);
  *out->mutable_expire_time() = ToProtoTime(consent.expires_at);
  if (consent.revoked_at) {
    *out->mutable_revoke_time() = ToProtoTime(*consent.revoked_at);
  } else {
    out->clear_revoke_time();
  }
}

bool HasIdentifying(const v1::IdentifyingDetails& d) {
  return !d.name().empty() || !d.contact().empty() || !d.notes().empty();
}

absl::Status ValidateIntakeConsent(const v1::YouthProfile& youth, const ConsentPolicy& policy,
                                   absl::Time now) {
  if (!youth.has_consent()) {
    if (!HasIdentifying(youth.identifying())) return absl::OkStatus();
    return absl::InvalidArgumentError(
        "youth.consent: identifying details are kept only with the youth's recorded consent (or "
        "a guardian's); send them with youth.consent, or leave youth.identifying out");
  }
  const v1::Consent& c = youth.consent();
  if (c.giver() != v1::Consent::GIVER_YOUTH && c.giver() != v1::Consent::GIVER_GUARDIAN) {
    return absl::InvalidArgumentError("youth.consent.giver: the youth or a guardian");
  }
  if (c.has_give_time() || c.has_revoke_time()) {
    return absl::InvalidArgumentError(
        "youth.consent: give_time and revoke_time are set by the service, not the request");
  }
  return ValidateConsent(ConsentFromProto(c, youth.age(), now, policy), policy, now);
}

void StampConsent(v1::YouthProfile* youth, const ConsentPolicy& policy, absl::Time now) {
  if (!youth->has_consent()) return;
  SetConsentProto(ConsentFromProto(youth->consent(), youth->age(), now, policy),
                  youth->mutable_consent());
}

absl::Status CanRevokeConsent(Actor actor) {
  if (actor == Actor::kOfferedProvider) {
    return absl::PermissionDeniedError(
        "only the provider that accepted the referral, its referrer or child welfare may "
        "revoke the youth's consent");
  }
  return absl::OkStatus();
}

bool IdentityVisible(const v1::YouthProfile& stored, absl::Time now) {
  return stored.has_consent() && ConsentPermits(StoredConsent(stored.consent(), stored.age()),
                                                kShareWithAcceptingProvider, now);
}

bool ScrubPurged(v1::Referral* r) {
  bool removed =
      r->youth().has_identifying() || !r->outcome_reason().empty() || !r->cancel_reason().empty();
  r->mutable_youth()->clear_identifying();
  r->clear_outcome_reason();
  r->clear_cancel_reason();
  for (v1::Offer& o : *r->mutable_offers()) {
    removed = removed || !o.decline_reason().empty();
    o.clear_decline_reason();
  }
  return removed;
}

}  // namespace safeharbor::referrals
