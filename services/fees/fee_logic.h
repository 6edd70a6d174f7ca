// Pure fee arithmetic (DOMAIN.md §6): schedule tiers, the one-third floor, policy floors, and
// splitting a payment into integer-cent parts that always sum exactly to it. No I/O.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/civil_time.h"
#include "safeharbor/fees/v1/fees.pb.h"

namespace safeharbor::fees {

absl::StatusOr<absl::CivilDay> ToCivilDay(const v1::Date& d, absl::string_view field);
v1::Date ToDate(absl::CivilDay day);

struct Tiers {
  int64_t tier0_cents, tier1_cents, tier2_cents;
};

// The scheduled amount: the tier for the number of priors (0, 1, 2+), times offense_count.
int64_t ScheduledCents(const Tiers& tiers, int32_t priors, int32_t offense_count);

// ordered ≤ scheduled; a reduction needs a finding of inability to pay on the record and may
// not go below one-third of the scheduled amount (rounded up to the cent).
absl::Status CheckOrderedAmount(int64_t scheduled_cents, int64_t ordered_cents, bool finding);

struct Share {
  v1::RecipientKind kind;
  int32_t basis_points;
};

// Shares sum to 10000 with distinct kinds; for sex-buyer fees at least 5000 to local direct
// service providers and exactly 200 to Commerce.
absl::Status ValidatePolicy(absl::string_view fee_type, const std::vector<Share>& shares);

// Splits `amount` by `weights` (largest remainder; ties go to the earlier weight). The parts
// sum exactly to amount. Weights must be positive.
std::vector<int64_t> LargestRemainder(int64_t amount, const std::vector<int64_t>& weights);

struct Recipients {
  std::vector<std::string> local_providers;  // sorted directory ids; may be empty
  std::string hosting_agency;                // may be empty
  std::string commerce;
  std::string court;
  std::string jurisdiction;
};

// Parts per recipient account: "org:<id>", or "suspense:<kind>:<jurisdiction>" when a share has
// no eligible recipient. Local providers divide their share equally. Sums exactly to amount.
std::vector<v1::Disbursement> Split(int64_t amount_cents, const std::vector<Share>& shares,
                                    const Recipients& recipients);

// "1234.56" from 123456; "-0.05" from -5.
std::string FormatCents(int64_t cents);
// RFC 4180 field quoting.
std::string CsvField(absl::string_view value);
// Joins fields into one CRLF-terminated line.
std::string CsvLine(const std::vector<std::string>& fields);

}  // namespace safeharbor::fees
