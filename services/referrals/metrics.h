// The referral service's domain metrics, declared once. Every series exists from start-up, so
// dashboards and alerts see zeros, not gaps.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <string>

#include "safeharbor/referrals/v1/referrals.pb.h"

namespace safeharbor::referrals {

// "requested", "offered", ...: the status as a metric label.
std::string StatusLabel(v1::ReferralStatus s);
// "routine", "urgent", "emergency" (unspecified counts as routine): the urgency as a label.
const char* UrgencyLabel(int urgency);

struct ReferralMetrics {
  explicit ReferralMetrics(prometheus::Registry& registry);

  prometheus::Family<prometheus::Counter>& created;  // {urgency}
  // Issue 14: referrals received by their number of needs (stored rows), "1" to "6".
  prometheus::Family<prometheus::Counter>& created_by_needs;  // {needs}
  prometheus::Family<prometheus::Counter>& transitions;       // {to}
  prometheus::Family<prometheus::Gauge>& by_status;           // {status}
  prometheus::Histogram& time_to_acceptance;
  prometheus::Family<prometheus::Counter>& reroutes;  // {reason}
  prometheus::Counter& escalations;
  prometheus::Counter& placement_unavailable;
  prometheus::Family<prometheus::Counter>& routing_errors;  // {dependency}
  prometheus::Gauge& overdue;
  prometheus::Gauge& oldest_unrouted;
  prometheus::Counter& audit_reads;
  prometheus::Counter& placements_unrecorded;
  prometheus::Counter& refused_before_work;
  prometheus::Gauge& watchers;
};

}  // namespace safeharbor::referrals
