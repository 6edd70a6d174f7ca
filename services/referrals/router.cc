#include "services/referrals/router.h"

#include <map>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "services/referrals/advocate.h"
#include "services/referrals/escalation.h"
#include "services/referrals/referral_store.h"
#include "services/referrals/requests.h"
#include "services/referrals/routing.h"

namespace safeharbor::referrals {

bool IsOutage(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded ||
         s.code() == absl::StatusCode::kResourceExhausted;
}

namespace {

std::string Key(const v1::Candidate& c) {
  return absl::StrCat(c.provider_organization_id(), "/", c.service_id(), "/", c.facility_id());
}

std::string Key(const Option& o) {
  return absl::StrCat(o.provider_organization_id, "/", o.service_id, "/", o.facility_id);
}

}  // namespace

struct Router::Plan {
  std::vector<v1::Candidate> ranked;
  std::vector<v1::Candidate> chosen;
  std::vector<v1::Handoff> handoffs;
  std::string hold_id;
  absl::Duration window;
  bool asked_before = false;     // some providers were left out as already asked
  bool pending_written = false;  // a HoldBed was recorded as about to be made
  int64_t claim = 0;             // the routing claim's fencing token
};

Router::Router(PgPool* pg, const Clock* clock, Network* network, ReferralChanges* changes,
               ReferralMetrics* metrics, const ReferralOptions& options)
    : pg_(pg),
      clock_(clock),
      network_(network),
      changes_(changes),
      metrics_(metrics),
      options_(options) {}

absl::StatusOr<v1::Referral> Router::Load(const std::string& id) {
  v1::Referral r;
  SH_RETURN_IF_ERROR(pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        SH_ASSIGN_OR_RETURN(r, ReferralStore::Get(tx, id, false));
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true));
  return r;
}

absl::StatusOr<bool> Router::GiveUpRouting(const std::string& id, const absl::Status& error,
                                           int64_t claim) {
  int32_t failures = 0;
  bool mine = false;
  SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) -> absl::Status {
    SH_ASSIGN_OR_RETURN(mine, ReferralStore::StillClaimed(tx, id, claim));
    if (!mine) return absl::OkStatus();  // Another worker routes it: not this one's failure.
    SH_ASSIGN_OR_RETURN(failures, ReferralStore::CountRoutingFailure(tx, id));
    return ReferralStore::SetRouteAfter(tx, id, clock_->Now() + options_.routing_retry);
  }));
  if (!mine) return false;
  metrics_->routing_errors.Add({{"dependency", "other"}}).Increment();
  if (failures < options_.max_routing_failures) return false;
  // Not an outage and not going away: the youth goes to child welfare rather than waiting.
  SH_ASSIGN_OR_RETURN(const v1::Referral r, Load(id));
  if (r.status() != v1::REFERRAL_STATUS_REQUESTED) return false;
  log::Error(
      "routing_failed_repeatedly",
      {{"referral_id", id}, {"failures", absl::StrCat(failures)}, {"error", error.message()}});
  return Escalate(r, r.needs().placement_tonight(),
                  absl::StrCat("routing failed ", failures, " times (", error.message(), ")"),
                  claim);
}

absl::StatusOr<std::vector<Option>> Router::FreshOptions(const v1::Referral& r, bool placement) {
  auto options = placement ? network_->FindBeds(r) : network_->FindServices(r, clock_->Now());
  if (!options.ok()) {
    metrics_->routing_errors.Add({{"dependency", placement ? "beds" : "directory"}}).Increment();
    return options.status();
  }
  // A provider that declined or let its offer lapse is not asked again for this referral, nor
  // one that answered "waitlist until" (its offer stays open to it meanwhile; issue 14) — until
  // the on-call office routes it again: then NotAskedAgain says who is (escalation.h).
  const std::set<std::string> tried = NotAskedAgain(r);
  std::vector<Option> fresh;
  std::vector<std::string> orgs;
  for (Option& o : *options) {
    if (tried.count(o.provider_organization_id) > 0) continue;
    orgs.push_back(o.provider_organization_id);
    fresh.push_back(std::move(o));
  }
  std::map<std::string, int32_t> load;
  SH_RETURN_IF_ERROR(pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        SH_ASSIGN_OR_RETURN(load, ReferralStore::ProviderLoad(tx, orgs));
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true));
  for (Option& o : fresh) o.active_referrals = load[o.provider_organization_id];
  return fresh;
}

absl::Status Router::Choose(const v1::Referral& r, bool placement, const std::vector<Option>& fresh,
                            Plan& plan) {
  std::map<std::string, const Option*> by_key;
  for (const Option& o : fresh) by_key[Key(o)] = &o;
  // The hold must not outlive what the beds service allows (4 hours).
  const absl::Duration hold_ttl = std::min(plan.window + options_.hold_margin, absl::Hours(4));
  int bed_conflicts = 0;
  for (const v1::Candidate& c : plan.ranked) {
    if (static_cast<int>(plan.chosen.size()) >= OffersAtOnce(placement)) break;
    if (placement && bed_conflicts >= 5) break;  // Bounded: beds rarely vanish after a search.
    // Where to bring the youth, before any bed is held: a directory outage holds nothing.
    auto h = network_->HandoffFor(*by_key[Key(c)]);
    if (!h.ok()) {
      metrics_->routing_errors.Add({{"dependency", "directory"}}).Increment();
      return h.status();
    }
    if (placement) {
      // Fresh for every attempt (a replay must never return a hold released since), and written
      // down before the call: a hold taken just before a crash is found and released.
      const std::string request_id = NewId(absl::StrCat("route-", r.id()));
      plan.pending_written = true;
      SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) {
        return ReferralStore::SetPendingHold(
            tx, r.id(),
            absl::StrCat(request_id, "|", c.facility_id(), "|", int{c.bed_type()}, "|",
                         absl::ToInt64Seconds(hold_ttl)),
            plan.claim);
      }));
      auto hold = network_->HoldBed(request_id, c, r.id(), r.referrer_organization_id(), hold_ttl);
      if (!hold.ok() && !IsOutage(hold.status())) {
        // Refused for good: nothing is held, so there is nothing to recover (a replay of the
        // request on the next attempt could take a bed freed since, for nobody).
        SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) {
          return ReferralStore::SetPendingHold(tx, r.id(), std::nullopt, plan.claim);
        }));
        plan.pending_written = false;
      }
      if (hold.status().code() == absl::StatusCode::kFailedPrecondition) {
        ++bed_conflicts;  // Taken since the search: try the next.
        continue;
      }
      if (hold.status().code() == absl::StatusCode::kResourceExhausted) {
        // The referring agency holds as many beds as it may: routed again later, not an outage.
        log::Warn("bed_hold_cap_reached", {{"referral_id", r.id()}});
        return hold.status();
      }
      if (!hold.ok()) {
        metrics_->routing_errors.Add({{"dependency", "beds"}}).Increment();
        return hold.status();  // The pending hold is recovered on the next attempt.
      }
      plan.hold_id = *hold;
    }
    plan.chosen.push_back(c);
    plan.handoffs.push_back(*std::move(h));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> Router::Route(const v1::Referral& r,
                                   const std::optional<std::string>& pending_hold, int64_t claim) {
  if (r.status() != v1::REFERRAL_STATUS_REQUESTED) return false;
  if (pending_hold) {
    SH_RETURN_IF_ERROR(
        RecoverPendingHold(r.id(), r.referrer_organization_id(), *pending_hold, claim));
  }
  const bool placement = r.needs().placement_tonight();
  SH_ASSIGN_OR_RETURN(const std::vector<Option> fresh, FreshOptions(r, placement));
  Plan plan;
  plan.claim = claim;
  plan.asked_before = r.offers_size() > 0;
  RoutingRequest request{&r.youth(), &r.safety(), r.county_fips(), r.urgency(),
                         HasAdvocateTarget(r)};
  plan.ranked = Rank(request, fresh);
  plan.window = AcceptanceWindow(r.urgency(), options_.deadlines);
  SH_RETURN_IF_ERROR(Choose(r, placement, fresh, plan));
  if (plan.chosen.empty()) {
    std::string why =
        plan.ranked.empty()
            ? absl::StrCat("no eligible ", placement ? "placement with a free bed" : "service",
                           " within reach", plan.asked_before ? " that was not already asked" : "")
            : "every candidate bed was taken before it could be held";
    return Escalate(r, placement, why, claim);
  }
  return Offer(r, plan);
}

absl::StatusOr<bool> Router::Offer(const v1::Referral& r, const Plan& plan) {
  bool stale = false;
  const std::string& id = r.id();
  auto done = changes_->Apply(
      nullptr, id, "route",
      [&](PgTx& tx, v1::Referral& cur, Actor, absl::Time at, Change& ch) -> absl::Status {
        SH_ASSIGN_OR_RETURN(const bool mine, ReferralStore::StillClaimed(tx, id, plan.claim));
        stale = !mine || cur.status() != v1::REFERRAL_STATUS_REQUESTED || cur.etag() != r.etag();
        if (mine && plan.pending_written) {
          SH_RETURN_IF_ERROR(ReferralStore::SetPendingHold(tx, id, std::nullopt, plan.claim));
        }
        if (stale) {
          // Cancelled, or claimed or routed by another worker meanwhile (which may have been
          // given the very same hold by its request id: then it is that worker's to keep).
          if (!plan.hold_id.empty() && cur.bed_hold_id() != plan.hold_id) {
            SH_RETURN_IF_ERROR(ReferralStore::QueueHoldRelease(tx, plan.hold_id, id, at));
          }
          ch.noop = true;  // The referral stays as it is; the outbox row commits.
          return absl::OkStatus();
        }
        cur.clear_candidates();
        for (const auto& c : plan.ranked) *cur.add_candidates() = c;
        const absl::Time deadline = at + plan.window;
        std::vector<std::string> names;
        for (size_t i = 0; i < plan.chosen.size(); ++i) {
          const v1::Candidate& c = plan.chosen[i];
          v1::Offer* o = cur.add_offers();
          o->set_provider_organization_id(c.provider_organization_id());
          o->set_service_id(c.service_id());
          o->set_facility_id(c.facility_id());
          o->set_bed_type(c.bed_type());  // a fresh hold of it, if accepted from the waitlist
          o->set_state(v1::OFFER_STATE_PENDING);
          *o->mutable_offered_time() = ToProtoTime(at);
          *o->mutable_respond_by() = ToProtoTime(deadline);
          *o->mutable_handoff() = plan.handoffs[i];
          names.push_back(absl::StrCat(c.provider_organization_id(), " (rank ", c.rank(), ": ",
                                       c.explanation(), ")"));
        }
        cur.set_bed_hold_id(plan.hold_id);
        *cur.mutable_acceptance_deadline() = ToProtoTime(deadline);
        cur.set_routing_explanation(absl::StrCat("offered to ", absl::StrJoin(names, "; "), " of ",
                                                 plan.ranked.size(), " eligible candidates"));
        ch.to = v1::REFERRAL_STATUS_OFFERED;
        ch.reason = cur.routing_explanation();
        return absl::OkStatus();
      });
  if (!done.ok()) return done.status();  // The pending hold is recovered on the next attempt.
  if (stale) {
    (void)changes_->ReleaseQueuedHolds(options_.batch);
    return false;
  }
  return true;
}

absl::Status Router::RecoverPendingHold(const std::string& id, const std::string& for_org,
                                        const std::string& pending, int64_t claim) {
  std::vector<std::string> parts = absl::StrSplit(pending, '|');
  int bed_type = 0;
  int64_t ttl_s = 0;
  if (parts.size() == 4 && absl::SimpleAtoi(parts[2], &bed_type) &&
      absl::SimpleAtoi(parts[3], &ttl_s)) {
    // Replaying the request returns the hold if it was taken; it was never offered: release it.
    v1::Candidate c;
    c.set_facility_id(parts[1]);
    c.set_bed_type(static_cast<beds::v1::BedType>(bed_type));
    auto hold = network_->HoldBed(parts[0], c, id, for_org, absl::Seconds(ttl_s));  // Same request.
    if (hold.ok()) {
      if (auto s = network_->ReleaseHold(*hold); !s.ok() && IsOutage(s)) return s;
      log::Warn("orphan_hold_released", {{"referral_id", id}, {"hold_id", *hold}});
    } else if (IsOutage(hold.status())) {
      return hold.status();
    }
  }
  return pg_->Transact(
      [&](PgTx& tx) { return ReferralStore::SetPendingHold(tx, id, std::nullopt, claim); });
}

absl::StatusOr<bool> Router::Escalate(const v1::Referral& r, bool placement_needed,
                                      const std::string& why, int64_t claim) {
  // Never detention: the county's on-call child-welfare office takes the referral over; one the
  // office routed again goes back to that office (issue 14), whoever is on call now.
  auto office = r.has_escalation_office() ? absl::StatusOr<v1::Handoff>(r.escalation_office())
                                          : network_->OnCallOffice(r.county_fips());
  if (!office.ok()) {
    metrics_->routing_errors.Add({{"dependency", "directory"}}).Increment();
    return office.status();
  }
  bool stale = false;
  const Mutation escalate = [&](PgTx& tx, v1::Referral& cur, Actor, absl::Time,
                                Change& ch) -> absl::Status {
    SH_ASSIGN_OR_RETURN(const bool mine, ReferralStore::StillClaimed(tx, r.id(), claim));
    stale = !mine || cur.status() != v1::REFERRAL_STATUS_REQUESTED || cur.etag() != r.etag();
    if (stale) {
      ch.noop = true;
      return absl::OkStatus();
    }
    // A waitlisted offer ends here (issue 14): the on-call office carries the referral on and
    // sees the provider's answer in the offers.
    CloseOffers(cur, v1::OFFER_STATE_WITHDRAWN, &ch.holds_to_release);
    *cur.mutable_handoff() = *office;
    cur.set_placement_unavailable(placement_needed);
    cur.set_routing_explanation(
        absl::StrCat(why, "; escalated to ", office->provider_name(), " (on call)"));
    ch.to = v1::REFERRAL_STATUS_ESCALATED;
    ch.reason = cur.routing_explanation();
    return absl::OkStatus();
  };
  SH_RETURN_IF_ERROR(changes_->Apply(nullptr, r.id(), "escalate", escalate).status());
  if (stale) return false;
  metrics_->escalations.Increment();
  if (placement_needed) metrics_->placement_unavailable.Increment();
  log::Warn("referral_escalated", {{"referral_id", r.id()},
                                   {"county_fips", r.county_fips()},
                                   {"office", office->provider_organization_id()},
                                   {"why", why}});
  return true;
}

}  // namespace safeharbor::referrals
