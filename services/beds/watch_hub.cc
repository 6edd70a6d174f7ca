#include "services/beds/watch_hub.h"

#include <hiredis/hiredis.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "services/beds/beds_service.h"
#include "services/beds/beds_store.h"

namespace safeharbor::beds {

using Response = v1::WatchAvailabilityResponse;

// One stream. Only the hub thread deletes a watcher, after gRPC has called OnDone.
class WatchHub::Watcher final : public grpc::ServerWriteReactor<Response> {
 public:
  Watcher(WatchHub* hub, std::string county, int64_t cursor)
      : hub_(hub), county_(std::move(county)) {
    if (cursor >= 0) sent_cursor_ = absl::StrCat(cursor);
  }

  // From the hub thread, for a watcher that started "from now".
  void SetStart(int64_t seq) {
    std::lock_guard<std::mutex> lock(mu_);
    if (sent_cursor_.empty()) sent_cursor_ = absl::StrCat(seq);
  }

  // From the hub thread.
  void Deliver(const Response& r, size_t max_pending) {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_ || finishing_) return;
    if (queue_.size() >= max_pending) {
      FinishLocked(
          grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                       absl::StrCat("watcher fell behind; reconnect with cursor ", sent_cursor_)));
      return;
    }
    queue_.push_back(r);
    if (!writing_) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    sent_cursor_ = queue_.front().cursor();
    queue_.pop_front();
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed"));
      return;
    }
    if (finishing_) {
      if (!finished_) {
        finished_ = true;
        Finish(final_status_);
      }
      return;
    }
    if (!queue_.empty()) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    WatchHub* hub = hub_;  // Once done_ is set the hub thread may delete this watcher.
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    hub->Notify();
  }

  void FinishNow(const grpc::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    FinishLocked(status);
  }

  bool done() {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }
  const std::string& county() const { return county_; }
  int64_t last_seq = 0;  // hub thread only
  bool initialized = false;

 private:
  friend class WatchHub;
  void FinishLocked(const grpc::Status& status) {
    if (finishing_) return;
    finishing_ = true;
    final_status_ = status;
    if (!writing_ && !finished_) {
      finished_ = true;
      Finish(status);
    }
  }

  WatchHub* hub_;
  const std::string county_;
  std::mutex mu_;
  std::deque<Response> queue_;
  std::string sent_cursor_;
  bool writing_ = false;
  bool finishing_ = false;
  bool finished_ = false;
  bool done_ = false;
  grpc::Status final_status_;
};

WatchHub::WatchHub(PgPool* pg, const RedisOptions* redis, std::string channel,
                   const BedsOptions& options, prometheus::Gauge* watchers_gauge)
    : pg_(pg),
      redis_(redis),
      channel_(std::move(channel)),
      options_(options),
      watchers_gauge_(watchers_gauge) {}

WatchHub::~WatchHub() {
  Stop();
  // The owner destroys the hub after the server has shut down, so gRPC is done with every
  // watcher still listed (OnDone ran); any that is not would still be in use: leave it.
  std::lock_guard<std::mutex> lock(mu_);
  for (Watcher* w : watchers_) {
    if (w->done()) {
      delete w;
    } else {
      log::Error("watcher_outlived_hub", {});
    }
  }
  watchers_.clear();
}

void WatchHub::Start() {
  if (started_) return;
  started_ = true;
  loop_thread_ = std::thread([this] { Loop(); });
  if (redis_ != nullptr) subscribe_thread_ = std::thread([this] { SubscribeLoop(); });
}

void WatchHub::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (loop_thread_.joinable()) loop_thread_.join();
  if (subscribe_thread_.joinable()) subscribe_thread_.join();
  // Only now: the hub thread, which deletes finished watchers, has stopped.
  std::lock_guard<std::mutex> lock(mu_);
  for (Watcher* w : watchers_) {
    w->FinishNow(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down; resume"));
  }
}

void WatchHub::Notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    notified_ = true;
  }
  cv_.notify_all();  // The subscribe thread waits on the same condition variable.
}

grpc::ServerWriteReactor<Response>* WatchHub::NewWatcher(const v1::WatchAvailabilityRequest& req,
                                                         const grpc::Status& error) {
  int64_t cursor = -1;  // -1: from now
  grpc::Status bad = error;
  if (bad.ok() && !req.cursor().empty() &&
      (!absl::SimpleAtoi(req.cursor(), &cursor) || cursor < 0)) {
    bad = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "cursor is malformed");
  }
  auto* w = new Watcher(this, req.county_fips(), cursor);
  w->last_seq = cursor;
  w->initialized = cursor >= 0;
  bool full = false, stopping = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping = stop_;
    full = watchers_.size() >= options_.max_watchers;
    watchers_.insert(w);
    if (watchers_gauge_) watchers_gauge_->Set(static_cast<double>(watchers_.size()));
  }
  if (!bad.ok()) {
    w->FinishNow(bad);
  } else if (stopping) {
    w->FinishNow(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down; retry"));
  } else if (full) {
    w->FinishNow(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many watchers; retry"));
  }
  Notify();
  return w;
}

void WatchHub::Loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.watch_poll_interval),
                   [this] { return stop_ || notified_; });
      if (stop_) return;
      notified_ = false;
    }
    Dispatch();
  }
}

void WatchHub::Dispatch() {
  std::vector<Watcher*> live;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = watchers_.begin(); it != watchers_.end();) {
      if ((*it)->done()) {
        delete *it;
        it = watchers_.erase(it);
      } else {
        live.push_back(*it);
        ++it;
      }
    }
    if (watchers_gauge_) watchers_gauge_->Set(static_cast<double>(watchers_.size()));
  }
  if (live.empty()) return;
  // New watchers without a cursor start at the newest event.
  bool need_head = false;
  for (Watcher* w : live) need_head = need_head || !w->initialized;
  if (need_head) {
    int64_t head = 0;
    absl::Status st = pg_->Transact(
        [&](PgTx& tx) -> absl::Status {
          auto s = BedsStore::LastEventSeq(tx);
          if (!s.ok()) return s.status();
          head = *s;
          return absl::OkStatus();
        },
        Isolation::kReadCommitted, true);
    if (!st.ok()) return;  // Try again on the next wake-up.
    for (Watcher* w : live) {
      if (!w->initialized) {
        w->last_seq = head;
        w->initialized = true;
        w->SetStart(head);
      }
    }
  }
  int64_t from = live.front()->last_seq;
  for (Watcher* w : live) from = std::min(from, w->last_seq);
  constexpr int kBatch = 500;
  for (int round = 0; round < 20; ++round) {  // Bounded work per wake-up.
    std::vector<StoredEvent> events;
    absl::Status st = pg_->Transact(
        [&](PgTx& tx) -> absl::Status {
          auto e = BedsStore::EventsAfter(tx, from, kBatch);
          if (!e.ok()) return e.status();
          events = *std::move(e);
          return absl::OkStatus();
        },
        Isolation::kReadCommitted, true);
    if (!st.ok() || events.empty()) return;
    for (const StoredEvent& e : events) {
      Response r;
      *r.mutable_availability() = e.availability;
      r.set_county_fips(e.county_fips);
      r.set_cursor(absl::StrCat(e.seq));
      r.set_reason(e.reason);
      for (Watcher* w : live) {
        if (e.seq <= w->last_seq) continue;
        w->last_seq = e.seq;
        if (!w->county().empty() && w->county() != e.county_fips) continue;
        w->Deliver(r, options_.watch_max_pending);
      }
    }
    from = events.back().seq;
    if (static_cast<int>(events.size()) < kBatch) return;
  }
  Notify();  // More to read: continue on the next round without waiting.
}

void WatchHub::SubscribeLoop() {
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
    }
    const timeval connect = absl::ToTimeval(redis_->connect_timeout);
    redisContext* c = redisConnectWithTimeout(redis_->host.c_str(), redis_->port, connect);
    if (c != nullptr && c->err == 0) {
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
        }
      }
    }
    if (c != nullptr) redisFree(c);
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock, std::chrono::milliseconds(200), [this] { return stop_; })) return;
  }
}

}  // namespace safeharbor::beds
