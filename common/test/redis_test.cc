#include "common/redis.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <unistd.h>

#include <iostream>

#include "common/deadline.h"
#include "common/metrics.h"
#include "common/testing/harness.h"
#include "common/versioned_cache.h"

namespace safeharbor {
namespace {

using testing::TestServers;

TEST(RedisUrl, Parses) {
  auto o = ParseRedisUrl("redis://127.0.0.1:6390");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->host, "127.0.0.1");
  EXPECT_EQ(o->port, 6390);
  EXPECT_FALSE(ParseRedisUrl("redis://nohost").ok());
  EXPECT_FALSE(ParseRedisUrl("redis://h:99999").ok());
}

TEST(RedisClient, SetGetIncrPublish) {
  RedisClient redis(TestServers::Get().redis_options(), nullptr);
  ASSERT_TRUE(redis.SetWithTtl("k1", std::string("v\0v", 3), absl::Seconds(5)).ok());
  auto v = redis.Get("k1");
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(v->has_value());
  EXPECT_EQ(**v, std::string("v\0v", 3));
  auto missing = redis.Get("no-such-key");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
  auto a = redis.Incr("ctr");
  auto b = redis.Incr("ctr");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*b, *a + 1);
  EXPECT_TRUE(redis.Publish("chan", "hello").ok());
}

TEST(RedisClient, OutageFailsFastIsCountedAndHeals) {
  auto& s = TestServers::Get();
  prometheus::Registry registry;
  RedisClient redis(s.redis_options(), &registry);
  ASSERT_TRUE(redis.SetWithTtl("k", "v", absl::Seconds(5)).ok());
  s.StopRedis();
  EXPECT_EQ(redis.Get("k").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(redis.available());
  // Within the retry window calls fail fast without touching the network.
  EXPECT_EQ(redis.Get("k").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_GE(SumCounter(registry, "safeharbor_redis_errors_total"), 1);
  EXPECT_EQ(SumCounter(registry, "safeharbor_redis_up"), 0);
  s.StartRedis();
  absl::SleepFor(redis.options().retry_after + absl::Milliseconds(50));
  EXPECT_TRUE(redis.SetWithTtl("k", "back", absl::Seconds(5)).ok());
  EXPECT_EQ(SumCounter(registry, "safeharbor_redis_up"), 1);
}

TEST(RedisClient, TheTestRedisNeedsItsPassword) {
  auto& s = TestServers::Get();
  RedisOptions none = s.redis_options();
  none.password.clear();
  RedisClient anonymous(none, nullptr);
  auto refused = anonymous.Get("k");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("NOAUTH"), std::string::npos) << refused.status();
  RedisOptions wrong = s.redis_options();
  wrong.password = "not-the-password";
  prometheus::Registry registry;
  RedisClient bad(wrong, &registry);
  auto down = bad.Get("k");
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(down.status().message().find("refused the password"), std::string::npos);
  EXPECT_EQ(down.status().message().find("not-the-password"), std::string::npos);
  EXPECT_EQ(SumCounter(registry, "safeharbor_redis_up"), 0);
  RedisClient good(s.redis_options(), nullptr);
  EXPECT_TRUE(good.Get("k").ok());
}

// A Redis that hangs: a socket that completes the TCP handshake (the kernel's backlog) and never
// answers. Each command waits what the incoming call has left, capped by command_timeout; a
// caller's own short deadline does not mark Redis down, a command given its cap does.
TEST(RedisClient, ACommandWaitsNoLongerThanTheCallerHasLeft) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), len), 0);
  ASSERT_EQ(listen(fd, 16), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  RedisOptions o;
  o.port = ntohs(addr.sin_port);
  o.command_timeout = absl::Seconds(2);
  o.retry_after = absl::Seconds(30);
  RedisClient redis(o, nullptr);
  absl::Status gone, short_caller;
  absl::Duration short_took;
  {
    DeadlineScope caller(absl::Now() - absl::Milliseconds(1));  // nothing left
    gone = redis.Get("k").status();
  }
  {
    DeadlineScope caller(absl::Now() + absl::Milliseconds(100));
    const absl::Time start = absl::Now();
    short_caller = redis.Get("k").status();
    short_took = absl::Now() - start;
  }
  const bool available_after_short = redis.available();
  const absl::Time start = absl::Now();
  const absl::Status capped = redis.Get("k").status();  // outside a call: the 2 s cap
  const absl::Duration capped_took = absl::Now() - start;
  close(fd);
  EXPECT_EQ(gone.code(), absl::StatusCode::kUnavailable) << gone;
  EXPECT_NE(gone.message().find("deadline"), std::string::npos) << gone;
  EXPECT_EQ(short_caller.code(), absl::StatusCode::kUnavailable) << short_caller;
  EXPECT_LT(short_took, absl::Seconds(1)) << "the caller's 100 ms, not the 2 s cap";
  EXPECT_TRUE(available_after_short) << "a caller's short deadline is not Redis's fault";
  EXPECT_EQ(capped.code(), absl::StatusCode::kUnavailable) << capped;
  EXPECT_GE(capped_took, absl::Seconds(1)) << "given its cap";
  EXPECT_FALSE(redis.available());
  std::cout << "hung redis: a caller with 100 ms left waited " << absl::FormatDuration(short_took)
            << "; a command given the 2 s cap waited " << absl::FormatDuration(capped_took)
            << " and marked Redis down\n";
}

// Review #10: a write whose cache generation bump failed is bumped again on the writer's next
// heartbeat, without waiting for a read on the writer: another replica's next lookup misses
// instead of answering what was cached before the write. The bump is made to fail by pausing
// Redis's writes (CLIENT PAUSE ... WRITE) past the writer's command timeout; nothing is lost
// from Redis meanwhile, so the cached answer is still there to be (wrongly) served.
TEST(VersionedCache, AFailedBumpIsRetriedWithoutAnotherRead) {
  RedisOptions o = TestServers::Get().redis_options();
  if (o.cache_key.empty()) o.cache_key = std::string(32, 'k');
  o.command_timeout = absl::Milliseconds(150);
  o.retry_after = absl::Milliseconds(100);
  RedisClient writer_redis(o, nullptr), reader_redis(o, nullptr), admin(o, nullptr);
  const std::string ns = absl::StrCat("vc-retry-", getpid(), "-", absl::ToUnixMicros(absl::Now()));
  LocalCacheOptions beat;
  beat.heartbeat = absl::Milliseconds(200);
  prometheus::Registry writer_registry, reader_registry;
  VersionedCache writer(&writer_redis, writer_registry, "answers", ns, absl::Seconds(60), beat);
  VersionedCache reader(&reader_redis, reader_registry, "answers", ns, absl::Seconds(60));
  const VersionedCache::Lookup before = reader.Get("q");
  ASSERT_FALSE(before.generation.empty());
  reader.Store(before.generation, "q", "the answer before the write");
  ASSERT_TRUE(reader.Get("q").value.has_value());

  ASSERT_TRUE(admin.Command({"CLIENT", "PAUSE", "600", "WRITE"}).ok());
  const absl::Time paused = absl::Now();
  writer.Invalidate();  // the write committed; its bump times out
  const absl::Duration bump_took = absl::Now() - paused;
  absl::SleepFor(absl::Milliseconds(600) - bump_took + absl::Milliseconds(50));
  // No read on the writer from here on: only its retry can bump.
  const absl::Time start = absl::Now();
  bool missed = false;
  while (!missed && absl::Now() - start < absl::Seconds(5)) {
    missed = !reader.Get("q").value.has_value();
    if (!missed) absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_GE(bump_took, absl::Milliseconds(100)) << "the write's own bump should have waited";
  EXPECT_TRUE(missed) << "the other replica still answers what was cached before the write";
  std::cout << "failed bump: the write's own bump gave up after " << absl::FormatDuration(bump_took)
            << "; the other replica missed " << absl::FormatDuration(absl::Now() - start)
            << " after Redis took writes again\n";
}

}  // namespace
}  // namespace safeharbor
