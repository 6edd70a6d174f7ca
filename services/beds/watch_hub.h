// WatchAvailability fan-out. PostgreSQL's availability_events table is the source of truth and
// its sequence is the resume cursor, so a client that reconnects with its last cursor misses
// nothing, across restarts and Redis outages. One hub thread per process reads new events and
// feeds every watcher's bounded queue; Redis pub/sub only wakes the hubs of all replicas at once
// (a poll every watch_poll_interval covers Redis being down). Never blocks a reactor thread.
#pragma once

#include <grpcpp/grpcpp.h>
#include <prometheus/gauge.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "common/pg.h"
#include "common/redis.h"
#include "safeharbor/beds/v1/beds.pb.h"

namespace safeharbor::beds {

struct BedsOptions;

class WatchHub {
 public:
  // `redis` may be null (poll only). `channel` is the Redis pub/sub channel. Destroy the hub
  // only after the gRPC server serving its watchers has shut down.
  WatchHub(PgPool* pg, const RedisOptions* redis, std::string channel, const BedsOptions& options,
           prometheus::Gauge* watchers_gauge);
  ~WatchHub();

  void Start();
  void Stop();
  // Wakes this hub (after a local commit).
  void Notify();

  // The reactor for one WatchAvailability call. It finishes at once with `error` when that is
  // not OK, or on a malformed cursor.
  grpc::ServerWriteReactor<v1::WatchAvailabilityResponse>* NewWatcher(
      const v1::WatchAvailabilityRequest& req, const grpc::Status& error = grpc::Status::OK);

  class Watcher;

 private:
  void Loop();
  void SubscribeLoop();
  void Dispatch();

  PgPool* pg_;
  const RedisOptions* redis_;
  const std::string channel_;
  const BedsOptions& options_;
  prometheus::Gauge* watchers_gauge_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ = false;
  std::set<Watcher*> watchers_ ABSL_GUARDED_BY(mu_);
  std::thread loop_thread_;
  std::thread subscribe_thread_;
};

}  // namespace safeharbor::beds
