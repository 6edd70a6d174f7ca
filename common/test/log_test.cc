#include "common/log.h"

#include <gtest/gtest.h>

namespace safeharbor::log {
namespace {

TEST(Log, EscapesJson) {
  EXPECT_EQ(JsonEscape("a\"b\\c\nd\x01"), "a\\\"b\\\\c\\nd\\u0001");
  EXPECT_EQ(JsonEscape("plain"), "plain");
}

TEST(Log, ParsesLevels) {
  Level l;
  EXPECT_TRUE(ParseLevel("warn", &l));
  EXPECT_EQ(l, Level::kWarn);
  EXPECT_FALSE(ParseLevel("loud", &l));
}

}  // namespace
}  // namespace safeharbor::log
