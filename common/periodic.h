// One helper for every background loop (hold sweeping, routing and timers, gauges): a named task
// run every `interval` on its own thread, woken early on demand, stopped and joined on Stop.
// Tests with an injected clock do not Start it; they call RunOnce.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/prometheus_fwd.h"

namespace safeharbor {

class PeriodicTask {
 public:
  // `registry` may be null; else safeharbor_background_runs_total{task,outcome} counts runs.
  PeriodicTask(std::string name, absl::Duration interval, std::function<absl::Status()> run,
               prometheus::Registry* registry = nullptr);
  ~PeriodicTask();  // Stops.

  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;

  void Start();  // Idempotent.
  void Stop();   // Waits for a run in progress; idempotent.
  // Runs now on the caller's thread (tests); a failure is logged and counted as well.
  absl::Status RunOnce();
  // The next run starts at once instead of after the interval.
  void Wake();

  const std::string& name() const { return name_; }

 private:
  void Loop();

  const std::string name_;
  const absl::Duration interval_;
  const std::function<absl::Status()> run_;
  prometheus::Family<prometheus::Counter>* runs_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool wake_ = false;
  std::thread thread_;
};

}  // namespace safeharbor
