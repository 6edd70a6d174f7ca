// GoogleTest main for SafeHarbor tests: the harness's servers are stopped at exit.
#include <gtest/gtest.h>

#include "common/log.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  safeharbor::log::SetMinLevel(safeharbor::log::Level::kWarn);
  return RUN_ALL_TESTS();
}
