#include "common/versioned_cache.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <prometheus/gauge.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
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

// One round trip: the next generation, announced to every replica's in-process level.
constexpr char kBumpScript[] =
    "local g = redis.call('INCR', KEYS[1]) "
    "redis.call('PUBLISH', ARGV[1], g) "
    "return g";

// What one in-process entry costs beyond its key and value (list node, index slot, strings).
constexpr size_t kEntryOverheadBytes = 128;

enum LocalResult { kLocalHit, kLocalMiss, kLocalUntrusted };
}  // namespace

VersionedCache::VersionedCache(RedisClient* redis, prometheus::Registry& registry, std::string name,
                               std::string key_namespace, absl::Duration ttl,
                               LocalCacheOptions local)
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
                    .Register(registry)),
      local_(local),
      channel_(absl::StrCat(key_namespace, ":", name_, ":invalidations")) {
  for (const char* result : {"hit", "miss", "error", "rejected"}) {
    requests_.Add({{"cache", name_}, {"result", result}});
  }
  if (redis_ == nullptr) return;
  if (local_.max_entries > 0) StartLocal(registry);
  // Logged when the retries start failing and when they succeed again, not once per beat.
  bump_retry_ = std::make_unique<PeriodicTask>(
      absl::StrCat("cache_bump_retry:", name_), local_.heartbeat,
      [this, failing = false]() mutable -> absl::Status {
        const bool ok = BumpPending();
        if (ok == failing) {
          failing = !ok;
          if (ok) {
            log::Info("cache_bump_retried", {{"cache", name_}});
          } else {
            log::Warn("cache_bump_retry_failing", {{"cache", name_}});
          }
        }
        return absl::OkStatus();
      },
      &registry);
  bump_retry_->Start();
}

VersionedCache::~VersionedCache() {
  bump_retry_.reset();
  subscriber_.reset();
}

void VersionedCache::StartLocal(prometheus::Registry& registry) {
  local_requests_ = &prometheus::BuildCounter()
                         .Name("safeharbor_cache_local_requests_total")
                         .Help(
                             "In-process cache lookups by cache and result (hit, miss; "
                             "untrusted: not subscribed to invalidations, the Redis level "
                             "answers).")
                         .Register(registry);
  for (const char* result : {"hit", "miss", "untrusted"}) {
    local_counters_.push_back(&local_requests_->Add({{"cache", name_}, {"result", result}}));
  }
  local_drops_ = &prometheus::BuildCounter()
                      .Name("safeharbor_cache_local_drops_total")
                      .Help(
                          "Times the in-process cache was emptied, by cache and cause (write: "
                          "this replica's; message: an invalidation from any replica; "
                          "resubscribed, lost: the invalidation subscription).")
                      .Register(registry);
  auto gauge = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add(
        {{"cache", name_}});
  };
  local_entries_ = gauge("safeharbor_cache_local_entries", "Entries in the in-process cache.");
  local_bytes_ = gauge("safeharbor_cache_local_bytes", "Bytes held by the in-process cache.");
  local_trusted_ = gauge("safeharbor_cache_local_trusted",
                         "1 while the in-process cache is subscribed to invalidations and "
                         "answers; 0 while it is bypassed.");
  RedisSubscriber::Callbacks callbacks;
  callbacks.subscribed = [this] { return Resubscribed(); };
  callbacks.message = [this](absl::string_view) { DropLocal("message"); };
  callbacks.lost = [this] { DropLocal("lost", false); };
  subscriber_ = std::make_unique<RedisSubscriber>(redis_->options(), channel_, local_.heartbeat,
                                                  std::move(callbacks));
}

bool VersionedCache::Resubscribed() {
  // Subscribed first, then the generation read: no bump after this point can go unnoticed.
  if (!redis_->Get(generation_key_).ok()) return false;
  DropLocal("resubscribed", true);
  return true;
}

void VersionedCache::DropLocal(const char* cause, std::optional<bool> trusted) {
  // Emptied by a swap under the lock and freed after it: readers on RPC threads (GetLocal)
  // never wait for thousands of entries to be destroyed.
  std::list<Entry> dropped;
  std::unordered_map<std::string, std::list<Entry>::iterator> dropped_index;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++epoch_;
    dropped.swap(lru_);
    dropped_index.swap(index_);
    bytes_ = 0;
    if (trusted.has_value()) trusted_ = *trusted;
    if (local_entries_ != nullptr) {
      local_entries_->Set(0);
      local_bytes_->Set(0);
      local_trusted_->Set(trusted_ ? 1 : 0);
    }
  }
  if (local_drops_ != nullptr) local_drops_->Add({{"cache", name_}, {"cause", cause}}).Increment();
}

bool VersionedCache::local_trusted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return trusted_ && !Pending();
}

std::optional<std::string> VersionedCache::GetLocal(absl::string_view key) {
  if (subscriber_ == nullptr) return std::nullopt;
  std::lock_guard<std::mutex> lock(mu_);
  if (!trusted_ || Pending()) {
    local_counters_[kLocalUntrusted]->Increment();
    return std::nullopt;
  }
  auto it = index_.find(std::string(key));
  if (it != index_.end() && it->second->expires <= absl::Now()) {
    bytes_ -= it->second->key.size() + it->second->value.size() + kEntryOverheadBytes;
    lru_.erase(it->second);
    index_.erase(it);
    it = index_.end();
  }
  if (it == index_.end()) {
    local_counters_[kLocalMiss]->Increment();
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  local_counters_[kLocalHit]->Increment();
  return it->second->value;
}

void VersionedCache::PutLocal(uint64_t epoch, absl::string_view key, absl::string_view value) {
  if (subscriber_ == nullptr) return;
  const size_t cost = key.size() + value.size() + kEntryOverheadBytes;
  if (cost > local_.max_bytes / 4) return;  // one answer never crowds out the rest
  std::lock_guard<std::mutex> lock(mu_);
  // Invalidated since the answer was read or computed: it may predate the write.
  if (!trusted_ || Pending() || epoch != epoch_) return;
  if (auto it = index_.find(std::string(key)); it != index_.end()) {
    bytes_ -= it->second->key.size() + it->second->value.size() + kEntryOverheadBytes;
    lru_.erase(it->second);
    index_.erase(it);
  }
  lru_.push_front(
      Entry{std::string(key), std::string(value), absl::Now() + std::min(local_.ttl, ttl_)});
  index_.emplace(lru_.front().key, lru_.begin());
  bytes_ += cost;
  EvictLocked();
  local_entries_->Set(static_cast<double>(lru_.size()));
  local_bytes_->Set(static_cast<double>(bytes_));
}

void VersionedCache::EvictLocked() {
  while (!lru_.empty() && (lru_.size() > local_.max_entries || bytes_ > local_.max_bytes)) {
    const Entry& last = lru_.back();
    bytes_ -= last.key.size() + last.value.size() + kEntryOverheadBytes;
    index_.erase(last.key);
    lru_.pop_back();
  }
}

bool VersionedCache::Bump() {
  auto r = redis_->Command({"EVAL", kBumpScript, "1", generation_key_, channel_});
  return r.ok();
}

bool VersionedCache::Pending() const { return bumps_failed_.load() != bumps_covered_.load(); }

bool VersionedCache::BumpPending() {
  // Still pending until the bump is made (readers keep off the cache meanwhile); a write whose
  // own bump fails after `seen` was read stays pending for the next try.
  const uint64_t seen = bumps_failed_.load();
  if (seen == bumps_covered_.load()) return true;
  if (!Bump()) return false;
  // An answer read before the bump may have entered the in-process level meanwhile (nothing was
  // pending yet when it was put); this replica's own PUBLISH would drop it too, a moment later.
  if (subscriber_ != nullptr) DropLocal("bumped");
  uint64_t covered = bumps_covered_.load();
  while (covered < seen && !bumps_covered_.compare_exchange_weak(covered, seen)) {
  }
  return true;
}

VersionedCache::Lookup VersionedCache::Get(absl::string_view key) {
  Lookup out;
  if (redis_ == nullptr) return out;
  auto count = [this](const char* result) {
    requests_.Add({{"cache", name_}, {"result", result}}).Increment();
  };
  {
    std::lock_guard<std::mutex> lock(mu_);
    out.local_epoch = epoch_;  // before anything is read
  }
  if (!BumpPending()) {
    count("error");
    return out;
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
  if (out.value.has_value()) PutLocal(out.local_epoch, key, *out.value);
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

void VersionedCache::Store(const Lookup& lookup, absl::string_view key, absl::string_view value) {
  if (lookup.generation.empty()) return;
  Store(lookup.generation, key, value);
  PutLocal(lookup.local_epoch, key, value);
}

void VersionedCache::Invalidate() {
  if (redis_ == nullptr) return;
  // This replica's level first: no reader here sees an answer older than the write.
  if (subscriber_ != nullptr) DropLocal("write");
  if (!Bump()) bumps_failed_.fetch_add(1);
}

}  // namespace safeharbor
