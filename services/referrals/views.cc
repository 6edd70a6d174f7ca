#include "services/referrals/views.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "common/proto_time.h"
#include "services/referrals/lifecycle.h"

namespace safeharbor::referrals {

v1::ReferrerView ReferrerViewOf(const v1::Referral& r) {
  v1::ReferrerView v;
  v.set_id(r.id());
  v.set_stage(ReferrerStage(r.status()));
  if (v.stage() == v1::ReferrerView::STAGE_READY_FOR_HANDOFF ||
      v.stage() == v1::ReferrerView::STAGE_WITH_CHILD_WELFARE) {
    *v.mutable_handoff() = r.handoff();
  }
  *v.mutable_update_time() = r.has_referrer_view_time() ? r.referrer_view_time() : r.create_time();
  return v;
}

bool AcceptedBy(const v1::Referral& r, absl::string_view org) {
  return r.has_accepted_time() && !org.empty() && r.handoff().provider_organization_id() == org;
}

v1::ReferrerView ReferrerViewOf(const v1::Referral& lead, const std::vector<v1::Referral>& parts) {
  if (lead.needs().placement_tonight() || parts.empty()) return ReferrerViewOf(lead);
  // An accepted need cancelled since (child welfare cancels one part) is not where the youth
  // goes: the first accepted need still open, or handed off, is.
  const auto shows = [](const v1::Referral& row) {
    return row.has_accepted_time() && row.status() != v1::REFERRAL_STATUS_CANCELLED;
  };
  const v1::Referral* shown = shows(lead) ? &lead : nullptr;
  for (const std::string& id : lead.part_ids()) {
    for (const v1::Referral& part : parts) {
      if (part.id() != id || !shows(part)) continue;
      if (shown == nullptr ||
          FromProtoTime(part.accepted_time()) < FromProtoTime(shown->accepted_time())) {
        shown = &part;
      }
    }
  }
  if (shown == nullptr) return ReferrerViewOf(lead);
  v1::ReferrerView v = ReferrerViewOf(*shown);
  v.set_id(lead.id());
  return v;
}

const v1::Offer* ActiveOfferTo(const v1::Referral& r, absl::string_view provider_org) {
  for (const auto& o : r.offers()) {
    if (o.provider_organization_id() == provider_org &&
        (IsOpenOffer(o.state()) || o.state() == v1::OFFER_STATE_ACCEPTED)) {
      return &o;
    }
  }
  return nullptr;
}

v1::Referral ProviderViewOf(const v1::Referral& r, absl::string_view provider_org) {
  v1::Referral v = r;
  v.clear_offers();
  for (const auto& o : r.offers()) {
    if (o.provider_organization_id() == provider_org) *v.add_offers() = o;
  }
  v.clear_candidates();
  v.clear_routing_explanation();
  v.clear_referrer_view_time();
  v.clear_cancel_reason();  // the referrer's text, for child welfare only
  // The youth's other needs are not this provider's to know of (issue 14): its row alone.
  v.clear_parent_id();
  v.clear_part_ids();
  v.mutable_youth()->clear_identifying();
  if (!AcceptedBy(r, provider_org)) {
    // How it ended, and the free text beside it: for the provider that served the youth.
    v.clear_outcome_code();
    v.clear_outcome_reason();
    v.clear_handoff();
    v.clear_location();  // Where the youth was found: only for the provider that took her in.
  }
  for (auto& t : *v.mutable_history()) {
    if (t.actor_organization_id() != provider_org) {
      // Other parties' reasons name other providers, or are free text about the youth.
      t.clear_actor_organization_id();
      t.clear_reason();
    }
  }
  return v;
}

std::vector<std::string> ProvidersConcerned(const v1::Referral& before, const v1::Referral& after) {
  std::vector<std::string> out;
  for (int i = 0; i < after.offers_size(); ++i) {
    const v1::Offer& o = after.offers(i);
    const bool active = IsOpenOffer(o.state()) || o.state() == v1::OFFER_STATE_ACCEPTED;
    const bool changed = i >= before.offers_size() || before.offers(i).state() != o.state();
    if (active || changed) out.push_back(o.provider_organization_id());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

namespace {

// Outcome cells grouped by outcome (each group adds up to a status count), each group
// suppressed on its own; withheld cells are left out (their keys would tell a small group is
// there). A group whose status count is withheld is withheld whole: its cells would give the
// count back, and with it the status table's withheld cells.
void AddOutcomes(const std::vector<StatsCounts::OutcomeCell>& cells,
                 const std::set<v1::ReferralStatus>& hidden_statuses,
                 google::protobuf::RepeatedPtrField<v1::OutcomeCount>* out) {
  std::map<v1::ReferralStatus, std::vector<size_t>> groups;
  for (size_t i = 0; i < cells.size(); ++i) groups[cells[i].outcome].push_back(i);
  for (const auto& [outcome, members] : groups) {
    if (hidden_statuses.count(outcome) > 0) continue;
    std::vector<int64_t> counts;
    for (size_t i : members) counts.push_back(cells[i].count);
    const std::vector<bool> hidden = SuppressedCells(counts);
    for (size_t k = 0; k < members.size(); ++k) {
      if (hidden[k]) continue;
      const StatsCounts::OutcomeCell& cell = cells[members[k]];
      v1::OutcomeCount* c = out->Add();
      c->set_county_fips(cell.county_fips);
      c->set_provider_organization_id(cell.provider_org);
      c->set_outcome(cell.outcome);
      c->set_count(cell.count);
    }
  }
}

// A table over every valid value of an enum (a fixed key set, zeros included), from the counts
// read (values absent have none), and which of its cells are withheld.
template <typename Key>
struct FixedTable {
  std::vector<Key> keys;
  std::vector<int64_t> counts;
  std::vector<bool> hidden;
};

template <typename Key>
FixedTable<Key> EveryKey(const std::vector<std::pair<Key, int64_t>>& counted, int min, int max,
                         bool (*valid)(int)) {
  FixedTable<Key> t;
  for (int k = min + 1; k <= max; ++k) {  // min: the UNSPECIFIED value
    if (!valid(k)) continue;
    int64_t n = 0;
    for (const auto& [key, count] : counted) n += key == k ? count : 0;
    t.keys.push_back(static_cast<Key>(k));
    t.counts.push_back(n);
  }
  t.hidden = SuppressedCells(t.counts);
  return t;
}

// Every reason code, small cells withheld and marked.
void AddReasons(const std::vector<std::pair<v1::ReasonCode, int64_t>>& counted,
                google::protobuf::RepeatedPtrField<v1::ReasonCount>* out) {
  const auto t = EveryKey(counted, v1::ReasonCode_MIN, v1::ReasonCode_MAX, v1::ReasonCode_IsValid);
  for (size_t i = 0; i < t.keys.size(); ++i) {
    v1::ReasonCount* r = out->Add();
    r->set_code(t.keys[i]);
    r->set_suppressed(t.hidden[i]);
    r->set_count(t.hidden[i] ? 0 : t.counts[i]);
  }
}

// Every status, small cells withheld and marked; returns the withheld ones.
std::set<v1::ReferralStatus> AddStatuses(const StatsCounts& counts,
                                         v1::GetReferralStatsResponse& out) {
  const auto t = EveryKey(counts.by_status, v1::ReferralStatus_MIN, v1::ReferralStatus_MAX,
                          v1::ReferralStatus_IsValid);
  std::set<v1::ReferralStatus> withheld;
  for (size_t i = 0; i < t.keys.size(); ++i) {
    v1::StatusCount* c = out.add_by_status();
    c->set_status(t.keys[i]);
    c->set_suppressed(t.hidden[i]);
    c->set_count(t.hidden[i] ? 0 : t.counts[i]);
    if (t.hidden[i]) withheld.insert(t.keys[i]);
  }
  return withheld;
}

v1::DurationSummary DurationView(const StatsCounts::Durations& d) {
  v1::DurationSummary out;
  out.set_suppressed(d.referrals < kMinimumCell);
  if (out.suppressed()) return out;
  out.set_referrals(d.referrals);
  out.set_median_minutes(d.median_s / 60.0);
  out.set_p90_minutes(d.p90_s / 60.0);
  return out;
}

}  // namespace

v1::GetReferralStatsResponse StatsView(const StatsCounts& counts) {
  v1::GetReferralStatsResponse out;
  const auto small = [](int64_t referrals) { return referrals < kMinimumCell; };
  const std::set<v1::ReferralStatus> hidden_statuses = AddStatuses(counts, out);
  out.set_escalations_suppressed(small(counts.escalations));
  out.set_escalations(small(counts.escalations) ? 0 : counts.escalations);
  out.set_reroutes_suppressed(small(counts.rerouted_referrals));
  out.set_reroutes(small(counts.rerouted_referrals) ? 0 : counts.reroutes);
  out.set_placement_unavailable_suppressed(small(counts.placement_unavailable));
  out.set_placement_unavailable(small(counts.placement_unavailable) ? 0
                                                                    : counts.placement_unavailable);
  out.set_median_minutes_to_acceptance_suppressed(small(counts.accepted));
  out.set_median_minutes_to_acceptance(
      small(counts.accepted) ? 0 : counts.median_minutes_to_acceptance);
  AddOutcomes(counts.outcomes_by_county, hidden_statuses, out.mutable_outcomes_by_county());
  AddOutcomes(counts.outcomes_by_provider, hidden_statuses, out.mutable_outcomes_by_provider());
  *out.mutable_time_to_acceptance() = DurationView(counts.to_acceptance);
  *out.mutable_time_to_handoff() = DurationView(counts.to_handoff);
  std::vector<int64_t> months;
  for (const auto& [month, n] : counts.placement_unavailable_by_month) months.push_back(n);
  const std::vector<bool> hidden = SuppressedCells(months);
  for (size_t i = 0; i < months.size(); ++i) {
    if (hidden[i]) continue;  // Left out: the month's key would tell a small group is there.
    v1::MonthCount* m = out.add_placement_unavailable_by_month();
    m->set_month(counts.placement_unavailable_by_month[i].first);
    m->set_count(months[i]);
  }
  AddReasons(counts.declines_by_code, out.mutable_declines_by_code());
  AddReasons(counts.outcomes_by_code, out.mutable_outcomes_by_code());
  out.set_waitlisted_suppressed(small(counts.waitlisted));
  out.set_waitlisted(small(counts.waitlisted) ? 0 : counts.waitlisted);
  out.set_referrals_suppressed(small(counts.referrals));
  out.set_referrals(small(counts.referrals) ? 0 : counts.referrals);
  out.set_needs_suppressed(small(counts.needs));
  out.set_needs(small(counts.needs) ? 0 : counts.needs);
  return out;
}

std::vector<bool> SuppressedCells(const std::vector<int64_t>& counts) {
  std::vector<bool> hidden(counts.size(), false);
  int64_t hidden_sum = 0;
  bool someone_hidden = false;
  for (size_t i = 0; i < counts.size(); ++i) {
    hidden[i] = counts[i] < kMinimumCell;
    if (hidden[i]) hidden_sum += counts[i];
    someone_hidden = someone_hidden || (hidden[i] && counts[i] > 0);
  }
  // Only empty cells withheld: the total less the published cells is 0, which singles out no
  // one. Otherwise the withheld cells together must rest on kMinimumCell referrals at least.
  while (someone_hidden && hidden_sum < kMinimumCell) {
    std::optional<size_t> smallest;
    for (size_t i = 0; i < counts.size(); ++i) {
      if (!hidden[i] && (!smallest || counts[i] < counts[*smallest])) smallest = i;
    }
    if (!smallest) break;  // Everything withheld: the total is below kMinimumCell as well.
    hidden[*smallest] = true;
    hidden_sum += counts[*smallest];
  }
  return hidden;
}

}  // namespace safeharbor::referrals
