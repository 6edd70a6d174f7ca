// Server-streaming "watch" fan-out with a resume cursor, shared by the services that have one.
// A PostgreSQL events table is the source of truth and its sequence is the cursor, so a client
// that reconnects with its last cursor misses nothing, across restarts and Redis outages. One hub
// thread per process reads new events and feeds every watcher's bounded queue; Redis pub/sub only
// wakes the hubs of all replicas at once (a poll every poll_interval covers Redis being down).
// Never blocks a reactor thread. Streams are bounded: each holds its organization's stream slot
// (QuotaSlot) until it ends, ends after max_stream_age (the client resumes with its cursor), and
// resumes only within the replay horizon: events older than it are pruned (a PeriodicTask) and a
// cursor from before the pruned range is refused with FAILED_PRECONDITION (resync, then watch).
#pragma once

#include <grpcpp/grpcpp.h>
#include <prometheus/gauge.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/periodic.h"
#include "common/pg.h"
#include "common/quota.h"
#include "common/redis.h"
#include "common/rpc_kit.h"
#include "common/status_macros.h"

namespace safeharbor {

struct WatchOptions {
  // How often PostgreSQL is polled when no Redis wake-up arrives.
  absl::Duration poll_interval = absl::Seconds(1);
  // Events queued per watcher; beyond that the hub waits for the client to read.
  size_t max_pending = 1000;
  // A watcher that reads nothing for this long while its queue is full is ended (it resumes
  // with its cursor).
  absl::Duration stall_limit = absl::Seconds(30);
  size_t max_watchers = 1000;
  // A cursor resumes at most this far back; older events are pruned every prune_interval.
  absl::Duration replay_horizon = absl::Hours(24 * 7);
  absl::Duration prune_interval = absl::Minutes(10);
  // A stream open this long is ended with UNAVAILABLE; the client resumes with its cursor.
  absl::Duration max_stream_age = absl::Hours(1);
};

// One stored event: its sequence number (the cursor), the key watchers subscribe to (a county, a
// provider), and the message to send; the hub sets the message's cursor.
template <typename Response>
struct WatchEvent {
  int64_t seq = 0;
  std::string key;
  Response response;
};

// How a hub reads its events table.
template <typename Response>
struct WatchSource {
  std::function<absl::StatusOr<int64_t>(PgTx&)> last_seq;
  std::function<absl::StatusOr<std::vector<WatchEvent<Response>>>(PgTx&, int64_t after, int limit)>
      after;
  // The highest sequence number pruned (0 when none): a cursor below it cannot resume.
  std::function<absl::StatusOr<int64_t>(PgTx&)> pruned_through;
  // Deletes the events older than `before`, never the newest one (it carries the sequence on);
  // records the highest deleted in pruned_through. Returns how many.
  std::function<absl::StatusOr<int64_t>(PgTx&, absl::Time before)> prune;
};

// Pruning for an events table with columns (seq, at) and its row in watch_pruned (a migration
// creates both): the highest pruned sequence, and a pruning pass. The table name is a constant.
absl::StatusOr<int64_t> PrunedThrough(PgTx& tx, absl::string_view table);
absl::StatusOr<int64_t> PruneEvents(PgTx& tx, absl::string_view table, absl::Time before);
template <typename Response>
void PruneEventsTable(WatchSource<Response>& source, std::string table) {
  source.pruned_through = [table](PgTx& tx) { return PrunedThrough(tx, table); };
  source.prune = [table](PgTx& tx, absl::Time before) { return PruneEvents(tx, table, before); };
}

// The threads: the dispatch loop and the Redis subscriber. Not for direct use.
class WatchHubBase {
 public:
  void Start();
  // Ends every open stream with UNAVAILABLE (clients resume elsewhere with their cursor).
  void Stop();
  // Wakes this hub (after a local commit).
  void Notify();
  // One pruning pass now (tests with an injected clock; Start runs it every prune_interval).
  absl::Status PruneOnce() { return prune_task_ ? prune_task_->RunOnce() : absl::OkStatus(); }

 protected:
  // `redis` may be null (poll only). `channel` is the Redis pub/sub channel.
  WatchHubBase(PgPool* pg, const RedisOptions* redis, std::string channel, WatchOptions options,
               prometheus::Gauge* watchers_gauge)
      : pg_(pg),
        redis_(redis),
        channel_(std::move(channel)),
        options_(options),
        watchers_gauge_(watchers_gauge) {}
  virtual ~WatchHubBase() = default;  // Subclasses call Stop() in their destructor.
  // A stream that was not admitted, ending at once: never registered, never sent anything.
  template <typename Response>
  static grpc::ServerWriteReactor<Response>* Refused(grpc::StatusCode code, std::string message) {
    return Refuse<Response>(grpc::Status(code, std::move(message)));
  }

  virtual void Dispatch() = 0;
  virtual void FinishAllLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;

  PgPool* const pg_;
  const RedisOptions* const redis_;
  const std::string channel_;
  const WatchOptions options_;
  prometheus::Gauge* const watchers_gauge_;
  std::unique_ptr<PeriodicTask> prune_task_;  // set by the subclass when its source prunes
  std::mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;

 private:
  void Loop();
  void SubscribeLoop();

  std::condition_variable cv_;
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ = false;
  std::thread loop_thread_;
  std::thread subscribe_thread_;
};

template <typename Response>
class WatchHub final : public WatchHubBase {
 public:
  // Destroy the hub only after the gRPC server serving its watchers has shut down. `clock`
  // dates the pruning horizon (the events' own times come from it).
  WatchHub(PgPool* pg, const RedisOptions* redis, std::string channel, WatchSource<Response> source,
           WatchOptions options, prometheus::Gauge* watchers_gauge, const Clock* clock);
  ~WatchHub() override;

  // The reactor for one admitted call: events whose key equals `key` (every event when `key` is
  // empty) after `cursor` (from now when empty). `slot` (the organization's stream slot) is held
  // until the stream ends. A stream that cannot open (malformed cursor, too many watchers,
  // shutting down) ends at once and is never registered. With `activation`, the watcher gets
  // nothing until Activate(*activation, status) (e.g. once its audit row committed; a status
  // that is not OK ends it); *activation is 0 for a stream that did not open.
  grpc::ServerWriteReactor<Response>* NewWatcher(std::string key, absl::string_view cursor,
                                                 QuotaSlot slot, uint64_t* activation = nullptr);
  void Activate(uint64_t id, const grpc::Status& status);

 private:
  class Watcher;
  void Dispatch() override;
  // Reaps finished watchers, ends those past max_stream_age; the active rest.
  std::vector<Watcher*> LiveWatchers();
  // Watchers that started "from now" get the newest event's sequence; those resuming from a
  // pruned cursor are ended. False when the database did not answer.
  bool StartNewWatchers(std::vector<Watcher*>* live);
  void FinishAllLocked(const grpc::Status& status) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const WatchSource<Response> source_;
  std::set<Watcher*> watchers_ ABSL_GUARDED_BY(mu_);
};

// One stream. Only the hub thread deletes a watcher, after gRPC has called OnDone.
template <typename Response>
class WatchHub<Response>::Watcher final : public grpc::ServerWriteReactor<Response> {
 public:
  Watcher(WatchHub* hub, std::string key, int64_t cursor, QuotaSlot slot, uint64_t id, bool active)
      : hub_(hub), key_(std::move(key)), id_(id), slot_(std::move(slot)), active_(active) {
    if (cursor >= 0) sent_cursor_ = absl::StrCat(cursor);
    last_seq = cursor;
    initialized = cursor >= 0;
    horizon_checked = cursor < 0;
  }

  // From the hub thread, for a watcher that started "from now".
  void SetStart(int64_t seq) {
    std::lock_guard<std::mutex> lock(mu_);
    if (sent_cursor_.empty()) sent_cursor_ = absl::StrCat(seq);
  }

  // From the hub thread. False when the queue is full (flow control: the hub offers the event
  // again once the client has read); a watcher stalled that way for `stall_limit` is ended, and
  // resumes with its cursor.
  bool Deliver(const Response& r, size_t max_pending, absl::Time now, absl::Duration stall_limit) {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_ || finishing_) return true;  // Nothing more goes to it; do not hold others back.
    if (queue_.size() >= max_pending) {
      if (stalled_since_ == absl::InfinitePast()) stalled_since_ = now;
      if (now - stalled_since_ >= stall_limit) {
        FinishLocked(grpc::Status(
            grpc::StatusCode::RESOURCE_EXHAUSTED,
            absl::StrCat("watcher is not reading; reconnect with cursor ", sent_cursor_)));
        return true;
      }
      return false;
    }
    stalled_since_ = absl::InfinitePast();
    queue_.push_back(r);
    if (!writing_) {
      writing_ = true;
      this->StartWrite(&queue_.front());
    }
    return true;
  }

  void OnWriteDone(bool ok) override {
    bool drained = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      sent_cursor_ = queue_.front().cursor();
      queue_.pop_front();
      writing_ = false;
      if (!ok && !finishing_) {
        finishing_ = true;
        final_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "stream closed");
      }
      if (finishing_) {  // Cancelled, shut down or failed while a write was in flight.
        if (!finished_) {
          finished_ = true;
          this->Finish(final_status_);
        }
        return;
      }
      if (!queue_.empty()) {
        writing_ = true;
        this->StartWrite(&queue_.front());
      } else {
        drained = stalled_since_ != absl::InfinitePast();
      }
    }
    if (drained) hub_->Notify();  // Events held back by flow control can go now.
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    WatchHub* hub = hub_;  // Once done_ is set the hub thread may delete this watcher.
    {
      std::lock_guard<std::mutex> lock(mu_);
      slot_.Release();  // the organization may open another stream
      done_ = true;
    }
    hub->Notify();
  }

  // Ends the stream with UNAVAILABLE telling the client where to resume.
  void Expire(absl::Duration age) {
    std::lock_guard<std::mutex> lock(mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              absl::StrCat("stream reached its maximum age (",
                                           absl::FormatDuration(age), "); resume with cursor ",
                                           sent_cursor_.empty() ? "(none yet)" : sent_cursor_)));
  }

  void FinishNow(const grpc::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    FinishLocked(status);
  }

  bool done() {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }
  const std::string& key() const { return key_; }
  uint64_t id() const { return id_; }
  bool active() const { return active_.load(); }
  void set_active() { active_.store(true); }
  absl::Time opened() const { return opened_; }
  int64_t last_seq = 0;  // hub thread only
  bool initialized = false;
  bool horizon_checked = false;

 private:
  void FinishLocked(const grpc::Status& status) {
    if (finishing_) return;
    finishing_ = true;
    final_status_ = status;
    if (!writing_ && !finished_) {
      finished_ = true;
      this->Finish(status);
    }
  }

  WatchHub* hub_;
  const std::string key_;
  const uint64_t id_;
  const absl::Time opened_ = absl::Now();
  QuotaSlot slot_;
  std::atomic<bool> active_;
  std::mutex mu_;
  std::deque<Response> queue_;
  std::string sent_cursor_;
  bool writing_ = false;
  bool finishing_ = false;
  bool finished_ = false;
  bool done_ = false;
  absl::Time stalled_since_ = absl::InfinitePast();
  grpc::Status final_status_;
};

template <typename Response>
WatchHub<Response>::~WatchHub() {
  Stop();
  // The owner destroys the hub after the server has shut down, so gRPC is done with every
  // watcher still listed (OnDone ran); any that is not would still be in use: leave it.
  std::lock_guard<std::mutex> lock(mu_);
  for (Watcher* w : watchers_) {
    if (w->done()) delete w;
  }
  watchers_.clear();
}

template <typename Response>
void WatchHub<Response>::FinishAllLocked(const grpc::Status& status) {
  for (Watcher* w : watchers_) w->FinishNow(status);
}

template <typename Response>
WatchHub<Response>::WatchHub(PgPool* pg, const RedisOptions* redis, std::string channel,
                             WatchSource<Response> source, WatchOptions options,
                             prometheus::Gauge* watchers_gauge, const Clock* clock)
    : WatchHubBase(pg, redis, std::move(channel), options, watchers_gauge),
      source_(std::move(source)) {
  if (!source_.prune) return;
  prune_task_ = std::make_unique<PeriodicTask>(
      "watch_prune_" + channel_, options_.prune_interval, [this, clock]() -> absl::Status {
        return pg_->Transact([&](PgTx& tx) {
          return source_.prune(tx, clock->Now() - options_.replay_horizon).status();
        });
      });
}

template <typename Response>
grpc::ServerWriteReactor<Response>* WatchHub<Response>::NewWatcher(std::string key,
                                                                   absl::string_view cursor,
                                                                   QuotaSlot slot,
                                                                   uint64_t* activation) {
  if (activation != nullptr) *activation = 0;
  int64_t start = -1;  // -1: from now
  if (!cursor.empty() && (!absl::SimpleAtoi(cursor, &start) || start < 0)) {
    return Refused<Response>(grpc::StatusCode::INVALID_ARGUMENT, "cursor is malformed");
  }
  Watcher* w = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) {
      return Refused<Response>(grpc::StatusCode::UNAVAILABLE, "server shutting down; retry");
    }
    if (watchers_.size() >= options_.max_watchers) {
      return Refused<Response>(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many watchers; retry");
    }
    w = new Watcher(this, std::move(key), start, std::move(slot), ++next_id_,
                    activation == nullptr);
    watchers_.insert(w);
    if (watchers_gauge_) watchers_gauge_->Set(static_cast<double>(watchers_.size()));
  }
  if (activation != nullptr) *activation = w->id();
  Notify();
  return w;
}

template <typename Response>
void WatchHub<Response>::Activate(uint64_t id, const grpc::Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Watcher* w : watchers_) {
      if (w->id() != id) continue;
      if (status.ok()) {
        w->set_active();
      } else {
        w->FinishNow(status);
      }
      break;
    }
  }
  Notify();
}

template <typename Response>
std::vector<typename WatchHub<Response>::Watcher*> WatchHub<Response>::LiveWatchers() {
  std::vector<Watcher*> live;
  const absl::Time now = absl::Now();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = watchers_.begin(); it != watchers_.end();) {
    Watcher* w = *it;
    if (w->done()) {
      delete w;
      it = watchers_.erase(it);
      continue;
    }
    ++it;
    if (now - w->opened() >= options_.max_stream_age) {
      w->Expire(options_.max_stream_age);
    } else if (w->active()) {
      live.push_back(w);
    }
  }
  if (watchers_gauge_) watchers_gauge_->Set(static_cast<double>(watchers_.size()));
  return live;
}

template <typename Response>
bool WatchHub<Response>::StartNewWatchers(std::vector<Watcher*>* live) {
  bool need_head = false, need_horizon = false;
  for (Watcher* w : *live) {
    need_head = need_head || !w->initialized;
    need_horizon = need_horizon || !w->horizon_checked;
  }
  if (!need_head && !need_horizon) return true;
  int64_t head = 0, pruned = 0;
  absl::Status st = pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        if (need_head) {
          SH_ASSIGN_OR_RETURN(head, source_.last_seq(tx));
        }
        if (need_horizon && source_.pruned_through) {
          SH_ASSIGN_OR_RETURN(pruned, source_.pruned_through(tx));
        }
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true);
  if (!st.ok()) return false;  // Try again on the next wake-up.
  std::vector<Watcher*> ready;
  for (Watcher* w : *live) {
    if (!w->initialized) {
      w->last_seq = head;
      w->initialized = true;
      w->SetStart(head);
    }
    if (!w->horizon_checked && w->last_seq < pruned) {
      w->FinishNow(grpc::Status(
          grpc::StatusCode::FAILED_PRECONDITION,
          absl::StrCat("cursor ", w->last_seq, " is older than the replay horizon (",
                       absl::FormatDuration(options_.replay_horizon),
                       "): its events were pruned. Resync (read the current state), then watch "
                       "again without a cursor")));
      continue;
    }
    w->horizon_checked = true;
    ready.push_back(w);
  }
  live->swap(ready);
  return true;
}

template <typename Response>
void WatchHub<Response>::Dispatch() {
  std::vector<Watcher*> live = LiveWatchers();
  if (live.empty()) return;
  // New watchers without a cursor start at the newest event.
  if (!StartNewWatchers(&live) || live.empty()) return;
  int64_t from = live.front()->last_seq;
  for (Watcher* w : live) from = std::min(from, w->last_seq);
  constexpr int kBatch = 500;
  std::set<Watcher*> blocked;  // Full queues: nothing more for them in this pass (keeps order).
  for (int round = 0; round < 20; ++round) {  // Bounded work per wake-up.
    std::vector<WatchEvent<Response>> events;
    absl::Status st = pg_->Transact(
        [&](PgTx& tx) -> absl::Status {
          auto e = source_.after(tx, from, kBatch);
          if (!e.ok()) return e.status();
          events = *std::move(e);
          return absl::OkStatus();
        },
        Isolation::kReadCommitted, true);
    if (!st.ok() || events.empty()) return;
    const absl::Time now = absl::Now();
    for (WatchEvent<Response>& e : events) {
      e.response.set_cursor(absl::StrCat(e.seq));
      for (Watcher* w : live) {
        if (e.seq <= w->last_seq || blocked.count(w) > 0) continue;
        if (w->key().empty() || w->key() == e.key) {
          if (!w->Deliver(e.response, options_.max_pending, now, options_.stall_limit)) {
            blocked.insert(w);
            continue;  // last_seq stays: this event is offered again later.
          }
        }
        w->last_seq = e.seq;
      }
    }
    from = events.back().seq;
    if (static_cast<int>(events.size()) < kBatch) return;
  }
  // More to read: continue without waiting, unless only blocked watchers are behind (their
  // drained queues wake the hub).
  if (blocked.empty()) Notify();
}

}  // namespace safeharbor
