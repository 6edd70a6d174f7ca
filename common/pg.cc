#include "common/pg.h"

#include <poll.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <map>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/deadline.h"
#include "common/invariant.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace safeharbor {

// One statement of a pipeline: its text and parameters (null: SQL NULL).
struct PgStatement {
  const char* sql;
  std::vector<const char*> values;
};

// One libpq connection in nonblocking mode. Not thread-safe: used by one thread at a time via
// the pool. Every wait on the server is bounded.
class PgConnection {
 public:
  explicit PgConnection(PGconn* conn) : conn_(conn) {}
  ~PgConnection() { PQfinish(conn_); }
  PGconn* get() { return conn_; }
  bool healthy() const { return PQstatus(conn_) == CONNECTION_OK; }
  // Sends `sql` (with `params`; null: the simple protocol, several statements) and waits for
  // its result until `deadline`, giving up early when `give_up()` says so. The last result (an
  // error one if any), or null when the connection failed or did not answer (no_answer).
  PGresult* Exec(const std::string& sql, const std::vector<const char*>* params,
                 absl::Time deadline, const std::function<bool()>& give_up);
  // Sends `statements` in pipeline mode with one Sync and collects each one's result (its first
  // error, else its last; PGRES_PIPELINE_ABORTED when an earlier one failed) into *results, by
  // `deadline`. False when the connection failed or did not answer: *results holds what came.
  // *handed: the statements were given to libpq to write (they may have reached the server);
  // false when the connection was found lost before. Each statement text is prepared once per
  // connection (its Parse goes out in the same pipeline, before its first use), so the server
  // neither parses it again nor, once its plan is cached, plans it again.
  bool Pipeline(const std::vector<PgStatement>& statements, std::vector<PGresult*>* results,
                absl::Time deadline, const std::function<bool()>& give_up, bool* handed);
  // An idle connection the server has not closed (a restart closes every one): whatever the
  // server sent meanwhile is read without waiting.
  bool Alive();
  // Connects without waiting past `deadline`. Null, with *error (and *timed_out), on failure.
  static std::unique_ptr<PgConnection> Connect(const std::string& conninfo, absl::Time deadline,
                                               const std::function<bool()>& give_up,
                                               std::string* error, bool* timed_out);

  bool broken = false;     // a statement failed because the connection was lost, or timed out
  bool no_answer = false;  // the server did not answer before the deadline: never reused
  bool gave_up = false;    // ... because the breaker opened meanwhile
  int64_t epoch = 0;       // the pool's loss epoch when this connection was (re)established

 private:
  bool Await(short events, absl::Time deadline, const std::function<bool()>& give_up);
  PGresult* Send(const std::string& sql, const std::vector<const char*>* params,
                 absl::Time deadline, const std::function<bool()>& give_up);
  bool FlushOutput(absl::Time deadline, const std::function<bool()>& give_up);
  // Reads one statement's results up to libpq's end marker: the first error, else the last.
  bool Collect(absl::Time deadline, const std::function<bool()>& give_up, PGresult** out);
  // Queues `st`: by its prepared name, preparing it first when it is new (*preparing: the name,
  // prepared once its Parse is answered). False when libpq refused to queue it.
  bool SendStatement(const PgStatement& st, std::string* preparing);
  // Collects the answers of one statement queued by SendStatement into *results.
  bool CollectStatement(const PgStatement& st, const std::string& preparing, absl::Time deadline,
                        const std::function<bool()>& give_up, std::vector<PGresult*>* results);
  // At most this many statement texts are prepared per connection; others go unnamed.
  static constexpr size_t kMaxPrepared = 256;
  PGconn* conn_;
  std::map<std::string, std::string> prepared_;   // statement text -> its name on this connection
  std::map<std::string, std::string> preparing_;  // ... whose Parse is in the current pipeline
  int64_t names_ = 0;
};

namespace {

enum class Waited { kReady, kTimedOut, kGaveUp };

// Waits until `fd` is ready for `events` or `deadline` passes, looking at `give_up` every
// 100 ms. An error on the socket counts as ready: libpq then reports it.
Waited WaitSocket(int fd, short events, absl::Time deadline, const std::function<bool()>& give_up) {
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return Waited::kTimedOut;
    if (give_up && give_up()) return Waited::kGaveUp;
    pollfd p{fd, events, 0};
    const int64_t ms = std::clamp<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1, 100);
    const int n = poll(&p, 1, static_cast<int>(ms));
    if (n > 0 || (n < 0 && errno != EINTR)) return Waited::kReady;
  }
}

}  // namespace

bool PgConnection::Await(short events, absl::Time deadline, const std::function<bool()>& give_up) {
  const Waited w = WaitSocket(PQsocket(conn_), events, deadline, give_up);
  if (w == Waited::kReady) return true;
  broken = no_answer = true;
  gave_up = w == Waited::kGaveUp;
  return false;
}

PGresult* PgConnection::Exec(const std::string& sql, const std::vector<const char*>* params,
                             absl::Time deadline, const std::function<bool()>& give_up) {
  PGresult* res = Send(sql, params, deadline, give_up);
  if (res == nullptr) broken = true;  // lost, or no answer: never reused
  return res;
}

PGresult* PgConnection::Send(const std::string& sql, const std::vector<const char*>* params,
                             absl::Time deadline, const std::function<bool()>& give_up) {
  const int sent = params == nullptr
                       ? PQsendQuery(conn_, sql.c_str())
                       : PQsendQueryParams(conn_, sql.c_str(), static_cast<int>(params->size()),
                                           nullptr, params->data(), nullptr, nullptr, 0);
  if (sent != 1 || !FlushOutput(deadline, give_up)) return nullptr;
  PGresult* res = nullptr;
  return Collect(deadline, give_up, &res) ? res : nullptr;
}

bool PgConnection::FlushOutput(absl::Time deadline, const std::function<bool()>& give_up) {
  for (int f = PQflush(conn_); f != 0; f = PQflush(conn_)) {
    if (f < 0 || !Await(POLLIN | POLLOUT, deadline, give_up) || !PQconsumeInput(conn_)) {
      return false;
    }
  }
  return true;
}

bool PgConnection::Collect(absl::Time deadline, const std::function<bool()>& give_up,
                           PGresult** out) {
  PGresult* kept = nullptr;
  for (;;) {
    while (PQisBusy(conn_)) {
      if (!Await(POLLIN, deadline, give_up) || !PQconsumeInput(conn_)) {
        PQclear(kept);
        return false;
      }
    }
    PGresult* r = PQgetResult(conn_);
    if (r == nullptr) break;
    if (kept != nullptr && PQresultStatus(kept) == PGRES_FATAL_ERROR) {
      PQclear(r);  // the first error is the answer
    } else {
      PQclear(kept);
      kept = r;
    }
  }
  *out = kept;
  return kept != nullptr;
}

bool PgConnection::SendStatement(const PgStatement& st, std::string* preparing) {
  const int n = static_cast<int>(st.values.size());
  const std::string* name = nullptr;
  if (auto it = prepared_.find(st.sql); it != prepared_.end()) {
    name = &it->second;
  } else if (auto p = preparing_.find(st.sql); p != preparing_.end()) {
    name = &p->second;  // Being prepared in this pipeline: its Parse goes out first.
  } else if (prepared_.size() + preparing_.size() < kMaxPrepared) {
    *preparing = absl::StrCat("sh", ++names_);
    if (PQsendPrepare(conn_, preparing->c_str(), st.sql, n, nullptr) != 1) return false;
    name = &preparing_.emplace(st.sql, *preparing).first->second;
  }
  if (name == nullptr) {
    return PQsendQueryParams(conn_, st.sql, n, nullptr, st.values.data(), nullptr, nullptr, 0) == 1;
  }
  return PQsendQueryPrepared(conn_, name->c_str(), n, st.values.data(), nullptr, nullptr, 0) == 1;
}

bool PgConnection::CollectStatement(const PgStatement& st, const std::string& preparing,
                                    absl::Time deadline, const std::function<bool()>& give_up,
                                    std::vector<PGresult*>* results) {
  PGresult* parsed = nullptr;
  if (!preparing.empty()) {
    if (!Collect(deadline, give_up, &parsed)) return false;
    if (PQresultStatus(parsed) == PGRES_COMMAND_OK) {
      prepared_.emplace(st.sql, preparing);
      PQclear(parsed);
      parsed = nullptr;
    }
  }
  PGresult* res = nullptr;
  const bool got = Collect(deadline, give_up, &res);
  if (parsed != nullptr) {  // The Parse failed (or was skipped): its answer is the statement's.
    PQclear(res);
    res = parsed;
  }
  if (res != nullptr) results->push_back(res);
  return got;
}

bool PgConnection::Pipeline(const std::vector<PgStatement>& statements,
                            std::vector<PGresult*>* results, absl::Time deadline,
                            const std::function<bool()>& give_up, bool* handed) {
  const auto failed = [this] {
    broken = true;  // lost, or no answer: never reused
    return false;
  };
  *handed = false;
  if (!healthy() || PQenterPipelineMode(conn_) != 1) return failed();
  *handed = true;
  std::vector<std::string> preparing(statements.size());
  preparing_.clear();
  for (size_t i = 0; i < statements.size(); ++i) {
    if (!SendStatement(statements[i], &preparing[i])) return failed();
  }
  if (PQpipelineSync(conn_) != 1 || !FlushOutput(deadline, give_up)) return failed();
  for (size_t i = 0; i < statements.size(); ++i) {
    const bool got = CollectStatement(statements[i], preparing[i], deadline, give_up, results);
    if (!got || PQstatus(conn_) != CONNECTION_OK) return failed();
  }
  while (PQisBusy(conn_)) {
    if (!Await(POLLIN, deadline, give_up) || !PQconsumeInput(conn_)) return failed();
  }
  PGresult* sync = PQgetResult(conn_);
  const bool synced = sync != nullptr && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
  PQclear(sync);
  if (!synced || PQexitPipelineMode(conn_) != 1) return failed();
  return true;
}

bool PgConnection::Alive() {
  // A server that ended the session sent its error, then closed: read up to the close.
  for (int reads = 0; reads < 4; ++reads) {
    pollfd p{PQsocket(conn_), POLLIN, 0};
    if (poll(&p, 1, 0) == 0) break;  // nothing (more) came
    if (PQconsumeInput(conn_) != 1) return false;
  }
  return healthy();
}

std::unique_ptr<PgConnection> PgConnection::Connect(const std::string& conninfo,
                                                    absl::Time deadline,
                                                    const std::function<bool()>& give_up,
                                                    std::string* error, bool* timed_out) {
  auto conn = std::make_unique<PgConnection>(PQconnectStart(conninfo.c_str()));
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  while (conn->conn_ != nullptr && st != PGRES_POLLING_OK) {
    if (st == PGRES_POLLING_FAILED || PQstatus(conn->conn_) == CONNECTION_BAD) {
      *error = PQerrorMessage(conn->conn_);
      return nullptr;
    }
    const short events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    const Waited w = WaitSocket(PQsocket(conn->conn_), events, deadline, give_up);
    if (w != Waited::kReady) {
      *timed_out = w == Waited::kTimedOut;
      *error = *timed_out ? "the server did not answer the connection in time"
                          : "not answering (circuit breaker open)";
      return nullptr;
    }
    st = PQconnectPoll(conn->conn_);
  }
  if (conn->conn_ == nullptr || PQsetnonblocking(conn->conn_, 1) != 0) {
    *error = "cannot open a connection";
    return nullptr;
  }
  return conn;
}

namespace {

constexpr absl::string_view kRuntimeTables = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations (
  version    integer PRIMARY KEY,
  name       text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);
-- Idempotency records for every creating or money-moving call (common/idempotency.h).
-- Requests are stored as per-field digests, never in plain text.
CREATE TABLE IF NOT EXISTS idempotency_keys (
  method         text NOT NULL,
  caller_org     text NOT NULL,
  request_id     text NOT NULL,
  field_digests  jsonb NOT NULL,
  response       bytea,
  created_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (method, caller_org, request_id)
);
)sql";

bool IsConnectionLoss(PGconn* conn, PGresult* res) {
  if (PQstatus(conn) != CONNECTION_OK) return true;
  const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  return state != nullptr && absl::StartsWith(state, "08");
}

absl::Status ResultStatus(PGconn* conn, PGresult* res) {
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return absl::OkStatus();
  if (res == nullptr || IsConnectionLoss(conn, res)) {
    return absl::UnavailableError(absl::StrCat("database unavailable: ", PQerrorMessage(conn)));
  }
  const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  const char* primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  return StatusFromSqlState(state ? state : "XX000", primary ? primary : "unknown error");
}

std::string BuildConninfo(const PgOptions& o) {
  // libpq accepts key=value pairs after a URI only as query parameters; keep both forms.
  std::string extra =
      absl::StrFormat("connect_timeout=%d application_name=safeharbor", o.connect_timeout_s);
  if (absl::StartsWith(o.conninfo, "postgres://") ||
      absl::StartsWith(o.conninfo, "postgresql://")) {
    std::string sep = absl::StrContains(o.conninfo, "?") ? "&" : "?";
    return absl::StrCat(o.conninfo, sep, "connect_timeout=", o.connect_timeout_s,
                        "&application_name=safeharbor");
  }
  return absl::StrCat(o.conninfo, " ", extra);
}

}  // namespace

PgParam::PgParam(double v) : value_(absl::StrFormat("%.17g", v)) {}

PgParam PgParam::Bytea(absl::string_view bytes) {
  return PgParam(absl::StrCat("\\x", absl::BytesToHexString(bytes)));
}

PgParam PgTime(absl::Time t) {
  return PgParam(absl::FormatTime("%Y-%m-%d %H:%M:%E6S+00", t, absl::UTCTimeZone()));
}

PgParam PgTextArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return PgParam(out);
}

int PgResult::Col(const char* name) const { return PQfnumber(res_.get(), name); }

int PgResult::Checked(int row, const char* col) const {
  const int c = Col(col);
  // A column the statement does not return, or a row past its end, is a programming error:
  // never read as "" or 0.
  SH_RELEASE_ASSERT(c >= 0, absl::StrCat("no column '", col, "' in the result"));
  SH_RELEASE_ASSERT(row >= 0 && row < rows(), absl::StrCat("no row ", row, " for '", col, "'"));
  return c;
}

bool PgResult::IsNull(int row, const char* col) const {
  return PQgetisnull(res_.get(), row, Checked(row, col));
}

absl::string_view PgResult::Text(int row, const char* col) const {
  const int c = Checked(row, col);
  return absl::string_view(PQgetvalue(res_.get(), row, c),
                           static_cast<size_t>(PQgetlength(res_.get(), row, c)));
}

int64_t PgResult::Int64(int row, const char* col) const {
  int64_t v = 0;
  (void)absl::SimpleAtoi(Text(row, col), &v);
  return v;
}

double PgResult::Double(int row, const char* col) const {
  double v = 0;
  (void)absl::SimpleAtod(Text(row, col), &v);
  return v;
}

std::string PgResult::Bytea(int row, const char* col) const {
  absl::string_view t = Text(row, col);
  if (absl::StartsWith(t, "\\x")) return absl::HexStringToBytes(t.substr(2));
  return std::string(t);
}

absl::Time PgResult::Time(int row, const char* col) const {
  if (IsNull(row, col)) return absl::InfinitePast();
  // Server sessions run with TimeZone=UTC and ISO DateStyle: "2026-11-22 13:29:00.123456+00".
  std::string text(Text(row, col));
  absl::Time t;
  std::string err;
  for (const char* fmt : {"%Y-%m-%d %H:%M:%E*S%z", "%Y-%m-%d %H:%M:%E*S%Ez"}) {
    std::string with_minutes = text;
    if (with_minutes.size() > 3 && (with_minutes[with_minutes.size() - 3] == '+' ||
                                    with_minutes[with_minutes.size() - 3] == '-')) {
      with_minutes += "00";
    }
    if (absl::ParseTime(fmt, with_minutes, &t, &err)) return t;
  }
  return absl::InfinitePast();
}

absl::Status StatusFromSqlStateCode(absl::string_view sqlstate, absl::string_view message);

namespace {
constexpr char kSqlStatePayload[] = "type.safeharbor/sqlstate";

absl::Status WithSqlState(absl::Status st, absl::string_view sqlstate) {
  st.SetPayload(kSqlStatePayload, absl::Cord(sqlstate));
  return st;
}
}  // namespace

std::string SqlStateOf(const absl::Status& status) {
  auto p = status.GetPayload(kSqlStatePayload);
  return p ? std::string(*p) : std::string();
}

absl::Status StatusFromSqlState(absl::string_view sqlstate, absl::string_view message) {
  return WithSqlState(StatusFromSqlStateCode(sqlstate, message), sqlstate);
}

absl::Status StatusFromSqlStateCode(absl::string_view sqlstate, absl::string_view message) {
  std::string msg = absl::StrCat(message, " (SQLSTATE ", sqlstate, ")");
  if (sqlstate == "40001" || sqlstate == "40P01") return absl::AbortedError(msg);
  if (sqlstate == "23505") return absl::AlreadyExistsError(msg);
  if (sqlstate == "23503" || sqlstate == "23514" || sqlstate == "23P01") {
    return absl::FailedPreconditionError(msg);
  }
  if (sqlstate == "42501") return absl::PermissionDeniedError(msg);
  if (sqlstate == "57014") return absl::DeadlineExceededError(msg);
  if (absl::StartsWith(sqlstate, "22")) return absl::InvalidArgumentError(msg);
  if (absl::StartsWith(sqlstate, "08") || absl::StartsWith(sqlstate, "57P") ||
      sqlstate == "53300") {
    return absl::UnavailableError(msg);
  }
  return absl::InternalError(msg);
}

PgPool::PgPool(const PgOptions& options, prometheus::Registry* registry)
    : options_(options),
      metrics_(registry, "postgres"),
      breaker_("postgres", SystemClock::Get(), options.breaker, metrics_.StateObserver()) {
  if (registry != nullptr) {
    errors_ = &prometheus::BuildCounter()
                   .Name("safeharbor_postgres_errors_total")
                   .Help("PostgreSQL errors by kind (unavailable, conflict, statement).")
                   .Register(*registry);
    for (const char* kind : {"unavailable", "conflict", "statement"}) {
      errors_->Add({{"kind", kind}});
    }
    round_trips_ = &prometheus::BuildCounter()
                        .Name("safeharbor_postgres_round_trips_total")
                        .Help(
                            "Round trips to PostgreSQL made by transactions: one per batch of "
                            "statements sent together (BEGIN with the first, COMMIT with the "
                            "last).")
                        .Register(*registry)
                        .Add({});
  }
}

PgPool::~PgPool() = default;

void PgPool::CountError(absl::string_view kind) {
  if (errors_ != nullptr) errors_->Add({{"kind", std::string(kind)}}).Increment();
}

absl::StatusOr<std::unique_ptr<PgPool>> PgPool::Connect(const PgOptions& options,
                                                        prometheus::Registry* registry) {
  std::unique_ptr<PgPool> pool(new PgPool(options, registry));
  auto conn = pool->Acquire(absl::InfiniteFuture());
  if (!conn.ok()) return conn.status();
  pool->Release(*std::move(conn));
  return pool;
}

absl::StatusOr<std::unique_ptr<PgPool>> PgPool::ConnectWithRetry(const PgOptions& options,
                                                                 prometheus::Registry* registry,
                                                                 absl::Duration wait) {
  const absl::Time give_up = absl::Now() + wait;
  for (int attempt = 1;; ++attempt) {
    auto pool = Connect(options, registry);
    if (pool.ok() || absl::Now() >= give_up) return pool;
    log::Warn("postgres_connect_retry",
              {{"attempt", absl::StrCat(attempt)}, {"error", pool.status().message()}});
    absl::SleepFor(absl::Milliseconds(500));
  }
}

bool PgPool::Usable(PgConnection& conn) const {
  // After a restart every pooled connection is stale: replace them all, not one per call.
  return conn.healthy() && !conn.broken && conn.epoch >= loss_epoch_.load() && conn.Alive();
}

absl::StatusOr<std::unique_ptr<PgConnection>> PgPool::Acquire(absl::Time call_deadline) {
  if (!breaker_.Allow()) {
    CountError("unavailable");
    return breaker_.Refusal();
  }
  const absl::Time give_up = std::min(call_deadline, absl::Now() + options_.acquire_timeout);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (!idle_.empty()) {
      std::unique_ptr<PgConnection> conn = std::move(idle_.back());
      idle_.pop_back();
      if (Usable(*conn)) return conn;
      --open_;  // replaced by a new one
      lock.unlock();
      conn.reset();
      lock.lock();
      continue;
    }
    if (open_ < options_.pool_size) {
      ++open_;
      break;
    }
    const absl::Time now = absl::Now();
    if (breaker_.state() == BreakerState::kOpen || now >= give_up) {
      CountError("unavailable");
      if (breaker_.state() == BreakerState::kOpen) return breaker_.Refusal();
      return absl::UnavailableError("database connection pool exhausted; retry with backoff");
    }
    cv_.wait_for(lock,
                 absl::ToChronoMilliseconds(std::min(give_up - now, absl::Milliseconds(100))));
  }
  lock.unlock();
  auto conn = Open(call_deadline);
  if (!conn.ok()) {
    {
      std::lock_guard<std::mutex> relock(mu_);
      --open_;
    }
    cv_.notify_one();
  }
  return conn;
}

absl::StatusOr<std::unique_ptr<PgConnection>> PgPool::Open(absl::Time call_deadline) {
  const int64_t epoch = loss_epoch_.load();
  const absl::Duration cap = absl::Seconds(options_.connect_timeout_s);
  const absl::Time start = absl::Now();
  const absl::Time deadline = std::min(call_deadline, start + cap);
  std::string error;
  bool timed_out = false;
  auto conn = PgConnection::Connect(
      BuildConninfo(options_), deadline, [this] { return breaker_.state() == BreakerState::kOpen; },
      &error, &timed_out);
  if (conn == nullptr) {
    CountError("unavailable");
    if (timed_out && TimeoutIsTheDependencys(deadline - start, cap)) {
      breaker_.Failed();
      metrics_.TimedOut();
    }
    return absl::UnavailableError(absl::StrCat("database unavailable: ", error));
  }
  conn->epoch = epoch;
  PgTx session(conn.get(), this, deadline, options_.call_timeout);
  session.counted_ = false;
  const std::string setup =
      absl::StrFormat("SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET statement_timeout = %d",
                      options_.statement_timeout_ms);
  SH_RETURN_IF_ERROR(session.Run(setup, nullptr).status());
  return conn;
}

void PgPool::Release(std::unique_ptr<PgConnection> conn) {
  if (conn->broken) {
    conn.reset();  // lost or timed out: never reused
    std::lock_guard<std::mutex> lock(mu_);
    --open_;
  } else {
    std::lock_guard<std::mutex> lock(mu_);
    idle_.push_back(std::move(conn));
  }
  cv_.notify_one();
}

void PgPool::Answered(const PgConnection& conn, bool given_its_cap) {
  if (conn.gave_up) return;  // the breaker is open already
  if (conn.no_answer) {
    if (!given_its_cap) return;  // the caller left too little time: not the server's fault
    breaker_.Failed();
    metrics_.TimedOut();
  } else if (!conn.broken) {
    breaker_.Succeeded();
    last_answer_us_.store(absl::ToUnixMicros(absl::Now()));
  }
}

namespace {
thread_local PgRoundTripScope* current_round_trips = nullptr;
}  // namespace

PgRoundTripScope::PgRoundTripScope() : saved_(current_round_trips) { current_round_trips = this; }
PgRoundTripScope::~PgRoundTripScope() { current_round_trips = saved_; }

void PgTx::Count() {
  ++round_trips_;
  if (!counted_) return;
  if (pool_->round_trips_ != nullptr) pool_->round_trips_->Increment();
  if (current_round_trips != nullptr) ++current_round_trips->count_;
}

PgTx::~PgTx() {
  for (Queued& q : queued_) {
    q.slot->answer = absl::FailedPreconditionError("statement never sent: its transaction ended");
    q.slot->skipped = true;
  }
}

PgPending PgTx::Send(absl::string_view sql, const std::vector<PgParam>& params) {
  Queued q{std::string(sql), {}, std::make_shared<PgPending::Slot>()};
  q.params.reserve(params.size());
  for (const auto& p : params) q.params.push_back(p.value());
  queued_.push_back(std::move(q));
  return PgPending(this, queued_.back().slot);
}

absl::StatusOr<PgResult> PgTx::Exec(absl::string_view sql, const std::vector<PgParam>& params) {
  return Send(sql, params).Get();
}

absl::Status PgTx::Commit() {
  PgPending commit = Send("COMMIT");
  queued_.back().commit = true;
  return commit.Get().status();
}

absl::StatusOr<PgResult> PgPending::Get() {
  if (!answered()) tx_->Flush();
  SH_RELEASE_ASSERT(answered() && !slot_->taken, "PgPending::Get: answered once");
  slot_->taken = true;
  return *std::move(slot_->answer);
}

void PgTx::Answer(Queued& q, PGresult* res) {
  if (res != nullptr && PQresultStatus(res) == PGRES_PIPELINE_ABORTED) {
    PQclear(res);
    q.slot->skipped = true;
    q.slot->answer = failure_.ok() ? absl::InternalError("statement skipped") : failure_;
    return;
  }
  absl::Status st = ResultStatus(conn_->get(), res);
  if (st.ok()) {
    q.slot->answer = PgResult(res);
    return;
  }
  if (IsConnectionLoss(conn_->get(), res)) conn_->broken = true;
  PQclear(res);
  if (failure_.ok()) failure_ = st;
  q.slot->answer = std::move(st);
}

void PgTx::Flush() {
  std::vector<Queued> batch;
  batch.swap(queued_);
  if (batch.empty()) return;
  if (failure_.ok() && conn_->broken) {
    failure_ = absl::UnavailableError("database connection lost earlier in this transaction");
  }
  if (!failure_.ok()) {  // the transaction has failed: nothing more is sent
    for (Queued& q : batch) {
      q.slot->answer = failure_;
      q.slot->skipped = true;
    }
    return;
  }
  std::vector<PgStatement> statements;
  statements.reserve(batch.size());
  for (const Queued& q : batch) {
    PgStatement st{q.sql.c_str(), {}};
    for (const auto& v : q.params) st.values.push_back(v ? v->c_str() : nullptr);
    statements.push_back(std::move(st));
  }
  Breaker& breaker = pool_->breaker_;
  std::vector<PGresult*> results;
  // A later batch may find the session ended meanwhile (the server's error and close came):
  // then nothing of it was sent, and a COMMIT in it never left.
  const bool alive = round_trips_ == 0 || conn_->Alive();
  // The server answers a pipeline's statements together, at its end (it flushes at the Sync),
  // and bounds each with its statement_timeout: a batch waits the cap once per statement, so a
  // long pipeline is not cut short and a server that does not answer is still given up on.
  // Never more than kMaxCapsPerBatch caps, however long the batch (a background pass has no
  // caller's deadline to end it sooner).
  constexpr int64_t kMaxCapsPerBatch = 4;
  const absl::Duration cap =
      cap_ * std::min(kMaxCapsPerBatch, static_cast<int64_t>(statements.size()));
  const absl::Time now = absl::Now();
  const absl::Time deadline = std::min(deadline_, now + cap);
  bool handed = false;
  Count();
  const bool whole =
      alive && conn_->Pipeline(
                   statements, &results, deadline,
                   [&breaker] { return breaker.state() == BreakerState::kOpen; }, &handed);
  if (!alive) conn_->broken = true;
  if (handed && batch.back().commit) commit_sent_ = true;
  if (alive) pool_->Answered(*conn_, TimeoutIsTheDependencys(deadline - now, cap));
  for (size_t i = 0; i < results.size(); ++i) Answer(batch[i], results[i]);
  if (whole) return;
  if (failure_.ok()) {
    failure_ = conn_->no_answer
                   ? (conn_->gave_up ? breaker.Refusal()
                                     : absl::UnavailableError(
                                           "database did not answer before the call's deadline; "
                                           "connection discarded, retry with backoff"))
                   : absl::UnavailableError(
                         absl::StrCat("database unavailable: ", PQerrorMessage(conn_->get())));
  }
  for (size_t i = results.size(); i < batch.size(); ++i) batch[i].slot->answer = failure_;
}

absl::StatusOr<PgResult> PgTx::Run(const std::string& sql, const std::vector<const char*>* params) {
  Flush();  // what is queued goes first
  if (!failure_.ok()) return failure_;
  if (conn_->broken) {
    return absl::UnavailableError("database connection lost earlier in this transaction");
  }
  const absl::Time now = absl::Now();
  const absl::Time deadline = std::min(deadline_, now + cap_);
  Breaker& breaker = pool_->breaker_;
  Count();
  PGresult* res = conn_->Exec(sql, params, deadline,
                              [&breaker] { return breaker.state() == BreakerState::kOpen; });
  pool_->Answered(*conn_, TimeoutIsTheDependencys(deadline - now, cap_));
  if (res == nullptr && conn_->no_answer) {
    failure_ = conn_->gave_up ? breaker.Refusal()
                              : absl::UnavailableError(
                                    "database did not answer before the call's deadline; "
                                    "connection discarded, retry with backoff");
    return failure_;
  }
  absl::Status st = ResultStatus(conn_->get(), res);
  if (!st.ok()) {
    if (IsConnectionLoss(conn_->get(), res)) conn_->broken = true;
    PQclear(res);
    failure_ = st;
    return st;
  }
  return PgResult(res);
}

absl::Status PgPool::Transact(const std::function<absl::Status(PgTx&)>& fn, Isolation isolation,
                              bool read_only) {
  SH_RETURN_IF_ERROR(EnterBudget());
  const absl::Cleanup done = [this] { LeaveBudget(); };
  return TransactWithin(fn, isolation, read_only, options_.call_timeout);
}

// The bulkhead: at most max_in_flight calls use the database at once. One more waits for a slot
// (as long as the pool would wait for a connection, within the caller's deadline) while the
// database answers; when nothing has answered for kAnsweringWindow (the health probe answers
// every 500 ms when all is well) or its breaker is open, it is refused at once, so a database
// that hangs holds at most max_in_flight callers' threads.
absl::Status PgPool::EnterBudget() {
  constexpr absl::Duration kAnsweringWindow = absl::Seconds(1);
  std::unique_lock<std::mutex> lock(budget_mu_);
  const absl::Time give_up =
      std::min(CurrentCallDeadline(), absl::Now() + options_.acquire_timeout);
  while (options_.max_in_flight > 0 && in_flight_ >= options_.max_in_flight) {
    const absl::Time now = absl::Now();
    const bool answering = now - absl::FromUnixMicros(last_answer_us_.load()) < kAnsweringWindow &&
                           breaker_.state() != BreakerState::kOpen;
    if (!answering || now >= give_up) {
      CountError("unavailable");
      return absl::UnavailableError(absl::StrCat(
          "database busy: ", options_.max_in_flight, " calls in flight",
          answering ? "" : " and it has not answered for a second", "; retry with backoff"));
    }
    budget_cv_.wait_for(
        lock, absl::ToChronoMilliseconds(std::min(give_up - now, absl::Milliseconds(50))));
  }
  ++in_flight_;
  return absl::OkStatus();
}

void PgPool::LeaveBudget() {
  {
    std::lock_guard<std::mutex> lock(budget_mu_);
    --in_flight_;
  }
  budget_cv_.notify_one();
}

// One attempt of a transaction: BEGIN goes out with fn's first statement, COMMIT with its last.
PgPool::Attempt PgPool::TryOnce(const std::function<absl::Status(PgTx&)>& fn,
                                const std::string& begin, absl::Time deadline, absl::Duration cap) {
  Attempt out;
  auto conn = Acquire(deadline);
  if (!conn.ok()) {
    out.status = conn.status();
    out.acquired = false;
    return out;
  }
  {
    PgTx tx(conn->get(), this, deadline, cap);
    (void)tx.Send(begin);
    out.status = fn(tx);
    if (out.status.ok() && !tx.failure().ok()) out.status = tx.failure();  // an unread failure
    if (out.status.ok()) out.status = tx.Commit();
    out.committing = tx.commit_sent_;
    out.sqlstate = SqlStateOf(tx.failure().ok() ? out.status : tx.failure());
    out.sent = tx.round_trips() > 0;
  }
  if (!out.status.ok() && out.sent && !(*conn)->broken) {
    PgTx rollback(conn->get(), this, absl::InfiniteFuture(), absl::Seconds(1));
    (void)rollback.Exec("ROLLBACK");
  }
  out.lost = (*conn)->broken;
  out.no_answer = (*conn)->no_answer;
  Release(*std::move(conn));
  return out;
}

absl::Status PgPool::TransactWithin(const std::function<absl::Status(PgTx&)>& fn,
                                    Isolation isolation, bool read_only, absl::Duration cap) {
  std::string begin = "BEGIN ISOLATION LEVEL ";
  begin += isolation == Isolation::kSerializable     ? "SERIALIZABLE"
           : isolation == Isolation::kRepeatableRead ? "REPEATABLE READ"
                                                     : "READ COMMITTED";
  if (read_only) begin += " READ ONLY";
  const absl::Time deadline = CurrentCallDeadline();
  absl::Status last;
  for (int attempt = 1; attempt <= options_.max_tx_attempts; ++attempt) {
    if (deadline <= absl::Now()) {
      return absl::UnavailableError("database not called: the caller's deadline has passed");
    }
    Attempt a = TryOnce(fn, begin, deadline, cap);
    if (!a.acquired || a.status.ok()) return a.status;
    last = a.status;
    if (a.lost) {
      if (!a.no_answer) loss_epoch_.fetch_add(1);
      CountError("unavailable");
      // A connection lost once COMMIT left the client leaves the outcome unknown: never replay
      // it here. Lost before, nothing was committed; a read-only transaction commits nothing.
      if (a.committing && !read_only) {
        return absl::UnavailableError(
            "database connection lost during commit; outcome unknown, retry with the same "
            "request_id");
      }
      if (a.no_answer) return a.status;  // a server that did not answer is not asked again now
      continue;                          // Nothing was committed: replay on a fresh connection.
    }
    if (a.sqlstate == "40001" || a.sqlstate == "40P01") {  // serialization failure, deadlock
      CountError("conflict");
      absl::SleepFor(absl::Milliseconds(2 * attempt + (std::rand() % 5)));
      continue;
    }
    if (!a.sqlstate.empty()) CountError("statement");
    return a.status;
  }
  if (last.code() == absl::StatusCode::kUnavailable) return last;
  return absl::AbortedError(absl::StrCat("transaction conflicted ", options_.max_tx_attempts,
                                         " times; retry: ", last.message()));
}

// One round trip: BEGIN, the statement and COMMIT go out together.
absl::StatusOr<PgResult> PgPool::Query(absl::string_view sql, const std::vector<PgParam>& params) {
  std::optional<PgPending> answer;
  absl::Status st = Transact([&](PgTx& tx) -> absl::Status {
    answer.emplace(tx.Send(sql, params));
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  return answer->Get();
}

absl::Status PgPool::Migrate(const std::vector<Migration>& migrations) {
  const auto migrate = [&](PgTx& tx) -> absl::Status {
    // Waiting for another replica's migrations, or a long migration, is not a stuck statement.
    SH_RETURN_IF_ERROR(tx.Exec("SET LOCAL statement_timeout = 0").status());
    // One lock for every replica of every service sharing this database.
    SH_RETURN_IF_ERROR(tx.Exec("SELECT pg_advisory_xact_lock(7411230001)").status());
    // Multi-statement DDL goes through the simple query protocol (no parameters).
    SH_RETURN_IF_ERROR(tx.Run(std::string(kRuntimeTables), nullptr).status());
    for (const Migration& m : migrations) {
      SH_ASSIGN_OR_RETURN(PgResult done,
                          tx.Exec("SELECT 1 FROM schema_migrations WHERE version = $1",
                                  {PgParam(int32_t{m.version})}));
      if (done.rows() > 0) continue;
      if (auto st = tx.Run(m.sql, nullptr); !st.ok()) {
        return absl::InternalError(
            absl::StrCat("migration ", m.name, " failed: ", st.status().message()));
      }
      SH_RETURN_IF_ERROR(tx.Exec("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                                 {PgParam(int32_t{m.version}), PgParam(m.name)})
                             .status());
      log::Info("migration_applied", {{"version", absl::StrCat(m.version)}, {"name", m.name}});
    }
    return absl::OkStatus();
  };
  return TransactWithin(migrate, Isolation::kReadCommitted, false, absl::Minutes(10));
}

absl::Status PgPool::Probe(absl::Duration timeout) {
  std::lock_guard<std::mutex> lock(probe_mu_);
  const absl::Time deadline = absl::Now() + timeout;
  if (probe_ == nullptr) {
    std::string error;
    bool timed_out = false;
    probe_ = PgConnection::Connect(BuildConninfo(options_), deadline, {}, &error, &timed_out);
    if (probe_ == nullptr) {
      if (timed_out) {
        breaker_.Trip();
        metrics_.TimedOut();
      }
      return absl::UnavailableError(absl::StrCat("database unavailable: ", error));
    }
  }
  PGresult* res = probe_->Exec("SELECT 1", nullptr, deadline, {});
  const bool no_answer = probe_->no_answer;
  absl::Status st = no_answer ? absl::UnavailableError("database did not answer the probe in time")
                              : ResultStatus(probe_->get(), res);
  PQclear(res);
  if (st.ok()) {
    breaker_.Succeeded();
    last_answer_us_.store(absl::ToUnixMicros(absl::Now()));
    return st;
  }
  if (no_answer) {
    breaker_.Trip();
    metrics_.TimedOut();
  }
  probe_.reset();
  return st;
}

}  // namespace safeharbor
