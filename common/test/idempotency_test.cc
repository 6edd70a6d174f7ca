#include "common/idempotency.h"

#include <gtest/gtest.h>

#include <iostream>

#include "common/testing/harness.h"
#include "safeharbor/testing/v1/echo.pb.h"

namespace safeharbor {
namespace {

using safeharbor::testing::v1::EchoRequest;
using safeharbor::testing::v1::EchoResponse;

TEST(FieldDigests, DifferWhereContentDiffers) {
  EchoRequest a, b;
  a.set_message("one");
  b.set_message("two");
  auto da = FieldDigests(a, "rid");
  auto db = FieldDigests(b, "rid");
  EXPECT_EQ(DifferingFields(da, db), std::vector<std::string>{"message"});
  EXPECT_TRUE(DifferingFields(da, FieldDigests(a, "rid")).empty());
  // The salt (request id) keeps equal content from having equal digests across keys.
  EXPECT_NE(da.at("message"), FieldDigests(a, "other").at("message"));
  EXPECT_EQ(DifferingFields(da, {}), std::vector<std::string>{"message"});
}

TEST(ValidateRequestId, RefusesEmptyLongAndUnprintable) {
  EXPECT_TRUE(ValidateRequestId("abc-123").ok());
  EXPECT_FALSE(ValidateRequestId("").ok());
  EXPECT_FALSE(ValidateRequestId(std::string(129, 'a')).ok());
  EXPECT_FALSE(ValidateRequestId("has space").ok());
}

class RunIdempotentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& s = safeharbor::testing::TestServers::Get();
    auto pool = PgPool::Connect(s.PgOptionsFor(s.NewDatabase("idem")), nullptr);
    ASSERT_TRUE(pool.ok());
    pool_ = *std::move(pool);
    ASSERT_TRUE(pool_->Migrate({{1, "001", "CREATE TABLE made (n serial PRIMARY KEY);"}}).ok());
  }
  absl::Status Call(const std::string& rid, const std::string& msg, EchoResponse* out,
                    int* created) {
    EchoRequest req;
    req.set_message(msg);
    return RunIdempotent(*pool_, "Echo", caller_, rid, req, out, [&](PgTx& tx) -> absl::Status {
      auto r = tx.Exec("INSERT INTO made DEFAULT VALUES RETURNING n");
      if (!r.ok()) return r.status();
      ++*created;
      out->set_message(absl::StrCat(msg, "#", r->Int64(0, "n")));
      return absl::OkStatus();
    });
  }
  std::unique_ptr<PgPool> pool_;
  Caller caller_{"org-a", Role::kCourtClerk, ""};
};

TEST_F(RunIdempotentTest, ReplayReturnsTheOriginalAndCreatesNothing) {
  int created = 0;
  EchoResponse first, second;
  ASSERT_TRUE(Call("r1", "hello", &first, &created).ok());
  ASSERT_TRUE(Call("r1", "hello", &second, &created).ok());
  EXPECT_EQ(created, 1);
  EXPECT_EQ(first.message(), second.message());
  auto n = pool_->Query("SELECT count(*) AS n FROM made");
  EXPECT_EQ(n->Int64(0, "n"), 1);
}

TEST_F(RunIdempotentTest, SameIdOtherContentIsRefusedNamingTheField) {
  int created = 0;
  EchoResponse out;
  ASSERT_TRUE(Call("r2", "hello", &out, &created).ok());
  absl::Status st = Call("r2", "goodbye", &out, &created);
  EXPECT_EQ(st.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(st.message().find("message"), std::string::npos) << st;
  EXPECT_EQ(created, 1);
}

TEST_F(RunIdempotentTest, FailedCreateReleasesTheRequestId) {
  EchoRequest req;
  req.set_message("x");
  EchoResponse out;
  absl::Status st = RunIdempotent(*pool_, "Echo", caller_, "r3", req, &out,
                                  [](PgTx&) { return absl::InvalidArgumentError("bad"); });
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  int created = 0;
  EXPECT_TRUE(Call("r3", "x", &out, &created).ok());
  EXPECT_EQ(created, 1);
}

// Issue 13: the record costs no round trip of its own. Its claim goes out with BEGIN and the
// work's statements, its response with the COMMIT: work that only sends is one round trip. A
// replay's claim is refused by the record (a unique violation), so nothing of it commits.
TEST_F(RunIdempotentTest, TheRecordAddsNoRoundTrip) {
  EchoRequest req;
  req.set_message("m");
  const auto create = [](EchoResponse* out) {
    return [out](PgTx& tx) -> absl::Status {
      (void)tx.Send("INSERT INTO made DEFAULT VALUES");
      out->set_message("made once");
      return absl::OkStatus();
    };
  };
  EchoResponse first, again;
  bool replayed = true;
  PgRoundTripScope trips;
  ASSERT_TRUE(
      RunIdempotent(*pool_, "Echo", caller_, "r5", req, &first, create(&first), &replayed).ok());
  EXPECT_EQ(trips.count(), 1);
  EXPECT_FALSE(replayed);
  PgRoundTripScope replay;
  ASSERT_TRUE(
      RunIdempotent(*pool_, "Echo", caller_, "r5", req, &again, create(&again), &replayed).ok());
  const int64_t replay_trips = replay.count();
  EXPECT_TRUE(replayed);
  EXPECT_EQ(again.message(), "made once");
  EXPECT_EQ(pool_->Query("SELECT count(*) AS n FROM made")->Int64(0, "n"), 1);
  std::cout << "idempotent call: " << trips.count() << " round trip; its replay " << replay_trips
            << " (the refused claim, ROLLBACK, the record read)\n";
}

TEST_F(RunIdempotentTest, ConcurrentDuplicatesCreateOnce) {
  std::atomic<int> created{0};
  std::vector<std::thread> threads;
  std::vector<std::string> results(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      int c = 0;
      EchoResponse out;
      if (Call("r4", "same", &out, &c).ok()) results[i] = out.message();
      created.fetch_add(c);
    });
  }
  for (auto& t : threads) t.join();
  auto n = pool_->Query("SELECT count(*) AS n FROM made");
  EXPECT_EQ(n->Int64(0, "n"), 1);
  for (const auto& r : results) EXPECT_EQ(r, results[0]);
}

}  // namespace
}  // namespace safeharbor
