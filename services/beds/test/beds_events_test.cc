// The availability change log against real PostgreSQL (issue 13): appends without a global lock,
// and readers that resume from any sequence number they were given miss nothing.
#include <gtest/gtest.h>

#include <cstdio>

#include "common/status_macros.h"
#include "common/testing/event_race.h"
#include "common/testing/harness.h"
#include "services/beds/beds_store.h"

namespace safeharbor::beds {
const std::vector<Migration>& Migrations();
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1795000000);
using Rows = std::vector<std::pair<int64_t, std::string>>;

// Eight writers append at once, each holding its transaction open a random while after numbering
// its event (numbers commit out of order), one in seven rolling back; a reader resuming from
// every third sequence number it is given sees every committed event exactly once, in order,
// and no rolled-back one. Also printed: how many a reader without the horizon would have skipped.
TEST(BedsEventsTest, ConcurrentAppendsNeverLetAResumingWatcherMissOrReorderAnEvent) {
  auto& servers = safeharbor::testing::TestServers::Get();
  PgOptions options = servers.PgOptionsFor(servers.NewDatabase("bedrace"));
  options.pool_size = 16;
  auto pool = PgPool::Connect(options, nullptr);
  ASSERT_TRUE(pool.ok());
  PgPool& pg = **pool;
  ASSERT_TRUE(pg.Migrate(Migrations()).ok());
  safeharbor::testing::EventRace race;
  race.append = [](PgTx& tx, const std::string& tag) {
    v1::BedAvailability a;
    a.set_facility_id("fac-race");
    BedsStore::AppendEvent(tx, "53033", tag, a, kNow);
    return absl::OkStatus();
  };
  race.read = [](PgTx& tx, int64_t cursor, int limit) -> absl::StatusOr<Rows> {
    SH_ASSIGN_OR_RETURN(auto events, BedsStore::EventsAfter(tx, cursor, limit));
    Rows out;
    for (const auto& e : events) out.emplace_back(e.seq, e.reason);
    return out;
  };
  race.read_naive = [](PgTx& tx, int64_t cursor, int limit) -> absl::StatusOr<Rows> {
    SH_ASSIGN_OR_RETURN(PgResult r, tx.Exec("SELECT seq, reason FROM availability_events "
                                            "WHERE seq > $1 ORDER BY seq LIMIT $2",
                                            {cursor, int32_t{limit}}));
    Rows out;
    for (int i = 0; i < r.rows(); ++i) out.emplace_back(r.Int64(i, "seq"), r.String(i, "reason"));
    return out;
  };
  const auto res = safeharbor::testing::RunEventRace(pg, race);
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
  ASSERT_TRUE(pg.Transact([&](PgTx& tx) -> absl::Status {
                  SH_ASSIGN_OR_RETURN(const int64_t head, BedsStore::LastEventSeq(tx));
                  SH_ASSIGN_OR_RETURN(PgResult max,
                                      tx.Exec("SELECT max(seq) AS m FROM availability_events"));
                  EXPECT_EQ(head, max.Int64(0, "m"));
                  return absl::OkStatus();
                }).ok());
}

}  // namespace
}  // namespace safeharbor::beds
