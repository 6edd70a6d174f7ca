#include "common/periodic.h"

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "common/log.h"

namespace safeharbor {

PeriodicTask::PeriodicTask(std::string name, absl::Duration interval,
                           std::function<absl::Status()> run, prometheus::Registry* registry)
    : name_(std::move(name)), interval_(interval), run_(std::move(run)) {
  if (registry == nullptr) return;
  runs_ = &prometheus::BuildCounter()
               .Name("safeharbor_background_runs_total")
               .Help("Runs of background tasks, by task and outcome (ok, failed).")
               .Register(*registry);
  runs_->Add({{"task", name_}, {"outcome", "ok"}});
  runs_->Add({{"task", name_}, {"outcome", "failed"}});
}

PeriodicTask::~PeriodicTask() { Stop(); }

void PeriodicTask::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void PeriodicTask::Stop() {
  std::thread running;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    running = std::move(thread_);
  }
  cv_.notify_all();
  if (running.joinable()) running.join();
}

void PeriodicTask::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

absl::Status PeriodicTask::RunOnce() {
  absl::Status st = run_();
  if (runs_ != nullptr) {
    runs_->Add({{"task", name_}, {"outcome", st.ok() ? "ok" : "failed"}}).Increment();
  }
  if (!st.ok()) log::Warn("background_task_failed", {{"task", name_}, {"error", st.message()}});
  return st;
}

void PeriodicTask::Loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, absl::ToChronoMilliseconds(interval_), [this] { return stop_ || wake_; });
      if (stop_) return;
      wake_ = false;
    }
    (void)RunOnce();
  }
}

}  // namespace safeharbor
