// Redis: a cache and a fan-out bus, never the only copy of anything. Every call has a timeout;
// when Redis is down calls fail fast (UNAVAILABLE) for `retry_after`, then try again, so the
// service goes on without it and uses it again when it returns, without a restart.
#pragma once

#include <hiredis/hiredis.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace prometheus {
class Registry;
class Counter;
class Gauge;
}  // namespace prometheus

namespace safeharbor {

struct RedisOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  // AUTH on every connection when not empty (Redis' requirepass).
  std::string password;
  // HMAC-SHA256 key authenticating cached values (VersionedCache): a value that fails the check
  // is ignored, counted and treated as a miss. Empty: nothing is cached.
  std::string cache_key;
  int pool_size = 4;
  absl::Duration connect_timeout = absl::Milliseconds(200);
  absl::Duration command_timeout = absl::Milliseconds(200);
  absl::Duration retry_after = absl::Milliseconds(500);
};

// Parses "redis://host:port" (or "host:port").
absl::StatusOr<RedisOptions> ParseRedisUrl(absl::string_view url);

// Sends AUTH on a fresh connection when `password` is not empty. UNAVAILABLE naming the cause
// (never the password) when Redis refuses it.
absl::Status RedisAuthenticate(redisContext* c, const std::string& password);

struct RedisReply {
  enum class Type { kNil, kString, kInteger, kArray, kStatus };
  Type type = Type::kNil;
  std::string str;
  int64_t integer = 0;
  std::vector<RedisReply> elements;
};

class RedisClient {
 public:
  // `registry` may be null. Does not connect until first use.
  RedisClient(const RedisOptions& options, prometheus::Registry* registry);
  ~RedisClient();

  absl::StatusOr<RedisReply> Command(const std::vector<std::string>& argv);

  absl::StatusOr<std::optional<std::string>> Get(absl::string_view key);
  absl::Status SetWithTtl(absl::string_view key, absl::string_view value, absl::Duration ttl);
  absl::StatusOr<int64_t> Incr(absl::string_view key);
  absl::Status Publish(absl::string_view channel, absl::string_view message);

  // False while in the fail-fast window after an error.
  bool available() const;
  const RedisOptions& options() const { return options_; }

 private:
  struct ContextDeleter {
    void operator()(redisContext* c) const { redisFree(c); }
  };
  using Context = std::unique_ptr<redisContext, ContextDeleter>;

  absl::StatusOr<Context> Acquire();
  absl::StatusOr<Context> Connect() const;  // connected, with its timeout, authenticated
  void Release(Context ctx);
  bool Admit();  // whether a call may go to Redis now (one probe at the end of a window)
  void MarkDown(absl::string_view op, absl::string_view error);
  void MarkUp();

  const RedisOptions options_;
  prometheus::Counter* errors_ = nullptr;
  prometheus::Gauge* up_ = nullptr;
  std::atomic<int64_t> down_until_unix_ms_{0};
  std::atomic<bool> was_down_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Context> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
};

// A dedicated connection SUBSCRIBEd to one channel, on a thread of its own (a subscribed
// connection can do nothing else). It connects, authenticates and subscribes; calls
// `subscribed` once Redis confirmed the subscription (false: drop the connection and retry);
// `message` for every message on the channel, in order; `lost` whenever a subscription ends
// (connection closed, an error, or no answer to a PING within `heartbeat` after a silent
// `heartbeat`): messages may have been missed from then until the next `subscribed`. Retries
// every `options.retry_after` until destroyed. Callbacks run on the subscriber's thread.
class RedisSubscriber {
 public:
  struct Callbacks {
    std::function<bool()> subscribed;
    std::function<void(absl::string_view)> message;
    std::function<void()> lost;
  };
  RedisSubscriber(const RedisOptions& options, std::string channel, absl::Duration heartbeat,
                  Callbacks callbacks);
  // Stops and joins: within about 100 ms while listening; while (re)connecting, after the
  // connect or command in progress ends (options.connect_timeout, options.command_timeout).
  ~RedisSubscriber();

  RedisSubscriber(const RedisSubscriber&) = delete;
  RedisSubscriber& operator=(const RedisSubscriber&) = delete;

 private:
  struct ContextDeleter {
    void operator()(redisContext* c) const { redisFree(c); }
  };
  using Context = std::unique_ptr<redisContext, ContextDeleter>;

  void Loop();
  // Connected, authenticated and subscribed; null when any of it failed.
  Context Subscribe() const;
  // Reads messages until the connection is lost or the subscriber stops.
  void Listen(redisContext* c);

  const RedisOptions options_;
  const std::string channel_;
  const absl::Duration heartbeat_;
  const Callbacks callbacks_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace safeharbor
