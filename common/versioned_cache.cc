#include "common/versioned_cache.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace safeharbor {
namespace {

constexpr size_t kMacBytes = 32;  // HMAC-SHA256

std::string Mac(const std::string& key, absl::string_view full_key, absl::string_view value) {
  // The key's length first: no (key, value) pair can be read as another.
  const std::string message = absl::StrCat(full_key.size(), ":", full_key, value);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

RedisClient* CacheRedis(RedisClient* redis, absl::string_view name) {
  if (redis != nullptr && redis->options().cache_key.empty()) {
    log::Warn("cache_disabled", {{"cache", name}, {"reason", "no cache_hmac_key configured"}});
    return nullptr;
  }
  return redis;
}

// One round trip: the current generation and, if cached, the answer under it.
constexpr char kLookupScript[] =
    "local g = redis.call('GET', KEYS[1]) or '0' "
    "return {g, redis.call('GET', ARGV[1] .. g .. ':' .. ARGV[2])}";
}  // namespace

VersionedCache::VersionedCache(RedisClient* redis, prometheus::Registry& registry, std::string name,
                               std::string key_namespace, absl::Duration ttl)
    : redis_(CacheRedis(redis, name)),
      mac_key_(redis_ != nullptr ? redis_->options().cache_key : ""),
      name_(std::move(name)),
      generation_key_(absl::StrCat(key_namespace, ":", name_, ":gen")),
      value_prefix_(absl::StrCat(key_namespace, ":", name_, ":")),
      ttl_(ttl),
      requests_(prometheus::BuildCounter()
                    .Name("safeharbor_cache_requests_total")
                    .Help("Cache lookups by cache and result (hit, miss, error; rejected: a "
                          "value whose MAC failed, ignored as a miss).")
                    .Register(registry)) {
  for (const char* result : {"hit", "miss", "error", "rejected"}) {
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
  if (r->elements.size() < 2 || r->elements[1].type != RedisReply::Type::kString) {
    count("miss");
    return out;
  }
  out.value = Open(absl::StrCat(value_prefix_, out.generation, ":", key), r->elements[1].str);
  count(out.value.has_value() ? "hit" : "rejected");
  return out;
}

std::string VersionedCache::Seal(absl::string_view full_key, absl::string_view value) const {
  return absl::StrCat(Mac(mac_key_, full_key, value), value);
}

std::optional<std::string> VersionedCache::Open(absl::string_view full_key,
                                                absl::string_view stored) const {
  if (stored.size() < kMacBytes) return std::nullopt;
  const absl::string_view value = stored.substr(kMacBytes);
  const std::string want = Mac(mac_key_, full_key, value);
  if (CRYPTO_memcmp(want.data(), stored.data(), kMacBytes) != 0) return std::nullopt;
  return std::string(value);
}

void VersionedCache::Store(const std::string& generation, absl::string_view key,
                           absl::string_view value) {
  if (redis_ == nullptr || generation.empty()) return;
  const std::string full_key = absl::StrCat(value_prefix_, generation, ":", key);
  (void)redis_->SetWithTtl(full_key, Seal(full_key, value), ttl_);
}

void VersionedCache::Invalidate() {
  if (redis_ == nullptr) return;
  if (!redis_->Incr(generation_key_).ok()) invalidation_pending_.store(true);
}

}  // namespace safeharbor
