#include "common/testing/event_race.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace safeharbor::testing {
namespace {

using Read = std::function<absl::StatusOr<std::vector<std::pair<int64_t, std::string>>>(
    PgTx&, int64_t, int)>;

// What one writer committed and rolled back.
struct Written {
  std::set<std::string> committed, rolled_back;
};

Written Write(PgPool& pool, const EventRace& race, int writer) {
  Written out;
  std::mt19937 rng(static_cast<uint32_t>(1000 + writer));
  std::uniform_int_distribution<int> hold(0, race.max_hold_micros);
  for (int i = 0; i < race.events_per_writer; ++i) {
    const std::string tag = absl::StrCat("w", writer, "-", i);
    const bool roll_back = race.rollback_every > 0 && (i + writer) % race.rollback_every == 0;
    const double seconds = hold(rng) / 1e6;
    absl::Status st = pool.Transact([&](PgTx& tx) -> absl::Status {
      SH_RETURN_IF_ERROR(race.append(tx, tag));
      SH_RETURN_IF_ERROR(tx.Exec("SELECT pg_sleep($1)", {seconds}).status());
      return roll_back ? absl::CancelledError("rolled back on purpose") : absl::OkStatus();
    });
    (st.ok() ? out.committed : out.rolled_back).insert(tag);
  }
  return out;
}

// Reads in batches, each from the last sequence number given, until `done` and nothing more
// came twice. Returns the tags in the order read, and counts ordering problems.
std::vector<std::string> ReadAll(PgPool& pool, const Read& read, int batch,
                                 const std::atomic<bool>& done, EventRaceResult* r) {
  std::vector<std::string> seen;
  int64_t cursor = 0;
  int quiet = 0;
  while (quiet < 2) {
    std::vector<std::pair<int64_t, std::string>> events;
    const bool finished = done.load();
    absl::Status st = pool.Transact(
        [&](PgTx& tx) -> absl::Status {
          SH_ASSIGN_OR_RETURN(events, read(tx, cursor, batch));
          return absl::OkStatus();
        },
        Isolation::kReadCommitted, true);
    if (r != nullptr) ++r->resumes;
    if (!st.ok() || events.empty()) {
      quiet = finished ? quiet + 1 : 0;
      if (!finished) std::this_thread::sleep_for(std::chrono::microseconds(300));
      continue;
    }
    for (const auto& [seq, tag] : events) {
      if (seq <= cursor && r != nullptr) {
        ++r->out_of_order;
        if (r->first_problem.empty()) {
          r->first_problem = absl::StrCat("seq ", seq, " read after cursor ", cursor);
        }
      }
      cursor = seq;
      seen.push_back(tag);
    }
  }
  return seen;
}

void Tally(const std::vector<Written>& written, const std::vector<std::string>& seen,
           const std::vector<std::string>& naive, EventRaceResult* r) {
  std::map<std::string, int> times;
  for (const std::string& t : seen) ++times[t];
  std::set<std::string> naive_seen(naive.begin(), naive.end());
  r->read = static_cast<int64_t>(seen.size());
  for (const Written& w : written) {
    r->committed += static_cast<int64_t>(w.committed.size());
    r->rolled_back += static_cast<int64_t>(w.rolled_back.size());
    for (const std::string& t : w.committed) {
      const int n = times.count(t) ? times[t] : 0;
      if (n == 0) ++r->missed;
      if (n > 1) ++r->duplicated;
      if (n != 1 && r->first_problem.empty()) r->first_problem = absl::StrCat(t, " read ", n, "x");
      if (naive_seen.count(t) == 0) ++r->naive_missed;
    }
    for (const std::string& t : w.rolled_back) {
      if (times.count(t) > 0) ++r->rolled_back_read;
    }
  }
}

// Every committed event after the cursor, without the horizon.
Read NaiveRead(const EventRace& race) {
  const std::string sql = absl::StrCat("SELECT seq, ", race.tag_column, " AS tag FROM ", race.table,
                                       " WHERE seq > $1 ORDER BY seq LIMIT $2");
  return [sql](PgTx& tx, int64_t cursor,
               int limit) -> absl::StatusOr<std::vector<std::pair<int64_t, std::string>>> {
    SH_ASSIGN_OR_RETURN(PgResult r, tx.Exec(sql, {cursor, int32_t{limit}}));
    std::vector<std::pair<int64_t, std::string>> out;
    for (int i = 0; i < r.rows(); ++i) out.emplace_back(r.Int64(i, "seq"), r.String(i, "tag"));
    return out;
  };
}

}  // namespace

EventRaceResult RunEventRace(PgPool& pool, const EventRace& race) {
  EventRaceResult result;
  std::atomic<bool> done{false};
  std::vector<std::string> seen, naive;
  const Read naive_read = NaiveRead(race);
  std::thread reader([&] { seen = ReadAll(pool, race.read, race.batch, done, &result); });
  std::thread naive_reader([&] { naive = ReadAll(pool, naive_read, race.batch, done, nullptr); });
  std::vector<Written> written(static_cast<size_t>(race.writers));
  {
    std::vector<std::thread> writers;
    for (int w = 0; w < race.writers; ++w) {
      writers.emplace_back([&, w] { written[static_cast<size_t>(w)] = Write(pool, race, w); });
    }
    for (auto& t : writers) t.join();
  }
  done = true;
  reader.join();
  naive_reader.join();
  Tally(written, seen, naive, &result);
  return result;
}

void ExpectNoEventMissed(PgPool& pool, const EventRace& race) {
  const EventRaceResult res = RunEventRace(pool, race);
  std::printf(
      "committed %lld, rolled back %lld, read %lld in %lld resumes; missed %lld, twice %lld, out "
      "of "
      "order %lld, rolled back read %lld; a reader without the horizon skipped %lld\n",
      static_cast<long long>(res.committed), static_cast<long long>(res.rolled_back),
      static_cast<long long>(res.read), static_cast<long long>(res.resumes),
      static_cast<long long>(res.missed), static_cast<long long>(res.duplicated),
      static_cast<long long>(res.out_of_order), static_cast<long long>(res.rolled_back_read),
      static_cast<long long>(res.naive_missed));
  EXPECT_GT(res.rolled_back, 0);
  EXPECT_EQ(res.read, res.committed) << res.first_problem;
  EXPECT_EQ(res.missed, 0) << res.first_problem;
  EXPECT_EQ(res.duplicated, 0);
  EXPECT_EQ(res.out_of_order, 0) << res.first_problem;
  EXPECT_EQ(res.rolled_back_read, 0);
  // With nobody writing, the horizon is at or past every committed event, so a watch from now
  // starts after all of them. It may be past the newest stored one: the last number handed out
  // may have been a writer's that rolled back (nothing will ever be stored under it).
  const std::string max_sql = absl::StrCat("SELECT max(seq) AS m FROM ", race.table);
  EXPECT_TRUE(pool.Transact([&](PgTx& tx) -> absl::Status {
                    SH_ASSIGN_OR_RETURN(const int64_t head, race.last_seq(tx));
                    SH_ASSIGN_OR_RETURN(PgResult max, tx.Exec(max_sql));
                    EXPECT_GE(head, max.Int64(0, "m"));
                    EXPECT_LE(head, max.Int64(0, "m") + race.writers)
                        << "past the newest by more than the writers' last numbers";
                    return absl::OkStatus();
                  })
                  .ok());
}

}  // namespace safeharbor::testing
