#include "services/fees/fee_logic.h"

#include <algorithm>
#include <cassert>
#include <numeric>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace safeharbor::fees {

absl::StatusOr<absl::CivilDay> ToCivilDay(const v1::Date& d, absl::string_view field) {
  if (d.year() < 1990 || d.year() > 2200 || d.month() < 1 || d.month() > 12 || d.day() < 1 ||
      d.day() > 31) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is not a valid date"));
  }
  absl::CivilDay day(d.year(), d.month(), d.day());
  if (day.month() != d.month() || day.day() != d.day()) {  // e.g. February 30
    return absl::InvalidArgumentError(absl::StrCat(field, " is not a valid date"));
  }
  return day;
}

v1::Date ToDate(absl::CivilDay day) {
  v1::Date d;
  d.set_year(static_cast<int32_t>(day.year()));
  d.set_month(day.month());
  d.set_day(day.day());
  return d;
}

int64_t ScheduledCents(const Tiers& t, int32_t priors, int32_t offense_count) {
  const int64_t tier = priors <= 0 ? t.tier0_cents : priors == 1 ? t.tier1_cents : t.tier2_cents;
  return tier * std::max(1, offense_count);
}

absl::Status CheckOrderedAmount(int64_t scheduled, int64_t ordered, bool finding) {
  if (ordered <= 0) return absl::InvalidArgumentError("assessment.ordered_cents must be positive");
  if (ordered > scheduled) {
    return absl::InvalidArgumentError(absl::StrCat(
        "assessment.ordered_cents exceeds the scheduled amount of ", FormatCents(scheduled)));
  }
  if (ordered < scheduled && !finding) {
    return absl::InvalidArgumentError(
        "assessment.ordered_cents is below the scheduled amount: a reduction needs "
        "inability_to_pay_finding (a finding on the record that the offender cannot pay)");
  }
  const int64_t floor = (scheduled + 2) / 3;  // one-third, rounded up to the cent
  if (ordered < floor) {
    return absl::InvalidArgumentError(
        absl::StrCat("assessment.ordered_cents may be reduced by at most two-thirds: at least ",
                     FormatCents(floor), " of the scheduled ", FormatCents(scheduled)));
  }
  return absl::OkStatus();
}

absl::Status ValidatePolicy(absl::string_view fee_type, const std::vector<Share>& shares) {
  if (shares.empty()) return absl::InvalidArgumentError("policy.shares is required");
  std::set<int> kinds;
  int64_t total = 0, local = 0, commerce = 0;
  for (size_t i = 0; i < shares.size(); ++i) {
    const auto& s = shares[i];
    if (s.kind == v1::RECIPIENT_KIND_UNSPECIFIED || !v1::RecipientKind_IsValid(s.kind) ||
        !kinds.insert(s.kind).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("policy.shares[", i, "].recipient_kind must be a distinct, specified kind"));
    }
    if (s.basis_points <= 0 || s.basis_points > 10000) {
      return absl::InvalidArgumentError(
          absl::StrCat("policy.shares[", i, "].basis_points must be 1 to 10000"));
    }
    total += s.basis_points;
    if (s.kind == v1::RECIPIENT_KIND_LOCAL_PROVIDERS) local = s.basis_points;
    if (s.kind == v1::RECIPIENT_KIND_COMMERCE) commerce = s.basis_points;
  }
  if (total != 10000) {
    return absl::InvalidArgumentError(
        absl::StrCat("policy.shares must sum to 10000 basis points, not ", total));
  }
  if (fee_type == "sex_buyer") {
    if (local < 5000) {
      return absl::InvalidArgumentError(
          "policy.shares: at least 50% (5000 bp) must go to local direct service providers "
          "(RCW 9A.88.120(3))");
    }
    if (commerce != 200) {
      return absl::InvalidArgumentError(
          "policy.shares: exactly 2% (200 bp) must go to the Department of Commerce");
    }
  }
  return absl::OkStatus();
}

std::vector<int64_t> LargestRemainder(int64_t amount, const std::vector<int64_t>& weights) {
  assert(!weights.empty());
  const int64_t total_weight = std::accumulate(weights.begin(), weights.end(), int64_t{0});
  assert(total_weight > 0);
  std::vector<int64_t> parts(weights.size());
  std::vector<std::pair<__int128, size_t>> remainders;
  int64_t assigned = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    const __int128 exact = static_cast<__int128>(amount) * weights[i];
    parts[i] = static_cast<int64_t>(exact / total_weight);
    remainders.push_back({exact % total_weight, i});
    assigned += parts[i];
  }
  // Largest remainder first; ties to the earlier index (deterministic).
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (int64_t left = amount - assigned, k = 0; left > 0; --left, ++k) {
    parts[remainders[static_cast<size_t>(k) % remainders.size()].second] += 1;
  }
  assert(std::accumulate(parts.begin(), parts.end(), int64_t{0}) == amount);
  return parts;
}

std::vector<v1::Disbursement> Split(int64_t amount, const std::vector<Share>& shares,
                                    const Recipients& r) {
  std::vector<int64_t> weights;
  for (const auto& s : shares) weights.push_back(s.basis_points);
  const std::vector<int64_t> by_kind = LargestRemainder(amount, weights);
  std::vector<v1::Disbursement> out;
  auto add = [&](v1::RecipientKind kind, std::string account, int64_t cents) {
    if (cents == 0) return;
    v1::Disbursement d;
    d.set_recipient_kind(kind);
    d.set_account(std::move(account));
    d.set_amount_cents(cents);
    out.push_back(std::move(d));
  };
  auto suspense = [&](absl::string_view kind) {
    return absl::StrCat("suspense:", kind, ":", r.jurisdiction);
  };
  for (size_t i = 0; i < shares.size(); ++i) {
    const int64_t part = by_kind[i];
    switch (shares[i].kind) {
      case v1::RECIPIENT_KIND_LOCAL_PROVIDERS:
        if (r.local_providers.empty()) {
          add(shares[i].kind, suspense("local_providers"), part);
        } else {
          const auto each =
              LargestRemainder(part, std::vector<int64_t>(r.local_providers.size(), 1));
          for (size_t k = 0; k < each.size(); ++k) {
            add(shares[i].kind, absl::StrCat("org:", r.local_providers[k]), each[k]);
          }
        }
        break;
      case v1::RECIPIENT_KIND_HOSTING_AGENCY:
        add(shares[i].kind,
            r.hosting_agency.empty() ? suspense("hosting_agency")
                                     : absl::StrCat("org:", r.hosting_agency),
            part);
        break;
      case v1::RECIPIENT_KIND_COMMERCE:
        add(shares[i].kind,
            r.commerce.empty() ? suspense("commerce") : absl::StrCat("org:", r.commerce), part);
        break;
      case v1::RECIPIENT_KIND_COURT:
        add(shares[i].kind, r.court.empty() ? suspense("court") : absl::StrCat("org:", r.court),
            part);
        break;
      default:
        add(shares[i].kind, suspense("unknown"), part);
    }
  }
  return out;
}

std::string FormatCents(int64_t cents) {
  const bool negative = cents < 0;
  const uint64_t abs = negative ? 0 - static_cast<uint64_t>(cents) : static_cast<uint64_t>(cents);
  return absl::StrFormat("%s%d.%02d", negative ? "-" : "", abs / 100, abs % 100);
}

std::string CsvField(absl::string_view value) {
  if (value.find_first_of(",\"\r\n") == absl::string_view::npos) return std::string(value);
  std::string out = "\"";
  for (char c : value) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string CsvLine(const std::vector<std::string>& fields) {
  std::vector<std::string> quoted;
  for (const auto& f : fields) quoted.push_back(CsvField(f));
  return absl::StrCat(absl::StrJoin(quoted, ","), "\r\n");
}

}  // namespace safeharbor::fees
