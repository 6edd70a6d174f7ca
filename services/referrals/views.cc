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
  *v.mutable_update_time() = r.update_time();
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
  v.mutable_youth()->clear_identifying();
  if (r.handoff().provider_organization_id() != provider_org) v.clear_handoff();
  if (r.status() == v1::REFERRAL_STATUS_ESCALATED) v.clear_handoff();
  for (auto& t : *v.mutable_history()) {
    if (t.actor_organization_id() != provider_org && t.actor_role() == "provider") {
      t.clear_actor_organization_id();  // Which other provider declined is not its business.
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

}  // namespace safeharbor::referrals
