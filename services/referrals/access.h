// Pure: who may act on a referral and who may read it (the organization scope of the referral
// RPCs: its parties, or child welfare in its region).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/auth.h"
#include "safeharbor/referrals/v1/referrals.pb.h"
#include "services/referrals/lifecycle.h"

namespace safeharbor::referrals {

// The caller's part in this referral; PERMISSION_DENIED when it has none (a law-enforcement
// referrer has none in a part of its referral: issue 14, one referral, several needs).
absl::StatusOr<Actor> ActorFor(const Caller& c, const v1::Referral& r);

// Issue 14: `org` is the on-call child-welfare office this ESCALATED referral is with.
bool EscalatedTo(const v1::Referral& r, absl::string_view org);

// The caller may see this referral at all: one of its parties, or a child-welfare office whose
// `region` (counties) holds it, or the on-call office it was escalated to.
absl::Status CanRead(const Caller& c, const v1::Referral& r,
                     const std::vector<std::string>& region);

// What a party that changed the referral is answered (ConfirmHandoff, StartServices,
// RecordOutcome): a provider its provider view, child welfare (the on-call office that accepted
// an escalated referral, issue 14) the record without identifying details.
v1::Referral ChangedView(const Caller& c, const v1::Referral& r);

// The FHIR view (GetReferralFhir) is for child welfare and the provider that accepted the
// referral; any other provider is refused (its offer is answered through GetReferral).
absl::Status CanReadFhir(const Caller& c, const v1::Referral& r);

}  // namespace safeharbor::referrals
