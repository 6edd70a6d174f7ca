#include "common/deadline.h"

namespace safeharbor {
namespace {
thread_local absl::Time current_deadline = absl::InfiniteFuture();
}  // namespace

absl::Time CurrentCallDeadline() { return current_deadline; }

DeadlineScope::DeadlineScope(absl::Time deadline) : saved_(current_deadline) {
  current_deadline = deadline;
}

DeadlineScope::~DeadlineScope() { current_deadline = saved_; }

}  // namespace safeharbor
