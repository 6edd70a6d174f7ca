#include "common/redis.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include "common/metrics.h"
#include "common/testing/harness.h"

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

}  // namespace
}  // namespace safeharbor
