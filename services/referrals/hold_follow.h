// The hold follows the referral (issue 14), the pure part: what a beds service answer to an
// extension means, and whether it still matters to the referral (retries wait WebhookBackoff).
// I/O lives in hold_follower.* (the outbox and the beds calls, run by the timers).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "safeharbor/referrals/v1/referrals.pb.h"

namespace safeharbor::referrals {

// What became of one attempt to extend a hold.
enum class ExtensionStep {
  kExtended,  // the beds service holds the bed to the hand-off deadline
  kRetry,     // an outage: tried again later
  kLost,      // the hold is gone (released, expired, confirmed, unknown): the bed is not promised
  kFailed,    // refused for another reason, or the retries ran out
};

// `attempts`: the attempts made before this one; `max_attempts` bounds them all.
ExtensionStep ClassifyExtension(const absl::Status& answer, int attempts, int max_attempts);

// "extended", "retry", "lost", "failed" (the metric label).
const char* ExtensionStepLabel(ExtensionStep step);

// Whether `referral` still waits for its hand-off with `hold_id` as its bed: an extension's
// result matters to it (else it was handed off, cancelled or re-routed meanwhile).
bool AwaitsHandoffWithHold(const v1::Referral& referral, const std::string& hold_id);

}  // namespace safeharbor::referrals
