#include "services/referrals/statutory_timers.h"

#include "absl/strings/str_cat.h"
#include "common/invariant.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/validate.h"
#include "services/referrals/views.h"
#include "services/referrals/webhook_store.h"

namespace safeharbor::referrals {
namespace {

constexpr StatutoryClock kClocks[] = {StatutoryClock::kCrisisResidentialReport,
                                      StatutoryClock::kDcyfNotice,
                                      StatutoryClock::kEmergencyPlacementWindow};

LegalCalendar LoadCalendar() {
  absl::StatusOr<LegalCalendar> calendar = LegalCalendar::Washington();
  SH_RELEASE_ASSERT(calendar.ok(), "the time zone database (main checks it before serving)");
  return *std::move(calendar);
}

constexpr char kColumns[] =
    "kind, started, due, fired, satisfied, COALESCE(satisfied_by, '') AS satisfied_by";

v1::StatutoryTimer TimerOf(const PgResult& res, int row, absl::Time now) {
  v1::StatutoryTimer t;
  const auto kind = static_cast<v1::StatutoryTimerKind>(res.Int32(row, "kind"));
  t.set_kind(kind);
  if (auto clock = ClockOf(kind); clock.ok()) t.set_citation(ClockCitation(*clock));
  *t.mutable_start_time() = ToProtoTime(res.Time(row, "started"));
  *t.mutable_due_time() = ToProtoTime(res.Time(row, "due"));
  if (!res.IsNull(row, "fired")) *t.mutable_fired_time() = ToProtoTime(res.Time(row, "fired"));
  if (!res.IsNull(row, "satisfied")) {
    *t.mutable_satisfied_time() = ToProtoTime(res.Time(row, "satisfied"));
    t.set_satisfied_by_organization_id(res.String(row, "satisfied_by"));
  }
  MarkOverdue(t, now);
  return t;
}

}  // namespace

v1::StatutoryTimerKind TimerKindOf(StatutoryClock clock) {
  switch (clock) {
    case StatutoryClock::kCrisisResidentialReport:
      return v1::STATUTORY_TIMER_KIND_CRISIS_RESIDENTIAL_REPORT;
    case StatutoryClock::kDcyfNotice:
      return v1::STATUTORY_TIMER_KIND_DCYF_NOTICE;
    case StatutoryClock::kEmergencyPlacementWindow:
      return v1::STATUTORY_TIMER_KIND_EMERGENCY_PLACEMENT_WINDOW;
  }
  return v1::STATUTORY_TIMER_KIND_UNSPECIFIED;
}

absl::StatusOr<StatutoryClock> ClockOf(int kind) {
  for (StatutoryClock c : kClocks) {
    if (TimerKindOf(c) == kind) return c;
  }
  return absl::InvalidArgumentError("kind: a known statutory timer kind is required");
}

absl::Status ValidateStatutoryFiling(const v1::RecordStatutoryFilingRequest& req) {
  SH_RETURN_IF_ERROR(ValidateId(req.id(), "id"));
  return ClockOf(req.kind()).status();
}

bool DeliveredToCrisisResidentialCenter(const v1::Referral& r) {
  for (const v1::Offer& o : r.offers()) {
    if (o.state() != v1::OFFER_STATE_ACCEPTED) continue;
    for (const v1::Candidate& c : r.candidates()) {
      if (c.provider_organization_id() == o.provider_organization_id() &&
          c.service_id() == o.service_id() && c.facility_id() == o.facility_id()) {
        return c.category() == directory::v1::SERVICE_CATEGORY_CRISIS_RESIDENTIAL_CENTER;
      }
    }
  }
  return false;
}

namespace {

// The officer's one notice to DCYF is the youth's, not a need's (issue 14): with several needs
// only the first one handed off starts it (on its own row, where its provider and child welfare
// see and file it). Hand-offs of the referral's needs take their turns on one lock (the two-key
// advisory lock space: never the watch events' one-key markers).
absl::StatusOr<bool> DcyfNoticeStarted(PgTx& tx, const v1::Referral& r) {
  const std::string& lead = r.parent_id().empty() ? r.id() : r.parent_id();
  SH_RETURN_IF_ERROR(
      tx.Exec("SELECT pg_advisory_xact_lock(26440305, hashtext($1))", {lead}).status());
  SH_ASSIGN_OR_RETURN(auto found,
                      tx.Exec("SELECT 1 FROM statutory_timers t JOIN referrals x ON x.id = "
                              "t.referral_id WHERE t.kind = 2 AND (x.id = $1 OR x.parent_id = $1) "
                              "LIMIT 1",
                              {lead}));
  return found.rows() > 0;
}

}  // namespace

HandOffFacts FactsAtHandoff(const v1::Referral& r, bool police_custody, absl::Time now) {
  HandOffFacts f;
  f.custody_taken = FromProtoTime(r.create_time());
  f.police_custody = police_custody;
  f.emergency = r.urgency() == v1::URGENCY_EMERGENCY;
  f.delivered = true;
  f.delivered_at = now;
  f.crisis_residential_center = DeliveredToCrisisResidentialCenter(r);
  // The placement's agency accepts custody at the hand-off: the emergency placement begins.
  f.dcyf_custody = r.needs().placement_tonight();
  f.dcyf_custody_at = now;
  return f;
}

absl::Status CanRecordFiling(const Caller& c, const v1::Referral& r, StatutoryClock clock) {
  if (clock == StatutoryClock::kCrisisResidentialReport) {
    if (c.role == Role::kProvider && AcceptedBy(r, c.org_id)) {
      return absl::OkStatus();
    }
    return absl::PermissionDeniedError(
        "the crisis residential center's report is marked received by the accepting provider");
  }
  if (c.role == Role::kChildWelfare) return absl::OkStatus();
  return absl::PermissionDeniedError("this statutory timer is marked filed by child welfare");
}

void MarkOverdue(v1::StatutoryTimer& t, absl::Time now) {
  t.set_overdue(!t.has_satisfied_time() && FromProtoTime(t.due_time()) <= now);
}

StatutoryTimerMetrics::StatutoryTimerMetrics(prometheus::Registry& r)
    : open(prometheus::BuildGauge()
               .Name("safeharbor_referrals_statutory_timers")
               .Help("Statutory timers not marked filed, by kind and state: pending (not yet "
                     "due) or overdue (past due).")
               .Register(r)),
      fired(prometheus::BuildCounter()
                .Name("safeharbor_referrals_statutory_timers_fired_total")
                .Help("Statutory timers that fell due unfiled (their webhook event queued), by "
                      "kind; counted by the replica that fired each, once.")
                .Register(r)),
      oldest_overdue(prometheus::BuildGauge()
                         .Name("safeharbor_referrals_statutory_timer_oldest_overdue_seconds")
                         .Help("Seconds the longest-overdue unfiled statutory timer is past its "
                               "due time, by kind (0 when none).")
                         .Register(r)) {
  for (StatutoryClock c : kClocks) {
    for (const char* state : {"pending", "overdue"})
      open.Add({{"kind", ClockName(c)}, {"state", state}});
    fired.Add({{"kind", ClockName(c)}});
    oldest_overdue.Add({{"kind", ClockName(c)}});
  }
}

StatutoryTimers::StatutoryTimers(PgPool* pg, const Clock* clock, const WebhookOptions& webhooks,
                                 prometheus::Registry& registry)
    : pg_(pg), clock_(clock), webhooks_(webhooks), calendar_(LoadCalendar()), metrics_(registry) {}

absl::StatusOr<std::vector<v1::StatutoryTimer>> StatutoryTimers::StartAtHandoff(
    PgTx& tx, const v1::Referral& r, absl::Time now) const {
  SH_ASSIGN_OR_RETURN(auto who,
                      tx.Exec("SELECT referrer_role FROM referrals WHERE id = $1", {r.id()}));
  const bool police = who.rows() == 1 && who.Text(0, "referrer_role") == "law_enforcement";
  for (const ClockDue& d : DueClocks(FactsAtHandoff(r, police, now), calendar_)) {
    const bool dcyf = d.clock == StatutoryClock::kDcyfNotice;
    const absl::Time started = dcyf ? FromProtoTime(r.create_time()) : now;
    if (dcyf) {
      SH_ASSIGN_OR_RETURN(const bool started_before, DcyfNoticeStarted(tx, r));
      if (started_before) continue;
    }
    SH_RETURN_IF_ERROR(
        tx.Exec(
              "INSERT INTO statutory_timers (referral_id, kind, started, due, created) "
              "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (referral_id, kind) DO NOTHING",
              {r.id(), int32_t{TimerKindOf(d.clock)}, PgTime(started), PgTime(d.due), PgTime(now)})
            .status());
  }
  return List(tx, r.id(), now);
}

absl::StatusOr<std::vector<v1::StatutoryTimer>> StatutoryTimers::List(PgTx& tx,
                                                                      absl::string_view referral_id,
                                                                      absl::Time now) {
  SH_ASSIGN_OR_RETURN(auto res, tx.Exec(absl::StrCat("SELECT ", kColumns,
                                                     " FROM statutory_timers WHERE referral_id = "
                                                     "$1 ORDER BY kind"),
                                        {referral_id}));
  std::vector<v1::StatutoryTimer> out;
  for (int i = 0; i < res.rows(); ++i) out.push_back(TimerOf(res, i, now));
  return out;
}

absl::StatusOr<v1::StatutoryTimer> StatutoryTimers::RecordFiling(PgTx& tx,
                                                                 absl::string_view referral_id,
                                                                 StatutoryClock clock,
                                                                 absl::string_view org,
                                                                 absl::Time now) {
  // The first filing stands: a retry (or a second office) finds it and is told of it.
  SH_RETURN_IF_ERROR(tx.Exec("UPDATE statutory_timers SET satisfied = $3, satisfied_by = $4 "
                             "WHERE referral_id = $1 AND kind = $2 AND satisfied IS NULL",
                             {referral_id, int32_t{TimerKindOf(clock)}, PgTime(now), org})
                         .status());
  SH_ASSIGN_OR_RETURN(
      auto res, tx.Exec(absl::StrCat("SELECT ", kColumns,
                                     " FROM statutory_timers WHERE referral_id = $1 AND kind = $2"),
                        {referral_id, int32_t{TimerKindOf(clock)}}));
  if (res.rows() == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("this referral has no ", ClockName(clock),
                     " timer (timers start when the hand-off is confirmed, and only those the "
                     "hand-off's facts call for)"));
  }
  return TimerOf(res, 0, now);
}

absl::Status StatutoryTimers::Enqueue(PgTx& tx, const std::string& county,
                                      const std::string& provider, const WebhookEvent& e,
                                      absl::Time now) const {
  std::vector<SubscriptionTarget> targets;
  if (!provider.empty()) {
    SH_ASSIGN_OR_RETURN(targets, WebhookStore::ForOrganization(tx, provider));
  }
  SH_ASSIGN_OR_RETURN(const auto child_welfare, WebhookStore::ForCounty(tx, county));
  targets.insert(targets.end(), child_welfare.begin(), child_welfare.end());
  for (const SubscriptionTarget& t : targets) {
    if (!t.Wants(e.type)) continue;
    SH_RETURN_IF_ERROR(WebhookStore::Enqueue(tx, t, e, now, webhooks_.retry_window));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> StatutoryTimers::FireDue(int batch) {
  std::vector<StatutoryClock> fired;
  SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) -> absl::Status {
    fired.clear();
    const absl::Time now = clock_->Now();
    SH_ASSIGN_OR_RETURN(auto due,
                        tx.Exec("SELECT t.referral_id, t.kind, t.due, r.county_fips, "
                                "COALESCE(r.accepted_provider, '') AS provider "
                                "FROM statutory_timers t JOIN referrals r ON r.id = t.referral_id "
                                "WHERE t.fired IS NULL AND t.satisfied IS NULL AND t.due <= $1 "
                                "ORDER BY t.due LIMIT $2 FOR UPDATE OF t SKIP LOCKED",
                                {PgTime(now), int32_t{batch}}));
    for (int i = 0; i < due.rows(); ++i) {
      const std::string id = due.String(i, "referral_id");
      SH_ASSIGN_OR_RETURN(const StatutoryClock clock, ClockOf(due.Int32(i, "kind")));
      SH_RETURN_IF_ERROR(tx.Exec("UPDATE statutory_timers SET fired = $3 "
                                 "WHERE referral_id = $1 AND kind = $2",
                                 {id, int32_t{TimerKindOf(clock)}, PgTime(now)})
                             .status());
      const WebhookEvent e = StatutoryTimerEvent(id, ClockName(clock), due.Time(i, "due"), now);
      SH_RETURN_IF_ERROR(
          Enqueue(tx, due.String(i, "county_fips"), due.String(i, "provider"), e, now));
      fired.push_back(clock);
    }
    return absl::OkStatus();
  }));
  for (StatutoryClock c : fired) {
    metrics_.fired.Add({{"kind", ClockName(c)}}).Increment();
    log::Info("statutory_timer_due", {{"kind", ClockName(c)}});
  }
  return static_cast<int>(fired.size());
}

absl::Status StatutoryTimers::RefreshGauges(PgTx& tx, absl::Time now) {
  SH_ASSIGN_OR_RETURN(
      auto res,
      tx.Exec("SELECT kind, count(*) FILTER (WHERE due > $1) AS pending, "
              "count(*) FILTER (WHERE due <= $1) AS overdue, "
              "COALESCE(EXTRACT(EPOCH FROM $1::timestamptz - min(due) FILTER (WHERE due <= $1)), "
              "0)::float8 AS oldest FROM statutory_timers WHERE satisfied IS NULL GROUP BY kind",
              {PgTime(now)}));
  for (StatutoryClock c : kClocks) {
    double pending = 0, overdue = 0, oldest = 0;
    for (int i = 0; i < res.rows(); ++i) {
      if (res.Int32(i, "kind") != TimerKindOf(c)) continue;
      pending = static_cast<double>(res.Int64(i, "pending"));
      overdue = static_cast<double>(res.Int64(i, "overdue"));
      oldest = res.Double(i, "oldest");
    }
    metrics_.open.Add({{"kind", ClockName(c)}, {"state", "pending"}}).Set(pending);
    metrics_.open.Add({{"kind", ClockName(c)}, {"state", "overdue"}}).Set(overdue);
    metrics_.oldest_overdue.Add({{"kind", ClockName(c)}}).Set(oldest);
  }
  return absl::OkStatus();
}

}  // namespace safeharbor::referrals
