#include "common/versioned_cache.h"

#include "absl/strings/str_cat.h"

namespace safeharbor {
namespace {
// One round trip: the current generation and, if cached, the answer under it.
constexpr char kLookupScript[] =
    "local g = redis.call('GET', KEYS[1]) or '0' "
    "return {g, redis.call('GET', ARGV[1] .. g .. ':' .. ARGV[2])}";
}  // namespace

VersionedCache::VersionedCache(RedisClient* redis, prometheus::Registry& registry, std::string name,
                               std::string key_namespace, absl::Duration ttl)
    : redis_(redis),
      name_(std::move(name)),
      generation_key_(absl::StrCat(key_namespace, ":", name_, ":gen")),
      value_prefix_(absl::StrCat(key_namespace, ":", name_, ":")),
      ttl_(ttl),
      requests_(prometheus::BuildCounter()
                    .Name("safeharbor_cache_requests_total")
                    .Help("Cache lookups by cache and result (hit, miss, error).")
                    .Register(registry)) {
  for (const char* result : {"hit", "miss", "error"}) {
    requests_.Add({{"cache", name_}, {"result", result}});
  }
}

VersionedCache::Lookup VersionedCache::Get(absl::string_view key) {
  Lookup out;
  if (redis_ == nullptr) return out;
  auto count = [this](const char* result) {
    requests_.Add({{"cache", name_}, {"result", result}}).Increment();
  };
  if (invalidation_pending_.load()) {
    if (!redis_->Incr(generation_key_).ok()) {
      count("error");
      return out;
    }
    invalidation_pending_.store(false);
  }
  auto r = redis_->Command(
      {"EVAL", kLookupScript, "1", generation_key_, value_prefix_, std::string(key)});
  if (!r.ok() || r->type != RedisReply::Type::kArray || r->elements.empty()) {
    count("error");
    return out;
  }
  out.generation = r->elements[0].str;
  if (r->elements.size() >= 2 && r->elements[1].type == RedisReply::Type::kString) {
    out.value = std::move(r->elements[1].str);
    count("hit");
  } else {
    count("miss");
  }
  return out;
}

void VersionedCache::Store(const std::string& generation, absl::string_view key,
                           absl::string_view value) {
  if (redis_ == nullptr || generation.empty()) return;
  (void)redis_->SetWithTtl(absl::StrCat(value_prefix_, generation, ":", key), value, ttl_);
}

void VersionedCache::Invalidate() {
  if (redis_ == nullptr) return;
  if (!redis_->Incr(generation_key_).ok()) invalidation_pending_.store(true);
}

}  // namespace safeharbor
