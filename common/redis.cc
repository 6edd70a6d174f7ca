#include "common/redis.h"

#include <poll.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/breaker.h"
#include "common/deadline.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace safeharbor {
namespace {

RedisReply Convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(Convert(r->element[i]));
      break;
    default:
      out.type = RedisReply::Type::kNil;
  }
  return out;
}

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

}  // namespace

absl::StatusOr<RedisOptions> ParseRedisUrl(absl::string_view url) {
  RedisOptions o;
  absl::string_view rest = url;
  if (absl::StartsWith(rest, "redis://")) rest.remove_prefix(8);
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  auto colon = rest.rfind(':');
  if (rest.empty() || colon == absl::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("redis url must be redis://host:port, got '", url, "'"));
  }
  o.host = std::string(rest.substr(0, colon));
  if (!absl::SimpleAtoi(rest.substr(colon + 1), &o.port) || o.port <= 0 || o.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("redis url has a bad port: '", url, "'"));
  }
  return o;
}

absl::Status RedisAuthenticate(redisContext* c, const std::string& password) {
  if (password.empty()) return absl::OkStatus();
  auto* r = static_cast<redisReply*>(redisCommand(c, "AUTH %b", password.data(), password.size()));
  if (r == nullptr) return absl::UnavailableError(absl::StrCat("redis AUTH: ", c->errstr));
  std::unique_ptr<redisReply, decltype(&freeReplyObject)> reply(r, &freeReplyObject);
  if (r->type == REDIS_REPLY_ERROR) {
    return absl::UnavailableError(
        absl::StrCat("redis refused the password: ", std::string(r->str, r->len).substr(0, 80)));
  }
  return absl::OkStatus();
}

RedisClient::RedisClient(const RedisOptions& options, prometheus::Registry* registry)
    : options_(options) {
  if (registry != nullptr) {
    errors_ = &prometheus::BuildCounter()
                   .Name("safeharbor_redis_errors_total")
                   .Help("Redis calls that failed (connection, timeout or error reply).")
                   .Register(*registry)
                   .Add({});
    up_ = &prometheus::BuildGauge()
               .Name("safeharbor_redis_up")
               .Help("1 when the last Redis call succeeded, 0 while Redis is failing.")
               .Register(*registry)
               .Add({});
    up_->Set(1);
  }
}

RedisClient::~RedisClient() = default;

bool RedisClient::available() const { return NowMs() >= down_until_unix_ms_.load(); }

namespace {
constexpr absl::Duration kProbeTimeout = absl::Milliseconds(50);
}  // namespace

bool RedisClient::Admit() {
  if (!was_down_.load()) return true;
  // Down: refused until the window ends; then one call, the probe, claims the next window and
  // tries, so that a Redis that hangs costs one call a short wait per window, not every call.
  int64_t until = down_until_unix_ms_.load();
  const int64_t now = NowMs();
  return now >= until && down_until_unix_ms_.compare_exchange_strong(
                             until, now + absl::ToInt64Milliseconds(options_.retry_after));
}

void RedisClient::MarkDown(absl::string_view op, absl::string_view error) {
  if (errors_) errors_->Increment();
  if (up_) up_->Set(0);
  down_until_unix_ms_.store(NowMs() + absl::ToInt64Milliseconds(options_.retry_after));
  if (!was_down_.exchange(true)) {
    log::Warn("redis_down", {{"op", op}, {"error", error}, {"fallback", "postgres"}});
  }
}

void RedisClient::MarkUp() {
  if (was_down_.exchange(false)) {
    log::Info("redis_up", {});
  }
  if (up_) up_->Set(1);
}

absl::StatusOr<RedisClient::Context> RedisClient::Acquire() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    const auto deadline =
        std::chrono::steady_clock::now() + absl::ToChronoMilliseconds(options_.command_timeout);
    while (idle_.empty() && open_ >= options_.pool_size) {
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
        return absl::ResourceExhaustedError("redis connection pool busy");
      }
    }
    if (!idle_.empty()) {
      Context c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
    ++open_;
  }
  auto c = Connect();
  if (!c.ok()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      --open_;
    }
    cv_.notify_one();
  }
  return c;
}

absl::StatusOr<RedisClient::Context> RedisClient::Connect() const {
  const timeval tv = absl::ToTimeval(options_.connect_timeout);
  Context c(redisConnectWithTimeout(options_.host.c_str(), options_.port, tv));
  if (!c || c->err) {
    std::string err = c ? c->errstr : "cannot allocate redis context";
    return absl::UnavailableError(absl::StrCat("redis connect: ", err));
  }
  // While Redis is down, the connection is the probe's: its AUTH waits only as long as the probe
  // (a hung Redis accepts connections and never answers).
  redisSetTimeout(c.get(),
                  absl::ToTimeval(was_down_.load() ? kProbeTimeout : options_.command_timeout));
  SH_RETURN_IF_ERROR(RedisAuthenticate(c.get(), options_.password));
  redisSetTimeout(c.get(), absl::ToTimeval(options_.command_timeout));
  return c;
}

void RedisClient::Release(Context ctx) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ctx) {
      idle_.push_back(std::move(ctx));
    } else {
      --open_;
    }
  }
  cv_.notify_one();
}

absl::StatusOr<RedisReply> RedisClient::Command(const std::vector<std::string>& argv) {
  const std::string op = argv.empty() ? "" : argv.front();
  const bool probe = was_down_.load();  // while down, only the probe is admitted
  // A command waits at most its cap (the probe's, or command_timeout), never past what the
  // incoming call has left.
  const absl::Duration cap = probe ? kProbeTimeout : options_.command_timeout;
  const absl::Duration wait = std::min(cap, CurrentCallDeadline() - absl::Now());
  if (wait <= absl::ZeroDuration()) {
    return absl::UnavailableError("redis not called: the caller's deadline has passed");
  }
  if (!Admit()) return absl::UnavailableError("redis unavailable (retrying shortly)");
  auto ctx = Acquire();
  if (!ctx.ok()) {
    // A busy pool is not an outage: only a failed connect starts the fail-fast window.
    if (ctx.status().code() == absl::StatusCode::kUnavailable) {
      MarkDown(op, ctx.status().message());
    }
    return ctx.status();
  }
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  // The probe of a Redis that was down waits only briefly: the caller it rides on pays little.
  const bool shortened = wait < options_.command_timeout;
  if (shortened) redisSetTimeout(ctx->get(), absl::ToTimeval(wait));
  auto* raw = static_cast<redisReply*>(
      redisCommandArgv(ctx->get(), static_cast<int>(args.size()), args.data(), lens.data()));
  if (raw == nullptr) {
    std::string err = (*ctx)->errstr;
    Release(nullptr);  // The connection is unusable after an I/O error: drop it.
    // Timed out by a caller that left too little time: not Redis's fault.
    if (TimeoutIsTheDependencys(wait, cap)) MarkDown(op, err);
    return absl::UnavailableError(absl::StrCat("redis ", op, ": ", err));
  }
  if (shortened) redisSetTimeout(ctx->get(), absl::ToTimeval(options_.command_timeout));
  std::unique_ptr<redisReply, decltype(&freeReplyObject)> reply(raw, &freeReplyObject);
  Release(*std::move(ctx));
  if (reply->type == REDIS_REPLY_ERROR) {
    if (errors_) errors_->Increment();
    return absl::InternalError(
        absl::StrCat("redis ", op, ": ", std::string(reply->str, reply->len)));
  }
  MarkUp();
  return Convert(reply.get());
}

absl::StatusOr<std::optional<std::string>> RedisClient::Get(absl::string_view key) {
  auto r = Command({"GET", std::string(key)});
  if (!r.ok()) return r.status();
  if (r->type != RedisReply::Type::kString) return std::optional<std::string>();
  return std::optional<std::string>(std::move(r->str));
}

absl::Status RedisClient::SetWithTtl(absl::string_view key, absl::string_view value,
                                     absl::Duration ttl) {
  return Command({"SET", std::string(key), std::string(value), "PX",
                  absl::StrCat(std::max<int64_t>(1, absl::ToInt64Milliseconds(ttl)))})
      .status();
}

absl::StatusOr<int64_t> RedisClient::Incr(absl::string_view key) {
  auto r = Command({"INCR", std::string(key)});
  if (!r.ok()) return r.status();
  return r->integer;
}

absl::Status RedisClient::Publish(absl::string_view channel, absl::string_view message) {
  return Command({"PUBLISH", std::string(channel), std::string(message)}).status();
}

RedisSubscriber::RedisSubscriber(const RedisOptions& options, std::string channel,
                                 absl::Duration heartbeat, Callbacks callbacks)
    : options_(options),
      channel_(std::move(channel)),
      heartbeat_(heartbeat),
      callbacks_(std::move(callbacks)),
      thread_([this] { Loop(); }) {}

RedisSubscriber::~RedisSubscriber() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  cv_.notify_all();
  thread_.join();
}

void RedisSubscriber::Loop() {
  while (!stop_.load()) {
    if (Context c = Subscribe(); c != nullptr) {
      if (callbacks_.subscribed()) Listen(c.get());
      callbacks_.lost();
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.retry_after),
                 [this] { return stop_.load(); });
  }
}

RedisSubscriber::Context RedisSubscriber::Subscribe() const {
  Context c(redisConnectWithTimeout(options_.host.c_str(), options_.port,
                                    absl::ToTimeval(options_.connect_timeout)));
  if (!c || c->err) return nullptr;
  redisSetTimeout(c.get(), absl::ToTimeval(options_.command_timeout));
  if (!RedisAuthenticate(c.get(), options_.password).ok()) return nullptr;
  auto* raw = static_cast<redisReply*>(
      redisCommand(c.get(), "SUBSCRIBE %b", channel_.data(), channel_.size()));
  if (raw == nullptr) return nullptr;
  const RedisReply r = Convert(raw);
  freeReplyObject(raw);
  if (r.type != RedisReply::Type::kArray || r.elements.empty() ||
      r.elements[0].str != "subscribe") {
    return nullptr;
  }
  return c;
}

void RedisSubscriber::Listen(redisContext* c) {
  constexpr int kSliceMs = 100;  // how often a stop is noticed
  const int64_t heartbeat_ms = std::max<int64_t>(kSliceMs, absl::ToInt64Milliseconds(heartbeat_));
  int64_t silent_ms = 0;
  bool ping_sent = false;
  while (!stop_.load()) {
    void* raw = nullptr;
    if (redisGetReplyFromReader(c, &raw) != REDIS_OK) return;
    if (raw != nullptr) {
      const RedisReply r = Convert(static_cast<redisReply*>(raw));
      freeReplyObject(raw);
      silent_ms = 0;
      ping_sent = false;
      if (r.type == RedisReply::Type::kArray && r.elements.size() == 3 &&
          r.elements[0].str == "message") {
        callbacks_.message(r.elements[2].str);
      }
      continue;
    }
    pollfd p{c->fd, POLLIN, 0};
    const int n = poll(&p, 1, kSliceMs);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;
    if (n > 0) {
      if (redisBufferRead(c) != REDIS_OK) return;  // closed or failed
      continue;
    }
    if ((silent_ms += kSliceMs) < heartbeat_ms) continue;
    if (ping_sent) return;  // no answer within a heartbeat: a hung Redis is a lost one
    int done = 0;
    if (redisAppendCommand(c, "PING") != REDIS_OK) return;
    while (!done) {
      if (redisBufferWrite(c, &done) != REDIS_OK) return;
    }
    ping_sent = true;
    silent_ms = 0;
  }
}

}  // namespace safeharbor
