#include "services/referrals/advocate.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/validate.h"
#include "services/referrals/lifecycle.h"
#include "services/referrals/webhook_store.h"

namespace safeharbor::referrals {
namespace {

// Open rows: the claim and the gauge read the partial indexes of migration 015, whose predicates
// spell the closed statuses (completed, youth declined, could not contact, cancelled) so.
constexpr char kOpen[] = "status NOT IN (6, 7, 8, 9)";

std::string UrgencyLabel(v1::Urgency u) {
  if (u == v1::URGENCY_UNSPECIFIED) u = v1::URGENCY_ROUTINE;
  return absl::AsciiStrToLower(v1::Urgency_Name(u).substr(8));  // "URGENCY_"
}

prometheus::Histogram::BucketBoundaries ResponseBuckets() {
  return {600, 1200, 1800, 2700, 3600, 4500, 5400, 7200, 10800, 21600, 43200, 86400};
}

// Whole microseconds: what PostgreSQL keeps, so the body and the column agree.
absl::Time Micros(absl::Time t) { return absl::FromUnixMicros(absl::ToUnixMicros(t)); }

}  // namespace

bool IsAdvocacyRow(const v1::Referral& r) {
  return !r.needs().placement_tonight() && r.needs().service_categories_size() == 1 &&
         r.needs().service_categories(0) == directory::v1::SERVICE_CATEGORY_CSEC_ADVOCACY;
}

bool HasAdvocateTarget(const v1::Referral& r) {
  return IsAdvocacyRow(r) &&
         (r.urgency() == v1::URGENCY_URGENT || r.urgency() == v1::URGENCY_EMERGENCY);
}

void StampAdvocateTarget(v1::Referral& r, absl::Duration target) {
  if (!HasAdvocateTarget(r)) return;
  *r.mutable_advocate_response_due() = ToProtoTime(FromProtoTime(r.create_time()) + target);
}

void SendAdvocateTarget(PgTx& tx, const v1::Referral& r) {
  if (!r.has_advocate_response_due()) return;
  (void)tx.Send("UPDATE referrals SET advocate_due = $2 WHERE id = $1",
                {r.id(), PgTime(FromProtoTime(r.advocate_response_due()))});
}

absl::Status ValidateAdvocateArrival(const v1::RecordAdvocateArrivalRequest& req, absl::Time now) {
  SH_RETURN_IF_ERROR(ValidateId(req.id(), "id"));
  if (!req.has_arrival_time()) return absl::OkStatus();
  const auto& t = req.arrival_time();
  if (t.seconds() <= 0 || t.nanos() < 0 || t.nanos() > 999'999'999) {
    return absl::InvalidArgumentError("arrival_time: not a valid time");
  }
  if (FromProtoTime(t) > now) {
    return absl::InvalidArgumentError("arrival_time: must not be in the future");
  }
  return absl::OkStatus();
}

absl::Status CanRecordArrival(const Caller& c, const v1::Referral& r) {
  if (c.role == Role::kProvider && r.has_accepted_time() &&
      r.handoff().provider_organization_id() == c.org_id) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      "an advocate's arrival is recorded by the provider that accepted the referral");
}

absl::Status CheckArrival(const v1::Referral& r, absl::Time arrival) {
  if (!IsAdvocacyRow(r)) {
    return absl::FailedPreconditionError(
        "this referral does not ask for CSEC advocacy alone: no advocate arrival to record");
  }
  const v1::ReferralStatus s = r.status();
  if (s != v1::REFERRAL_STATUS_ACCEPTED && s != v1::REFERRAL_STATUS_HANDED_OFF &&
      s != v1::REFERRAL_STATUS_IN_PROGRESS) {
    return absl::FailedPreconditionError(
        absl::StrCat("an advocate's arrival is recorded while the referral is accepted, handed "
                     "off or in services (status ",
                     v1::ReferralStatus_Name(s), ")"));
  }
  if (arrival < FromProtoTime(r.create_time())) {
    return absl::InvalidArgumentError("arrival_time: must not be before the referral was made");
  }
  return absl::OkStatus();
}

bool AdvocateOverdue(const v1::Referral& r, absl::Time now) {
  return r.has_advocate_response_due() && !r.has_advocate_arrival_time() &&
         !IsTerminal(r.status()) && FromProtoTime(r.advocate_response_due()) <= now;
}

AdvocateMetrics::AdvocateMetrics(prometheus::Registry& r)
    : missed(prometheus::BuildCounter()
                 .Name("safeharbor_referrals_advocate_responses_missed_total")
                 .Help("Advocacy referrals whose advocate response target (--advocate_response_"
                       "target_s from the call) passed with no arrival recorded, by urgency; "
                       "each counted once, by the replica that marked it.")
                 .Register(r)),
      overdue(prometheus::BuildGauge()
                  .Name("safeharbor_referrals_advocate_responses_overdue")
                  .Help("Open advocacy referrals past their advocate response target with no "
                        "arrival recorded, by urgency.")
                  .Register(r)),
      arrivals(prometheus::BuildCounter()
                   .Name("safeharbor_referrals_advocate_arrivals_total")
                   .Help("Advocate arrivals recorded, by urgency and timing: on_time (by the "
                         "target), late (after it), untargeted (a routine referral).")
                   .Register(r)),
      seconds(prometheus::BuildHistogram()
                  .Name("safeharbor_referrals_advocate_response_seconds")
                  .Help("From the call (the referral's creation) to the advocate's arrival, by "
                        "urgency.")
                  .Register(r)) {
  for (v1::Urgency u : {v1::URGENCY_ROUTINE, v1::URGENCY_URGENT, v1::URGENCY_EMERGENCY}) {
    const std::string label = UrgencyLabel(u);
    missed.Add({{"urgency", label}});
    overdue.Add({{"urgency", label}});
    for (const char* timing : {"on_time", "late", "untargeted"}) {
      arrivals.Add({{"urgency", label}, {"timing", timing}});
    }
    seconds.Add({{"urgency", label}}, ResponseBuckets());
  }
}

AdvocateResponse::AdvocateResponse(PgPool* pg, const Clock* clock, ReferralChanges* changes,
                                   const WebhookOptions& webhooks, prometheus::Registry& registry)
    : pg_(pg), clock_(clock), changes_(changes), webhooks_(webhooks), metrics_(registry) {}

absl::StatusOr<v1::Referral> AdvocateResponse::RecordArrival(
    CallContext& ctx, const v1::RecordAdvocateArrivalRequest& req) {
  bool first = false;
  const Mutation arrive = [&](PgTx& tx, v1::Referral& r, Actor, absl::Time now,
                              Change& ch) -> absl::Status {
    first = false;
    SH_RETURN_IF_ERROR(ctx.Authorize(CanRecordArrival(ctx.caller(), r)));
    if (r.has_advocate_arrival_time()) {
      ch.noop = true;  // The first arrival stands: a retry, or a second call, is told of it.
      return absl::OkStatus();
    }
    const absl::Time arrival =
        Micros(req.has_arrival_time() ? FromProtoTime(req.arrival_time()) : now);
    SH_RETURN_IF_ERROR(CheckArrival(r, arrival));
    if (arrival > now) return absl::InvalidArgumentError("arrival_time: must not be in the future");
    *r.mutable_advocate_arrival_time() = ToProtoTime(arrival);
    ch.reason = "advocate arrival recorded";
    // With the body's update and the commit: no round trip of its own.
    (void)tx.Send("UPDATE referrals SET advocate_arrived = $2 WHERE id = $1",
                  {r.id(), PgTime(arrival)});
    first = true;
    return absl::OkStatus();
  };
  SH_ASSIGN_OR_RETURN(v1::Referral r, changes_->Apply(&ctx, req.id(), "advocate_arrival", arrive));
  if (!first) return r;
  const std::string urgency = UrgencyLabel(r.urgency());
  const absl::Time arrival = FromProtoTime(r.advocate_arrival_time());
  metrics_.seconds.Add({{"urgency", urgency}}, ResponseBuckets())
      .Observe(absl::ToDoubleSeconds(arrival - FromProtoTime(r.create_time())));
  const char* timing = !r.has_advocate_response_due()                        ? "untargeted"
                       : arrival <= FromProtoTime(r.advocate_response_due()) ? "on_time"
                                                                             : "late";
  metrics_.arrivals.Add({{"urgency", urgency}, {"timing", timing}}).Increment();
  log::Info("advocate_arrival", {{"referral_id", r.id()}, {"timing", timing}});
  return r;
}

absl::Status AdvocateResponse::MarkOne(PgTx& tx, v1::Referral& r, absl::Time now, Change& ch,
                                       bool* marked) {
  *marked = false;
  if (!AdvocateOverdue(r, now) || r.advocate_response_missed()) {
    ch.noop = true;  // Arrived, closed, or marked by another replica meanwhile.
    return absl::OkStatus();
  }
  r.set_advocate_response_missed(true);
  ch.reason = "advocate response target missed";
  SH_RETURN_IF_ERROR(
      tx.Exec("UPDATE referrals SET advocate_missed = true WHERE id = $1", {r.id()}).status());
  const WebhookEvent e =
      AdvocateResponseMissedEvent(r.id(), FromProtoTime(r.advocate_response_due()), now);
  SH_ASSIGN_OR_RETURN(const auto targets, WebhookStore::ForCounty(tx, r.county_fips()));
  for (const SubscriptionTarget& t : targets) {
    if (!t.Wants(e.type)) continue;
    SH_RETURN_IF_ERROR(WebhookStore::Enqueue(tx, t, e, now, webhooks_.retry_window));
  }
  *marked = true;
  return absl::OkStatus();
}

absl::StatusOr<int> AdvocateResponse::MarkMissed(int batch) {
  std::vector<std::string> due;
  SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) -> absl::Status {
    due.clear();
    SH_ASSIGN_OR_RETURN(
        auto res,
        tx.Exec(absl::StrCat("SELECT id FROM referrals WHERE advocate_due <= $1 AND "
                             "advocate_arrived IS NULL AND NOT advocate_missed AND ",
                             kOpen, " ORDER BY advocate_due LIMIT $2 FOR UPDATE SKIP LOCKED"),
                {PgTime(clock_->Now()), int32_t{batch}}));
    for (int i = 0; i < res.rows(); ++i) due.push_back(res.String(i, "id"));
    return absl::OkStatus();
  }));
  int count = 0;
  for (const std::string& id : due) {
    bool marked = false;
    auto r = changes_->Apply(nullptr, id, "advocate_response_missed",
                             [&](PgTx& tx, v1::Referral& row, Actor, absl::Time now, Change& ch) {
                               return MarkOne(tx, row, now, ch, &marked);
                             });
    if (!r.ok()) {
      log::Warn("advocate_response_deferred",
                {{"referral_id", id}, {"error", r.status().message()}});
      continue;
    }
    if (!marked) continue;
    ++count;
    metrics_.missed.Add({{"urgency", UrgencyLabel(r->urgency())}}).Increment();
    // The county's office is alerted on this (SafeHarborAdvocateResponseMissed); no youth data.
    log::Warn(
        "advocate_response_missed",
        {{"referral_id", id},
         {"county_fips", r->county_fips()},
         {"due", absl::FormatTime(absl::RFC3339_sec, FromProtoTime(r->advocate_response_due()),
                                  absl::UTCTimeZone())}});
  }
  return count;
}

absl::Status AdvocateResponse::RefreshGauges(PgTx& tx, absl::Time now) {
  SH_ASSIGN_OR_RETURN(auto res,
                      tx.Exec(absl::StrCat("SELECT urgency, count(*) AS n FROM referrals WHERE "
                                           "advocate_due <= $1 AND advocate_arrived IS NULL AND ",
                                           kOpen, " GROUP BY urgency"),
                              {PgTime(now)}));
  for (v1::Urgency u : {v1::URGENCY_ROUTINE, v1::URGENCY_URGENT, v1::URGENCY_EMERGENCY}) {
    double n = 0;
    for (int i = 0; i < res.rows(); ++i) {
      if (res.Int32(i, "urgency") == u) n = static_cast<double>(res.Int64(i, "n"));
    }
    metrics_.overdue.Add({{"urgency", UrgencyLabel(u)}}).Set(n);
  }
  return absl::OkStatus();
}

}  // namespace safeharbor::referrals
