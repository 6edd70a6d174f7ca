#include "services/referrals/metrics.h"

#include "absl/strings/ascii.h"
#include "absl/strings/strip.h"
#include "services/referrals/requests.h"

namespace safeharbor::referrals {
namespace {

prometheus::Family<prometheus::Counter>& Counter(prometheus::Registry& r, const char* name,
                                                 const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}

prometheus::Family<prometheus::Gauge>& Gauge(prometheus::Registry& r, const char* name,
                                             const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r);
}

}  // namespace

const char* UrgencyLabel(int urgency) {
  switch (urgency) {
    case v1::URGENCY_EMERGENCY:
      return "emergency";
    case v1::URGENCY_URGENT:
      return "urgent";
    default:
      return "routine";
  }
}

std::string StatusLabel(v1::ReferralStatus s) {
  return absl::AsciiStrToLower(absl::StripPrefix(v1::ReferralStatus_Name(s), "REFERRAL_STATUS_"));
}

ReferralMetrics::ReferralMetrics(prometheus::Registry& r)
    : created(Counter(r, "safeharbor_referrals_created_total", "Referrals received, by urgency.")),
      created_by_needs(Counter(r, "safeharbor_referrals_created_by_needs_total",
                               "Referrals received, by their number of needs (a bed tonight and "
                               "each service category: one row each, routed on its own).")),
      transitions(Counter(r, "safeharbor_referrals_transitions_total",
                          "Referral status changes, by the status entered.")),
      by_status(
          Gauge(r, "safeharbor_referrals_by_status", "Referrals by current status (all time).")),
      time_to_acceptance(
          prometheus::BuildHistogram()
              .Name("safeharbor_referrals_time_to_acceptance_seconds")
              .Help("From intake to a provider's acceptance.")
              .Register(r)
              .Add({}, prometheus::Histogram::BucketBoundaries{30, 60, 120, 300, 600, 900, 1200,
                                                               1800, 2700, 3600, 7200})),
      reroutes(Counter(r, "safeharbor_referrals_reroutes_total",
                       "Referrals sent back to routing: declined (or waitlisted) by every offered "
                       "provider, or no answer by the deadline.")),
      escalations(Counter(r, "safeharbor_referrals_escalations_total",
                          "Referrals escalated to the county's on-call child-welfare office.")
                      .Add({})),
      placement_unavailable(Counter(r, "safeharbor_referrals_placement_unavailable_total",
                                    "Referred for a placement when no bed could be held.")
                                .Add({})),
      routing_errors(Counter(r, "safeharbor_referrals_routing_errors_total",
                             "Routing attempts put off because a dependency did not answer.")),
      overdue(Gauge(r, "safeharbor_referrals_offers_overdue",
                    "Referrals still offered more than the grace period past their acceptance "
                    "deadline (the deadline timer is not running).")
                  .Add({})),
      oldest_unrouted(Gauge(r, "safeharbor_referrals_oldest_unrouted_seconds",
                            "Age of the oldest referral waiting to be routed.")
                          .Add({})),
      audit_reads(Counter(r, "safeharbor_referrals_youth_data_reads_total",
                          "Audited reads of referral youth data.")
                      .Add({})),
      placements_unrecorded(
          Counter(r, "safeharbor_referrals_placements_unrecorded_total",
                  "Hand-offs whose bed hold had lapsed, so the beds service could not record the "
                  "placement: the provider's census must be corrected.")
              .Add({})),
      refused_before_work(Counter(r, "safeharbor_referrals_changes_refused_early_total",
                                  "Changes refused by the lifecycle before any work was done "
                                  "(the same path whatever state the referral is in).")
                              .Add({})),
      watchers(Gauge(r, "safeharbor_referrals_watchers", "Open WatchReferrals streams.").Add({})) {
  for (int u = v1::URGENCY_ROUTINE; u <= v1::URGENCY_EMERGENCY; ++u) {
    created.Add({{"urgency", UrgencyLabel(u)}});
  }
  for (int n = 1; n <= kMaxNeeds; ++n) created_by_needs.Add({{"needs", std::to_string(n)}});
  for (const char* why : {"declined", "deadline"}) reroutes.Add({{"reason", why}});
  for (const char* d : {"directory", "beds", "other"}) routing_errors.Add({{"dependency", d}});
  for (int s = v1::REFERRAL_STATUS_REQUESTED; s <= v1::REFERRAL_STATUS_ESCALATED; ++s) {
    const std::string name = StatusLabel(static_cast<v1::ReferralStatus>(s));
    transitions.Add({{"to", name}});
    by_status.Add({{"status", name}});
  }
}

}  // namespace safeharbor::referrals
