// Pure: validation of referral requests at the edge, and the changes RPCs make to offers.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/counties.h"
#include "safeharbor/referrals/v1/referrals.pb.h"

namespace safeharbor::referrals {

// Issue 14, one referral, several needs: at most a placement and kMaxServiceNeeds distinct
// service categories.
inline constexpr int kMaxServiceNeeds = 5;
inline constexpr int kMaxNeeds = kMaxServiceNeeds + 1;

// INVALID_ARGUMENT naming the field (a category listed twice, more than kMaxServiceNeeds). The
// request_id is checked by the method table.
absl::Status ValidateCreate(const v1::CreateReferralRequest& req, const CountyTable& counties);
absl::Status ValidateReason(absl::string_view reason);
// The needs of a valid request, one per row to store, each exactly one need: the placement
// first (if asked for: the lead), then each service category in the order given.
std::vector<v1::Needs> SplitNeeds(const v1::Needs& needs);
absl::Status ValidateOutcome(v1::ReferralStatus outcome);

// The pending offer to `org`, or null.
v1::Offer* PendingOfferTo(v1::Referral& r, absl::string_view org);
// The open offer (pending or waitlisted) to `org`, or null.
v1::Offer* OpenOfferTo(v1::Referral& r, absl::string_view org);
bool AnyPending(const v1::Referral& r);
// Every open offer (pending or waitlisted) becomes `state`; the bed hold (if any) is to be
// released after commit.
void CloseOffers(v1::Referral& r, v1::OfferState state, std::vector<std::string>* holds);
// No pending offer left (declined, waitlisted): back to routing with a waitlisted offer left
// open; the bed hold is to be released and the deadline cleared. False when offers are pending.
bool BackToRoutingIfUnanswered(v1::Referral& r, std::vector<std::string>* holds);
// Waitlisted offers whose time has come lapse (EXPIRED); how many.
int LapseWaitlisted(v1::Referral& r, absl::Time now);

// Coded reasons (issue 14). The text beside a code is free and bounded (500 characters).
// A decline's code: reason_code, or REASON_CODE_OTHER for an older client's text alone;
// INVALID_ARGUMENT naming reason_code when neither is given, for REASON_CODE_COMPLETED, or for
// REASON_CODE_OTHER without text.
absl::StatusOr<v1::ReasonCode> DeclineCode(const v1::DeclineReferralRequest& req);
// An outcome's code: reason_code consistent with the outcome (COMPLETED with COMPLETED or
// REFERRED_ELSEWHERE, YOUTH_DECLINED with YOUTH_DECLINED, COULD_NOT_CONTACT with
// COULD_NOT_CONTACT, OTHER with any and text), or the outcome's own code when unset.
absl::StatusOr<v1::ReasonCode> OutcomeCode(const v1::RecordOutcomeRequest& req);
// INVALID_ARGUMENT naming the field; the time against the clock is CheckWaitlistUntil's.
absl::Status ValidateWaitlist(const v1::WaitlistReferralRequest& req);
// "at capacity" for REASON_CODE_AT_CAPACITY: what transitions and audit rows say (never the
// free text).
std::string ReasonLabel(v1::ReasonCode code);

}  // namespace safeharbor::referrals
