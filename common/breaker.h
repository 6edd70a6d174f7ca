// A circuit breaker for one dependency (a gRPC peer, PostgreSQL). After `failure_threshold`
// consecutive failures or time-outs it opens: calls that need the dependency are refused at once
// with UNAVAILABLE naming it, instead of waiting on it. After `open_for`, one call is let through
// (half-open); its answer closes the breaker, its failure opens it again. A health probe may
// trip it open at once. The decisions use only the injected clock and what the breaker is told,
// so tests drive it directly.
#pragma once

#include <functional>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/prometheus_fwd.h"

namespace safeharbor {

enum class BreakerState { kClosed = 0, kHalfOpen = 1, kOpen = 2 };

struct BreakerOptions {
  int failure_threshold = 3;                   // consecutive failures or time-outs that open it
  absl::Duration open_for = absl::Seconds(1);  // refused this long before a probe call
};

class Breaker {
 public:
  // Told every change of state (e.g. to set a gauge); may be empty.
  using Observer = std::function<void(BreakerState)>;

  Breaker(std::string dependency, const Clock* clock, BreakerOptions options = {},
          Observer on_change = {});

  // Whether a call may go to the dependency now. Closed: yes. Open: no, until `open_for` has
  // passed; then one call (the probe) is let through and the breaker is half-open until that
  // call reports (or `open_for` passes again without a report).
  bool Allow();
  void Succeeded();  // the dependency answered (an error it answered with counts too)
  void Failed();     // it failed to answer: connection lost, time-out
  void Trip();       // open now (a health probe found it not answering)

  BreakerState state() const;
  const std::string& dependency() const { return dependency_; }
  // What a refused call answers: UNAVAILABLE naming the dependency.
  absl::Status Refusal() const;

 private:
  void Open(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Set(BreakerState s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dependency_;
  const Clock* const clock_;
  const BreakerOptions options_;
  const Observer on_change_;
  mutable std::mutex mu_;
  BreakerState state_ ABSL_GUARDED_BY(mu_) = BreakerState::kClosed;
  int failures_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time since_ ABSL_GUARDED_BY(mu_);  // opened, or the probe let through
};

// Whether a call to a dependency that timed out counts as the dependency's failure (toward its
// breaker and its time-out metric): only when the call was given at least half its cap. A caller
// that left too little time timed out by its own deadline; that is not the dependency's fault.
bool TimeoutIsTheDependencys(absl::Duration given, absl::Duration cap);

// Metrics of one dependency, labelled by its name (a fixed, small set: "directory", "beds",
// "postgres"): safeharbor_dependency_breaker_state (0 closed, 1 half-open, 2 open) and
// safeharbor_dependency_timeouts_total. `registry` may be null (then both do nothing).
class DependencyMetrics {
 public:
  DependencyMetrics(prometheus::Registry* registry, const std::string& dependency);
  Breaker::Observer StateObserver() const;
  void TimedOut() const;

 private:
  prometheus::Gauge* state_ = nullptr;
  prometheus::Counter* timeouts_ = nullptr;
};

}  // namespace safeharbor
