#include "common/pg.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <condition_variable>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>

#include "common/deadline.h"
#include "common/metrics.h"
#include "common/status_macros.h"
#include "common/testing/harness.h"

namespace safeharbor {
namespace {

using testing::TestServers;

const std::vector<Migration>& TestMigrations() {
  static const auto* m = new std::vector<Migration>{
      {1, "001_items", "CREATE TABLE items (id text PRIMARY KEY, n bigint NOT NULL DEFAULT 0);"},
      {2, "002_more",
       "ALTER TABLE items ADD COLUMN note text; INSERT INTO items(id) VALUES ('seed');"},
  };
  return *m;
}

std::unique_ptr<PgPool> NewPool(prometheus::Registry* registry = nullptr) {
  auto& s = TestServers::Get();
  auto pool = PgPool::Connect(s.PgOptionsFor(s.NewDatabase("pg")), registry);
  EXPECT_TRUE(pool.ok()) << pool.status();
  EXPECT_TRUE((*pool)->Migrate(TestMigrations()).ok());
  return *std::move(pool);
}

TEST(PgPool, MigrationsApplyOnceInOrder) {
  auto pool = NewPool();
  ASSERT_TRUE(pool->Migrate(TestMigrations()).ok());  // Second run is a no-op.
  auto r = pool->Query("SELECT count(*) AS n FROM items");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->Int64(0, "n"), 1);  // The seed row was inserted once.
  auto v = pool->Query("SELECT max(version) AS v FROM schema_migrations");
  EXPECT_EQ(v->Int64(0, "v"), 2);
}

TEST(PgPool, FailedTransactionLeavesNothingBehind) {
  auto pool = NewPool();
  absl::Status st = pool->Transact([](PgTx& tx) -> absl::Status {
    auto r = tx.Exec("INSERT INTO items (id, n) VALUES ($1, $2)", {"a", int64_t{1}});
    if (!r.ok()) return r.status();
    return absl::InvalidArgumentError("caller changed its mind");
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  auto r = pool->Query("SELECT count(*) AS n FROM items WHERE id = 'a'");
  EXPECT_EQ(r->Int64(0, "n"), 0);
}

TEST(PgPool, MapsSqlErrorsToStatusCodes) {
  auto pool = NewPool();
  EXPECT_EQ(pool->Query("INSERT INTO items (id) VALUES ('seed')").status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(pool->Query("SELECT $1::int AS x", {"not a number"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SqlStateOf(pool->Query("INSERT INTO items (id) VALUES ('seed')").status()), "23505");
}

TEST(PgPool, AnAbortFromTheCallersOwnLogicIsNotRetried) {
  auto pool = NewPool();
  int calls = 0;
  absl::Status st = pool->Transact([&](PgTx&) {
    ++calls;
    return absl::AbortedError("etag mismatch");  // not a serialization failure
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(SqlStateOf(st), "");
  EXPECT_EQ(calls, 1);
}

TEST(PgPool, ParametersRoundTripUntouched) {
  auto pool = NewPool();
  const std::string nasty = "x'); DROP TABLE items; --\n\"\\";
  ASSERT_TRUE(pool->Query("INSERT INTO items (id, note) VALUES ($1, $2)", {"nasty", nasty}).ok());
  auto r = pool->Query("SELECT note FROM items WHERE id = $1", {"nasty"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->String(0, "note"), nasty);
  std::string bytes("\0\x01\xff\x80zz", 6);
  auto b = pool->Query("SELECT $1::bytea AS b", {PgParam::Bytea(bytes)});
  EXPECT_EQ(b->Bytea(0, "b"), bytes);
  absl::Time t = absl::FromUnixMicros(1790000000123456);
  auto tr = pool->Query("SELECT $1::timestamptz AS t", {PgTime(t)});
  EXPECT_EQ(tr->Time(0, "t"), t);
}

TEST(PgPool, SerializableConflictsAreRetriedUntilEveryIncrementLands) {
  auto pool = NewPool();
  constexpr int kThreads = 4, kEach = 25;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        absl::Status st = pool->Transact(
            [](PgTx& tx) -> absl::Status {
              auto r = tx.Exec("SELECT n FROM items WHERE id = 'seed'");
              if (!r.ok()) return r.status();
              return tx.Exec("UPDATE items SET n = $1 WHERE id = 'seed'", {r->Int64(0, "n") + 1})
                  .status();
            },
            Isolation::kSerializable);
        if (!st.ok()) failures.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  auto r = pool->Query("SELECT n FROM items WHERE id = 'seed'");
  // Every transaction either committed its increment or reported failure: none was lost.
  EXPECT_EQ(r->Int64(0, "n") + failures.load(), kThreads * kEach);
}

// Pipelines (issue 13): statements sent together cost one round trip, BEGIN going out with the
// first and COMMIT with the last; each wait in between costs one more.
TEST(PgPool, StatementsSentTogetherTakeOneRoundTripWithBeginAndCommit) {
  auto pool = NewPool();
  std::optional<PgPending> read;
  PgRoundTripScope trips;
  ASSERT_TRUE(pool->Transact([&](PgTx& tx) -> absl::Status {
                    (void)tx.Send("INSERT INTO items (id, n) VALUES ($1, $2)", {"p1", int64_t{1}});
                    (void)tx.Send("INSERT INTO items (id, n) VALUES ($1, $2)", {"p2", int64_t{2}});
                    read.emplace(tx.Send("SELECT sum(n) AS s FROM items WHERE id LIKE 'p%'"));
                    return absl::OkStatus();
                  })
                  .ok());
  EXPECT_EQ(trips.count(), 1);
  auto sum = read->Get();  // answered with the commit, readable after it
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(sum->Int64(0, "s"), 3);

  PgRoundTripScope waits;
  ASSERT_TRUE(pool->Transact([&](PgTx& tx) -> absl::Status {
                    (void)tx.Send("UPDATE items SET n = n + 1 WHERE id = 'p1'");
                    SH_ASSIGN_OR_RETURN(PgResult r, tx.Exec("SELECT n FROM items WHERE id = 'p1'"));
                    EXPECT_EQ(r.Int64(0, "n"), 2);  // its own earlier statement, already run
                    (void)tx.Send("UPDATE items SET n = n + 1 WHERE id = 'p2'");
                    return absl::OkStatus();
                  })
                  .ok());
  EXPECT_EQ(waits.count(), 2) << "one wait in the middle, then the rest with COMMIT";
  PgRoundTripScope query;
  auto q = pool->Query("SELECT n FROM items WHERE id = 'p2'");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->Int64(0, "n"), 3);
  EXPECT_EQ(query.count(), 1);
}

// Issue 13: each statement text is prepared once per connection. A statement first prepared in a
// transaction that then fails (its Parse answered, or skipped after the failure), used twice in
// one pipeline, or with a syntax error is answered as before, and works again afterwards; the
// server parses each text once per connection.
TEST(PgPool, StatementsArePreparedOncePerConnectionWhateverTheirTransactionsDo) {
  auto& s = TestServers::Get();
  PgOptions options = s.PgOptionsFor(s.NewDatabase("prep"));
  options.pool_size = 1;  // one connection: every transaction below reuses it
  auto made = PgPool::Connect(options, nullptr);
  ASSERT_TRUE(made.ok());
  PgPool& pool = **made;
  ASSERT_TRUE(pool.Migrate(TestMigrations()).ok());
  const char* insert = "INSERT INTO items (id, n) VALUES ($1, $2)";
  const char* later = "UPDATE items SET n = n + $2 WHERE id = $1";
  absl::Status failed = pool.Transact([&](PgTx& tx) -> absl::Status {
    (void)tx.Send(insert, {"q1", int64_t{1}});
    (void)tx.Send(insert, {"seed", int64_t{1}});  // duplicate key: fails the pipeline
    (void)tx.Send(later, {"q1", int64_t{5}});     // its Parse skipped
    return absl::OkStatus();
  });
  EXPECT_EQ(failed.code(), absl::StatusCode::kAlreadyExists) << failed;
  absl::Status bad = pool.Transact([&](PgTx& tx) { return tx.Exec("SELEC 1").status(); });
  EXPECT_EQ(bad.code(), absl::StatusCode::kInternal) << bad;  // syntax error, as before
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(pool.Transact([&](PgTx& tx) -> absl::Status {
                      (void)tx.Send(insert, {absl::StrCat("r", round, "a"), int64_t{1}});
                      (void)tx.Send(insert, {absl::StrCat("r", round, "b"), int64_t{2}});
                      (void)tx.Send(later, {absl::StrCat("r", round, "a"), int64_t{10}});
                      return absl::OkStatus();
                    })
                    .ok());
  }
  auto sum = pool.Query("SELECT sum(n) AS s, count(*) AS c FROM items WHERE id LIKE 'r%'");
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(sum->Int64(0, "s"), 3 * 13);
  EXPECT_EQ(sum->Int64(0, "c"), 6);
  auto q1 = pool.Query("SELECT count(*) AS c FROM items WHERE id = 'q1'");
  ASSERT_TRUE(q1.ok());
  EXPECT_EQ(q1->Int64(0, "c"), 0);  // rolled back
  auto names = pool.Query(
      "SELECT count(*) FILTER (WHERE statement LIKE 'INSERT INTO items%') AS inserts, "
      "count(*) FILTER (WHERE statement LIKE 'UPDATE items%') AS updates FROM "
      "pg_prepared_statements");
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_EQ(names->Int64(0, "inserts"), 1);
  EXPECT_EQ(names->Int64(0, "updates"), 1);
}

// A failure in the middle of a pipeline: the statement's own error (mapped as ever), every later
// one skipped with that error, nothing of the transaction committed, and nothing sent after it.
TEST(PgPool, AFailureInsideAPipelineRollsBackEverythingWithItsOwnCode) {
  auto pool = NewPool();
  std::optional<PgPending> first, dup, after;
  int trips_in_tx = 0;
  PgRoundTripScope trips;
  absl::Status st = pool->Transact([&](PgTx& tx) -> absl::Status {
    first.emplace(tx.Send("INSERT INTO items (id) VALUES ('f1')"));
    dup.emplace(tx.Send("INSERT INTO items (id) VALUES ('seed')"));  // a unique violation
    after.emplace(tx.Send("INSERT INTO items (id) VALUES ('f2')"));
    return absl::OkStatus();  // never reads them: the commit finds the failure
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kAlreadyExists) << st;
  EXPECT_EQ(SqlStateOf(st), "23505");
  EXPECT_TRUE(first->status().ok());
  EXPECT_FALSE(dup->skipped());
  EXPECT_EQ(dup->status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(after->skipped());
  EXPECT_EQ(after->status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(trips.count(), 2) << "the pipeline, then ROLLBACK";
  EXPECT_EQ(pool->Query("SELECT count(*) AS n FROM items WHERE id LIKE 'f%'")->Int64(0, "n"), 0);

  // A failure read in the middle: what the transaction sends after it is answered at once.
  PgRoundTripScope stopped;
  st = pool->Transact([&](PgTx& tx) -> absl::Status {
    (void)tx.Exec("SELECT $1::int", {"not a number"});
    auto later = tx.Exec("INSERT INTO items (id) VALUES ('f3')");
    EXPECT_EQ(later.status().code(), absl::StatusCode::kInvalidArgument) << later.status();
    trips_in_tx = tx.round_trips();
    return absl::OkStatus();
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_EQ(trips_in_tx, 1);
  EXPECT_EQ(stopped.count(), 2) << "the failed statement, then ROLLBACK";
  EXPECT_EQ(pool->Query("SELECT count(*) AS n FROM items WHERE id = 'f3'")->Int64(0, "n"), 0);
}

// A serialization failure found only when the pipeline with COMMIT runs: the whole transaction
// runs again and its change lands once.
TEST(PgPool, ASerializationFailureInsideAPipelineIsRetried) {
  auto pool = NewPool();
  int attempts = 0;
  absl::Status st = pool->Transact(
      [&](PgTx& tx) -> absl::Status {
        ++attempts;
        SH_ASSIGN_OR_RETURN(PgResult r, tx.Exec("SELECT n FROM items WHERE id = 'seed'"));
        if (attempts == 1) {  // another transaction changes the row after this one's snapshot
          EXPECT_TRUE(pool->Query("UPDATE items SET n = n + 100 WHERE id = 'seed'").ok());
        }
        (void)tx.Send("UPDATE items SET n = $1 WHERE id = 'seed'", {r.Int64(0, "n") + 1});
        return absl::OkStatus();
      },
      Isolation::kRepeatableRead);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(attempts, 2);
  EXPECT_EQ(pool->Query("SELECT n FROM items WHERE id = 'seed'")->Int64(0, "n"), 101);
  std::cout << "serialization failure in a pipeline: " << attempts << " attempts\n";
}

TEST(PgPool, DatabaseRestartGivesUnavailableThenRecoversWithoutANewPool) {
  prometheus::Registry registry;
  auto pool = NewPool(&registry);
  // Fill the pool with several open connections, all of which the restart will make stale.
  std::vector<std::thread> warm;
  for (int i = 0; i < 4; ++i) {
    warm.emplace_back([&] { ASSERT_TRUE(pool->Query("SELECT pg_sleep(0.05)").ok()); });
  }
  for (auto& t : warm) t.join();
  auto& s = TestServers::Get();
  s.StopPostgres();
  absl::Status down = pool->Query("SELECT 1").status();
  EXPECT_EQ(down.code(), absl::StatusCode::kUnavailable) << down;
  EXPECT_GE(SumCounter(registry, "safeharbor_postgres_errors_total", {{"kind", "unavailable"}}), 1);
  s.StartPostgres();
  // The first call after the restart succeeds: the stale connection it meets is replaced and
  // every other pooled connection is reset before use, with its session settings applied again.
  auto up = pool->Query(
      "SELECT current_setting('TimeZone') AS tz, "
      "current_setting('statement_timeout') AS st");
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_EQ(up->String(0, "tz"), "UTC");
  EXPECT_NE(up->String(0, "st"), "0");
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(pool->Query("SELECT 1").ok()) << i;
}

// PostgreSQL hung (SIGSTOP of the postmaster and its backends: sockets accept, nothing answers).
// A statement waits no longer than what the caller has left, capped by call_timeout; after three
// time-outs the breaker opens and calls fail at once naming the database; the probe finds it not
// answering. After SIGCONT the probe closes the breaker, the connections that timed out were
// discarded (every answer is the statement's own), and the same pool serves again.
TEST(PgPool, AHungServerCostsACallItsDeadlineAtMostThenIsRefusedAtOnce) {
  prometheus::Registry registry;
  auto& s = TestServers::Get();
  PgOptions o = s.PgOptionsFor(s.NewDatabase("pg"));
  o.call_timeout = absl::Milliseconds(800);
  o.connect_timeout_s = 1;
  o.breaker = {.failure_threshold = 3, .open_for = absl::Seconds(30)};
  auto pool = PgPool::Connect(o, &registry);
  ASSERT_TRUE(pool.ok()) << pool.status();
  PgPool& pg = **pool;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pg.Query("SELECT 1").ok());
  s.FreezePostgres();
  std::vector<absl::Duration> took;
  std::vector<absl::Status> got;
  {
    DeadlineScope caller(absl::Now() + absl::Milliseconds(300));  // a caller with 300 ms left
    const absl::Time start = absl::Now();
    got.push_back(pg.Query("SELECT 1").status());
    took.push_back(absl::Now() - start);
  }
  // The caller's own 300 ms (under half the 800 ms cap) is not the server's fault.
  const BreakerState after_short_caller = pg.breaker_state();
  for (int i = 0; i < 4; ++i) {
    const absl::Time start = absl::Now();
    got.push_back(pg.Query("SELECT 1").status());
    took.push_back(absl::Now() - start);
  }
  const absl::Status probe = pg.Probe(absl::Milliseconds(300));
  s.ThawPostgres();
  for (const absl::Status& st : got) EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_LT(took[0], absl::Milliseconds(700)) << "the caller's 300 ms, not the 800 ms cap";
  EXPECT_LT(took[1], absl::Seconds(2)) << "the 800 ms cap";
  EXPECT_EQ(after_short_caller, BreakerState::kClosed);
  EXPECT_EQ(got[3].message().find("circuit breaker"), std::string::npos)
      << "the third call given the cap still waited: the short caller's time-out did not count";
  EXPECT_EQ(pg.breaker_state(), BreakerState::kOpen);
  EXPECT_NE(got[4].message().find("postgres"), std::string::npos) << got[4];
  EXPECT_LT(took[4], absl::Milliseconds(100)) << "refused at once";
  EXPECT_FALSE(probe.ok());
  // 3 calls given the cap, and the probe; not the short caller's.
  EXPECT_EQ(SumCounter(registry, "safeharbor_dependency_timeouts_total"), 4);
  ASSERT_TRUE(pg.Probe(absl::Seconds(5)).ok());
  EXPECT_EQ(pg.breaker_state(), BreakerState::kClosed);
  for (int32_t i = 0; i < 10; ++i) {
    auto r = pg.Query("SELECT $1::int AS x", {i});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->Int32(0, "x"), i);  // its own answer: no timed-out connection was reused
  }
  std::cout << "hung PostgreSQL: " << got.size() << " calls, all UNAVAILABLE, in";
  for (absl::Duration d : took) std::cout << " " << absl::FormatDuration(d);
  std::cout << "; served again after SIGCONT\n";
}

// The bulkhead: at most max_in_flight calls use the database at once. One more waits for a slot
// while the database answers, and is refused at once when nothing has answered for a second (the
// slots' holders are stuck), instead of holding its thread.
TEST(PgPool, CallsOverTheInFlightBudgetWaitWhileItAnswersAndAreRefusedWhenItDoesNot) {
  auto& s = TestServers::Get();
  PgOptions o = s.PgOptionsFor(s.NewDatabase("pg"));
  o.max_in_flight = 2;
  auto pool = PgPool::Connect(o, nullptr);
  ASSERT_TRUE(pool.ok()) << pool.status();
  PgPool& pg = **pool;
  std::mutex mu;
  std::condition_variable cv;
  int inside = 0;
  bool release = false;
  const auto hold = [&](PgTx& tx) -> absl::Status {
    SH_RETURN_IF_ERROR(tx.Exec("SELECT 1").status());
    std::unique_lock<std::mutex> lock(mu);
    ++inside;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
    return absl::OkStatus();
  };
  auto hold_two = [&](std::vector<absl::Status>* held, std::vector<std::thread>* holders) {
    {
      std::lock_guard<std::mutex> lock(mu);
      inside = 0;
      release = false;
    }
    for (int i = 0; i < 2; ++i) {
      holders->emplace_back([&, held, i] { (*held)[i] = pg.Transact(hold); });
    }
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return inside == 2; });
  };
  auto let_go = [&](std::vector<std::thread>* holders) {
    {
      std::lock_guard<std::mutex> lock(mu);
      release = true;
    }
    cv.notify_all();
    for (auto& t : *holders) t.join();
    holders->clear();
  };
  std::vector<absl::Status> held(2);
  std::vector<std::thread> holders;
  // The database answers (the holders are let go 200 ms later): the third call waits and is served.
  ASSERT_TRUE(hold_two(&held, &holders));
  std::thread later([&] {
    absl::SleepFor(absl::Milliseconds(200));
    let_go(&holders);
  });
  absl::Time start = absl::Now();
  const absl::Status waited = pg.Query("SELECT 1").status();
  const absl::Duration waited_took = absl::Now() - start;
  later.join();
  EXPECT_TRUE(waited.ok()) << waited;
  EXPECT_GE(waited_took, absl::Milliseconds(150)) << "it waited for a slot";
  // Nothing answers for more than a second while both slots are held: refused at once.
  ASSERT_TRUE(hold_two(&held, &holders));
  absl::SleepFor(absl::Milliseconds(1100));
  start = absl::Now();
  const absl::Status over = pg.Query("SELECT 1").status();
  const absl::Duration over_took = absl::Now() - start;
  let_go(&holders);
  EXPECT_EQ(over.code(), absl::StatusCode::kUnavailable) << over;
  EXPECT_NE(over.message().find("busy"), std::string::npos) << over;
  EXPECT_LT(over_took, absl::Milliseconds(500)) << "at once";
  for (const absl::Status& st : held) EXPECT_TRUE(st.ok()) << st;
  EXPECT_TRUE(pg.Query("SELECT 1").ok()) << "the budget is given back";
  std::cout << "postgres budget 2: a third call waited " << absl::FormatDuration(waited_took)
            << " while the database answered; with nothing answering for 1.1 s it was refused in "
            << absl::FormatDuration(over_took) << "\n";
}

// Review #2: a pipelined batch is not cut short by one statement's time cap. The server answers
// a pipeline's statements together at its end, each bounded by its statement_timeout, so a batch
// waits the cap once per statement: a batch of statements that each answer within the cap
// completes however long it takes in all, and one that does not answer is still given up on.
TEST(PgPool, APipelineWaitsTheCapOncePerStatementNotOnceForTheBatch) {
  auto& s = TestServers::Get();
  PgOptions o = s.PgOptionsFor(s.NewDatabase("cap"));
  o.call_timeout = absl::Milliseconds(600);
  o.statement_timeout_ms = 20000;
  auto pool = PgPool::Connect(o, nullptr);
  ASSERT_TRUE(pool.ok()) << pool.status();
  PgPool& pg = **pool;
  const absl::Time start = absl::Now();
  absl::Status long_batch = pg.Transact([](PgTx& tx) -> absl::Status {
    for (int i = 0; i < 4; ++i) (void)tx.Send("SELECT pg_sleep(0.25)");
    return absl::OkStatus();
  });
  const absl::Duration long_took = absl::Now() - start;
  EXPECT_TRUE(long_batch.ok()) << long_batch << " after " << long_took;
  EXPECT_GE(long_took, absl::Milliseconds(900)) << "four statements of 250 ms, one batch";

  // BEGIN, two statements and COMMIT: 4 x 600 ms at most, less than the 5 s statement.
  const absl::Time stuck_start = absl::Now();
  absl::Status stuck = pg.Transact([](PgTx& tx) -> absl::Status {
    (void)tx.Send("SELECT 1");
    (void)tx.Send("SELECT pg_sleep(5)");
    return absl::OkStatus();
  });
  const absl::Duration stuck_took = absl::Now() - stuck_start;
  EXPECT_EQ(stuck.code(), absl::StatusCode::kUnavailable) << stuck;
  EXPECT_LT(stuck_took, absl::Seconds(4)) << "bounded by 4 statements x the 600 ms cap";
  EXPECT_TRUE(pg.Query("SELECT 1").ok()) << "the pool serves again";
  std::cout << "pipeline of 4 x 250 ms under a 600 ms cap: " << absl::FormatDuration(long_took)
            << ", OK; a 5 s statement in a batch of 4: UNAVAILABLE after "
            << absl::FormatDuration(stuck_took) << "\n";
}

// Ends the backend `pid` from another connection and waits until its process is gone, then a
// little longer: a backend leaves pg_stat_activity (and its process table entry) before its
// process has exited and closed the socket, and on a loaded machine the close can come some
// milliseconds later. Only then are its error and close on the ended connection's socket.
void EndBackend(PgPool& pg, int64_t pid) {
  ASSERT_TRUE(pg.Query("SELECT pg_terminate_backend($1::integer, 5000)", {pid}).ok());
  for (int i = 0; i < 200; ++i) {
    auto r = pg.Query("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1", {pid});
    ASSERT_TRUE(r.ok()) << r.status();
    if (r->Int64(0, "n") == 0) {
      absl::SleepFor(absl::Milliseconds(300));
      return;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  FAIL() << "backend " << pid << " did not end";
}

// Review #3: only a COMMIT that left the client may be "outcome unknown". A connection lost
// before the COMMIT was sent (the session ended between two of the transaction's round trips)
// committed nothing: the transaction is replayed on a fresh connection and lands once. A
// read-only transaction commits nothing, so it is never "unknown" either: it is replayed too.
// A write whose COMMIT did leave before the loss is still reported as unknown.
TEST(PgPool, OnlyACommitThatLeftTheClientIsReportedAsOutcomeUnknown) {
  auto pool = NewPool();
  int attempts = 0;
  absl::Status before_commit = pool->Transact([&](PgTx& tx) -> absl::Status {
    ++attempts;
    SH_ASSIGN_OR_RETURN(PgResult me, tx.Exec("SELECT pg_backend_pid() AS pid"));
    if (attempts == 1) EndBackend(*pool, me.Int64(0, "pid"));
    (void)tx.Send("INSERT INTO items (id, n) VALUES ('lost-before-commit', 1)");
    return absl::OkStatus();
  });
  EXPECT_TRUE(before_commit.ok()) << before_commit;
  EXPECT_EQ(attempts, 2) << "replayed once on a fresh connection";
  EXPECT_EQ(
      pool->Query("SELECT count(*) AS n FROM items WHERE id = 'lost-before-commit'")->Int64(0, "n"),
      1);

  int read_attempts = 0;
  absl::Status read_only = pool->Transact(
      [&](PgTx& tx) -> absl::Status {
        // The first attempt's session ends while its COMMIT is on the way (one batch).
        (void)tx.Send(++read_attempts == 1 ? "SELECT pg_terminate_backend(pg_backend_pid())"
                                           : "SELECT 1");
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, /*read_only=*/true);
  EXPECT_TRUE(read_only.ok()) << read_only;
  EXPECT_EQ(read_attempts, 2);

  int write_attempts = 0;
  absl::Status write = pool->Transact([&](PgTx& tx) -> absl::Status {
    ++write_attempts;
    (void)tx.Send("INSERT INTO items (id, n) VALUES ('maybe', 1)");
    (void)tx.Send("SELECT pg_terminate_backend(pg_backend_pid())");
    return absl::OkStatus();
  });
  EXPECT_EQ(write.code(), absl::StatusCode::kUnavailable) << write;
  EXPECT_NE(write.message().find("outcome unknown"), std::string::npos) << write;
  EXPECT_EQ(write_attempts, 1) << "never replayed";
  std::cout << "lost before COMMIT: " << attempts << " attempts, committed once; read-only lost "
            << "at commit: " << read_attempts
            << " attempts, OK; write lost at commit: " << write.message() << "\n";
}

}  // namespace
}  // namespace safeharbor
