// A race for the watch streams' events tables (issue 13): writers append events concurrently,
// each holding its transaction open a random while after numbering its event (so numbers commit
// out of order), some rolling back; one reader reads in small batches, each batch resuming from
// the last sequence number it was given, in a new transaction, while they write. Afterwards
// every committed event must have been read exactly once, in increasing order, and no rolled
// back one ever. A naive reader (every committed event above its cursor, no horizon) runs beside
// it for comparison (reading the table itself): the events it skipped are counted, not
// asserted.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/pg.h"

namespace safeharbor::testing {

struct EventRace {
  int writers = 8;
  int events_per_writer = 60;
  int batch = 3;               // events per read: the reader resumes that often
  int rollback_every = 7;      // one transaction in this many rolls back
  int max_hold_micros = 4000;  // a writer's transaction stays open up to this long after appending
  // Appends one event tagged `tag` in `tx`.
  std::function<absl::Status(PgTx& tx, const std::string& tag)> append;
  // Events after `cursor` (at most `limit`) as (seq, tag), as the watch hub reads them.
  std::function<absl::StatusOr<std::vector<std::pair<int64_t, std::string>>>(
      PgTx& tx, int64_t cursor, int limit)>
      read;
  // Where a watch "from now" starts (after the race, with nobody writing: the newest event).
  std::function<absl::StatusOr<int64_t>(PgTx& tx)> last_seq;
  // The events table and the column holding the tag: the naive reader reads them directly.
  std::string table;
  std::string tag_column;
};

struct EventRaceResult {
  int64_t committed = 0;
  int64_t rolled_back = 0;
  int64_t read = 0;              // events the reader was given
  int64_t missed = 0;            // committed, never read
  int64_t duplicated = 0;        // read more than once
  int64_t out_of_order = 0;      // not above the cursor it was read after
  int64_t rolled_back_read = 0;  // read although rolled back
  int64_t resumes = 0;           // reads (each from the last sequence number given)
  int64_t naive_missed = 0;      // what the naive reader skipped
  std::string first_problem;     // empty when none
};

EventRaceResult RunEventRace(PgPool& pool, const EventRace& race);
// Runs the race, prints its counts and expects every committed event read once in order, none
// rolled back, and last_seq at the newest event afterwards.
void ExpectNoEventMissed(PgPool& pool, const EventRace& race);

}  // namespace safeharbor::testing
