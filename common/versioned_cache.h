// A Redis cache of query answers, invalidated by a generation counter: every answer is stored
// under the generation current when it was computed, and every committed write bumps the
// generation, so no reader ever sees an answer older than the last write it could observe.
// Fail-open: when Redis is down lookups miss (counted) and the caller reads PostgreSQL. A
// replica whose bump failed does not trust the cache again until a bump succeeds; other
// replicas are bounded by the TTL.
// Every stored answer carries an HMAC-SHA256 (key from configuration, RedisOptions::cache_key)
// over its full key and value: an answer written by anyone who reached Redis without the key
// fails the check, is counted (result "rejected") and treated as a miss. Without a key nothing
// is cached.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <atomic>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/redis.h"

namespace safeharbor {

class VersionedCache {
 public:
  // `redis` may be null (no cache). `name` labels the metrics; `key_namespace` prefixes keys.
  VersionedCache(RedisClient* redis, prometheus::Registry& registry, std::string name,
                 std::string key_namespace, absl::Duration ttl);

  struct Lookup {
    std::optional<std::string> value;  // the cached answer on a hit
    std::string generation;            // pass to Store on a miss; empty: do not store
  };
  Lookup Get(absl::string_view key);
  void Store(const std::string& generation, absl::string_view key, absl::string_view value);
  // Call after every committed write that can change an answer.
  void Invalidate();

 private:
  // The stored form: the answer behind its MAC; the answer, or nullopt when the MAC fails.
  std::string Seal(absl::string_view full_key, absl::string_view value) const;
  std::optional<std::string> Open(absl::string_view full_key, absl::string_view stored) const;

  RedisClient* redis_;
  const std::string mac_key_;
  const std::string name_;
  const std::string generation_key_;
  const std::string value_prefix_;
  const absl::Duration ttl_;
  std::atomic<bool> invalidation_pending_{false};
  prometheus::Family<prometheus::Counter>& requests_;
};

}  // namespace safeharbor
