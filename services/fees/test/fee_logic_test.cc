// Pure fee arithmetic: tiers, the one-third floor, policy floors, exact splits, CSV.
#include "services/fees/fee_logic.h"

#include <gtest/gtest.h>

#include <numeric>
#include <random>

namespace safeharbor::fees {
namespace {

const Tiers kPatronizing{150000, 250000, 500000};

TEST(Schedule, TiersByPriorsAndPerOffense) {
  EXPECT_EQ(ScheduledCents(kPatronizing, 0, 1), 150000);
  EXPECT_EQ(ScheduledCents(kPatronizing, 1, 1), 250000);
  EXPECT_EQ(ScheduledCents(kPatronizing, 2, 1), 500000);
  EXPECT_EQ(ScheduledCents(kPatronizing, 7, 1), 500000);
  EXPECT_EQ(ScheduledCents({500000, 500000, 500000}, 0, 3), 1500000);  // RCW 9.68A.106
}

TEST(OrderedAmount, ReductionNeedsAFindingAndStopsAtOneThird) {
  EXPECT_TRUE(CheckOrderedAmount(150000, 150000, false).ok());
  auto no_finding = CheckOrderedAmount(150000, 100000, false);
  EXPECT_EQ(no_finding.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(no_finding.message().find("inability_to_pay_finding"), std::string::npos);
  EXPECT_TRUE(CheckOrderedAmount(150000, 50000, true).ok());  // exactly one-third
  auto too_low = CheckOrderedAmount(150000, 49999, true);
  EXPECT_NE(too_low.message().find("two-thirds"), std::string::npos);
  EXPECT_FALSE(CheckOrderedAmount(100000, 33333, true).ok());  // a third of 1000.00 is 333.34
  EXPECT_TRUE(CheckOrderedAmount(100000, 33334, true).ok());
  EXPECT_FALSE(CheckOrderedAmount(150000, 150001, false).ok());
  EXPECT_FALSE(CheckOrderedAmount(150000, 0, false).ok());
}

TEST(Policy, StatutoryFloorsForSexBuyerFees) {
  using K = v1::RecipientKind;
  const K lp = v1::RECIPIENT_KIND_LOCAL_PROVIDERS, ha = v1::RECIPIENT_KIND_HOSTING_AGENCY,
          co = v1::RECIPIENT_KIND_COMMERCE, ct = v1::RECIPIENT_KIND_COURT;
  EXPECT_TRUE(ValidatePolicy("sex_buyer", {{lp, 5000}, {ha, 4800}, {co, 200}}).ok());
  EXPECT_TRUE(ValidatePolicy("sex_buyer", {{lp, 7000}, {ha, 2800}, {co, 200}}).ok());
  EXPECT_NE(ValidatePolicy("sex_buyer", {{lp, 4900}, {ha, 4900}, {co, 200}}).message().find("50%"),
            std::string::npos);
  EXPECT_NE(ValidatePolicy("sex_buyer", {{lp, 5000}, {ha, 4700}, {co, 300}}).message().find("2%"),
            std::string::npos);
  EXPECT_NE(
      ValidatePolicy("sex_buyer", {{lp, 5000}, {ha, 4000}, {co, 200}}).message().find("10000"),
      std::string::npos);
  EXPECT_FALSE(ValidatePolicy("sex_buyer", {{lp, 5000}, {lp, 4800}, {co, 200}}).ok());
  EXPECT_TRUE(ValidatePolicy("trafficking", {{lp, 4500}, {ha, 4500}, {ct, 1000}}).ok());
}

TEST(LargestRemainder, PartsSumExactlyAndTiesAreDeterministic) {
  EXPECT_EQ(LargestRemainder(100, {1, 1, 1}), (std::vector<int64_t>{34, 33, 33}));
  EXPECT_EQ(LargestRemainder(1, {5000, 4800, 200}), (std::vector<int64_t>{1, 0, 0}));
  EXPECT_EQ(LargestRemainder(3, {5000, 4800, 200}), (std::vector<int64_t>{2, 1, 0}));
  EXPECT_EQ(LargestRemainder(0, {1, 2}), (std::vector<int64_t>{0, 0}));
  std::mt19937_64 rng(20261122);
  for (int i = 0; i < 20000; ++i) {
    const int64_t amount = static_cast<int64_t>(rng() % 100000000);
    std::vector<int64_t> w(1 + rng() % 7);
    for (auto& x : w) x = 1 + static_cast<int64_t>(rng() % 10000);
    auto parts = LargestRemainder(amount, w);
    ASSERT_EQ(std::accumulate(parts.begin(), parts.end(), int64_t{0}), amount);
    for (auto p : parts) ASSERT_GE(p, 0);
  }
}

TEST(Split, DefaultPolicyAmongProvidersAgencyAndCommerce) {
  const std::vector<Share> policy = {{v1::RECIPIENT_KIND_LOCAL_PROVIDERS, 5000},
                                     {v1::RECIPIENT_KIND_HOSTING_AGENCY, 4800},
                                     {v1::RECIPIENT_KIND_COMMERCE, 200}};
  Recipients r{{"prov-a", "prov-b", "prov-c"}, "seattle-pd", "commerce", "court", "53033"};
  auto parts = Split(150000, policy, r);  // $1,500.00
  std::map<std::string, int64_t> got;
  for (const auto& d : parts) got[d.account()] += d.amount_cents();
  EXPECT_EQ(got["org:prov-a"], 25000);
  EXPECT_EQ(got["org:prov-b"], 25000);
  EXPECT_EQ(got["org:prov-c"], 25000);
  EXPECT_EQ(got["org:seattle-pd"], 72000);
  EXPECT_EQ(got["org:commerce"], 3000);

  // One cent over three providers: the earliest (sorted) id gets it.
  auto odd = Split(100, {{v1::RECIPIENT_KIND_LOCAL_PROVIDERS, 10000}}, r);
  ASSERT_EQ(odd.size(), 3u);
  EXPECT_EQ(odd[0].amount_cents(), 34);
}

TEST(Split, NoEligibleRecipientGoesToANamedSuspenseAccount) {
  const std::vector<Share> policy = {{v1::RECIPIENT_KIND_LOCAL_PROVIDERS, 5000},
                                     {v1::RECIPIENT_KIND_HOSTING_AGENCY, 4800},
                                     {v1::RECIPIENT_KIND_COMMERCE, 200}};
  Recipients r{{}, "", "commerce", "court", "53053"};
  auto parts = Split(12345, policy, r);
  int64_t sum = 0;
  std::map<std::string, int64_t> got;
  for (const auto& d : parts) {
    sum += d.amount_cents();
    got[d.account()] += d.amount_cents();
  }
  EXPECT_EQ(sum, 12345);
  EXPECT_GT(got["suspense:local_providers:53053"], 0);
  EXPECT_GT(got["suspense:hosting_agency:53053"], 0);
}

TEST(Csv, QuotesAndFormatsCents) {
  EXPECT_EQ(FormatCents(123456), "1234.56");
  EXPECT_EQ(FormatCents(5), "0.05");
  EXPECT_EQ(FormatCents(-5), "-0.05");
  EXPECT_EQ(CsvField("plain"), "plain");
  EXPECT_EQ(CsvField("a,b"), "\"a,b\"");
  EXPECT_EQ(CsvField("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(CsvLine({"a", "b,c"}), "a,\"b,c\"\r\n");
}

}  // namespace
}  // namespace safeharbor::fees
