#include "services/referrals/views.h"

#include <algorithm>

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

const v1::Offer* ActiveOfferTo(const v1::Referral& r, absl::string_view provider_org) {
  for (const auto& o : r.offers()) {
    if (o.provider_organization_id() == provider_org &&
        (o.state() == v1::OFFER_STATE_PENDING || o.state() == v1::OFFER_STATE_ACCEPTED)) {
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
  v.mutable_youth()->clear_identifying();
  const bool accepted =
      r.has_accepted_time() && r.handoff().provider_organization_id() == provider_org;
  if (!accepted) {
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
    const bool active =
        o.state() == v1::OFFER_STATE_PENDING || o.state() == v1::OFFER_STATE_ACCEPTED;
    const bool changed = i >= before.offers_size() || before.offers(i).state() != o.state();
    if (active || changed) out.push_back(o.provider_organization_id());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

v1::GetReferralStatsResponse StatsView(const StatsCounts& counts) {
  v1::GetReferralStatsResponse out;
  const auto small = [](int64_t referrals) { return referrals < kMinimumCell; };
  for (const auto& [status, n] : counts.by_status) {
    v1::StatusCount* c = out.add_by_status();
    c->set_status(status);
    c->set_suppressed(small(n));
    c->set_count(small(n) ? 0 : n);
  }
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
  return out;
}

}  // namespace safeharbor::referrals
