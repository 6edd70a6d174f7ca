// Pure: what each party may see of a referral (DESIGN.md "Non-punitive by construction").
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "safeharbor/referrals/v1/referrals.pb.h"

namespace safeharbor::referrals {

// The law-enforcement referrer's view: the hand-off place and contact while the youth is to be
// brought there (or to child welfare), then only the stage. Never outcomes or engagement.
v1::ReferrerView ReferrerViewOf(const v1::Referral& r);

// The pending or accepted offer to `provider_org`, or null.
const v1::Offer* ActiveOfferTo(const v1::Referral& r, absl::string_view provider_org);

// A provider's view: only its own offer, no other candidates, no routing explanation, and the
// identifying details only if it is the provider that accepted (the caller adds them).
v1::Referral ProviderViewOf(const v1::Referral& r, absl::string_view provider_org);

// The providers a change from `before` to `after` concerns on their watch streams: those with an
// active offer afterwards, and those whose offer changed (a withdrawn offer is news too).
std::vector<std::string> ProvidersConcerned(const v1::Referral& before, const v1::Referral& after);

}  // namespace safeharbor::referrals
