#include "services/referrals/hold_follow.h"

#include "services/referrals/router.h"

namespace safeharbor::referrals {

ExtensionStep ClassifyExtension(const absl::Status& answer, int attempts, int max_attempts) {
  if (answer.ok()) return ExtensionStep::kExtended;
  if (answer.code() == absl::StatusCode::kFailedPrecondition ||
      answer.code() == absl::StatusCode::kNotFound) {
    return ExtensionStep::kLost;
  }
  if (IsOutage(answer) && attempts + 1 < max_attempts) return ExtensionStep::kRetry;
  return ExtensionStep::kFailed;
}

const char* ExtensionStepLabel(ExtensionStep step) {
  switch (step) {
    case ExtensionStep::kExtended:
      return "extended";
    case ExtensionStep::kRetry:
      return "retry";
    case ExtensionStep::kLost:
      return "lost";
    case ExtensionStep::kFailed:
      break;
  }
  return "failed";
}

bool AwaitsHandoffWithHold(const v1::Referral& referral, const std::string& hold_id) {
  return referral.status() == v1::REFERRAL_STATUS_ACCEPTED && !hold_id.empty() &&
         referral.bed_hold_id() == hold_id;
}

}  // namespace safeharbor::referrals
