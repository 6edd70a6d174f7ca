#include "common/breaker.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace safeharbor {
namespace {

const char* StateName(BreakerState s) {
  switch (s) {
    case BreakerState::kClosed:
      return "closed";
    case BreakerState::kHalfOpen:
      return "half_open";
    case BreakerState::kOpen:
      return "open";
  }
  return "unknown";
}

}  // namespace

Breaker::Breaker(std::string dependency, const Clock* clock, BreakerOptions options,
                 Observer on_change)
    : dependency_(std::move(dependency)),
      clock_(clock),
      options_(options),
      on_change_(std::move(on_change)) {
  if (on_change_) on_change_(BreakerState::kClosed);
}

bool Breaker::Allow() {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ == BreakerState::kClosed) return true;
  const absl::Time now = clock_->Now();
  if (now - since_ < options_.open_for) return false;
  // Open long enough, or a probe that never reported: let one call through.
  since_ = now;
  Set(BreakerState::kHalfOpen);
  return true;
}

void Breaker::Succeeded() {
  std::lock_guard<std::mutex> lock(mu_);
  failures_ = 0;
  Set(BreakerState::kClosed);
}

void Breaker::Failed() {
  std::lock_guard<std::mutex> lock(mu_);
  ++failures_;
  if (state_ == BreakerState::kHalfOpen ||
      (state_ == BreakerState::kClosed && failures_ >= options_.failure_threshold)) {
    Open(clock_->Now());
  }
}

void Breaker::Trip() {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != BreakerState::kOpen) Open(clock_->Now());
}

BreakerState Breaker::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

absl::Status Breaker::Refusal() const {
  return absl::UnavailableError(absl::StrCat(
      dependency_, " is not answering (circuit breaker open); not called, retry with backoff"));
}

void Breaker::Open(absl::Time now) {
  since_ = now;
  Set(BreakerState::kOpen);
}

void Breaker::Set(BreakerState s) {
  if (s == state_) return;
  const BreakerState from = state_;
  state_ = s;
  // Closing after a probe, and opening, are what an operator follows; half-open is routine.
  if (s != BreakerState::kHalfOpen) {
    log::Warn("breaker_state",
              {{"dependency", dependency_}, {"from", StateName(from)}, {"to", StateName(s)}});
  }
  if (on_change_) on_change_(s);
}

bool TimeoutIsTheDependencys(absl::Duration given, absl::Duration cap) { return given >= cap / 2; }

DependencyMetrics::DependencyMetrics(prometheus::Registry* registry,
                                     const std::string& dependency) {
  if (registry == nullptr) return;
  state_ = &prometheus::BuildGauge()
                .Name("safeharbor_dependency_breaker_state")
                .Help(
                    "Circuit breaker of a dependency: 0 closed, 1 half-open (one probe call), "
                    "2 open (calls that need it refused at once).")
                .Register(*registry)
                .Add({{"dependency", dependency}});
  timeouts_ = &prometheus::BuildCounter()
                   .Name("safeharbor_dependency_timeouts_total")
                   .Help(
                       "Calls to a dependency that did not answer in time, when given at least "
                       "half their cap (a caller's own short deadline is not counted).")
                   .Register(*registry)
                   .Add({{"dependency", dependency}});
}

Breaker::Observer DependencyMetrics::StateObserver() const {
  prometheus::Gauge* g = state_;
  if (g == nullptr) return {};
  return [g](BreakerState s) { g->Set(static_cast<double>(s)); };
}

void DependencyMetrics::TimedOut() const {
  if (timeouts_ != nullptr) timeouts_->Increment();
}

}  // namespace safeharbor
