#include "common/pg.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <cstdlib>
#include <thread>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/invariant.h"
#include "common/log.h"

namespace safeharbor {

// One libpq connection. Not thread-safe: used by one thread at a time via the pool.
class PgConnection {
 public:
  explicit PgConnection(PGconn* conn) : conn_(conn) {}
  ~PgConnection() { PQfinish(conn_); }
  PGconn* get() { return conn_; }
  bool healthy() const { return PQstatus(conn_) == CONNECTION_OK; }
  bool broken = false;  // set when a statement failed because the connection was lost
  int64_t epoch = 0;    // the pool's loss epoch when this connection was (re)established

 private:
  PGconn* conn_;
};

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

PgPool::PgPool(const PgOptions& options, prometheus::Registry* registry) : options_(options) {
  if (registry != nullptr) {
    errors_ = &prometheus::BuildCounter()
                   .Name("safeharbor_postgres_errors_total")
                   .Help("PostgreSQL errors by kind (unavailable, conflict, statement).")
                   .Register(*registry);
    for (const char* kind : {"unavailable", "conflict", "statement"}) {
      errors_->Add({{"kind", kind}});
    }
  }
}

PgPool::~PgPool() = default;

void PgPool::CountError(absl::string_view kind) {
  if (errors_ != nullptr) errors_->Add({{"kind", std::string(kind)}}).Increment();
}

absl::StatusOr<std::unique_ptr<PgPool>> PgPool::Connect(const PgOptions& options,
                                                        prometheus::Registry* registry) {
  std::unique_ptr<PgPool> pool(new PgPool(options, registry));
  auto conn = pool->Acquire();
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

absl::StatusOr<std::unique_ptr<PgConnection>> PgPool::Acquire() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    const auto deadline =
        std::chrono::steady_clock::now() + absl::ToChronoMilliseconds(options_.acquire_timeout);
    for (;;) {
      if (!idle_.empty()) {
        auto conn = std::move(idle_.back());
        idle_.pop_back();
        lock.unlock();
        const int64_t epoch = loss_epoch_.load();
        if (conn->healthy() && !conn->broken && conn->epoch >= epoch) return conn;
        // Reconnect in place: this connection failed, or another one found the server gone
        // (after a restart every pooled connection is stale; reset them all, not one per call).
        PQreset(conn->get());
        if (conn->healthy()) {
          conn->broken = false;
          conn->epoch = epoch;
          if (auto st = Setup(conn.get()); st.ok()) return conn;
        }
        lock.lock();
        --open_;
        cv_.notify_one();
        CountError("unavailable");
        return absl::UnavailableError(
            absl::StrCat("database unavailable: ", PQerrorMessage(conn->get())));
      }
      if (open_ < options_.pool_size) {
        ++open_;
        break;
      }
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
        CountError("unavailable");
        return absl::UnavailableError("database connection pool exhausted; retry with backoff");
      }
    }
  }
  // Open a new connection outside the lock.
  const int64_t epoch = loss_epoch_.load();
  PGconn* raw = PQconnectdb(BuildConninfo(options_).c_str());
  auto conn = std::make_unique<PgConnection>(raw);
  conn->epoch = epoch;
  if (!conn->healthy()) {
    std::string err = PQerrorMessage(raw);
    {
      std::lock_guard<std::mutex> lock(mu_);
      --open_;
    }
    cv_.notify_one();
    CountError("unavailable");
    return absl::UnavailableError(absl::StrCat("database unavailable: ", err));
  }
  absl::Status st = Setup(conn.get());
  if (!st.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    --open_;
    cv_.notify_one();
    return st;
  }
  return conn;
}

absl::Status PgPool::Setup(PgConnection* conn) {
  const std::string setup =
      absl::StrFormat("SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET statement_timeout = %d",
                      options_.statement_timeout_ms);
  PGresult* res = PQexec(conn->get(), setup.c_str());
  absl::Status st = ResultStatus(conn->get(), res);
  PQclear(res);
  return st;
}

void PgPool::Release(std::unique_ptr<PgConnection> conn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    idle_.push_back(std::move(conn));
  }
  cv_.notify_one();
}

absl::StatusOr<PgResult> PgTx::Exec(absl::string_view sql, const std::vector<PgParam>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.value() ? p.value()->c_str() : nullptr);
  const std::string query(sql);
  PGresult* res = PQexecParams(conn_->get(), query.c_str(), static_cast<int>(values.size()),
                               nullptr, values.data(), nullptr, nullptr, 0);
  absl::Status st = ResultStatus(conn_->get(), res);
  if (!st.ok()) {
    if (IsConnectionLoss(conn_->get(), res)) conn_->broken = true;
    PQclear(res);
    return st;
  }
  return PgResult(res);
}

absl::Status PgPool::Transact(const std::function<absl::Status(PgTx&)>& fn, Isolation isolation,
                              bool read_only) {
  std::string begin = "BEGIN ISOLATION LEVEL ";
  begin += isolation == Isolation::kSerializable     ? "SERIALIZABLE"
           : isolation == Isolation::kRepeatableRead ? "REPEATABLE READ"
                                                     : "READ COMMITTED";
  if (read_only) begin += " READ ONLY";

  absl::Status last;
  for (int attempt = 1; attempt <= options_.max_tx_attempts; ++attempt) {
    auto conn = Acquire();
    if (!conn.ok()) return conn.status();
    PgTx tx(conn->get());
    bool committing = false;
    absl::Status st = tx.Exec(begin).status();
    if (st.ok()) st = fn(tx);
    if (st.ok()) {
      committing = true;
      st = tx.Exec("COMMIT").status();
    }
    if (!st.ok() && !(*conn)->broken) {
      PGresult* r = PQexec((*conn)->get(), "ROLLBACK");
      PQclear(r);
    }
    const bool lost = (*conn)->broken;
    Release(*std::move(conn));
    if (st.ok()) return st;
    last = st;
    if (lost) {
      loss_epoch_.fetch_add(1);
      CountError("unavailable");
      // A connection lost during COMMIT leaves the outcome unknown: never replay it here.
      if (committing) {
        return absl::UnavailableError(
            "database connection lost during commit; outcome unknown, retry with the same "
            "request_id");
      }
      continue;  // Nothing was committed: replay on a fresh connection.
    }
    const std::string sqlstate = SqlStateOf(st);
    if (sqlstate == "40001" || sqlstate == "40P01") {  // serialization failure, deadlock
      CountError("conflict");
      absl::SleepFor(absl::Milliseconds(2 * attempt + (std::rand() % 5)));
      continue;
    }
    if (!sqlstate.empty()) CountError("statement");
    return st;
  }
  if (last.code() == absl::StatusCode::kUnavailable) return last;
  return absl::AbortedError(absl::StrCat("transaction conflicted ", options_.max_tx_attempts,
                                         " times; retry: ", last.message()));
}

absl::StatusOr<PgResult> PgPool::Query(absl::string_view sql, const std::vector<PgParam>& params) {
  std::optional<PgResult> out;
  absl::Status st = Transact([&](PgTx& tx) -> absl::Status {
    auto r = tx.Exec(sql, params);
    if (!r.ok()) return r.status();
    out.emplace(*std::move(r));
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  return *std::move(out);
}

absl::Status PgPool::Migrate(const std::vector<Migration>& migrations) {
  return Transact([&](PgTx& tx) -> absl::Status {
    // Waiting for another replica's migrations, or a long migration, is not a stuck statement.
    if (auto t = tx.Exec("SET LOCAL statement_timeout = 0"); !t.ok()) return t.status();
    // One lock for every replica of every service sharing this database.
    auto lock = tx.Exec("SELECT pg_advisory_xact_lock(7411230001)");
    if (!lock.ok()) return lock.status();
    // Multi-statement DDL goes through the simple query protocol (no parameters).
    PGresult* res = PQexec(tx.conn_->get(), std::string(kRuntimeTables).c_str());
    absl::Status st = ResultStatus(tx.conn_->get(), res);
    PQclear(res);
    if (!st.ok()) return st;
    for (const Migration& m : migrations) {
      auto done = tx.Exec("SELECT 1 FROM schema_migrations WHERE version = $1",
                          {PgParam(int32_t{m.version})});
      if (!done.ok()) return done.status();
      if (done->rows() > 0) continue;
      res = PQexec(tx.conn_->get(), m.sql);
      st = ResultStatus(tx.conn_->get(), res);
      PQclear(res);
      if (!st.ok()) {
        return absl::InternalError(absl::StrCat("migration ", m.name, " failed: ", st.message()));
      }
      auto rec = tx.Exec("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                         {PgParam(int32_t{m.version}), PgParam(m.name)});
      if (!rec.ok()) return rec.status();
      log::Info("migration_applied", {{"version", absl::StrCat(m.version)}, {"name", m.name}});
    }
    return absl::OkStatus();
  });
}

}  // namespace safeharbor
