// A Redis cache of query answers, invalidated by a generation counter: every answer is stored
// under the generation current when it was computed, and every committed write bumps the
// generation, so no reader ever sees an answer older than the last write it could observe.
// Fail-open: when Redis is down lookups miss (counted) and the caller reads PostgreSQL. A
// replica whose bump failed does not trust the cache again until a bump succeeds, and retries
// it every heartbeat (LocalCacheOptions::heartbeat) until it does, so that other replicas do not
// wait for this one's next read or for the TTL to see the write.
// Every stored answer carries an HMAC-SHA256 (key from configuration, RedisOptions::cache_key)
// over its full key and value: an answer written by anyone who reached Redis without the key
// fails the check, is counted (result "rejected") and treated as a miss. Without a key nothing
// is cached.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/periodic.h"
#include "common/redis.h"

namespace safeharbor {

struct LocalCacheOptions {
  size_t max_entries = 0;  // 0: no in-process level
  size_t max_bytes = 16 << 20;
  absl::Duration ttl = absl::Seconds(10);  // the longest an entry lives in process
  // A silent subscription is PINGed after this long, and given up after as long again.
  absl::Duration heartbeat = absl::Seconds(1);
};

class VersionedCache {
 public:
  // `redis` may be null (no cache). `name` labels the metrics; `key_namespace` prefixes keys.
  VersionedCache(RedisClient* redis, prometheus::Registry& registry, std::string name,
                 std::string key_namespace, absl::Duration ttl, LocalCacheOptions local = {});
  ~VersionedCache();

  struct Lookup {
    std::optional<std::string> value;  // the cached answer on a hit
    std::string generation;            // pass to Store on a miss; empty: do not store
    uint64_t local_epoch = 0;          // the in-process level's epoch when the lookup began
  };
  // The Redis level (blocking: one round trip). A hit also fills the in-process level.
  Lookup Get(absl::string_view key);
  // The in-process level only: never blocks on I/O. An answer only while it is known fresh.
  std::optional<std::string> GetLocal(absl::string_view key);
  void Store(const std::string& generation, absl::string_view key, absl::string_view value);
  // The same, and into the in-process level unless it was invalidated since `lookup` began.
  void Store(const Lookup& lookup, absl::string_view key, absl::string_view value);
  // Call after every committed write that can change an answer.
  void Invalidate();

  // Whether the in-process level answers now (subscribed and the generation read after it).
  bool local_trusted() const;

 private:
  struct Entry {
    std::string key;
    std::string value;
    absl::Time expires;
  };
  // INCR the generation and PUBLISH it, in one round trip.
  bool Bump();
  bool Pending() const;  // a bump failed and none since has succeeded
  // A bump that failed, made now; false when it failed again.
  bool BumpPending();
  // The in-process level: dropped whole (a new epoch), for `cause`.
  void DropLocal(const char* cause, std::optional<bool> trusted = std::nullopt);
  void PutLocal(uint64_t epoch, absl::string_view key, absl::string_view value);
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CountLocal(const char* result);
  bool Resubscribed();  // the subscriber's callback: reads the generation, then trusts
  void StartLocal(prometheus::Registry& registry);

  // The stored form: the answer behind its MAC; the answer, or nullopt when the MAC fails.
  std::string Seal(absl::string_view full_key, absl::string_view value) const;
  std::optional<std::string> Open(absl::string_view full_key, absl::string_view stored) const;

  RedisClient* redis_;
  const std::string mac_key_;
  const std::string name_;
  const std::string generation_key_;
  const std::string value_prefix_;
  const absl::Duration ttl_;
  // Bumps that failed, and how many of them a later bump has covered: a bump is pending while
  // they differ (this replica does not trust the cache meanwhile).
  std::atomic<uint64_t> bumps_failed_{0};
  std::atomic<uint64_t> bumps_covered_{0};
  prometheus::Family<prometheus::Counter>& requests_;

  const LocalCacheOptions local_;
  const std::string channel_;
  mutable std::mutex mu_;
  bool trusted_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 1;
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::list<Entry> lru_ ABSL_GUARDED_BY(mu_);  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_ ABSL_GUARDED_BY(mu_);
  prometheus::Family<prometheus::Counter>* local_requests_ = nullptr;
  std::vector<prometheus::Counter*> local_counters_;  // by LocalResult
  prometheus::Family<prometheus::Counter>* local_drops_ = nullptr;
  prometheus::Gauge* local_entries_ = nullptr;
  prometheus::Gauge* local_bytes_ = nullptr;
  prometheus::Gauge* local_trusted_ = nullptr;
  std::unique_ptr<RedisSubscriber> subscriber_;
  // Retries a failed bump every heartbeat (null without Redis). Last: stopped first.
  std::unique_ptr<PeriodicTask> bump_retry_;
};

}  // namespace safeharbor
