#include "services/referrals/escalation_watch.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "services/referrals/access.h"
#include "services/referrals/escalation.h"
#include "services/referrals/referral_store.h"
#include "services/referrals/router.h"
#include "services/referrals/routing.h"
#include "services/referrals/webhook_store.h"
#include "services/referrals/webhooks.h"

namespace safeharbor::referrals {

BedWatch::BedWatch(PgPool* pg, const Clock* clock, Network* network, ReferralChanges* changes,
                   const ReferralOptions& options, prometheus::Registry* registry)
    : pg_(pg),
      clock_(clock),
      network_(network),
      changes_(changes),
      options_(options),
      notices_(prometheus::BuildCounter()
                   .Name("safeharbor_referrals_bed_available_notices_total")
                   .Help("On-call offices told that a bed routing could offer appeared for an "
                         "escalated placement referral (once per appearance, across replicas).")
                   .Register(*registry)
                   .Add({})) {}

absl::Status BedWatch::Track(PgTx& tx, const v1::Referral& r, v1::ReferralStatus from,
                             absl::Time now) {
  const bool escalated = r.status() == v1::REFERRAL_STATUS_ESCALATED;
  if (escalated == (from == v1::REFERRAL_STATUS_ESCALATED)) return absl::OkStatus();
  if (escalated && !r.needs().placement_tonight()) return absl::OkStatus();
  if (!escalated) {
    return tx
        .Exec("UPDATE referrals SET bed_watch_after = NULL, bed_seen = false WHERE id = $1",
              {r.id()})
        .status();
  }
  return tx
      .Exec("UPDATE referrals SET bed_watch_after = $2, bed_seen = false WHERE id = $1",
            {r.id(), PgTime(now)})
      .status();
}

absl::StatusOr<std::vector<BedWatch::Due>> BedWatch::Claim() {
  std::vector<Due> out;
  SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) -> absl::Status {
    const absl::Time now = clock_->Now();
    SH_ASSIGN_OR_RETURN(
        auto r, tx.Exec("UPDATE referrals SET bed_watch_after = $2 WHERE id IN ("
                        "  SELECT id FROM referrals WHERE bed_watch_after <= $1 AND status = 10 "
                        "  ORDER BY bed_watch_after LIMIT $3 FOR UPDATE SKIP LOCKED) "
                        "RETURNING id, bed_seen",
                        {PgTime(now), PgTime(now + options_.escalation_bed_check),
                         int32_t{options_.batch}}));
    out.resize(static_cast<size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
      out[static_cast<size_t>(i)] = Due{r.String(i, "id"), r.Bool(i, "bed_seen")};
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<bool> BedWatch::BedFor(const v1::Referral& r) {
  SH_ASSIGN_OR_RETURN(std::vector<Option> options, network_->FindBeds(r));
  const RoutingRequest request{&r.youth(), &r.safety(), r.county_fips(), r.urgency()};
  return !Rank(request, AskableIfRoutedAgain(r, std::move(options))).empty();
}

absl::Status BedWatch::CheckDue() {
  SH_ASSIGN_OR_RETURN(const std::vector<Due> due, Claim());
  for (const Due& d : due) {
    v1::Referral r;
    SH_RETURN_IF_ERROR(pg_->Transact(
        [&](PgTx& tx) -> absl::Status {
          SH_ASSIGN_OR_RETURN(r, ReferralStore::Get(tx, d.referral_id, false));
          return absl::OkStatus();
        },
        Isolation::kReadCommitted, true));
    if (r.status() != v1::REFERRAL_STATUS_ESCALATED) continue;
    const absl::StatusOr<bool> found = BedFor(r);
    if (!found.ok()) {
      if (IsOutage(found.status())) return found.status();  // The rest after the interval.
      log::Warn("bed_check_failed",
                {{"referral_id", d.referral_id}, {"error", found.status().message()}});
      continue;
    }
    switch (NextBedNotice(d.seen, *found)) {
      case BedNotice::kTell:
        SH_RETURN_IF_ERROR(Tell(d.referral_id));
        break;
      case BedNotice::kGone:
        SH_RETURN_IF_ERROR(Gone(d.referral_id));
        break;
      case BedNotice::kNone:
        break;
    }
  }
  return absl::OkStatus();
}

absl::Status BedWatch::Tell(const std::string& id) {
  bool told = false;
  const Mutation tell = [&](PgTx& tx, v1::Referral& r, Actor, absl::Time now,
                            Change& ch) -> absl::Status {
    // Under the row lock: still escalated, and not told of this appearance by another replica.
    SH_ASSIGN_OR_RETURN(auto seen, tx.Exec("UPDATE referrals SET bed_seen = true WHERE id = $1 "
                                           "AND status = 10 AND NOT bed_seen RETURNING id",
                                           {id}));
    told = seen.rows() > 0;
    ch.noop = !told;
    if (!told) return absl::OkStatus();
    *r.mutable_bed_available_time() = ToProtoTime(now);
    ch.reason = "a bed routing could offer is available; the on-call office was told";
    WebhookEvent e;
    e.type = v1::WEBHOOK_EVENT_TYPE_BED_AVAILABLE;
    e.event_id = WebhookEventId({"bed_available", id, absl::FormatTime(now)});
    e.referral_id = id;
    e.occurred = now;
    e.due = now;
    const std::string office = r.handoff().provider_organization_id();
    SH_ASSIGN_OR_RETURN(const auto targets, WebhookStore::ForOrganization(tx, office));
    for (const SubscriptionTarget& t : targets) {
      if (!t.Wants(e.type)) continue;
      SH_RETURN_IF_ERROR(WebhookStore::Enqueue(tx, t, e, now, options_.webhooks.retry_window));
    }
    return absl::OkStatus();
  };
  SH_ASSIGN_OR_RETURN(const v1::Referral r, changes_->Apply(nullptr, id, "bed_available", tell));
  if (!told) return absl::OkStatus();
  notices_.Increment();
  log::Info("bed_available_told", {{"referral_id", id},
                                   {"county_fips", r.county_fips()},
                                   {"office", r.handoff().provider_organization_id()}});
  return absl::OkStatus();
}

absl::Status BedWatch::Gone(const std::string& id) {
  return pg_->Transact([&](PgTx& tx) {
    return tx.Exec("UPDATE referrals SET bed_seen = false WHERE id = $1", {id}).status();
  });
}

}  // namespace safeharbor::referrals
