// A seeded randomized run of at least 100,000 fee operations against the real service and
// database. Each worker keeps an exact model of its assessments; after every step the response
// is checked against the model (splits sum to the payment to the cent, balances never go
// negative, replays return the original, conflicting replays are refused), PostgreSQL refuses
// any ledger transaction that does not balance at commit, and a checker verifies the whole
// ledger while the run goes on. Rerun a failure with SAFEHARBOR_FEES_SEED=<seed>;
// SAFEHARBOR_FEES_OPS changes the number of operations.
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <random>
#include <thread>

#include "services/fees/test/fee_fixture.h"

namespace safeharbor::fees {
namespace {

struct ModelPayment {
  std::string id;
  int64_t amount;
  bool reversed = false;
};

struct ModelAssessment {
  std::string id;
  int64_t ordered;
  int64_t outstanding;
  std::vector<ModelPayment> payments;
  v1::FeeService::Stub* clerk = nullptr;  // of the assessment's court
};

struct Replayable {
  v1::RecordPaymentRequest request;
  v1::RecordPaymentResponse response;
  v1::FeeService::Stub* clerk = nullptr;
};

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : fallback;
}

class LedgerFuzz : public FeeFixture {
 protected:
  void Fail(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!failed_.exchange(true)) failure_ = what;
  }
  bool Check(bool ok, const std::string& what) {
    if (!ok) Fail(what);
    return ok;
  }

  // Whole-ledger invariants, as SQL over everything committed so far.
  std::string LedgerProblems() {
    auto q = [&](const char* sql) {
      auto r = pg_->Query(sql);
      return r.ok() ? r->Int64(0, "n") : -1;
    };
    if (int64_t n = q("SELECT count(*) AS n FROM (SELECT txn_id FROM ledger_entries GROUP BY "
                      "txn_id HAVING sum(amount_cents) <> 0) x");
        n != 0) {
      return absl::StrCat(n, " unbalanced ledger transactions");
    }
    if (int64_t s = q("SELECT coalesce(sum(amount_cents), 0) AS n FROM ledger_entries"); s != 0) {
      return absl::StrCat("ledger sums to ", s);
    }
    if (int64_t n = q("SELECT count(*) AS n FROM (SELECT account FROM ledger_entries WHERE "
                      "account LIKE 'receivable:%' GROUP BY account HAVING sum(amount_cents) < 0 "
                      "OR sum(amount_cents) > (SELECT ordered_cents FROM assessments WHERE id = "
                      "substr(account, 12))) x");
        n != 0) {
      return absl::StrCat(n, " assessments over-collected or over-credited");
    }
    return "";
  }

  void Worker(int index, uint64_t seed, int64_t ops, std::vector<ModelAssessment>* model,
              std::atomic<int64_t>* done) {
    std::mt19937_64 rng(seed + static_cast<uint64_t>(index) * 7919);
    std::vector<Replayable> replayable;
    const int64_t tiers[3] = {150000, 250000, 500000};  // RCW 9A.88.120(1)(c)
    int64_t n = 0;
    auto rand = [&](int64_t lo, int64_t hi) {  // inclusive
      return lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
    };
    auto date = [&] {
      return D(2026, static_cast<int>(rand(4, 10)), static_cast<int>(rand(1, 28)));
    };
    while (n < ops && !failed_.load()) {
      const int64_t before = n;
      const int64_t r = rand(0, 99);
      const std::string rid = absl::StrCat("w", index, "-", n);
      if (model->empty() || r < 6) {  // a new assessment
        const int priors = static_cast<int>(rand(0, 3));
        const int64_t scheduled = tiers[std::min(priors, 2)];
        const bool pierce = rand(0, 9) < 3;  // a court records only its own jurisdiction's
        v1::FeeService::Stub* clerk = pierce ? pierce_clerk_.get() : clerk_.get();
        v1::Assessment a = Assessment(v1::STATUTE_PATRONIZING, priors, scheduled,
                                      pierce ? kPierce : kKing, rand(0, 9) < 2 ? "" : "seattle-pd");
        if (rand(0, 1) == 1) {
          a.set_inability_to_pay_finding(true);
          a.set_ordered_cents(rand((scheduled + 2) / 3, scheduled));
        }
        v1::RecordAssessmentResponse resp;
        grpc::Status st = Assess(a, rid, &resp, clerk);
        if (!Check(st.ok(), "assessment failed: " + st.error_message())) return;
        if (!Check(resp.assessment().scheduled_cents() == scheduled &&
                       resp.assessment().outstanding_cents() == a.ordered_cents(),
                   "assessment amounts wrong")) {
          return;
        }
        model->push_back({resp.assessment().id(), a.ordered_cents(), a.ordered_cents(), {}, clerk});
        n += 1;
      } else if (r < 66) {  // a payment, sometimes more than is owed
        auto& m = (*model)[static_cast<size_t>(rand(0, static_cast<int64_t>(model->size()) - 1))];
        const bool too_much = m.outstanding == 0 || rand(0, 4) == 0;
        const int64_t amount = too_much ? m.outstanding + rand(1, 100000) : rand(1, m.outstanding);
        v1::RecordPaymentRequest req;
        req.set_request_id(rid);
        req.set_assessment_id(m.id);
        req.set_amount_cents(amount);
        *req.mutable_paid_date() = date();
        v1::RecordPaymentResponse resp;
        grpc::Status st = m.clerk->RecordPayment(Ctx().get(), req, &resp);
        if (too_much) {
          if (!Check(st.error_code() == grpc::StatusCode::FAILED_PRECONDITION,
                     absl::StrCat("over-payment not refused: ", st.error_message()))) {
            return;
          }
        } else {
          if (!Check(st.ok(), "payment failed: " + st.error_message())) return;
          int64_t sum = 0;
          for (const auto& d : resp.payment().disbursements()) {
            if (!Check(d.amount_cents() > 0, "a zero or negative part")) return;
            sum += d.amount_cents();
          }
          if (!Check(sum == amount, absl::StrCat("split sums to ", sum, " not ", amount))) return;
          m.outstanding -= amount;
          if (!Check(resp.outstanding_cents() == m.outstanding, "outstanding differs from model")) {
            return;
          }
          m.payments.push_back({resp.payment().id(), amount});
          if (replayable.size() < 256) replayable.push_back({req, resp, m.clerk});
        }
        n += 1;
      } else if (r < 76) {  // a reversal, sometimes of a payment already reversed
        auto& m = (*model)[static_cast<size_t>(rand(0, static_cast<int64_t>(model->size()) - 1))];
        if (m.payments.empty()) continue;
        auto& p =
            m.payments[static_cast<size_t>(rand(0, static_cast<int64_t>(m.payments.size()) - 1))];
        v1::ReversePaymentRequest req;
        req.set_request_id(rid);
        req.set_payment_id(p.id);
        *req.mutable_reversed_date() = D(2026, 11, 1);
        v1::ReversePaymentResponse resp;
        grpc::Status st = m.clerk->ReversePayment(Ctx().get(), req, &resp);
        if (p.reversed) {
          if (!Check(st.error_code() == grpc::StatusCode::FAILED_PRECONDITION,
                     "a second reversal was not refused")) {
            return;
          }
        } else {
          if (!Check(st.ok(), "reversal failed: " + st.error_message())) return;
          p.reversed = true;
          m.outstanding += p.amount;
          if (!Check(resp.outstanding_cents() == m.outstanding, "reversal outstanding differs")) {
            return;
          }
        }
        n += 1;
      } else if (r < 88) {  // a replay with the same content
        if (replayable.empty()) continue;
        const auto& original =
            replayable[static_cast<size_t>(rand(0, static_cast<int64_t>(replayable.size()) - 1))];
        v1::RecordPaymentResponse resp;
        grpc::Status st = original.clerk->RecordPayment(Ctx().get(), original.request, &resp);
        if (!Check(st.ok() && resp.SerializeAsString() == original.response.SerializeAsString(),
                   "a replay did not return the original: " + st.error_message())) {
          return;
        }
        n += 1;
      } else if (r < 94) {  // the same request_id with other content
        if (replayable.empty()) continue;
        const auto& original =
            replayable[static_cast<size_t>(rand(0, static_cast<int64_t>(replayable.size()) - 1))];
        v1::RecordPaymentRequest req = original.request;
        req.set_amount_cents(req.amount_cents() + 1);
        v1::RecordPaymentResponse resp;
        grpc::Status st = original.clerk->RecordPayment(Ctx().get(), req, &resp);
        if (!Check(st.error_code() == grpc::StatusCode::ALREADY_EXISTS,
                   "a conflicting replay was not refused: " + st.error_message())) {
          return;
        }
        n += 1;
      } else {  // concurrent payments on one assessment
        auto& m = (*model)[static_cast<size_t>(rand(0, static_cast<int64_t>(model->size()) - 1))];
        if (m.outstanding < 6) continue;
        constexpr int kConcurrent = 6;
        std::vector<int64_t> amounts(kConcurrent);
        for (auto& a : amounts) a = rand(1, m.outstanding / 3 + 1);
        std::vector<v1::RecordPaymentResponse> resps(kConcurrent);
        std::vector<grpc::Status> sts(kConcurrent);
        std::vector<std::thread> threads;
        for (int k = 0; k < kConcurrent; ++k) {
          threads.emplace_back([&, k] {
            v1::RecordPaymentRequest req;
            req.set_request_id(absl::StrCat(rid, "-c", k));
            req.set_assessment_id(m.id);
            req.set_amount_cents(amounts[static_cast<size_t>(k)]);
            *req.mutable_paid_date() = D(2026, 6, 1);
            sts[static_cast<size_t>(k)] =
                m.clerk->RecordPayment(Ctx().get(), req, &resps[static_cast<size_t>(k)]);
          });
        }
        for (auto& t : threads) t.join();
        int64_t accepted = 0;
        for (int k = 0; k < kConcurrent; ++k) {
          if (sts[static_cast<size_t>(k)].ok()) {
            accepted += amounts[static_cast<size_t>(k)];
            m.payments.push_back(
                {resps[static_cast<size_t>(k)].payment().id(), amounts[static_cast<size_t>(k)]});
          } else if (!Check(sts[static_cast<size_t>(k)].error_code() ==
                                grpc::StatusCode::FAILED_PRECONDITION,
                            "concurrent payment: " + sts[static_cast<size_t>(k)].error_message())) {
            return;
          }
        }
        if (!Check(accepted <= m.outstanding, "concurrent payments over-collected")) return;
        m.outstanding -= accepted;
        v1::GetAssessmentRequest get;
        get.set_id(m.id);
        v1::GetAssessmentResponse got;
        grpc::Status st = m.clerk->GetAssessment(Ctx().get(), get, &got);
        if (!Check(st.ok() && got.assessment().outstanding_cents() == m.outstanding,
                   "outstanding after concurrent payments differs from model")) {
          return;
        }
        n += kConcurrent;
      }
      done->fetch_add(n - before);
    }
  }

  std::mutex mu_;
  std::atomic<bool> failed_{false};
  std::string failure_;
};

TEST_F(LedgerFuzz, RandomizedOperationsKeepTheLedgerExact) {
  const uint64_t seed = EnvOr("SAFEHARBOR_FEES_SEED", std::random_device{}());
  const int64_t ops = static_cast<int64_t>(EnvOr("SAFEHARBOR_FEES_OPS", 100000));
  RecordProperty("seed", std::to_string(seed));
  std::fprintf(stderr, "ledger fuzz: seed %llu, %lld operations\n",
               static_cast<unsigned long long>(seed), static_cast<long long>(ops));
  constexpr int kWorkers = 4;
  std::vector<std::vector<ModelAssessment>> models(kWorkers);
  std::atomic<int64_t> done{0};
  std::atomic<bool> finished{false};
  std::thread checker([&] {  // The whole ledger, checked while the run goes on.
    int checks = 0;
    while (!finished.load() && !failed_.load()) {
      for (int i = 0; i < 50 && !finished.load(); ++i) absl::SleepFor(absl::Milliseconds(100));
      if (std::string p = LedgerProblems(); !p.empty()) Fail("checker: " + p);
      ++checks;
    }
    RecordProperty("ledger_checks", checks);
  });
  const absl::Time start = absl::Now();
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back(
        [&, w] { Worker(w, seed, ops / kWorkers, &models[static_cast<size_t>(w)], &done); });
  }
  for (auto& t : workers) t.join();
  finished.store(true);
  checker.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::fprintf(stderr, "ledger fuzz: %lld operations in %.1f s (%.0f/s)\n",
               static_cast<long long>(done.load()), seconds,
               static_cast<double>(done.load()) / seconds);
  ASSERT_FALSE(failed_.load()) << failure_ << " (seed " << seed
                               << "; rerun with SAFEHARBOR_FEES_SEED=" << seed << ")";
  EXPECT_EQ(LedgerProblems(), "") << "seed " << seed;
  // Every assessment's stored balance equals the model's; totals reconcile with the report.
  int64_t expected_collected = 0;
  for (const auto& model : models) {
    for (const auto& m : model) {
      auto r = pg_->Query(
          "SELECT coalesce(sum(amount_cents), 0) AS n FROM ledger_entries "
          "WHERE account = $1",
          {absl::StrCat("receivable:", m.id)});
      ASSERT_TRUE(r.ok());
      ASSERT_EQ(r->Int64(0, "n"), m.outstanding) << m.id << " seed " << seed;
      expected_collected += m.ordered - m.outstanding;
    }
  }
  auto fiscal = Stub("state-commerce", "fiscal");
  v1::GetDisbursementReportRequest req;
  *req.mutable_period()->mutable_from() = D(2026, 1, 1);
  *req.mutable_period()->mutable_to() = D(2027, 1, 1);
  v1::GetDisbursementReportResponse rep;
  ASSERT_TRUE(fiscal->GetDisbursementReport(Ctx(60).get(), req, &rep).ok());
  EXPECT_EQ(rep.total_cents(), expected_collected) << "seed " << seed;
}

}  // namespace
}  // namespace safeharbor::fees
