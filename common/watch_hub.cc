#include "common/watch_hub.h"

#include <hiredis/hiredis.h>

namespace safeharbor {

absl::StatusOr<int64_t> PrunedThrough(PgTx& tx, absl::string_view table) {
  SH_ASSIGN_OR_RETURN(auto r, tx.Exec("SELECT coalesce(max(through_seq), 0) AS s FROM watch_pruned "
                                      "WHERE events_table = $1",
                                      {table}));
  return r.Int64(0, "s");
}

absl::StatusOr<int64_t> PruneEvents(PgTx& tx, absl::string_view table, absl::Time before) {
  // Never the newest event: the next sequence number follows it.
  SH_ASSIGN_OR_RETURN(
      auto r, tx.Exec(absl::StrCat("WITH doomed AS (DELETE FROM ", table,
                                   " WHERE at < $1 AND seq < (SELECT max(seq) FROM ", table,
                                   ") RETURNING seq) "
                                   "UPDATE watch_pruned SET through_seq = greatest(through_seq, "
                                   "(SELECT coalesce(max(seq), 0) FROM doomed)) "
                                   "WHERE events_table = $2 "
                                   "RETURNING (SELECT count(*) FROM doomed) AS n"),
                      {PgTime(before), table}));
  return r.rows() > 0 ? r.Int64(0, "n") : 0;
}

void WatchHubBase::Start() {
  if (started_) return;
  started_ = true;
  loop_thread_ = std::thread([this] { Loop(); });
  if (prune_task_) prune_task_->Start();
  if (redis_ != nullptr) subscribe_thread_ = std::thread([this] { SubscribeLoop(); });
}

void WatchHubBase::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (prune_task_) prune_task_->Stop();
  if (loop_thread_.joinable()) loop_thread_.join();
  if (subscribe_thread_.joinable()) subscribe_thread_.join();
  // Only now: the hub thread, which deletes finished watchers, has stopped.
  std::lock_guard<std::mutex> lock(mu_);
  FinishAllLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down; resume"));
}

void WatchHubBase::Notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    notified_ = true;
  }
  cv_.notify_all();  // The subscribe thread waits on the same condition variable.
}

void WatchHubBase::Loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.poll_interval),
                   [this] { return stop_ || notified_; });
      if (stop_) return;
      notified_ = false;
    }
    Dispatch();
  }
}

void WatchHubBase::SubscribeLoop() {
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
    }
    const timeval connect = absl::ToTimeval(redis_->connect_timeout);
    redisContext* c = redisConnectWithTimeout(redis_->host.c_str(), redis_->port, connect);
    if (c != nullptr && c->err == 0 && RedisAuthenticate(c, redis_->password).ok()) {
      const timeval read_timeout = absl::ToTimeval(absl::Seconds(1));
      redisSetTimeout(c, read_timeout);
      auto* r = static_cast<redisReply*>(redisCommand(c, "SUBSCRIBE %s", channel_.c_str()));
      if (r != nullptr) {
        freeReplyObject(r);
        Notify();  // Anything published while we were not subscribed is read from PostgreSQL.
        for (;;) {
          void* reply = nullptr;
          if (redisGetReply(c, &reply) != REDIS_OK) break;  // Timeout or error: reconnect.
          freeReplyObject(reply);
          Notify();
          std::lock_guard<std::mutex> lock(mu_);
          if (stop_) break;
        }
      }
    }
    if (c != nullptr) redisFree(c);
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock, std::chrono::milliseconds(200), [this] { return stop_; })) return;
  }
}

}  // namespace safeharbor
