// The deadline of the call the current thread works for. The service kit sets it around each
// handler (rpc_kit.cc); outgoing calls (gRPC peers, PostgreSQL) derive theirs from it.
#pragma once

#include "absl/time/time.h"

namespace safeharbor {

// InfiniteFuture outside a call (background work).
absl::Time CurrentCallDeadline();

// Sets the current thread's call deadline for its scope.
class DeadlineScope {
 public:
  explicit DeadlineScope(absl::Time deadline);
  ~DeadlineScope();
  DeadlineScope(const DeadlineScope&) = delete;
  DeadlineScope& operator=(const DeadlineScope&) = delete;

 private:
  absl::Time saved_;
};

}  // namespace safeharbor
