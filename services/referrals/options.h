// How the referral service behaves: deadlines, holds, routing retries, timers.
#pragma once

#include <string>

#include "absl/time/time.h"
#include "common/watch_hub.h"
#include "services/referrals/consent.h"
#include "services/referrals/lifecycle.h"
#include "services/referrals/webhooks.h"

namespace safeharbor::referrals {

inline constexpr int kMaxRoutingWorkers = 32;

struct ReferralOptions {
  DeadlinePolicy deadlines;
  // A held bed stays held this long past the acceptance deadline (the beds service caps a new
  // hold at 4 hours); accepting extends it to the hand-off deadline.
  absl::Duration hold_margin = absl::Hours(3);
  // From acceptance to the hand-off deadline (issue 14): an accepted placement's bed hold is
  // extended to it, the provider is reminded before it (webhooks read this value), and past it
  // the county's child-welfare office is told. At most the beds service's
  // --max_hold_extension_s (8 hours by default).
  absl::Duration handoff_deadline = absl::Hours(4);
  // Calls to the beds service extending one hold, outages included, before it is given up (and
  // alerted as lost); waits between them double from `tick` up to 5 minutes.
  int hold_extension_attempts = 12;
  // Routing attempts failing for another reason than an outage before the referral is
  // escalated instead.
  int max_routing_failures = 5;
  // A routing claim; another replica takes the referral over if this one dies mid-routing.
  absl::Duration routing_lease = absl::Seconds(30);
  // Wait before routing again after the directory or beds service failed to answer.
  absl::Duration routing_retry = absl::Seconds(2);
  // How often timers (deadlines, unrouted referrals, pending placements) are checked.
  absl::Duration tick = absl::Seconds(1);
  absl::Duration gauge_interval = absl::Seconds(15);
  // Offers past their deadline by more than this count as overdue (the alert's metric).
  absl::Duration overdue_grace = absl::Minutes(2);
  // Per tick, at most this many deadlines handled (and referrals routed by a pass run by hand).
  int batch = 20;
  // Threads that route waiting referrals (each claims the next with SKIP LOCKED), 1 to
  // kMaxRoutingWorkers. Each holds a PostgreSQL connection only while it reads or writes, and
  // calls the directory and beds service meanwhile.
  int routing_workers = 4;
  std::string key_namespace = "referrals";
  WatchOptions watch;
  WebhookOptions webhooks;
  // Consent to identifying details and how long they are kept (retention.h).
  ConsentPolicy consent;
  // Issue 14, advocate response (branch advocate; advocate.h): an urgent or emergency advocacy
  // referral's advocate is due with the youth this long after the call (the referral's
  // creation); past it with no arrival recorded, the county's on-call office is told.
  absl::Duration advocate_response_target = absl::Seconds(5400);
  // Branch escalation (issue 14): an escalated placement is checked for a bed routing could
  // offer at most this often (the on-call office is told once per appearance), at most `batch`
  // referrals a tick.
  absl::Duration escalation_bed_check = absl::Seconds(60);
};

// The options as the service uses them: the webhooks' hand-off window is the one hand-off
// deadline.
inline ReferralOptions Resolved(ReferralOptions o) {
  o.webhooks.handoff_window = o.handoff_deadline;
  return o;
}

}  // namespace safeharbor::referrals
