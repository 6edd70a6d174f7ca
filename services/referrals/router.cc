// Routing and the durable timers of the referral service: offers past their deadline, referrals
// waiting for routing, placements waiting for the beds service. Everything here runs on the
// router thread (or from a test), never on an RPC thread, and each step is claimed in
// PostgreSQL so that it happens once across replicas.
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "services/referrals/referral_service.h"
#include "services/referrals/referral_store.h"

namespace safeharbor::referrals {
namespace {

bool IsOutage(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded ||
         s.code() == absl::StatusCode::kResourceExhausted;
}

std::string Key(const v1::Candidate& c) {
  return absl::StrCat(c.provider_organization_id(), "/", c.service_id(), "/", c.facility_id());
}

std::string Key(const Option& o) {
  return absl::StrCat(o.provider_organization_id, "/", o.service_id, "/", o.facility_id);
}

}  // namespace

void ReferralServiceImpl::RouterLoop() {
  absl::Time next_gauges = absl::InfinitePast();
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(bg_mu_);
      if (bg_cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.tick),
                          [this] { return bg_stop_ || bg_wake_; }) &&
          bg_stop_) {
        return;
      }
      bg_wake_ = false;
    }
    if (auto n = RunTimers(); !n.ok()) {
      log::Warn("referral_timers_failed", {{"error", n.status().message()}});
    }
    if (absl::Now() >= next_gauges) {
      if (auto s = RefreshGauges(); !s.ok()) {
        log::Warn("referral_gauges_failed", {{"error", s.message()}});
      }
      next_gauges = absl::Now() + options_.gauge_interval;
    }
  }
}

absl::StatusOr<int> ReferralServiceImpl::RunTimers() {
  if (auto n = ExpireDueOffers(); !n.ok()) return n.status();
  int routed = 0;
  // One claim at a time: each referral's lease starts when its routing does.
  for (int i = 0; i < options_.batch; ++i) {
    std::vector<std::string> claimed;
    absl::Status st = pg_->Transact([&](PgTx& tx) -> absl::Status {
      auto ids = ReferralStore::ClaimForRouting(tx, clock_->Now(), options_.routing_lease, 1);
      if (!ids.ok()) return ids.status();
      claimed = *std::move(ids);
      return absl::OkStatus();
    });
    if (!st.ok()) return st;
    if (claimed.empty()) break;
    const std::string& id = claimed.front();
    auto done = Route(id);
    if (done.ok()) {
      routed += *done ? 1 : 0;
      continue;
    }
    log::Warn("routing_deferred", {{"referral_id", id}, {"error", done.status().message()}});
    if (IsOutage(done.status())) {
      // A dependency is down: try again shortly (not after the lease), and stop this pass.
      (void)pg_->Transact([&](PgTx& tx) {
        return ReferralStore::SetRouteAfter(tx, id, clock_->Now() + options_.routing_retry);
      });
      break;
    }
    if (auto escalated = GiveUpRouting(id, done.status()); escalated.ok() && *escalated) ++routed;
  }
  if (auto s = ReleaseQueuedHolds(); !s.ok()) {
    log::Warn("hold_release_deferred", {{"error", s.message()}});
  }
  if (auto s = ConfirmPendingPlacements(); !s.ok()) {
    log::Warn("placement_confirmation_deferred", {{"error", s.message()}});
  }
  return routed;
}

absl::StatusOr<bool> ReferralServiceImpl::GiveUpRouting(const std::string& id,
                                                        const absl::Status& error) {
  int32_t failures = 0;
  absl::Status st = pg_->Transact([&](PgTx& tx) -> absl::Status {
    auto n = ReferralStore::CountRoutingFailure(tx, id);
    if (!n.ok()) return n.status();
    failures = *n;
    return ReferralStore::SetRouteAfter(tx, id, clock_->Now() + options_.routing_retry);
  });
  if (!st.ok()) return st;
  routing_errors_.Add({{"dependency", "other"}}).Increment();
  if (failures < options_.max_routing_failures) return false;
  // Not an outage and not going away: the youth goes to child welfare rather than waiting.
  auto loaded = Load(id);
  if (!loaded.ok()) return loaded.status();
  const v1::Referral& r = *loaded;
  if (r.status() != v1::REFERRAL_STATUS_REQUESTED) return false;
  log::Error(
      "routing_failed_repeatedly",
      {{"referral_id", id}, {"failures", absl::StrCat(failures)}, {"error", error.message()}});
  return Escalate(r, r.needs().placement_tonight(),
                  absl::StrCat("routing failed ", failures, " times (", error.message(), ")"));
}

absl::Status ReferralServiceImpl::ReleaseQueuedHolds() {
  std::vector<std::string> holds;
  absl::Status st = pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        auto h = ReferralStore::HoldsToRelease(tx, options_.batch);
        if (!h.ok()) return h.status();
        holds = *std::move(h);
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true);
  if (!st.ok()) return st;
  for (const std::string& hold : holds) {
    if (auto s = ReleaseHold(hold); !s.ok()) return s;  // Beds down: next tick.
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ReferralServiceImpl::ExpireDueOffers() {
  std::vector<std::string> due;
  absl::Status st = pg_->Transact([&](PgTx& tx) -> absl::Status {
    auto ids = ReferralStore::DueOffers(tx, clock_->Now(), options_.batch);
    if (!ids.ok()) return ids.status();
    due = *std::move(ids);
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  int expired = 0;
  for (const std::string& id : due) {
    bool rerouted = false;
    auto r = Mutate(
        system_, id, "deadline",
        [&](PgTx&, v1::Referral& r, Actor, absl::Time now, Change& ch) -> absl::Status {
          rerouted = false;
          if (r.status() != v1::REFERRAL_STATUS_OFFERED || !r.has_acceptance_deadline() ||
              FromProtoTime(r.acceptance_deadline()) > now) {
            ch.noop = true;  // Accepted, declined or handled by another replica meanwhile.
            return absl::OkStatus();
          }
          std::vector<std::string> late;
          for (auto& o : *r.mutable_offers()) {
            if (o.state() == v1::OFFER_STATE_PENDING) {
              o.set_state(v1::OFFER_STATE_EXPIRED);
              late.push_back(o.provider_organization_id());
            }
          }
          if (!r.bed_hold_id().empty()) ch.holds_to_release.push_back(r.bed_hold_id());
          r.clear_bed_hold_id();
          r.clear_acceptance_deadline();
          r.set_reroutes(r.reroutes() + 1);
          ch.to = v1::REFERRAL_STATUS_REQUESTED;
          ch.reason = absl::StrCat("no answer by the deadline from ", absl::StrJoin(late, ", "));
          rerouted = true;
          return absl::OkStatus();
        },
        /*internal=*/true);
    if (!r.ok()) {
      log::Warn("deadline_handling_failed", {{"referral_id", id}, {"error", r.status().message()}});
      continue;
    }
    if (rerouted) {
      ++expired;
      reroutes_.Add({{"reason", "deadline"}}).Increment();
    }
  }
  return expired;
}

absl::StatusOr<v1::Referral> ReferralServiceImpl::Load(const std::string& id) {
  v1::Referral r;
  absl::Status st = pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        auto got = ReferralStore::Get(tx, id, false);
        if (!got.ok()) return got.status();
        r = *std::move(got);
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true);
  if (!st.ok()) return st;
  return r;
}

absl::StatusOr<bool> ReferralServiceImpl::Route(const std::string& id) {
  auto loaded = Load(id);
  if (!loaded.ok()) return loaded.status();
  const v1::Referral& r = *loaded;
  if (r.status() != v1::REFERRAL_STATUS_REQUESTED) return false;
  absl::Status st;
  if (auto s = RecoverPendingHold(id); !s.ok()) return s;
  const bool placement = r.needs().placement_tonight();
  const absl::Time now = clock_->Now();
  auto options = placement ? network_->FindBeds(r) : network_->FindServices(r, now);
  if (!options.ok()) {
    routing_errors_.Add({{"dependency", placement ? "beds" : "directory"}}).Increment();
    return options.status();
  }
  // A provider that declined or let its offer lapse is not asked again for this referral.
  std::set<std::string> tried;
  for (const auto& o : r.offers()) tried.insert(o.provider_organization_id());
  std::vector<Option> fresh;
  std::vector<std::string> orgs;
  for (Option& o : *options) {
    if (tried.count(o.provider_organization_id) > 0) continue;
    orgs.push_back(o.provider_organization_id);
    fresh.push_back(std::move(o));
  }
  std::map<std::string, int32_t> load;
  st = pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        auto l = ReferralStore::ProviderLoad(tx, orgs);
        if (!l.ok()) return l.status();
        load = *std::move(l);
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true);
  if (!st.ok()) return st;
  std::map<std::string, const Option*> by_key;
  for (Option& o : fresh) {
    o.active_referrals = load[o.provider_organization_id];
    by_key[Key(o)] = &o;
  }
  RoutingRequest request{&r.youth(), &r.safety(), r.county_fips(), r.urgency()};
  const std::vector<v1::Candidate> ranked = Rank(request, fresh);
  const absl::Duration window = AcceptanceWindow(r.urgency(), options_.deadlines);

  // The hold must not outlive what the beds service allows (4 hours).
  const absl::Duration hold_ttl = std::min(window + options_.hold_margin, absl::Hours(4));
  std::vector<v1::Candidate> chosen;
  std::vector<v1::Handoff> handoffs;
  std::string hold_id;
  int bed_conflicts = 0;
  for (const v1::Candidate& c : ranked) {
    if (static_cast<int>(chosen.size()) >= OffersAtOnce(placement)) break;
    if (placement && bed_conflicts >= 5) break;  // Bounded: beds rarely vanish after a search.
    // Where to bring the youth, before any bed is held: a directory outage holds nothing.
    auto h = network_->HandoffFor(*by_key[Key(c)]);
    if (!h.ok()) {
      routing_errors_.Add({{"dependency", "directory"}}).Increment();
      return h.status();
    }
    if (placement) {
      // Fresh for every attempt (a replay must never return a hold released since), and written
      // down before the call: a hold taken just before a crash is found and released.
      const std::string request_id = NewId(absl::StrCat("route-", id));
      st = pg_->Transact([&](PgTx& tx) {
        return ReferralStore::SetPendingHold(
            tx, id,
            absl::StrCat(request_id, "|", c.facility_id(), "|", int{c.bed_type()}, "|",
                         absl::ToInt64Seconds(hold_ttl)));
      });
      if (!st.ok()) return st;
      auto hold = network_->HoldBed(request_id, c, id, hold_ttl);
      if (hold.status().code() == absl::StatusCode::kFailedPrecondition) {
        ++bed_conflicts;  // Taken since the search: try the next.
        continue;
      }
      if (!hold.ok()) {
        routing_errors_.Add({{"dependency", "beds"}}).Increment();
        return hold.status();  // The pending hold is recovered on the next attempt.
      }
      hold_id = *hold;
    }
    chosen.push_back(c);
    handoffs.push_back(*std::move(h));
  }
  if (chosen.empty()) {
    std::string why =
        ranked.empty()
            ? absl::StrCat("no eligible ", placement ? "placement with a free bed" : "service",
                           " within reach", tried.empty() ? "" : " that was not already asked")
            : "every candidate bed was taken before it could be held";
    return Escalate(r, placement, why);
  }
  bool stale = false;
  auto done = Mutate(
      system_, id, "route",
      [&](PgTx& tx, v1::Referral& cur, Actor, absl::Time at, Change& ch) -> absl::Status {
        stale = false;
        if (auto s = ReferralStore::SetPendingHold(tx, id, std::nullopt); !s.ok()) return s;
        if (cur.status() != v1::REFERRAL_STATUS_REQUESTED || cur.etag() != r.etag()) {
          // Cancelled, or routed by another replica meanwhile (which may have been given the
          // very same hold by its request id: then it is that replica's to keep).
          stale = true;
          if (!hold_id.empty() && cur.bed_hold_id() != hold_id) {
            if (auto s = ReferralStore::QueueHoldRelease(tx, hold_id, id, at); !s.ok()) return s;
          }
          ch.noop = true;  // The referral stays as it is; the outbox row commits.
          return absl::OkStatus();
        }
        cur.clear_candidates();
        for (const auto& c : ranked) *cur.add_candidates() = c;
        const absl::Time deadline = at + window;
        std::vector<std::string> names;
        for (size_t i = 0; i < chosen.size(); ++i) {
          v1::Offer* o = cur.add_offers();
          o->set_provider_organization_id(chosen[i].provider_organization_id());
          o->set_service_id(chosen[i].service_id());
          o->set_facility_id(chosen[i].facility_id());
          o->set_state(v1::OFFER_STATE_PENDING);
          *o->mutable_offered_time() = ToProtoTime(at);
          *o->mutable_respond_by() = ToProtoTime(deadline);
          *o->mutable_handoff() = handoffs[i];
          names.push_back(absl::StrCat(chosen[i].provider_organization_id(), " (rank ",
                                       chosen[i].rank(), ": ", chosen[i].explanation(), ")"));
        }
        cur.set_bed_hold_id(hold_id);
        *cur.mutable_acceptance_deadline() = ToProtoTime(deadline);
        cur.set_routing_explanation(absl::StrCat("offered to ", absl::StrJoin(names, "; "), " of ",
                                                 ranked.size(), " eligible candidates"));
        ch.to = v1::REFERRAL_STATUS_OFFERED;
        ch.reason = cur.routing_explanation();
        return absl::OkStatus();
      },
      /*internal=*/true);
  if (!done.ok()) return done.status();  // The pending hold is recovered on the next attempt.
  if (stale) {
    (void)ReleaseQueuedHolds();
    return false;
  }
  return true;
}

absl::Status ReferralServiceImpl::RecoverPendingHold(const std::string& id) {
  std::optional<std::string> pending;
  absl::Status st = pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        auto p = ReferralStore::PendingHold(tx, id);
        if (!p.ok()) return p.status();
        pending = *std::move(p);
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true);
  if (!st.ok() || !pending) return st;
  std::vector<std::string> parts = absl::StrSplit(*pending, '|');
  int bed_type = 0;
  int64_t ttl_s = 0;
  if (parts.size() == 4 && absl::SimpleAtoi(parts[2], &bed_type) &&
      absl::SimpleAtoi(parts[3], &ttl_s)) {
    // Replaying the request returns the hold if it was taken; it was never offered: release it.
    v1::Candidate c;
    c.set_facility_id(parts[1]);
    c.set_bed_type(static_cast<beds::v1::BedType>(bed_type));
    auto hold = network_->HoldBed(parts[0], c, id, absl::Seconds(ttl_s));  // Same request.
    if (hold.ok()) {
      if (auto s = network_->ReleaseHold(*hold); !s.ok() && IsOutage(s)) return s;
      log::Warn("orphan_hold_released", {{"referral_id", id}, {"hold_id", *hold}});
    } else if (IsOutage(hold.status())) {
      return hold.status();
    }
  }
  return pg_->Transact(
      [&](PgTx& tx) { return ReferralStore::SetPendingHold(tx, id, std::nullopt); });
}

absl::StatusOr<bool> ReferralServiceImpl::Escalate(const v1::Referral& r, bool placement_needed,
                                                   const std::string& why) {
  // Never detention: the county's on-call child-welfare office takes the referral over.
  auto office = network_->OnCallOffice(r.county_fips());
  if (!office.ok()) {
    routing_errors_.Add({{"dependency", "directory"}}).Increment();
    return office.status();
  }
  bool stale = false;
  auto done = Mutate(
      system_, r.id(), "escalate",
      [&](PgTx&, v1::Referral& cur, Actor, absl::Time, Change& ch) -> absl::Status {
        stale = false;
        if (cur.status() != v1::REFERRAL_STATUS_REQUESTED || cur.etag() != r.etag()) {
          stale = true;
          ch.noop = true;
          return absl::OkStatus();
        }
        *cur.mutable_handoff() = *office;
        cur.set_placement_unavailable(placement_needed);
        cur.set_routing_explanation(
            absl::StrCat(why, "; escalated to ", office->provider_name(), " (on call)"));
        ch.to = v1::REFERRAL_STATUS_ESCALATED;
        ch.reason = cur.routing_explanation();
        return absl::OkStatus();
      },
      /*internal=*/true);
  if (!done.ok()) return done.status();
  if (stale) return false;
  escalations_.Increment();
  if (placement_needed) placement_unavailable_.Increment();
  log::Warn("referral_escalated", {{"referral_id", r.id()},
                                   {"county_fips", r.county_fips()},
                                   {"office", office->provider_organization_id()},
                                   {"why", why}});
  return true;
}

absl::Status ReferralServiceImpl::ConfirmPendingPlacements() {
  std::vector<std::pair<std::string, std::string>> pending;  // referral, hold
  absl::Status st = pg_->Transact([&](PgTx& tx) -> absl::Status {
    auto p = ReferralStore::PendingPlacements(tx, options_.batch);
    if (!p.ok()) return p.status();
    pending = *std::move(p);
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  for (const auto& [id, hold] : pending) {
    absl::Status s = network_->ConfirmPlacement(absl::StrCat("placement-", id), hold);
    const bool lapsed = s.code() == absl::StatusCode::kFailedPrecondition ||
                        s.code() == absl::StatusCode::kNotFound;
    if (!s.ok() && !lapsed) return s;  // Outage or a transient error: retried on the next tick.
    if (lapsed) {
      // The hold lapsed before the hand-off was confirmed: the youth is there all the same,
      // and the provider's census must say so (alerted on this counter).
      placements_unrecorded_.Increment();
      log::Error("placement_not_recorded",
                 {{"referral_id", id}, {"hold_id", hold}, {"error", s.message()}});
    } else {
      log::Info("placement_confirmed", {{"referral_id", id}, {"hold_id", hold}});
    }
    absl::Status cleared =
        pg_->Transact([&](PgTx& tx) { return ReferralStore::SetPlacementPending(tx, id, false); });
    if (!cleared.ok()) return cleared;
  }
  return absl::OkStatus();
}

}  // namespace safeharbor::referrals
