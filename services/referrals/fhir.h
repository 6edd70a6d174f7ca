// A FHIR R4 view of a referral (issue 15, started): a Bundle (type collection) holding a
// ServiceRequest for the referral, a Task per offer (status and businessStatus from the
// lifecycle, statusReason from the coded reasons) and the youth as a Patient carrying only the
// opaque reference — with the identifying details only when the caller may see them (the
// accepting provider). Pure: the caller decides who may see what.
#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "safeharbor/referrals/v1/referrals.pb.h"

namespace safeharbor::referrals {

// FHIR request-status of the ServiceRequest: active, completed or revoked.
absl::string_view FhirServiceRequestStatus(v1::ReferralStatus status);

struct FhirTaskStatus {
  absl::string_view status;     // FHIR task-status: requested, accepted, rejected, …
  std::string business_status;  // the referral's own step, e.g. "handed-off"
  std::string status_reason;    // why it was rejected, failed or cancelled ("" when none)
};
// One offer's Task, given the referral's status (an accepted offer follows the referral).
FhirTaskStatus FhirTaskStatusOf(const v1::Offer& offer, v1::ReferralStatus referral_status);

// The Bundle as JSON. `referral.youth().identifying()` appears (Patient.name, telecom) only when
// `with_identity`.
std::string ReferralFhirBundle(const v1::Referral& referral, bool with_identity);

}  // namespace safeharbor::referrals
