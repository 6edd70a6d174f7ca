// Checks that guard money and beds, on in every build (NDEBUG or not). A violated invariant
// never goes on silently: the call fails with INTERNAL (its transaction rolls back), the RPC
// layer counts safeharbor_invariant_violations_total{invariant} and logs an error.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace safeharbor {

// INTERNAL, naming the invariant, carrying it as a payload the RPC layer counts. Logs it.
absl::Status InvariantViolation(absl::string_view invariant, absl::string_view detail);
// The invariant a status reports, or "" when it is not an invariant violation.
std::string ViolatedInvariant(const absl::Status& status);

// Test hooks (also in release builds, so release tests can break an invariant on purpose):
// while set, SH_INVARIANT(…, invariant) fails as if its condition were false.
void ForceInvariantFailureForTest(absl::string_view invariant, bool on);
bool InvariantForcedToFail(absl::string_view invariant);

// Programming errors (a column that does not exist, a method table without an entry): logged,
// then abort. On in every build.
[[noreturn]] void ReleaseAssertFailed(const char* condition, const char* file, int line,
                                      absl::string_view detail);

}  // namespace safeharbor

// In a function returning absl::Status or absl::StatusOr: returns InvariantViolation when
// `cond` is false. `invariant` is a stable name such as "beds.capacity".
#define SH_INVARIANT(cond, invariant)                                         \
  do {                                                                        \
    if (!(cond) || ::safeharbor::InvariantForcedToFail(invariant)) {          \
      return ::safeharbor::InvariantViolation(invariant, "violated: " #cond); \
    }                                                                         \
  } while (0)

#define SH_RELEASE_ASSERT(cond, detail)                                                \
  do {                                                                                 \
    if (!(cond)) ::safeharbor::ReleaseAssertFailed(#cond, __FILE__, __LINE__, detail); \
  } while (0)
