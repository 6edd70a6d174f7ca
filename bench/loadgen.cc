// safeharbor-loadgen: a closed-loop gRPC load generator (callback API) for ./scripts/bench.
// `concurrency` calls are always in flight over one mTLS channel; each completion starts the next
// call. After a warm-up, completions during `duration_s` are counted and their latencies kept in a
// log-linear histogram (under 1.6% error). Prints one JSON object on stdout.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "safeharbor/beds/v1/beds.grpc.pb.h"
#include "safeharbor/directory/v1/directory.grpc.pb.h"
#include "safeharbor/fees/v1/fees.grpc.pb.h"
#include "safeharbor/referrals/v1/referrals.grpc.pb.h"
#include "safeharbor/testing/v1/echo.grpc.pb.h"

ABSL_FLAG(std::string, target, "localhost:50051", "host:port of the service");
ABSL_FLAG(std::string, certs_dir, ".run/certs", "ca.crt and <cert>.crt/.key");
ABSL_FLAG(std::string, cert, "client-law_enforcement", "client certificate base name");
ABSL_FLAG(std::string, scenario, "echo",
          "echo | search_cached | search_uncached | availability | hold | create_referral | "
          "record_payment | disbursement_report");
ABSL_FLAG(int, concurrency, 8, "calls in flight");
ABSL_FLAG(double, warmup_s, 2, "seconds before measuring");
ABSL_FLAG(double, duration_s, 10, "seconds measured");
ABSL_FLAG(std::string, ids, "", "comma-separated ids: facilities (hold), assessments (payments)");
ABSL_FLAG(std::string, run_id, "run", "prefix of request ids, unique per run");
ABSL_FLAG(uint64_t, seed, 42, "random seed for generated requests");

namespace {

using Clock = std::chrono::steady_clock;
using Done = std::function<void(const grpc::Status&)>;

// Log-linear histogram of microseconds: 64 sub-buckets per power of two.
class Histogram {
 public:
  void Add(int64_t us) {
    if (us < 1) us = 1;
    ++counts_[Index(static_cast<uint64_t>(us))];
    ++n_;
    sum_ += us;
  }
  void Merge(const Histogram& o) {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    n_ += o.n_;
    sum_ += o.sum_;
  }
  int64_t n() const { return n_; }
  double mean() const { return n_ ? static_cast<double>(sum_) / static_cast<double>(n_) : 0; }
  int64_t Quantile(double q) const {
    if (n_ == 0) return 0;
    const int64_t rank = static_cast<int64_t>(q * static_cast<double>(n_ - 1)) + 1;
    int64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return Upper(i);
    }
    return Upper(counts_.size() - 1);
  }

 private:
  static constexpr int kSub = 64;
  static size_t Index(uint64_t v) {
    if (v < kSub) return v;
    const int msb = 63 - __builtin_clzll(v);  // >= 6
    const int shift = msb - 6;
    return static_cast<size_t>((msb - 5) * kSub + static_cast<int>((v >> shift) - kSub));
  }
  static int64_t Upper(size_t i) {
    if (i < kSub) return static_cast<int64_t>(i);
    const int msb = static_cast<int>(i / kSub) + 5;
    const uint64_t mant = i % kSub + kSub;
    return static_cast<int64_t>(((mant + 1) << (msb - 6)) - 1);
  }
  std::vector<int64_t> counts_ = std::vector<int64_t>(64 * 40, 0);
  int64_t n_ = 0;
  int64_t sum_ = 0;
};

// Starts one call of the scenario; `done` runs on a gRPC thread when it ends.
using Starter = std::function<void(int slot, uint64_t seq, Done done)>;

template <typename Req, typename Resp, typename Invoke>
Starter Unary(std::function<void(int, uint64_t, Req*)> fill, Invoke invoke) {
  return [fill, invoke](int slot, uint64_t seq, Done done) {
    struct Call {
      grpc::ClientContext ctx;
      Req req;
      Resp resp;
    };
    auto call = std::make_shared<Call>();
    fill(slot, seq, &call->req);
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    invoke(&call->ctx, &call->req, &call->resp, [call, done](grpc::Status s) { done(s); });
  };
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A random point in Washington (roughly its bounding box, away from the ocean).
std::pair<double, double> RandomPoint(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> lat(45.7, 48.9), lon(-123.5, -117.2);
  return {lat(rng), lon(rng)};
}

namespace dir = safeharbor::directory::v1;
namespace beds = safeharbor::beds::v1;
namespace fees = safeharbor::fees::v1;
namespace ref = safeharbor::referrals::v1;

// The scenarios that read: echo, searches, availability (null for another name).
Starter ReadScenario(const std::string& name, const std::shared_ptr<grpc::Channel>& channel,
                     int concurrency) {
  auto rngs = std::make_shared<std::vector<std::mt19937_64>>();
  for (int i = 0; i < concurrency; ++i) rngs->emplace_back(absl::GetFlag(FLAGS_seed) + i);
  if (name == "echo") {
    std::shared_ptr<safeharbor::testing::v1::EchoService::Stub> stub =
        safeharbor::testing::v1::EchoService::NewStub(channel);
    return Unary<safeharbor::testing::v1::EchoRequest, safeharbor::testing::v1::EchoResponse>(
        [](int, uint64_t, auto* r) { r->set_message("ping"); },
        [stub](auto* c, auto* q, auto* p, auto cb) { stub->async()->Echo(c, q, p, cb); });
  }
  if (name == "search_cached" || name == "search_uncached") {
    std::shared_ptr<dir::DirectoryService::Stub> stub = dir::DirectoryService::NewStub(channel);
    const bool cached = name == "search_cached";
    return Unary<dir::SearchServicesRequest, dir::SearchServicesResponse>(
        [cached, rngs](int slot, uint64_t, dir::SearchServicesRequest* r) {
          if (cached) {  // The same question every time: answered from Redis.
            r->mutable_near()->set_latitude(47.6062);
            r->mutable_near()->set_longitude(-122.3321);
          } else {  // A new place every time: never in the cache.
            auto [lat, lon] = RandomPoint((*rngs)[static_cast<size_t>(slot)]);
            r->mutable_near()->set_latitude(lat);
            r->mutable_near()->set_longitude(lon);
          }
          r->set_radius_meters(50000);
          r->set_accepting_referrals_only(true);
          r->set_page_size(10);
        },
        [stub](auto* c, auto* q, auto* p, auto cb) { stub->async()->SearchServices(c, q, p, cb); });
  }
  if (name == "availability") {
    std::shared_ptr<beds::BedsService::Stub> stub = beds::BedsService::NewStub(channel);
    return Unary<beds::SearchAvailabilityRequest, beds::SearchAvailabilityResponse>(
        [rngs](int slot, uint64_t, beds::SearchAvailabilityRequest* r) {
          auto [lat, lon] = RandomPoint((*rngs)[static_cast<size_t>(slot)]);
          r->mutable_near()->set_latitude(lat);
          r->mutable_near()->set_longitude(lon);
          r->set_radius_meters(50000);
          r->set_age(15);
          r->set_max_staleness_seconds(43200);
          r->set_page_size(10);
        },
        [stub](auto* c, auto* q, auto* p, auto cb) {
          stub->async()->SearchAvailability(c, q, p, cb);
        });
  }
  return nullptr;
}

// One officer's intake: an urgent advocacy referral in Seattle, with the youth's consent.
void FillIntake(const std::string& run, int slot, uint64_t seq, ref::CreateReferralRequest* r) {
  r->set_request_id(absl::StrCat(run, "-ref-", slot, "-", seq));
  r->mutable_referrer_contact()->set_phone("+1 206-555-0142");
  auto* y = r->mutable_youth();
  y->set_youth_reference(absl::StrCat("B-", slot, "-", seq));
  y->set_age(15);
  y->set_gender(dir::GENDER_FEMALE);
  y->mutable_identifying()->set_name("Bench Youth");
  y->mutable_consent()->set_giver(ref::Consent::GIVER_YOUTH);
  y->mutable_consent()->add_scopes(ref::Consent::SCOPE_ACCEPTING_PROVIDER);
  r->set_county_fips("53033");
  r->mutable_location()->set_latitude(47.6062);
  r->mutable_location()->set_longitude(-122.3321);
  r->mutable_needs()->add_service_categories(dir::SERVICE_CATEGORY_CSEC_ADVOCACY);
  r->set_urgency(ref::URGENCY_URGENT);
}

// The scenarios that write (and the report over what they wrote); null for another name.
Starter WriteScenario(const std::string& name, const std::shared_ptr<grpc::Channel>& channel) {
  const std::string run = absl::GetFlag(FLAGS_run_id);
  const std::vector<std::string> ids =
      absl::StrSplit(absl::GetFlag(FLAGS_ids), ',', absl::SkipEmpty());
  if (name == "hold") {
    std::shared_ptr<beds::BedsService::Stub> stub = beds::BedsService::NewStub(channel);
    return Unary<beds::HoldBedRequest, beds::HoldBedResponse>(
        [run, ids](int slot, uint64_t seq, beds::HoldBedRequest* r) {
          r->set_request_id(absl::StrCat(run, "-h-", slot, "-", seq));
          r->set_facility_id(ids[seq % ids.size()]);
          r->set_bed_type(beds::BED_TYPE_GENERAL);
          r->set_referral_id(absl::StrCat(run, "-r-", slot, "-", seq));
          // Held for many referring agencies, as in the field: each agency's active holds are
          // capped (25 by default), so none has thousands for its cap check to count.
          r->set_for_organization_id(absl::StrCat("bench-agency-", (slot * 1009 + seq) % 4096));
          r->set_ttl_seconds(600);
        },
        [stub](auto* c, auto* q, auto* p, auto cb) { stub->async()->HoldBed(c, q, p, cb); });
  }
  if (name == "create_referral") {
    std::shared_ptr<ref::ReferralService::Stub> stub = ref::ReferralService::NewStub(channel);
    return Unary<ref::CreateReferralRequest, ref::CreateReferralResponse>(
        [run](int slot, uint64_t seq, ref::CreateReferralRequest* r) {
          FillIntake(run, slot, seq, r);
        },
        [stub](auto* c, auto* q, auto* p, auto cb) { stub->async()->CreateReferral(c, q, p, cb); });
  }
  if (name == "record_payment") {
    std::shared_ptr<fees::FeeService::Stub> stub = fees::FeeService::NewStub(channel);
    return Unary<fees::RecordPaymentRequest, fees::RecordPaymentResponse>(
        [run, ids](int slot, uint64_t seq, fees::RecordPaymentRequest* r) {
          r->set_request_id(absl::StrCat(run, "-pay-", slot, "-", seq));
          // One assessment per slot: concurrent payments on one assessment serialize by design.
          r->set_assessment_id(ids[static_cast<size_t>(slot) % ids.size()]);
          r->set_amount_cents(1);
          r->mutable_paid_date()->set_year(2026);
          r->mutable_paid_date()->set_month(5);
          r->mutable_paid_date()->set_day(1);
        },
        [stub](auto* c, auto* q, auto* p, auto cb) { stub->async()->RecordPayment(c, q, p, cb); });
  }
  if (name == "disbursement_report") {
    std::shared_ptr<fees::FeeService::Stub> stub = fees::FeeService::NewStub(channel);
    return Unary<fees::GetDisbursementReportRequest, fees::GetDisbursementReportResponse>(
        [](int, uint64_t, fees::GetDisbursementReportRequest* r) {
          auto* p = r->mutable_period();
          p->mutable_from()->set_year(2026);
          p->mutable_from()->set_month(1);
          p->mutable_from()->set_day(1);
          p->mutable_to()->set_year(2027);
          p->mutable_to()->set_month(1);
          p->mutable_to()->set_day(1);
        },
        [stub](auto* c, auto* q, auto* p, auto cb) {
          stub->async()->GetDisbursementReport(c, q, p, cb);
        });
  }
  return nullptr;
}

Starter MakeScenario(const std::string& name, const std::shared_ptr<grpc::Channel>& channel,
                     int concurrency) {
  Starter read = ReadScenario(name, channel, concurrency);
  return read ? read : WriteScenario(name, channel);
}

struct Slot {
  Histogram hist;
  std::map<std::string, int64_t> codes;
  uint64_t seq = 0;
};

// One mTLS channel to --target with --cert, connected; null (after saying why) when it cannot be.
std::shared_ptr<grpc::Channel> Connect() {
  const std::string dir = absl::GetFlag(FLAGS_certs_dir);
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ReadFile(dir + "/ca.crt");
  tls.pem_private_key = ReadFile(dir + "/" + absl::GetFlag(FLAGS_cert) + ".key");
  tls.pem_cert_chain = ReadFile(dir + "/" + absl::GetFlag(FLAGS_cert) + ".crt");
  if (tls.pem_root_certs.empty() || tls.pem_private_key.empty()) {
    std::fprintf(stderr, "certificates not found under %s\n", dir.c_str());
    return nullptr;
  }
  auto channel = grpc::CreateChannel(absl::GetFlag(FLAGS_target), grpc::SslCredentials(tls));
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    std::fprintf(stderr, "cannot connect to %s\n", absl::GetFlag(FLAGS_target).c_str());
    return nullptr;
  }
  return channel;
}

// The measured window's calls, outcomes and latency quantiles, as one JSON object on stdout.
void PrintResult(const std::vector<Slot>& slots, int concurrency, double seconds) {
  Histogram all;
  std::map<std::string, int64_t> codes;
  for (const Slot& s : slots) {
    all.Merge(s.hist);
    for (const auto& [k, v] : s.codes) codes[k] += v;
  }
  static const std::map<std::string, std::string> kNames = {
      {"9", "FAILED_PRECONDITION"}, {"14", "UNAVAILABLE"},   {"8", "RESOURCE_EXHAUSTED"},
      {"4", "DEADLINE_EXCEEDED"},   {"10", "ABORTED"},       {"13", "INTERNAL"},
      {"3", "INVALID_ARGUMENT"},    {"6", "ALREADY_EXISTS"}, {"7", "PERMISSION_DENIED"}};
  nlohmann::json out;
  nlohmann::json code_json = nlohmann::json::object();
  for (const auto& [k, v] : codes) {
    auto it = kNames.find(k);
    code_json[it == kNames.end() ? k : it->second] = v;
  }
  out["scenario"] = absl::GetFlag(FLAGS_scenario);
  out["concurrency"] = concurrency;
  out["seconds"] = seconds;
  out["calls"] = all.n();
  out["codes"] = code_json;
  out["throughput_per_s"] = static_cast<double>(all.n()) / seconds;
  out["mean_us"] = all.mean();
  out["p50_us"] = all.Quantile(0.50);
  out["p90_us"] = all.Quantile(0.90);
  out["p99_us"] = all.Quantile(0.99);
  out["p999_us"] = all.Quantile(0.999);
  std::printf("%s\n", out.dump().c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  auto channel = Connect();
  if (!channel) return 2;
  const int concurrency = std::max(1, absl::GetFlag(FLAGS_concurrency));
  Starter start = MakeScenario(absl::GetFlag(FLAGS_scenario), channel, concurrency);
  if (!start) {
    std::fprintf(stderr, "unknown scenario %s\n", absl::GetFlag(FLAGS_scenario).c_str());
    return 2;
  }
  if ((absl::GetFlag(FLAGS_scenario) == "hold" ||
       absl::GetFlag(FLAGS_scenario) == "record_payment") &&
      absl::GetFlag(FLAGS_ids).empty()) {
    std::fprintf(stderr, "--ids is required for this scenario\n");
    return 2;
  }

  std::vector<Slot> slots(static_cast<size_t>(concurrency));
  std::atomic<bool> stop{false};
  std::atomic<int64_t> measure_from_ns{INT64_MAX}, measure_to_ns{INT64_MAX};
  std::atomic<int> active{concurrency};
  std::mutex mu;
  std::condition_variable cv;
  const auto t0 = Clock::now();
  auto now_ns = [t0] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
  };

  std::function<void(int)> issue = [&](int slot) {
    Slot& s = slots[static_cast<size_t>(slot)];
    const int64_t begin = now_ns();
    start(slot, s.seq++, [&, slot, begin](const grpc::Status& status) {
      Slot& sl = slots[static_cast<size_t>(slot)];
      const int64_t end = now_ns();
      if (begin >= measure_from_ns.load() && end <= measure_to_ns.load()) {
        sl.hist.Add((end - begin) / 1000);
        ++sl.codes[status.ok() ? "OK" : absl::StrCat(static_cast<int>(status.error_code()))];
      }
      if (!stop.load()) {
        issue(slot);
      } else if (active.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> lock(mu);
        cv.notify_all();
      }
    });
  };
  // The measured window is fixed before the first call, so a zero warm-up counts every call
  // (the bed race counts its winners).
  const int64_t from = static_cast<int64_t>(absl::GetFlag(FLAGS_warmup_s) * 1e9);
  const int64_t to = from + static_cast<int64_t>(absl::GetFlag(FLAGS_duration_s) * 1e9);
  measure_from_ns = from;
  measure_to_ns = to;
  for (int i = 0; i < concurrency; ++i) issue(i);
  std::this_thread::sleep_for(std::chrono::nanoseconds(std::max<int64_t>(0, to - now_ns())));
  stop = true;
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::seconds(40), [&] { return active.load() == 0; });
  }
  PrintResult(slots, concurrency, static_cast<double>(to - from) / 1e9);
  // The last completion callback may still be unwinding on a gRPC thread (it holds its call's
  // ClientContext); returning from main would destroy the channel and the slots under it.
  std::_Exit(active.load() == 0 ? 0 : 3);
}
