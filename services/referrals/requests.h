// Pure: validation of referral requests at the edge, and the changes RPCs make to offers.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/counties.h"
#include "safeharbor/referrals/v1/referrals.pb.h"

namespace safeharbor::referrals {

// INVALID_ARGUMENT naming the field. request_id is checked by the method table.
absl::Status ValidateCreate(const v1::CreateReferralRequest& req, const CountyTable& counties);
absl::Status ValidateReason(absl::string_view reason);
absl::Status ValidateOutcome(v1::ReferralStatus outcome);

// The pending offer to `org`, or null.
v1::Offer* PendingOfferTo(v1::Referral& r, absl::string_view org);
bool AnyPending(const v1::Referral& r);
// Every pending offer becomes `state`; the bed hold (if any) is to be released after commit.
void CloseOffers(v1::Referral& r, v1::OfferState state, std::vector<std::string>* holds);

}  // namespace safeharbor::referrals
