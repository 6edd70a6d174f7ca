// The availability change log against real PostgreSQL (issue 13): appends without a global lock,
// and readers that resume from any sequence number they were given miss nothing.
#include <gtest/gtest.h>

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
  race.last_seq = [](PgTx& tx) { return BedsStore::LastEventSeq(tx); };
  race.table = "availability_events";
  race.tag_column = "reason";
  safeharbor::testing::ExpectNoEventMissed(pg, race);
}

}  // namespace
}  // namespace safeharbor::beds
