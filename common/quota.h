// Per-organization admission limits, enforced once in the shared RPC layer (rpc_kit.h): calls in
// flight (queued or running), call rate (a token bucket) and open streams. Pure bookkeeping with
// an injected clock; no I/O. A limit of 0 or less is off.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/clock.h"

namespace safeharbor {

struct QuotaLimits {
  // Calls one organization may have queued or running at once. Keep it well below the shared
  // queue (--max_queued_requests) so that no organization can fill it.
  int max_concurrent_calls = 96;
  // Sustained calls per second per organization, and the burst allowed above it.
  double calls_per_second = 20000;
  double burst = 20000;
  // Server streams (watches) one organization may hold open at once.
  int max_open_streams = 64;
};

enum class QuotaLimit { kConcurrentCalls, kCallRate, kOpenStreams };
absl::string_view QuotaLimitName(QuotaLimit limit);  // "concurrent_calls", "call_rate", ...

class OrgQuotas {
 public:
  // `clock` must outlive this object.
  OrgQuotas(QuotaLimits limits, const Clock* clock);

  const QuotaLimits& limits() const { return limits_; }

  // A unary call: takes a token and a concurrency slot. nullopt when admitted (then EndCall
  // exactly once); else the limit that refused it, and nothing is taken.
  std::optional<QuotaLimit> BeginCall(absl::string_view org) { return Take(org, false); }
  void EndCall(absl::string_view org) { Give(org, false); }
  // A stream: takes a token and a stream slot; CloseStream exactly once when admitted.
  std::optional<QuotaLimit> OpenStream(absl::string_view org) { return Take(org, true); }
  void CloseStream(absl::string_view org) { Give(org, true); }

  // RESOURCE_EXHAUSTED saying which limit and what to do.
  absl::Status Refusal(QuotaLimit limit) const;

  // Organizations with state (bounded: idle ones are forgotten when it grows).
  size_t tracked() const;

 private:
  struct State {
    int in_flight = 0;
    int streams = 0;
    double tokens = 0;
    absl::Time refilled = absl::InfinitePast();
  };
  std::optional<QuotaLimit> Take(absl::string_view org, bool stream);
  void Give(absl::string_view org, bool stream);
  State& StateOf(absl::string_view org) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool TakeToken(State& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ForgetIdle() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const QuotaLimits limits_;
  const Clock* const clock_;
  mutable std::mutex mu_;
  std::map<std::string, State, std::less<>> orgs_ ABSL_GUARDED_BY(mu_);
};

// A slot taken from OrgQuotas (a call or a stream), given back when destroyed. Move-only.
class QuotaSlot {
 public:
  enum class Kind { kCall, kStream };
  QuotaSlot() = default;
  QuotaSlot(OrgQuotas* quotas, std::string org, Kind kind)
      : quotas_(quotas), org_(std::move(org)), kind_(kind) {}
  QuotaSlot(QuotaSlot&& other) noexcept { *this = std::move(other); }
  QuotaSlot& operator=(QuotaSlot&& other) noexcept;
  QuotaSlot(const QuotaSlot&) = delete;
  QuotaSlot& operator=(const QuotaSlot&) = delete;
  ~QuotaSlot() { Release(); }

  void Release();
  bool held() const { return quotas_ != nullptr; }

 private:
  OrgQuotas* quotas_ = nullptr;
  std::string org_;
  Kind kind_ = Kind::kCall;
};

}  // namespace safeharbor
