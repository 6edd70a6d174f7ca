// A fixed-size thread pool with a bounded queue. Blocking work (PostgreSQL, Redis) runs here,
// never on a gRPC callback thread. A full queue refuses work instead of growing.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"

namespace safeharbor {

class Executor {
 public:
  Executor(size_t threads, size_t max_queued);
  ~Executor();  // Runs what was queued, then joins.

  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // False when the queue is full or the executor is shutting down; the task is not run.
  bool TrySubmit(std::function<void()> task);
  // Stops taking work, runs what is queued, joins the threads. Idempotent.
  void Shutdown();

  size_t queued() const;

 private:
  void Loop();

  const size_t max_queued_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace safeharbor
