#include "common/quota.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace safeharbor {
namespace {
constexpr size_t kMaxTracked = 10000;
}  // namespace

absl::string_view QuotaLimitName(QuotaLimit limit) {
  switch (limit) {
    case QuotaLimit::kConcurrentCalls:
      return "concurrent_calls";
    case QuotaLimit::kCallRate:
      return "call_rate";
    case QuotaLimit::kOpenStreams:
      return "open_streams";
  }
  return "unknown";
}

OrgQuotas::OrgQuotas(QuotaLimits limits, const Clock* clock) : limits_(limits), clock_(clock) {}

OrgQuotas::State& OrgQuotas::StateOf(absl::string_view org) {
  auto it = orgs_.find(org);
  if (it != orgs_.end()) return it->second;
  if (orgs_.size() >= kMaxTracked) ForgetIdle();
  State& s = orgs_[std::string(org)];
  s.tokens = limits_.burst;
  s.refilled = clock_->Now();
  return s;
}

bool OrgQuotas::TakeToken(State& s) {
  if (limits_.calls_per_second <= 0) return true;
  const absl::Time now = clock_->Now();
  const double elapsed = std::max(0.0, absl::ToDoubleSeconds(now - s.refilled));
  s.tokens = std::min(std::max(limits_.burst, 1.0), s.tokens + elapsed * limits_.calls_per_second);
  s.refilled = now;
  if (s.tokens < 1.0) return false;
  s.tokens -= 1.0;
  return true;
}

void OrgQuotas::ForgetIdle() {
  // An idle organization's bucket would be full again soon; forgetting it only forgives a burst.
  std::erase_if(orgs_,
                [](const auto& kv) { return kv.second.in_flight == 0 && kv.second.streams == 0; });
}

std::optional<QuotaLimit> OrgQuotas::Take(absl::string_view org, bool stream) {
  std::lock_guard<std::mutex> lock(mu_);
  State& s = StateOf(org);
  int& used = stream ? s.streams : s.in_flight;
  const int max = stream ? limits_.max_open_streams : limits_.max_concurrent_calls;
  if (max > 0 && used >= max) {
    return stream ? QuotaLimit::kOpenStreams : QuotaLimit::kConcurrentCalls;
  }
  if (!TakeToken(s)) return QuotaLimit::kCallRate;
  ++used;
  return std::nullopt;
}

void OrgQuotas::Give(absl::string_view org, bool stream) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = orgs_.find(org);
  if (it == orgs_.end()) return;
  int& used = stream ? it->second.streams : it->second.in_flight;
  if (used > 0) --used;
}

absl::Status OrgQuotas::Refusal(QuotaLimit limit) const {
  switch (limit) {
    case QuotaLimit::kConcurrentCalls:
      return absl::ResourceExhaustedError(
          absl::StrCat("quota: your organization already has ", limits_.max_concurrent_calls,
                       " calls in progress (the per-organization limit); wait for some to finish"));
    case QuotaLimit::kCallRate:
      return absl::ResourceExhaustedError(
          absl::StrCat("quota: your organization is over its call rate (", limits_.calls_per_second,
                       " calls per second); retry with backoff"));
    case QuotaLimit::kOpenStreams:
      return absl::ResourceExhaustedError(absl::StrCat(
          "quota: your organization already holds ", limits_.max_open_streams,
          " open streams (the per-organization limit); close one before opening another"));
  }
  return absl::ResourceExhaustedError("quota exceeded");
}

size_t OrgQuotas::tracked() const {
  std::lock_guard<std::mutex> lock(mu_);
  return orgs_.size();
}

QuotaSlot& QuotaSlot::operator=(QuotaSlot&& other) noexcept {
  if (this != &other) {
    Release();
    quotas_ = other.quotas_;
    org_ = std::move(other.org_);
    kind_ = other.kind_;
    other.quotas_ = nullptr;
  }
  return *this;
}

void QuotaSlot::Release() {
  if (quotas_ == nullptr) return;
  if (kind_ == Kind::kCall) {
    quotas_->EndCall(org_);
  } else {
    quotas_->CloseStream(org_);
  }
  quotas_ = nullptr;
}

}  // namespace safeharbor
