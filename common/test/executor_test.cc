#include "common/executor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>

namespace safeharbor {
namespace {

TEST(Executor, RunsEverySubmittedTask) {
  std::atomic<int> ran{0};
  {
    Executor ex(4, 1000);
    for (int i = 0; i < 500; ++i) ASSERT_TRUE(ex.TrySubmit([&] { ran.fetch_add(1); }));
  }  // The destructor drains the queue.
  EXPECT_EQ(ran.load(), 500);
}

TEST(Executor, RefusesWorkBeyondItsQueueBound) {
  Executor ex(1, 2);
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  std::promise<void> started;
  ASSERT_TRUE(ex.TrySubmit([&, gate] {
    started.set_value();
    gate.wait();
  }));
  started.get_future().wait();  // The only worker is now busy.
  EXPECT_TRUE(ex.TrySubmit([] {}));
  EXPECT_TRUE(ex.TrySubmit([] {}));
  EXPECT_FALSE(ex.TrySubmit([] {}));  // Queue bound 2 reached.
  EXPECT_EQ(ex.queued(), 2u);
  release.set_value();
  ex.Shutdown();
  EXPECT_FALSE(ex.TrySubmit([] {}));  // No work after shutdown.
}

}  // namespace
}  // namespace safeharbor
