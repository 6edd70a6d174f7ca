// Pure: a FHIR R4 view of a referral, for partners who expect FHIR resources (the accepting
// provider and child welfare; never law enforcement). A Bundle of type "collection" holding:
//   - a ServiceRequest for the referral (status from the lifecycle, priority from the urgency,
//     the needs as codes, requester and performer as organization identifiers);
//   - a Task per offer (status and businessStatus from the offer and the referral's lifecycle,
//     statusReason from the decline reason; owner the offered provider; focus the request);
//   - the youth as a Patient carrying only the opaque reference, age, gender and languages, and
//     the identifying details only when the view given holds them (the provider that accepted).
// The mapping is in the README ("A FHIR view of a referral"). It maps the view it is given and
// adds nothing: the caller decides what the view may hold (views.h, ReadAs).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "safeharbor/referrals/v1/referrals.pb.h"

namespace safeharbor::referrals {

// FHIR ServiceRequest.status for a referral's status.
const char* FhirRequestStatus(v1::ReferralStatus status);

struct FhirTaskStatus {
  const char* status;           // Task.status
  std::string business_status;  // Task.businessStatus.text
};
// FHIR Task.status for one offer of a referral in `status`.
FhirTaskStatus FhirTaskStatusOf(const v1::Offer& offer, v1::ReferralStatus status);

// The Bundle as FHIR JSON (application/fhir+json), stamped `now`.
absl::StatusOr<std::string> ReferralFhirBundle(const v1::Referral& view, absl::Time now);

}  // namespace safeharbor::referrals
