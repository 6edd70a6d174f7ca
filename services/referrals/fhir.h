// Pure: a FHIR R4 view of a referral, for partners who expect FHIR resources (the accepting
// provider and child welfare; never law enforcement). A Bundle of type "collection" holding:
//   - a ServiceRequest for the referral (id the lead's; status from the lifecycle of its rows,
//     priority from the urgency, the needs of the rows given as codes, requester and performers
//     as organization identifiers);
//   - a Task per need (issue 14: per row, the lead and each part; id "<row id>-need"): status
//     and businessStatus from the row's lifecycle, the need as code, owner the accepting
//     provider (or the on-call office it was escalated to), focus the request;
//   - a Task per offer of each row (status and businessStatus from the offer and the row's
//     lifecycle, statusReason from the decline reason; owner the offered provider; partOf its
//     need's Task, focus the request), and a Task per statutory timer of each row;
//   - the youth as a Patient carrying only the opaque reference, age, gender and languages, and
//     the identifying details only when the view given holds them (the provider that accepted).
// The mapping is in the README ("A FHIR view of a referral"). It maps the view it is given and
// adds nothing: the caller decides what the view may hold (views.h, ReadAs).
#pragma once

#include <string>
#include <vector>

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
// ServiceRequest.status of a referral whose rows are in these statuses (issue 14): one row's
// as above; of several, "active" while one is open, then "revoked" when every one was
// cancelled, else "completed".
const char* FhirRequestStatus(const std::vector<v1::ReferralStatus>& rows);
// FHIR Task.status for one offer of a referral in `status`.
FhirTaskStatus FhirTaskStatusOf(const v1::Offer& offer, v1::ReferralStatus status);
// FHIR Task.status of a need (a row) in `status` (issue 14).
FhirTaskStatus FhirNeedStatusOf(v1::ReferralStatus status);

// The Bundle as FHIR JSON (application/fhir+json), stamped `now`, of the views given: the row
// asked for first (its youth view is the Patient), then any other rows of its referral the
// caller may see (child welfare: every row).
absl::StatusOr<std::string> ReferralFhirBundle(const std::vector<v1::Referral>& rows,
                                               absl::Time now);

}  // namespace safeharbor::referrals
