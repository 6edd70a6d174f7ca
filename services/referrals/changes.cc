#include "services/referrals/changes.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/validate.h"
#include "services/referrals/access.h"
#include "services/referrals/escalation_watch.h"
#include "services/referrals/referral_store.h"
#include "services/referrals/retention.h"
#include "services/referrals/views.h"

namespace safeharbor::referrals {
namespace {

// A refused change as `actor` is told of it: the officer learns nothing past "connected" from
// an error either.
absl::Status Refusal(absl::Status refused, v1::ReferralStatus from, Actor actor) {
  if (actor != Actor::kReferrer) return refused;
  return RefusedToReferrer(ReferrerStage(from));
}

}  // namespace

absl::Status RefusedToReferrer(v1::ReferrerView::Stage stage) {
  return absl::FailedPreconditionError(
      absl::StrCat("this referral can no longer be changed by you (stage ",
                   v1::ReferrerView::Stage_Name(stage), ")"));
}

ReferralChanges::ReferralChanges(PgPool* pg, const Clock* clock, const Sealer* sealer,
                                 Network* network, ReferralMetrics* metrics,
                                 std::function<void()> committed, std::function<void()> wake_router)
    : pg_(pg),
      clock_(clock),
      sealer_(sealer),
      network_(network),
      metrics_(metrics),
      committed_(std::move(committed)),
      wake_router_(std::move(wake_router)) {}

absl::StatusOr<std::vector<std::string>> ReferralChanges::RegionOf(const Caller& c) {
  if (c.role != Role::kChildWelfare) return std::vector<std::string>();
  return network_->OrganizationCounties(c.org_id);  // A directory call: never inside a transaction.
}

absl::Status ReferralChanges::ReleaseHold(const std::string& hold_id) {
  absl::Status s = network_->ReleaseHold(hold_id);
  // Gone already (expired, released, confirmed) counts as released.
  if (!s.ok() && s.code() != absl::StatusCode::kFailedPrecondition &&
      s.code() != absl::StatusCode::kNotFound) {
    return s;
  }
  return pg_->Transact([&](PgTx& tx) { return ReferralStore::HoldReleased(tx, hold_id); });
}

absl::Status ReferralChanges::ReleaseQueuedHolds(int batch) {
  std::vector<std::string> holds;
  SH_RETURN_IF_ERROR(pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        SH_ASSIGN_OR_RETURN(holds, ReferralStore::HoldsToRelease(tx, batch));
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true));
  for (const std::string& hold : holds) {
    SH_RETURN_IF_ERROR(ReleaseHold(hold));  // Beds down: next tick.
  }
  return absl::OkStatus();
}

absl::Status ReferralChanges::Store(PgTx& tx, v1::Referral& r, const v1::Referral& before,
                                    const Caller& actor, const std::string& reason,
                                    absl::Time now) {
  if (ReferrerStage(before.status()) != ReferrerStage(r.status()) ||
      before.handoff().provider_organization_id() != r.handoff().provider_organization_id()) {
    *r.mutable_referrer_view_time() = ToProtoTime(now);
  }
  v1::Transition t;
  const bool moved = r.status() != before.status();
  if (moved) {
    t.set_from_status(before.status());
    t.set_to_status(r.status());
    t.set_actor_organization_id(actor.org_id);
    t.set_actor_role(std::string(RoleName(actor.role)));
    *t.mutable_time() = ToProtoTime(now);
    t.set_reason(reason);
  }
  SH_RETURN_IF_ERROR(ReferralStore::Update(tx, &r, moved ? &t : nullptr, now));
  // Sent with the next wait or the commit (a failure fails the transaction there): no round
  // trip of their own.
  for (const std::string& provider : ProvidersConcerned(before, r)) {
    (void)ReferralStore::SendEvent(tx, provider, ProviderViewOf(r, provider), now);
    // The profile reaches this provider's watch stream: a disclosure, audited as such.
    Caller reader{provider, Role::kProvider, ""};
    (void)ReferralStore::SendAudit(tx, reader, "disclosed_on_watch", r.id(),
                                   v1::ReferralStatus_Name(r.status()), now);
  }
  return absl::OkStatus();
}

absl::Status ReferralChanges::ApplyLocked(PgTx& tx, CallContext* ctx, absl::string_view id,
                                          absl::string_view action,
                                          const std::vector<std::string>& region,
                                          const Mutation& mutate, v1::ReferralStatus target,
                                          Applied& a, std::optional<Actor> as) {
  a = Applied{};
  SH_ASSIGN_OR_RETURN(v1::Referral r, ReferralStore::Get(tx, id, /*for_update=*/true));
  const Caller& actor_caller = ctx != nullptr ? ctx->caller() : system_;
  Actor actor = Actor::kSystem;
  if (as.has_value()) {
    actor = *as;  // Another row of the referral the caller acts on (ApplyToReferral).
    // Child welfare carries a change only to the rows of its region (an office outside it
    // reads and changes only the row it holds).
    if (actor == Actor::kChildWelfare && !CanRead(actor_caller, r, region).ok()) {
      a.change.noop = true;
      a.out = std::move(r);
      return absl::OkStatus();
    }
  } else if (ctx != nullptr) {
    SH_RETURN_IF_ERROR(ctx->Authorize(CanRead(ctx->caller(), r, region)));
    SH_ASSIGN_OR_RETURN(actor, ActorFor(ctx->caller(), r));
  }
  const v1::Referral before = r;
  a.from = r.status();
  if (target != v1::REFERRAL_STATUS_UNSPECIFIED) {
    if (auto s = CheckTransition(a.from, target, actor); !s.ok()) {
      if (as.has_value()) {  // Another row, not open to this change: left as it is.
        a.change.noop = true;
        a.out = std::move(r);
        return absl::OkStatus();
      }
      metrics_->refused_before_work.Increment();
      return Refusal(s, a.from, actor);
    }
  }
  const absl::Time now = clock_->Now();
  SH_RETURN_IF_ERROR(mutate(tx, r, actor, now, a.change));
  const Change& change = a.change;
  if (change.to != v1::REFERRAL_STATUS_UNSPECIFIED && !change.noop) {
    const Actor checked = change.as_system ? Actor::kSystem : actor;
    if (auto s = CheckTransition(a.from, change.to, checked); !s.ok()) {
      return Refusal(s, a.from, actor);
    }
    r.set_status(change.to);
  }
  if (change.open_identity && IdentityVisible(r.youth(), now)) {
    SH_ASSIGN_OR_RETURN(*r.mutable_youth()->mutable_identifying(),
                        ReferralStore::OpenIdentity(tx, r.id(), *sealer_));
    SH_RETURN_IF_ERROR(ReferralStore::Audit(tx, actor_caller, "identity_read", r.id(), "", now));
  }
  if (change.noop) {
    a.out = std::move(r);
    return absl::OkStatus();
  }
  return Finish(tx, std::move(r), before, actor_caller, action, now, a);
}

absl::Status ReferralChanges::Finish(PgTx& tx, v1::Referral r, const v1::Referral& before,
                                     const Caller& actor_caller, absl::string_view action,
                                     absl::Time now, Applied& a) {
  const Change& change = a.change;
  if (r.status() == v1::REFERRAL_STATUS_REQUESTED && a.from != r.status()) {
    SH_RETURN_IF_ERROR(ReferralStore::SetRouteAfter(tx, r.id(), now));
  } else if (a.from == v1::REFERRAL_STATUS_REQUESTED && r.status() != a.from) {
    ReferralStore::SendEndRoutingClaim(tx, r.id());  // e.g. accepted from the waitlist
  }
  SH_RETURN_IF_ERROR(BedWatch::Track(tx, r, a.from, now));  // issue 14: escalated placements
  for (const std::string& hold : change.holds_to_release) {
    SH_RETURN_IF_ERROR(ReferralStore::QueueHoldRelease(tx, hold, r.id(), now));
  }
  if (!change.purge_identity.empty()) {
    SH_RETURN_IF_ERROR(IdentityRetention::Purge(tx, r, change.purge_identity, actor_caller, now));
  } else if (IsTerminal(r.status()) && !IsTerminal(a.from)) {
    IdentityRetention::SendClosed(tx, r.id(), now + retention_after_close_);
  }
  v1::Referral stored = r;
  stored.mutable_youth()->clear_identifying();
  SH_RETURN_IF_ERROR(Store(tx, stored, before, actor_caller, change.reason, now));
  // With the commit, like the watch events: the offers' provider_load counters stay locked
  // for as few round trips as possible.
  (void)ReferralStore::SendAudit(tx, actor_caller, action, r.id(), change.reason, now);
  *stored.mutable_youth()->mutable_identifying() = r.youth().identifying();
  a.out = std::move(stored);
  return absl::OkStatus();
}

absl::StatusOr<int> ReferralChanges::ApplyToReferral(CallContext* ctx, absl::string_view id,
                                                     absl::string_view action,
                                                     const Mutation& mutate,
                                                     v1::ReferralStatus target, bool from_part) {
  SH_RETURN_IF_ERROR(ValidateId(id, "id"));
  SH_ASSIGN_OR_RETURN(const std::vector<std::string> region, RegionOf(ctx->caller()));
  std::vector<Applied> applied;
  const auto locked = [&](PgTx& tx) -> absl::Status {
    applied.clear();
    SH_ASSIGN_OR_RETURN(std::vector<std::string> rows, ReferralStore::RowsOf(tx, id));
    const bool lead = !rows.empty() && rows.front() == id;
    if (rows.size() < 2 || (!lead && !from_part)) rows = {std::string(id)};
    // The caller's part in the row it named (checked again under its lock, in its turn) is
    // its part in every row of the referral.
    std::optional<Actor> as;
    if (rows.size() > 1) {
      SH_ASSIGN_OR_RETURN(const v1::Referral named, ReferralStore::Get(tx, id, false));
      SH_RETURN_IF_ERROR(ctx->Authorize(CanRead(ctx->caller(), named, region)));
      SH_ASSIGN_OR_RETURN(as, ActorFor(ctx->caller(), named));
      // Only the referral's own side carries a change to every need: its referrer, or child
      // welfare of its region. An office's part in one row (escalated to it, accepted by it)
      // is no part in the others.
      if (*as != Actor::kReferrer && *as != Actor::kChildWelfare) rows = {std::string(id)};
    }
    for (const std::string& row : rows) {
      SH_RETURN_IF_ERROR(ApplyLocked(tx, ctx, row, action, region, mutate, target,
                                     applied.emplace_back(), row == id ? std::nullopt : as));
    }
    return absl::OkStatus();
  };
  SH_RETURN_IF_ERROR(ctx->Transact(locked));
  int changed = 0;
  for (const Applied& a : applied) {
    if (a.change.open_identity) metrics_->audit_reads.Increment();
    if (a.change.noop) continue;
    AfterCommit(a, ctx->caller());
    ++changed;
  }
  return changed;
}

absl::StatusOr<v1::Referral> ReferralChanges::Apply(CallContext* ctx, absl::string_view id,
                                                    absl::string_view action,
                                                    const Mutation& mutate,
                                                    v1::ReferralStatus target) {
  SH_RETURN_IF_ERROR(ValidateId(id, "id"));
  std::vector<std::string> region;
  if (ctx != nullptr) {
    SH_ASSIGN_OR_RETURN(region, RegionOf(ctx->caller()));
  }
  Applied a;
  const auto locked = [&](PgTx& tx) {
    return ApplyLocked(tx, ctx, id, action, region, mutate, target, a);
  };
  SH_RETURN_IF_ERROR(ctx != nullptr ? ctx->Transact(locked) : pg_->Transact(locked));
  if (a.change.open_identity) metrics_->audit_reads.Increment();
  if (a.change.noop) return std::move(a.out);
  AfterCommit(a, ctx != nullptr ? ctx->caller() : system_);
  return std::move(a.out);
}

void ReferralChanges::AfterCommit(const Applied& a, const Caller& actor) {
  if (a.out.status() != a.from) {
    metrics_->transitions.Add({{"to", StatusLabel(a.out.status())}}).Increment();
    log::Info("referral_transition", {{"referral_id", a.out.id()},
                                      {"from", v1::ReferralStatus_Name(a.from)},
                                      {"to", v1::ReferralStatus_Name(a.out.status())},
                                      {"by", actor.org_id}});
  }
  // The holds are in the hold_releases outbox already: released now when the beds service
  // answers, else by the router on a later tick.
  for (const std::string& hold : a.change.holds_to_release) {
    if (auto s = ReleaseHold(hold); !s.ok()) {
      log::Warn("hold_release_deferred", {{"hold_id", hold}, {"error", s.message()}});
    }
  }
  committed_();
  if (a.out.status() == v1::REFERRAL_STATUS_REQUESTED || a.change.wake) wake_router_();
}

}  // namespace safeharbor::referrals
