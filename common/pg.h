// PostgreSQL, the system of record: a bounded connection pool, transactions with bounded
// retries on serialization failures, parameterized statements only, versioned migrations.
// Every wait on the server is bounded on the client side (a hung server cannot enforce
// statement_timeout): connecting, sending and waiting for a result end at what is left of the
// incoming call's deadline (CurrentCallDeadline), capped by `call_timeout` per statement (a
// batch of n statements sent together, answered together, waits at most n × call_timeout). A
// connection that timed out is discarded, never reused. A circuit breaker ("postgres") opens
// after consecutive time-outs or when the health probe finds the server not answering; calls are
// then refused at once with UNAVAILABLE, and calls waiting on the server give up.
#pragma once

#include <libpq-fe.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/breaker.h"
#include "common/prometheus_fwd.h"

namespace safeharbor {

struct Migration {
  int version;
  const char* name;
  const char* sql;
};

// A statement parameter, sent in text format. Construct from a value or nullptr (SQL NULL).
class PgParam {
 public:
  PgParam(std::nullptr_t) {}                                // NOLINT: implicit by design
  PgParam(absl::string_view v) : value_(std::string(v)) {}  // NOLINT
  PgParam(const std::string& v) : value_(v) {}              // NOLINT
  PgParam(const char* v) : value_(std::string(v)) {}        // NOLINT
  PgParam(int64_t v) : value_(std::to_string(v)) {}         // NOLINT
  PgParam(int32_t v) : value_(std::to_string(v)) {}         // NOLINT
  PgParam(bool v) : value_(v ? "t" : "f") {}                // NOLINT
  PgParam(double v);                                        // NOLINT
  static PgParam Bytea(absl::string_view bytes);
  const std::optional<std::string>& value() const { return value_; }

 private:
  std::optional<std::string> value_;
};

// Text-format result rows. Column lookups by name; a column the statement does not return (or a
// row past the end) aborts: a programming error, never read as "" or 0. SQL NULL reads as ""
// or 0 (check IsNull where it matters).
class PgResult {
 public:
  explicit PgResult(PGresult* res) : res_(res, &PQclear) {}
  int rows() const { return PQntuples(res_.get()); }
  int Col(const char* name) const;  // -1 when absent
  bool IsNull(int row, const char* col) const;
  absl::string_view Text(int row, const char* col) const;
  std::string String(int row, const char* col) const { return std::string(Text(row, col)); }
  int64_t Int64(int row, const char* col) const;
  int32_t Int32(int row, const char* col) const { return static_cast<int32_t>(Int64(row, col)); }
  double Double(int row, const char* col) const;
  bool Bool(int row, const char* col) const { return Text(row, col) == "t"; }
  std::string Bytea(int row, const char* col) const;
  // timestamptz as text → absl::Time (UTC, microseconds). Null → InfinitePast.
  absl::Time Time(int row, const char* col) const;

 private:
  int Checked(int row, const char* col) const;  // the column's index; aborts when absent
  std::unique_ptr<PGresult, decltype(&PQclear)> res_;
};

// Formats a time as a timestamptz literal parameter.
PgParam PgTime(absl::Time t);
// A text[] literal parameter (use as $n::text[]); every element quoted and escaped.
PgParam PgTextArray(const std::vector<std::string>& values);

class PgConnection;
class PgPool;
class PgTx;

// A statement sent without waiting for its answer (PgTx::Send). Every statement queued goes out
// with the next wait — PgPending::Get, PgTx::Exec or the commit — in one round trip (libpq's
// pipeline mode, one Sync).
class PgPending {
 public:
  // The statement's answer, waiting for it (and sending what is queued) if it has not come. A
  // statement that did not run because an earlier one of its transaction failed answers that
  // failure. Once per statement: the answer is moved out. Valid until the transaction ends; its
  // answer stays readable after the commit.
  absl::StatusOr<PgResult> Get();
  // Whether the answer came (without waiting), and whether the statement was skipped because an
  // earlier one failed; status() is the answer's (OK until it came).
  bool answered() const { return slot_->answer.has_value(); }
  bool skipped() const { return slot_->skipped; }
  absl::Status status() const { return answered() ? slot_->answer->status() : absl::OkStatus(); }

 private:
  friend class PgTx;
  struct Slot {
    std::optional<absl::StatusOr<PgResult>> answer;
    bool skipped = false;
    bool taken = false;
  };
  PgPending(PgTx* tx, std::shared_ptr<Slot> slot) : tx_(tx), slot_(std::move(slot)) {}
  PgTx* tx_;
  std::shared_ptr<Slot> slot_;
};

// Sent statements whose answers are read into a T when they come (a store's Send functions).
template <typename T>
class PgPendingAs {
 public:
  using Reader = std::function<absl::StatusOr<T>(const PgResult&)>;
  using Readers = std::function<absl::StatusOr<T>(const std::vector<PgResult>&)>;
  PgPendingAs(PgPending pending, Reader read)
      : pending_{std::move(pending)},
        read_([read = std::move(read)](const std::vector<PgResult>& r) { return read(r[0]); }) {}
  PgPendingAs(std::vector<PgPending> pending, Readers read)
      : pending_(std::move(pending)), read_(std::move(read)) {}
  absl::StatusOr<T> Get() {
    std::vector<PgResult> results;
    for (PgPending& p : pending_) {
      absl::StatusOr<PgResult> r = p.Get();
      if (!r.ok()) return r.status();
      results.push_back(*std::move(r));
    }
    return read_(results);
  }

 private:
  std::vector<PgPending> pending_;
  Readers read_;
};

// A transaction in progress; valid only inside PgPool::Transact's callback. BEGIN goes out with
// the first statement, COMMIT with the last ones: a transaction whose statements are all sent
// with Send costs one round trip, and one more for each wait in between. After a statement
// fails, the transaction has failed: later statements are not sent and answer that failure.
class PgTx {
 public:
  // Queues a statement; it is sent with the next wait.
  PgPending Send(absl::string_view sql, const std::vector<PgParam>& params = {});
  // Send, then wait for it (with everything queued before it).
  absl::StatusOr<PgResult> Exec(absl::string_view sql, const std::vector<PgParam>& params = {});
  // The first statement failure of this transaction (OK when none).
  const absl::Status& failure() const { return failure_; }
  int round_trips() const { return round_trips_; }

 private:
  friend class PgPool;
  friend class PgPending;
  struct Queued {
    std::string sql;
    std::vector<std::optional<std::string>> params;
    std::shared_ptr<PgPending::Slot> slot;
    bool commit = false;  // the transaction's COMMIT (always the last of its batch)
  };
  PgTx(PgConnection* conn, PgPool* pool, absl::Time deadline, absl::Duration cap)
      : conn_(conn), pool_(pool), deadline_(deadline), cap_(cap) {}
  ~PgTx();  // answers what was never sent: the transaction ended without it
  // Sends every queued statement in one pipeline and fills their answers.
  void Flush();
  // Sends COMMIT with whatever is queued and waits for its answer.
  absl::Status Commit();
  // `params` null: the simple query protocol (several statements, no parameters), alone.
  absl::StatusOr<PgResult> Run(const std::string& sql, const std::vector<const char*>* params);
  // The answer of a statement that ran: its result, or its failure (the transaction's first).
  void Answer(Queued& q, PGresult* res);
  void Count();  // one round trip
  PgConnection* conn_;
  PgPool* pool_;
  absl::Time deadline_;  // the call's
  absl::Duration cap_;   // per statement: a batch of n waits n × cap_ at most
  std::vector<Queued> queued_;
  // COMMIT was given to libpq to write on a live connection: it may have reached the server.
  bool commit_sent_ = false;
  absl::Status failure_;
  int round_trips_ = 0;
  bool counted_ = true;  // false for a connection's session set-up
};

// Counts the round trips to PostgreSQL that transactions on this thread make while it lives
// (the service kit counts each call's: safeharbor_rpc_postgres_round_trips). Opening a
// connection is not counted.
class PgRoundTripScope {
 public:
  PgRoundTripScope();
  ~PgRoundTripScope();
  PgRoundTripScope(const PgRoundTripScope&) = delete;
  PgRoundTripScope& operator=(const PgRoundTripScope&) = delete;
  int64_t count() const { return count_; }

 private:
  friend class PgTx;
  int64_t count_ = 0;
  PgRoundTripScope* saved_;
};

enum class Isolation { kReadCommitted, kRepeatableRead, kSerializable };

struct PgOptions {
  std::string conninfo;  // libpq connection string or postgresql:// URI
  int pool_size = 8;
  absl::Duration acquire_timeout = absl::Seconds(2);
  int statement_timeout_ms = 5000;
  int connect_timeout_s = 3;
  int max_tx_attempts = 5;  // on serialization failure / deadlock / lost connection
  // The longest the client waits for one statement's answer (the call's deadline may be
  // sooner): the server's own statement_timeout plus a margin.
  absl::Duration call_timeout = absl::Seconds(6);
  BreakerOptions breaker;
  // Calls in Transact / Query at once (holding or waiting for a connection); more fail at once
  // with UNAVAILABLE. 0: no bound. Kept below the service's worker threads (a bulkhead), so a
  // database that hangs cannot hold every worker while calls that do not need it wait.
  int max_in_flight = 0;
};

class PgPool {
 public:
  // Opens one connection to check the server is reachable. `registry` may be null.
  static absl::StatusOr<std::unique_ptr<PgPool>> Connect(const PgOptions& options,
                                                         prometheus::Registry* registry);
  // Like Connect, retrying until `wait` has passed (a service starting beside its database).
  static absl::StatusOr<std::unique_ptr<PgPool>> ConnectWithRetry(const PgOptions& options,
                                                                  prometheus::Registry* registry,
                                                                  absl::Duration wait);
  ~PgPool();

  // Runs fn in a transaction and commits when it returns OK. fn may run more than once
  // (retries on serialization failure, deadlock or a connection lost before commit), so it
  // must reset anything it writes outside the database. Errors:
  // UNAVAILABLE (database unreachable / pool exhausted / max_in_flight calls in it already and
  // it is not answering),
  // ABORTED (conflict after retries), ALREADY_EXISTS (unique violation), FAILED_PRECONDITION
  // (foreign key / check), others.
  absl::Status Transact(const std::function<absl::Status(PgTx&)>& fn,
                        Isolation isolation = Isolation::kReadCommitted, bool read_only = false);

  // One statement in a transaction of its own: one round trip.
  absl::StatusOr<PgResult> Query(absl::string_view sql, const std::vector<PgParam>& params = {});

  // Applies the migrations not yet applied, in version order, under an advisory lock so
  // that replicas starting together apply each once. Also creates the runtime's own tables.
  absl::Status Migrate(const std::vector<Migration>& migrations);

  // Whether the server answers "SELECT 1" within `timeout`, on a connection of its own (a full
  // pool does not make it fail). A server that does not answer trips the breaker open; an
  // answer closes it. For the health endpoint's periodic probe.
  absl::Status Probe(absl::Duration timeout);
  BreakerState breaker_state() const { return breaker_.state(); }

 private:
  friend class PgTx;
  explicit PgPool(const PgOptions& options, prometheus::Registry* registry);
  absl::Status TransactWithin(const std::function<absl::Status(PgTx&)>& fn, Isolation isolation,
                              bool read_only, absl::Duration cap);
  struct Attempt {
    absl::Status status;
    bool acquired = true;     // false: no connection (status says why)
    bool committing = false;  // COMMIT left the client (may have reached the server)
    bool lost = false;        // the connection was lost or did not answer
    bool no_answer = false;
    std::string sqlstate;  // of the transaction's first failure
    bool sent = false;     // anything reached the server (else there is nothing to roll back)
  };
  Attempt TryOnce(const std::function<absl::Status(PgTx&)>& fn, const std::string& begin,
                  absl::Time deadline, absl::Duration cap);
  absl::StatusOr<std::unique_ptr<PgConnection>> Acquire(absl::Time call_deadline);
  // A new connection, its session set up, by `deadline` (connect_timeout at most).
  absl::StatusOr<std::unique_ptr<PgConnection>> Open(absl::Time deadline);
  void Release(std::unique_ptr<PgConnection> conn);  // a broken or timed-out one is discarded
  bool Usable(PgConnection& conn) const;             // reads what the server sent meanwhile
  void CountError(absl::string_view kind);
  // After a statement: the server answered, or did not (time-out or given up). A time-out counts
  // against the server only when the statement was `given_its_cap` (TimeoutIsTheDependencys).
  void Answered(const PgConnection& conn, bool given_its_cap);

  PgOptions options_;
  DependencyMetrics metrics_;
  Breaker breaker_;
  prometheus::Family<prometheus::Counter>* errors_ = nullptr;
  prometheus::Counter* round_trips_ = nullptr;
  std::mutex probe_mu_;
  std::unique_ptr<PgConnection> probe_ ABSL_GUARDED_BY(probe_mu_);
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<PgConnection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<int64_t> loss_epoch_{0};
  absl::Status EnterBudget();  // max_in_flight
  void LeaveBudget();
  std::mutex budget_mu_;
  std::condition_variable budget_cv_;
  int in_flight_ ABSL_GUARDED_BY(budget_mu_) = 0;  // calls in Transact
  // When the server last answered a statement or the probe (Unix µs): a call over the budget
  // waits for a slot only while the server answers.
  std::atomic<int64_t> last_answer_us_{0};
};

// Maps a failed PGresult/connection to a status (exposed for tests). The SQLSTATE is attached as
// a payload, so callers decide on the code, never on message text.
absl::Status StatusFromSqlState(absl::string_view sqlstate, absl::string_view message);
// The SQLSTATE a status came from, or "" when it did not come from PostgreSQL.
std::string SqlStateOf(const absl::Status& status);

}  // namespace safeharbor
