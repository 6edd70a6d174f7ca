// Pure: what each party may see of a referral (DESIGN.md "Non-punitive by construction").
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "safeharbor/referrals/v1/referrals.pb.h"

namespace safeharbor::referrals {

// The law-enforcement referrer's view: the hand-off place and contact while the youth is to be
// brought there (or to child welfare), then only the stage. Never outcomes or engagement.
v1::ReferrerView ReferrerViewOf(const v1::Referral& r);
// Issue 14, one referral, several needs: the referrer's view of a lead and its parts (in the
// lead's part_ids order). With a placement (the lead), or without parts, the lead's own view;
// otherwise the view of the first row accepted (the lead before its parts on a tie), under the
// lead's id, or the lead's own while none is accepted. Each row's view time moves only when its
// stage or hand-off changes, and the row shown changes only when one is first accepted (an
// acceptance is never undone), so update_time moves only when this view changes.
v1::ReferrerView ReferrerViewOf(const v1::Referral& lead, const std::vector<v1::Referral>& parts);

// Whether `org` is the party that accepted the referral (the provider whose offer it took, or
// the on-call child-welfare office that took an escalated referral itself): the one place this
// is decided (access, views, reads, webhooks, statutory filings).
bool AcceptedBy(const v1::Referral& r, absl::string_view org);

// The pending, waitlisted or accepted offer to `provider_org`, or null.
const v1::Offer* ActiveOfferTo(const v1::Referral& r, absl::string_view provider_org);

// A provider's view: only its own offer, no other candidates, no routing explanation, and the
// identifying details only if it is the provider that accepted (the caller adds them).
v1::Referral ProviderViewOf(const v1::Referral& r, absl::string_view provider_org);

// The providers a change from `before` to `after` concerns on their watch streams: those with an
// active offer afterwards, and those whose offer changed (a withdrawn offer is news too).
std::vector<std::string> ProvidersConcerned(const v1::Referral& before, const v1::Referral& after);

// The counts behind an auditor's statistics, as read.
struct StatsCounts {
  std::vector<std::pair<v1::ReferralStatus, int64_t>> by_status;
  int64_t escalations = 0;
  int64_t reroutes = 0;
  int64_t rerouted_referrals = 0;  // referrals rerouted at least once
  int64_t placement_unavailable = 0;
  int64_t accepted = 0;  // referrals with an acceptance time (the median's sample)
  double median_minutes_to_acceptance = 0;
  // Closed referrals by outcome: per county (provider empty) and per accepting provider.
  struct OutcomeCell {
    std::string county_fips;
    std::string provider_org;
    v1::ReferralStatus outcome = v1::REFERRAL_STATUS_UNSPECIFIED;
    int64_t count = 0;
  };
  std::vector<OutcomeCell> outcomes_by_county;
  std::vector<OutcomeCell> outcomes_by_provider;
  struct Durations {
    int64_t referrals = 0;
    double median_s = 0;
    double p90_s = 0;
  };
  Durations to_acceptance;
  Durations to_handoff;
  std::vector<std::pair<std::string, int64_t>> placement_unavailable_by_month;  // "2026-11"
  // Issue 14: referrals with a declined offer, by the decline's code; closed referrals
  // (completed, youth declined, could not contact) by their outcome's code; referrals with an
  // offer answered "waitlist". Codes absent have none.
  std::vector<std::pair<v1::ReasonCode, int64_t>> declines_by_code;
  std::vector<std::pair<v1::ReasonCode, int64_t>> outcomes_by_code;
  int64_t waitlisted = 0;
  // Issue 14, one referral, several needs: every count above is of rows (needs); these are the
  // referrals (lead rows) and their needs (rows).
  int64_t referrals = 0;
  int64_t needs = 0;
};

// Small cells are withheld: a figure resting on fewer than this many referrals is suppressed.
inline constexpr int64_t kMinimumCell = 11;

// The auditor's view of the counts, small cells suppressed. Tables with a fixed set of keys
// (statuses, reason codes) list every key, zeros included, so that a withheld cell (marked,
// shown as 0) does not tell that a small group exists: an empty cell is withheld alike. Tables
// whose keys are not fixed (counties, providers, months) leave withheld cells out altogether.
v1::GetReferralStatsResponse StatsView(const StatsCounts& counts);

// Which cells of one group (cells that add up to a total the reader may know) are withheld:
// those below kMinimumCell (empty ones too), and, when the withheld cells holding someone add
// up to fewer than kMinimumCell, the smallest published ones as well until they do
// (complementary suppression: the total less the published cells must never single out a small
// group). When every cell is withheld and they still add up to fewer, the total is below
// kMinimumCell too and withheld by its own rule.
std::vector<bool> SuppressedCells(const std::vector<int64_t>& counts);

}  // namespace safeharbor::referrals
