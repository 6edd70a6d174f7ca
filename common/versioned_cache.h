// A Redis cache of query answers, invalidated by a generation counter: every answer is stored
// under the generation current when it was computed, and every committed write bumps the
// generation, so no reader ever sees an answer older than the last write it could observe.
// Fail-open: when Redis is down lookups miss (counted) and the caller reads PostgreSQL. A
// replica whose bump failed does not trust the cache again until a bump succeeds; other
// replicas are bounded by the TTL.
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
  RedisClient* redis_;
  const std::string name_;
  const std::string generation_key_;
  const std::string value_prefix_;
  const absl::Duration ttl_;
  std::atomic<bool> invalidation_pending_{false};
  prometheus::Family<prometheus::Counter>& requests_;
};

}  // namespace safeharbor
