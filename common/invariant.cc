#include "common/invariant.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <set>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace safeharbor {
namespace {

constexpr absl::string_view kPayloadUrl = "safeharbor/invariant";

std::mutex& HookMutex() {
  static std::mutex mu;
  return mu;
}
std::set<std::string>& Hooks() {
  static std::set<std::string> hooks;
  return hooks;
}
std::atomic<bool> any_hook{false};  // the hot path reads it without the lock

}  // namespace

absl::Status InvariantViolation(absl::string_view invariant, absl::string_view detail) {
  log::Error("invariant_violated", {{"invariant", invariant}, {"detail", detail}});
  absl::Status st = absl::InternalError(
      absl::StrCat("internal invariant '", invariant, "' would be broken; nothing was changed"));
  st.SetPayload(kPayloadUrl, absl::Cord(invariant));
  return st;
}

std::string ViolatedInvariant(const absl::Status& status) {
  auto payload = status.GetPayload(kPayloadUrl);
  return payload ? std::string(*payload) : std::string();
}

void ForceInvariantFailureForTest(absl::string_view invariant, bool on) {
  std::lock_guard<std::mutex> lock(HookMutex());
  if (on) {
    Hooks().insert(std::string(invariant));
  } else {
    Hooks().erase(std::string(invariant));
  }
  any_hook = !Hooks().empty();
}

bool InvariantForcedToFail(absl::string_view invariant) {
  if (!any_hook.load(std::memory_order_relaxed)) return false;
  std::lock_guard<std::mutex> lock(HookMutex());
  return Hooks().count(std::string(invariant)) > 0;
}

void ReleaseAssertFailed(const char* condition, const char* file, int line,
                         absl::string_view detail) {
  log::Error(
      "release_assert_failed",
      {{"condition", condition}, {"where", absl::StrCat(file, ":", line)}, {"detail", detail}});
  std::abort();
}

}  // namespace safeharbor
