#include "services/referrals/referral_service.h"

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/invariant.h"
#include "common/log.h"
#include "common/paging.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/validate.h"
#include "services/referrals/access.h"
#include "services/referrals/advocate.h"
#include "services/referrals/escalation.h"
#include "services/referrals/fhir.h"
#include "services/referrals/hold_follower.h"
#include "services/referrals/referral_store.h"
#include "services/referrals/requests.h"
#include "services/referrals/statutory_timers.h"
#include "services/referrals/views.h"

namespace safeharbor::referrals {
namespace {

// The watch hub reads a provider's events from PostgreSQL.
WatchSource<v1::WatchReferralsResponse> WatchEvents() {
  WatchSource<v1::WatchReferralsResponse> source;
  source.last_seq = [](PgTx& tx) { return ReferralStore::LastEventSeq(tx); };
  source.after =
      [](PgTx& tx, int64_t after,
         int limit) -> absl::StatusOr<std::vector<WatchEvent<v1::WatchReferralsResponse>>> {
    SH_ASSIGN_OR_RETURN(auto stored, ReferralStore::EventsAfter(tx, after, limit));
    std::vector<WatchEvent<v1::WatchReferralsResponse>> out(stored.size());
    for (size_t i = 0; i < stored.size(); ++i) {
      out[i].seq = stored[i].seq;
      out[i].key = stored[i].provider_org;
      *out[i].response.mutable_referral() = std::move(stored[i].view);
    }
    return out;
  };
  PruneEventsTable(source, "referral_events");
  return source;
}

// The idempotency record keeps per-field digests; identifying details go in only as keyed
// fingerprints, so the record cannot be used to test guesses of a youth's name.
v1::CreateReferralRequest Digested(const v1::CreateReferralRequest& req, const Sealer& sealer) {
  v1::CreateReferralRequest digested = req;
  if (digested.youth().has_identifying()) {
    auto* ident = digested.mutable_youth()->mutable_identifying();
    for (std::string* field :
         {ident->mutable_name(), ident->mutable_contact(), ident->mutable_notes()}) {
      if (!field->empty()) *field = sealer.Fingerprint(*field);
    }
  }
  return digested;
}

v1::Urgency UrgencyOf(const v1::CreateReferralRequest& req) {
  return req.urgency() == v1::URGENCY_UNSPECIFIED ? v1::URGENCY_ROUTINE : req.urgency();
}

}  // namespace

ReferralServiceImpl::ReferralServiceImpl(RpcEnv* env, PgPool* pg, RedisClient* redis,
                                         prometheus::Registry& registry,
                                         const CountyTable& counties, const Clock* clock,
                                         const Sealer* sealer, Network* network,
                                         ReferralOptions options, Network* routing_network)
    : RpcService("safeharbor.referrals.v1.ReferralService", KitDeps{env, pg, clock, &registry}),
      pg_(pg),
      redis_(redis),
      counties_(counties),
      clock_(clock),
      sealer_(sealer),
      options_(Resolved(std::move(options))),
      metrics_(registry),
      hub_(std::make_unique<WatchHub<v1::WatchReferralsResponse>>(
          pg_, redis_ ? &redis_->options() : nullptr,
          absl::StrCat(options_.key_namespace, ":events"), WatchEvents(), options_.watch,
          &metrics_.watchers, clock)),
      changes_(
          pg, clock, sealer, network, &metrics_, [this] { Committed(); },
          [this] { timers_.Wake(); }),
      retention_(pg, clock, &changes_.system(), options_.consent, registry),
      router_(pg, clock, routing_network != nullptr ? routing_network : network, &changes_,
              &metrics_, options_),
      timers_(pg, clock, routing_network != nullptr ? routing_network : network, &changes_,
              &router_, &metrics_, options_, &registry),
      webhook_sender_(std::make_unique<CurlWebhookSender>(
          options_.webhooks.allow_loopback_http, "", options_.webhooks.allow_internal_addresses)),
      webhooks_(std::make_unique<WebhookWorker>(
          pg, clock, sealer, webhook_sender_.get(),
          routing_network != nullptr ? routing_network : network, options_.webhooks, registry)) {
  changes_.SetRetentionAfterClose(options_.consent.retention_after_close);
  Methods();
}

ReferralServiceImpl::~ReferralServiceImpl() { StopBackground(); }

// The referral service's method table: every RPC, who may call it, and how. Reads and changes
// of one referral are for its parties (or child welfare in its region), decided on the stored
// referral.
void ReferralServiceImpl::Methods() {
  const RoleSet intake = {Role::kLawEnforcement, Role::kChildWelfare};
  const RoleSet parties = {Role::kLawEnforcement, Role::kChildWelfare, Role::kProvider};
  const MethodPolicy provider_change{.roles = {Role::kProvider}, .scope = Scope::kStored};
  const auto reason = [](const auto& r) { return ValidateReason(r.reason()); };
  SAFEHARBOR_RPC(
      CreateReferral, (MethodPolicy{.roles = intake, .idempotency = Idempotency::kRecorded}),
      .validate = [this](const auto& r) {
        SH_RETURN_IF_ERROR(ValidateCreate(r, counties_));
        return ValidateIntakeConsent(r.youth(), options_.consent, clock_->Now());
      });
  SAFEHARBOR_RPC(
      GetReferral, (MethodPolicy{.roles = parties, .scope = Scope::kStored}),
      .validate = [](const auto& r) { return ValidateId(r.id(), "id"); });
  SAFEHARBOR_RPC(
      GetReferralFhir,
      (MethodPolicy{.roles = {Role::kChildWelfare, Role::kProvider}, .scope = Scope::kStored}),
      .validate = [](const auto& r) { return ValidateId(r.id(), "id"); });
  SAFEHARBOR_RPC(ListReferrals, (MethodPolicy{.roles = parties}));
  // Issue 14: child welfare too, the on-call office taking an escalated referral itself; then
  // it confirms the hand-off and records the outcome as the accepted party (access.h).
  const MethodPolicy accepted_change{.roles = {Role::kProvider, Role::kChildWelfare},
                                     .scope = Scope::kStored};
  SAFEHARBOR_RPC(AcceptReferral, (MethodPolicy{.roles = accepted_change.roles,
                                               .scope = Scope::kStored,
                                               .idempotency = Idempotency::kByState}));
  const auto coded = [](const auto& r) { return DeclineCode(r).status(); };
  SAFEHARBOR_RPC(DeclineReferral, provider_change, .validate = coded);
  // Issue 14: "waitlist until T", for a provider with an open offer, like Accept and Decline.
  SAFEHARBOR_RPC(WaitlistReferral, provider_change, .validate = ValidateWaitlist);
  SAFEHARBOR_RPC(ConfirmHandoff, accepted_change);
  SAFEHARBOR_RPC(StartServices, accepted_change);
  SAFEHARBOR_RPC(
      RecordOutcome, accepted_change,
      .validate = [](const auto& r) { return OutcomeCode(r).status(); });
  SAFEHARBOR_RPC(CancelReferral, (MethodPolicy{.roles = intake, .scope = Scope::kStored}),
                 .validate = reason);
  SAFEHARBOR_RPC(
      RevokeConsent, (MethodPolicy{.roles = parties, .scope = Scope::kStored}),
      .validate = [](const auto& r) { return ValidateId(r.id(), "id"); });
  SAFEHARBOR_RPC(GetReferralStats, (MethodPolicy{.roles = {Role::kAuditor}, .read_only = true}));
  SAFEHARBOR_STREAM_RPC(
      WatchReferrals, {.roles = {Role::kProvider}},
      .validate = [](const auto& r) { return ValidateCursor(r.cursor()); });
  // Statutory timers (issue 14): who marks which kind filed is CanRecordFiling's.
  SAFEHARBOR_RPC(RecordStatutoryFiling,
                 (MethodPolicy{.roles = {Role::kProvider, Role::kChildWelfare},
                               .scope = Scope::kStored,
                               .idempotency = Idempotency::kByState}),
                 .validate = ValidateStatutoryFiling);
  WebhookMethods();
  AdvocateMethods();
  EscalationMethods();
  Seal();
}

// Issue 14, advocate response (advocate.h): the accepting provider records its advocate's arrival;
// who may is decided on the stored row (CanRecordArrival), a retry finds the first arrival.
void ReferralServiceImpl::AdvocateMethods() {
  SAFEHARBOR_RPC(
      RecordAdvocateArrival,
      (MethodPolicy{.roles = {Role::kProvider},
                    .scope = Scope::kStored,
                    .idempotency = Idempotency::kByState}),
      .validate = [this](const auto& r) { return ValidateAdvocateArrival(r, clock_->Now()); });
}

// Webhooks: an organization's own endpoints (webhook_rpcs.cc).
void ReferralServiceImpl::WebhookMethods() {
  const MethodPolicy own_hooks{.roles = {Role::kProvider, Role::kChildWelfare},
                               .scope = Scope::kOwnOrganization};
  const auto org = [](const auto& r) { return r.organization_id(); };
  const auto target = [](const auto& r) {
    return ValidateWebhookTarget(r.organization_id(), r.subscription_id());
  };
  const auto org_only = [](const auto& r) {
    return ValidateWebhookOrganization(r.organization_id());
  };
  SAFEHARBOR_RPC(
      CreateWebhookSubscription, own_hooks,
      .validate =
          [this](const auto& r) {
            return ValidateWebhookCreate(r, options_.webhooks.allow_loopback_http);
          },
      .organization = org);
  SAFEHARBOR_RPC(
      ListWebhookSubscriptions,
      (MethodPolicy{.roles = own_hooks.roles, .scope = Scope::kOwnOrganization, .read_only = true}),
      .validate = org_only, .organization = org);
  SAFEHARBOR_RPC(DeleteWebhookSubscription, own_hooks, .validate = target, .organization = org);
  SAFEHARBOR_RPC(RotateWebhookSecret, own_hooks, .validate = target, .organization = org);
  SAFEHARBOR_RPC(
      ListWebhookDeadLetters,
      (MethodPolicy{.roles = own_hooks.roles, .scope = Scope::kOwnOrganization, .read_only = true}),
      .validate = org_only, .organization = org);
  SAFEHARBOR_RPC(ReplayWebhookDeadLetters, own_hooks, .validate = org_only, .organization = org);
}

void ReferralServiceImpl::StartBackground(bool timers) {
  hub_->Start();
  if (timers) {
    timers_.Start();
    webhooks_->Start();
    retention_.Start();
  }
}

void ReferralServiceImpl::StopBackground() {
  retention_.Stop();
  webhooks_->Stop();
  timers_.Stop();
  hub_->Stop();
}

void ReferralServiceImpl::Committed() {
  hub_->Notify();
  webhooks_->Wake();
  if (redis_ != nullptr) {
    (void)redis_->Publish(absl::StrCat(options_.key_namespace, ":events"), "1");
  }
}

v1::Referral ReferralServiceImpl::NewReferral(const Caller& c, const v1::CreateReferralRequest& req,
                                              const std::string& id, absl::Time now) const {
  v1::Referral r;
  r.set_id(id);
  r.set_referrer_organization_id(c.org_id);
  *r.mutable_referrer_contact() = req.referrer_contact();
  *r.mutable_youth() = req.youth();
  StampConsent(r.mutable_youth(), options_.consent, now);
  r.set_county_fips(req.county_fips());
  if (req.has_location()) *r.mutable_location() = req.location();
  *r.mutable_needs() = req.needs();
  r.set_urgency(UrgencyOf(req));
  *r.mutable_safety() = req.safety();
  r.set_status(v1::REFERRAL_STATUS_REQUESTED);
  *r.mutable_create_time() = ToProtoTime(now);
  *r.mutable_update_time() = ToProtoTime(now);
  *r.mutable_referrer_view_time() = ToProtoTime(now);
  StampAdvocateTarget(r, options_.advocate_response_target);  // issue 14: from the call
  return r;
}

absl::Status ReferralServiceImpl::Insert(PgTx& tx, const Caller& c, const v1::Referral& r,
                                         absl::Time now) {
  SH_RETURN_IF_ERROR(ReferralStore::Insert(tx, r, c, *sealer_, now));
  v1::Transition t;
  t.set_to_status(v1::REFERRAL_STATUS_REQUESTED);
  t.set_actor_organization_id(c.org_id);
  t.set_actor_role(std::string(RoleName(c.role)));
  *t.mutable_time() = ToProtoTime(now);
  t.set_reason("referral received");
  // Nothing here waits: the referral, its first transition and the audit row go out with the
  // request_id record and the commit, in one round trip.
  (void)ReferralStore::SendTransition(tx, r.id(), t);
  (void)ReferralStore::SendAudit(tx, c, "create", r.id(), "", now);
  return absl::OkStatus();
}

// Issue 14, one referral, several needs: a row per need, all in the intake's one round trip.
// The lead (the placement, or the first category) keeps the id the referrer is given.
std::vector<v1::Referral> ReferralServiceImpl::NewRows(const Caller& c,
                                                       const v1::CreateReferralRequest& req,
                                                       const std::vector<std::string>& ids,
                                                       absl::Time now) const {
  const std::vector<v1::Needs> needs = SplitNeeds(req.needs());
  SH_RELEASE_ASSERT(needs.size() == ids.size() && !ids.empty(), "an id for every need");
  std::vector<v1::Referral> rows;
  for (size_t i = 0; i < ids.size(); ++i) {
    v1::Referral& r = rows.emplace_back(NewReferral(c, req, ids[i], now));
    *r.mutable_needs() = needs[i];
    r.clear_advocate_response_due();  // the row's own need decides (an advocacy part has one)
    StampAdvocateTarget(r, options_.advocate_response_target);
    if (i > 0) r.set_parent_id(ids[0]);
  }
  for (size_t i = 1; i < ids.size(); ++i) rows[0].add_part_ids(ids[i]);
  return rows;
}

absl::Status ReferralServiceImpl::CreateReferral(CallContext& ctx,
                                                 const v1::CreateReferralRequest& req,
                                                 v1::CreateReferralResponse* resp) {
  const Caller& c = ctx.caller();
  std::vector<std::string> ids;
  for (size_t i = 0; i < SplitNeeds(req.needs()).size(); ++i) ids.push_back(NewId("ref"));
  const std::string& id = ids.front();
  const v1::CreateReferralRequest digested = Digested(req, *sealer_);
  ctx.SetIdempotencyRequest(&digested);
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) -> absl::Status {
    const absl::Time now = ctx.Now();
    const std::vector<v1::Referral> rows = NewRows(c, req, ids, now);
    for (const v1::Referral& r : rows) {
      SH_RETURN_IF_ERROR(Insert(tx, c, r, now));
      if (r.youth().has_consent() && HasIdentifying(r.youth().identifying())) {
        const Consent consent = StoredConsent(r.youth().consent(), r.youth().age());
        IdentityRetention::SendKept(tx, r.id(), req.request_id(),
                                    PurgeDue(consent, std::nullopt, options_.consent));
      }
    }
    *resp->mutable_referral() = ReferrerViewOf(rows.front());
    return absl::OkStatus();
  }));
  if (ctx.replayed()) return absl::OkStatus();
  const v1::Urgency u = UrgencyOf(req);
  metrics_.created.Add({{"urgency", UrgencyLabel(u)}}).Increment();
  metrics_.created_by_needs.Add({{"needs", absl::StrCat(ids.size())}}).Increment();
  log::Info("referral_created", {{"referral_id", id},
                                 {"county_fips", req.county_fips()},
                                 {"urgency", v1::Urgency_Name(u)},
                                 {"placement", req.needs().placement_tonight() ? "yes" : "no"},
                                 {"needs", absl::StrCat(ids.size())},
                                 {"by", c.org_id}});
  timers_.WakeRouting();  // A worker claims it now; other replicas' on their next tick.
  return absl::OkStatus();
}

absl::Status ReferralServiceImpl::ReadAs(PgTx& tx, const Caller& c, v1::Referral r,
                                         v1::GetReferralResponse* resp) {
  const absl::Time now = clock_->Now();
  const std::string id = r.id();
  if (c.role == Role::kLawEnforcement) {
    // Computed from the lead and its parts (issue 14); ActorFor refused a part already.
    std::vector<v1::Referral> parts;
    if (r.part_ids_size() > 0 && !r.needs().placement_tonight()) {
      SH_ASSIGN_OR_RETURN(parts, ReferralStore::Parts(tx, {r.id()}));
    }
    *resp->mutable_referrer_view() = ReferrerViewOf(r, parts);
    return absl::OkStatus();  // No youth data in it.
  }
  bool identity = false;
  if (c.role == Role::kProvider) {
    *resp->mutable_referral() = ProviderViewOf(r, c.org_id);
    if (AcceptedBy(r, c.org_id) && IdentityVisible(r.youth(), now)) {
      SH_ASSIGN_OR_RETURN(*resp->mutable_referral()->mutable_youth()->mutable_identifying(),
                          ReferralStore::OpenIdentity(tx, id, *sealer_));
      identity = true;
    }
  } else {
    *resp->mutable_referral() = std::move(r);  // Child welfare: never the identity.
  }
  if (identity || c.role == Role::kChildWelfare) {  // Statutory timers: never to the officer.
    SH_ASSIGN_OR_RETURN(auto timers, StatutoryTimers::List(tx, id, now));
    for (auto& t : timers) *resp->mutable_referral()->add_statutory_timers() = std::move(t);
  }
  return ReferralStore::Audit(tx, c, identity ? "identity_read" : "read", id, "", now);
}

absl::Status ReferralServiceImpl::GetReferral(CallContext& ctx, const v1::GetReferralRequest& req,
                                              v1::GetReferralResponse* resp) {
  SH_ASSIGN_OR_RETURN(const auto region, changes_.RegionOf(ctx.caller()));
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    SH_ASSIGN_OR_RETURN(v1::Referral r, ReferralStore::Get(tx, req.id(), false));
    SH_RETURN_IF_ERROR(ctx.Authorize(CanRead(ctx.caller(), r, region)));
    return ReadAs(tx, ctx.caller(), std::move(r), resp);
  }));
  if (resp->has_referral()) metrics_.audit_reads.Increment();
  return absl::OkStatus();
}

absl::Status ReferralServiceImpl::GetReferralFhir(CallContext& ctx,
                                                  const v1::GetReferralFhirRequest& req,
                                                  v1::GetReferralFhirResponse* resp) {
  SH_ASSIGN_OR_RETURN(const auto region, changes_.RegionOf(ctx.caller()));
  v1::GetReferralResponse view;
  std::vector<v1::Referral> rows;
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) -> absl::Status {
    view.Clear();
    rows.clear();
    SH_ASSIGN_OR_RETURN(v1::Referral r, ReferralStore::Get(tx, req.id(), false));
    SH_RETURN_IF_ERROR(ctx.Authorize(CanRead(ctx.caller(), r, region)));
    SH_RETURN_IF_ERROR(ctx.Authorize(CanReadFhir(ctx.caller(), r)));
    SH_RETURN_IF_ERROR(ReadAs(tx, ctx.caller(), std::move(r), &view));
    // The method's roles leave out law enforcement, whose view is never more than the hand-off.
    SH_RELEASE_ASSERT(view.has_referral(), "a FHIR view only of a full referral view");
    rows.push_back(view.referral());
    // Issue 14: child welfare sees every need of the referral, a provider the row it accepted.
    if (ctx.caller().role != Role::kChildWelfare) return absl::OkStatus();
    return ReadOtherRows(tx, ctx.caller(), region, rows);
  }));
  metrics_.audit_reads.Increment(static_cast<double>(rows.size()));
  SH_ASSIGN_OR_RETURN(*resp->mutable_bundle_json(), ReferralFhirBundle(rows, ctx.Now()));
  return absl::OkStatus();
}

// Issue 14: the other rows of rows[0]'s referral that `c` may read, lead first, read (and
// audited) as `c`.
absl::Status ReferralServiceImpl::ReadOtherRows(PgTx& tx, const Caller& c,
                                                const std::vector<std::string>& region,
                                                std::vector<v1::Referral>& rows) {
  SH_ASSIGN_OR_RETURN(const std::vector<std::string> ids, ReferralStore::RowsOf(tx, rows[0].id()));
  for (const std::string& id : ids) {
    if (id == rows[0].id()) continue;
    SH_ASSIGN_OR_RETURN(v1::Referral other, ReferralStore::Get(tx, id, false));
    if (!CanRead(c, other, region).ok()) continue;
    v1::GetReferralResponse read;
    SH_RETURN_IF_ERROR(ReadAs(tx, c, std::move(other), &read));
    rows.push_back(read.referral());
  }
  return absl::OkStatus();
}

absl::StatusOr<ReferralStore::ListQuery> ReferralServiceImpl::ListQueryFor(
    const Caller& c, const v1::ListReferralsRequest& req) {
  ReferralStore::ListQuery q;
  q.org_id = c.org_id;
  if (c.role == Role::kLawEnforcement) {
    q.scope = ReferralStore::ListQuery::Scope::kReferrer;
  } else if (c.role == Role::kProvider) {
    q.scope = ReferralStore::ListQuery::Scope::kProvider;
  } else {
    q.scope = ReferralStore::ListQuery::Scope::kRegion;
    SH_ASSIGN_OR_RETURN(q.counties, changes_.RegionOf(c));
  }
  if (!v1::ReferralStatus_IsValid(req.status())) {
    return absl::InvalidArgumentError("status is not a known value");
  }
  if (c.role == Role::kLawEnforcement && req.status() != v1::REFERRAL_STATUS_UNSPECIFIED) {
    // A filter on the real status would reveal what the referrer view hides.
    return absl::InvalidArgumentError(
        "status: law enforcement lists its referrals without a status filter");
  }
  q.status = req.status();
  return q;
}

// Issue 14: the parts the referrer's views of these leads are computed from (none for other
// callers, or where the lead is the placement), by lead.
absl::StatusOr<std::map<std::string, std::vector<v1::Referral>>>
ReferralServiceImpl::PartsForReferrer(PgTx& tx, const Caller& c,
                                      const std::vector<v1::Referral>& leads) {
  std::map<std::string, std::vector<v1::Referral>> out;
  if (c.role != Role::kLawEnforcement) return out;
  std::vector<std::string> ids;
  for (const v1::Referral& r : leads) {
    if (r.part_ids_size() > 0 && !r.needs().placement_tonight()) ids.push_back(r.id());
  }
  SH_ASSIGN_OR_RETURN(std::vector<v1::Referral> parts, ReferralStore::Parts(tx, ids));
  for (v1::Referral& part : parts) out[part.parent_id()].push_back(std::move(part));
  return out;
}

absl::Status ReferralServiceImpl::ListReferrals(CallContext& ctx,
                                                const v1::ListReferralsRequest& req,
                                                v1::ListReferralsResponse* resp) {
  const Caller& c = ctx.caller();
  SH_ASSIGN_OR_RETURN(ReferralStore::ListQuery q, ListQueryFor(c, req));
  SH_ASSIGN_OR_RETURN(const int size, ValidatePageSize(req.page_size(), 20, 100));
  q.limit = size + 1;
  const std::string fingerprint = QueryFingerprint(req);
  if (!req.page_token().empty()) {
    SH_ASSIGN_OR_RETURN(auto parts, DecodePageToken(req.page_token(), "referrals", fingerprint, 2));
    absl::Time t;
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, parts[0], &t, &err)) {
      return absl::InvalidArgumentError("page_token is malformed");
    }
    q.before = std::make_pair(t, parts[1]);
  }
  int64_t audited = 0;
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    audited = 0;
    SH_ASSIGN_OR_RETURN(auto rows, ReferralStore::List(tx, q));
    const absl::Time now = ctx.Now();
    if (static_cast<int>(rows.size()) > size) {  // Before the rows are moved into the answer.
      const v1::Referral& last = rows[static_cast<size_t>(size) - 1];
      resp->set_next_page_token(
          EncodePageToken("referrals", fingerprint,
                          {absl::FormatTime(absl::RFC3339_full, FromProtoTime(last.create_time()),
                                            absl::UTCTimeZone()),
                           last.id()}));
    }
    if (static_cast<int>(rows.size()) > size) rows.resize(static_cast<size_t>(size));
    SH_ASSIGN_OR_RETURN(const auto parts, PartsForReferrer(tx, c, rows));
    for (v1::Referral& r : rows) {
      auto* item = resp->add_referrals();
      if (c.role == Role::kLawEnforcement) {
        const auto found = parts.find(r.id());
        *item->mutable_referrer_view() =
            ReferrerViewOf(r, found == parts.end() ? std::vector<v1::Referral>() : found->second);
        continue;
      }
      *item->mutable_referral() =
          c.role == Role::kProvider ? ProviderViewOf(r, c.org_id) : std::move(r);
      SH_RETURN_IF_ERROR(ReferralStore::Audit(tx, c, "list", item->referral().id(), "", now));
      ++audited;
    }
    return absl::OkStatus();
  }));
  metrics_.audit_reads.Increment(static_cast<double>(audited));
  return absl::OkStatus();
}

absl::Status ReferralServiceImpl::AcceptReferral(CallContext& ctx,
                                                 const v1::AcceptReferralRequest& req,
                                                 v1::AcceptReferralResponse* resp) {
  const std::string& org = ctx.caller().org_id;
  // Issue 14: child welfare accepts only an escalated referral, as its on-call office.
  const bool office = ctx.caller().role == Role::kChildWelfare;
  absl::Time created;
  const Mutation accept = [&](PgTx& tx, v1::Referral& r, Actor actor, absl::Time now,
                              Change& ch) -> absl::Status {
    ch.open_identity = !office;  // The office never sees the details (escalation.h).
    if (AcceptedBy(r, org)) {
      ch.noop = true;  // A retry of an accept that went through: the same answer.
      return absl::OkStatus();
    }
    ch.to = v1::REFERRAL_STATUS_ACCEPTED;
    if (office) {
      SH_ASSIGN_OR_RETURN(ch.reason, AcceptEscalated(r, actor, now));
      created = FromProtoTime(r.create_time());
      SH_ASSIGN_OR_RETURN(ch.wake, FollowWithHold(tx, r, now, options_));
      return absl::OkStatus();
    }
    // Issue 14: a waitlisted offer is accepted too, while the referral is routed again.
    v1::Offer* offer = OpenOfferTo(r, org);
    const bool waitlisted = offer != nullptr && offer->state() == v1::OFFER_STATE_WAITLISTED;
    if (offer == nullptr || (r.status() != v1::REFERRAL_STATUS_OFFERED && !waitlisted)) {
      return absl::FailedPreconditionError(
          absl::StrCat("no pending offer of this referral to your organization (status ",
                       v1::ReferralStatus_Name(r.status()), ")"));
    }
    if (now > FromProtoTime(offer->respond_by())) {
      return absl::FailedPreconditionError(
          "the offer expired at its acceptance deadline; the referral is being offered elsewhere");
    }
    offer->set_state(v1::OFFER_STATE_ACCEPTED);
    *r.mutable_handoff() = offer->handoff();
    std::vector<std::string> none;
    const std::string hold = r.bed_hold_id();
    // The first to accept wins. The hold stays with the winner, unless it won from the
    // waitlist: then the hold is another offer's, released (issue 14).
    CloseOffers(r, v1::OFFER_STATE_WITHDRAWN, waitlisted ? &ch.holds_to_release : &none);
    if (!waitlisted) r.set_bed_hold_id(hold);
    *r.mutable_accepted_time() = ToProtoTime(now);
    created = FromProtoTime(r.create_time());
    ch.reason = absl::StrCat("accepted by ", org);
    // The hand-off deadline; the bed hold is extended to it after the commit (an outbox).
    SH_ASSIGN_OR_RETURN(ch.wake, FollowWithHold(tx, r, now, options_));
    return absl::OkStatus();
  };
  SH_ASSIGN_OR_RETURN(const v1::Referral r, changes_.Apply(&ctx, req.id(), "accept", accept));
  if (created != absl::Time()) {
    metrics_.time_to_acceptance.Observe(
        absl::ToDoubleSeconds(FromProtoTime(r.accepted_time()) - created));
  }
  *resp->mutable_referral() = ChangedView(ctx.caller(), r);
  if (!office) {
    *resp->mutable_referral()->mutable_youth()->mutable_identifying() = r.youth().identifying();
  }
  return absl::OkStatus();
}

// Issue 14: a decline carries a code (counted) and optional text (kept on the offer, for the
// declining provider and child welfare; the transition and the audit row name only the code).
absl::Status ReferralServiceImpl::DeclineReferral(CallContext& ctx,
                                                  const v1::DeclineReferralRequest& req,
                                                  v1::DeclineReferralResponse*) {
  const std::string& org = ctx.caller().org_id;
  SH_ASSIGN_OR_RETURN(const v1::ReasonCode code, DeclineCode(req));
  bool rerouted = false;
  const Mutation decline = [&](PgTx&, v1::Referral& r, Actor actor, absl::Time,
                               Change& ch) -> absl::Status {
    rerouted = false;
    v1::Offer* offer = OpenOfferTo(r, org);  // pending, or waitlisted
    if (offer == nullptr) {
      return absl::FailedPreconditionError(
          "no pending offer of this referral to your organization");
    }
    SH_RETURN_IF_ERROR(CheckOfferTransition(offer->state(), v1::OFFER_STATE_DECLINED, actor));
    offer->set_state(v1::OFFER_STATE_DECLINED);
    offer->set_decline_code(code);
    offer->set_decline_reason(req.reason());
    ch.reason = absl::StrCat("declined by ", org, ": ", ReasonLabel(code));
    // Nobody left to answer now: back to routing, the next candidate is offered.
    if (r.status() != v1::REFERRAL_STATUS_OFFERED ||
        !BackToRoutingIfUnanswered(r, &ch.holds_to_release)) {
      return absl::OkStatus();
    }
    ch.to = v1::REFERRAL_STATUS_REQUESTED;
    ch.as_system = true;
    rerouted = true;
    return absl::OkStatus();
  };
  SH_RETURN_IF_ERROR(changes_.Apply(&ctx, req.id(), "decline", decline).status());
  if (rerouted) metrics_.reroutes.Add({{"reason", "declined"}}).Increment();
  return absl::OkStatus();
}

// Issue 14: "waitlist until T". The offer stays open to the provider until T; when no other
// offer is pending the referral goes back to routing (its bed hold released: the provider has
// no bed now), and routing never offers it to this provider again (it has an offer).
absl::Status ReferralServiceImpl::WaitlistReferral(CallContext& ctx,
                                                   const v1::WaitlistReferralRequest& req,
                                                   v1::WaitlistReferralResponse* resp) {
  const std::string& org = ctx.caller().org_id;
  const absl::Time until = FromProtoTime(req.until());
  bool rerouted = false;
  const Mutation waitlist = [&](PgTx&, v1::Referral& r, Actor actor, absl::Time now,
                                Change& ch) -> absl::Status {
    rerouted = false;
    v1::Offer* offer = OpenOfferTo(r, org);
    if (offer == nullptr) {
      return absl::FailedPreconditionError(
          "no pending offer of this referral to your organization");
    }
    SH_RETURN_IF_ERROR(CheckOfferTransition(offer->state(), v1::OFFER_STATE_WAITLISTED, actor));
    if (offer->state() == v1::OFFER_STATE_PENDING && now > FromProtoTime(offer->respond_by())) {
      return absl::FailedPreconditionError(
          "the offer expired at its acceptance deadline; the referral is being offered elsewhere");
    }
    SH_RETURN_IF_ERROR(CheckWaitlistUntil(now, until));
    offer->set_state(v1::OFFER_STATE_WAITLISTED);
    *offer->mutable_respond_by() = ToProtoTime(until);
    *offer->mutable_waitlisted_until() = ToProtoTime(until);
    offer->set_decline_reason(req.reason());  // the free text beside the answer
    ch.reason = absl::StrCat("waitlisted by ", org, " until ", Rfc3339Seconds(until));
    if (!BackToRoutingIfUnanswered(r, &ch.holds_to_release)) return absl::OkStatus();
    ch.to = v1::REFERRAL_STATUS_REQUESTED;
    ch.as_system = true;
    rerouted = true;
    return absl::OkStatus();
  };
  SH_ASSIGN_OR_RETURN(const v1::Referral r, changes_.Apply(&ctx, req.id(), "waitlist", waitlist));
  if (rerouted) metrics_.reroutes.Add({{"reason", "waitlisted"}}).Increment();
  *resp->mutable_referral() = ProviderViewOf(r, org);
  return absl::OkStatus();
}

absl::Status ReferralServiceImpl::ConfirmHandoff(CallContext& ctx,
                                                 const v1::ConfirmHandoffRequest& req,
                                                 v1::ConfirmHandoffResponse* resp) {
  std::vector<v1::StatutoryTimer> clocks;
  const Mutation handoff = [&](PgTx& tx, v1::Referral& r, Actor, absl::Time now,
                               Change& ch) -> absl::Status {
    ch.to = v1::REFERRAL_STATUS_HANDED_OFF;
    ch.reason = "the provider has the youth";
    *r.mutable_handoff()->mutable_handed_off_time() = ToProtoTime(now);
    // The law's clocks start with the hand-off, in its transaction (issue 14).
    SH_ASSIGN_OR_RETURN(clocks, timers_.statutory().StartAtHandoff(tx, r, now));
    if (r.bed_hold_id().empty()) return absl::OkStatus();
    // The bed becomes occupied in the beds service; retried until it answers.
    ch.wake = true;
    return ReferralStore::SetPlacementPending(tx, r.id(), true);
  };
  SH_ASSIGN_OR_RETURN(const v1::Referral r,
                      changes_.Apply(&ctx, req.id(), "confirm_handoff", handoff));
  *resp->mutable_referral() = ChangedView(ctx.caller(), r);
  for (auto& t : clocks) *resp->mutable_referral()->add_statutory_timers() = std::move(t);
  return absl::OkStatus();
}

absl::Status ReferralServiceImpl::StartServices(CallContext& ctx,
                                                const v1::StartServicesRequest& req,
                                                v1::StartServicesResponse* resp) {
  const Mutation start = [](PgTx&, v1::Referral&, Actor, absl::Time, Change& ch) {
    ch.to = v1::REFERRAL_STATUS_IN_PROGRESS;
    ch.reason = "services started";
    return absl::OkStatus();
  };
  SH_ASSIGN_OR_RETURN(const v1::Referral r,
                      changes_.Apply(&ctx, req.id(), "start_services", start));
  *resp->mutable_referral() = ChangedView(ctx.caller(), r);
  return absl::OkStatus();
}

absl::Status ReferralServiceImpl::RecordOutcome(CallContext& ctx,
                                                const v1::RecordOutcomeRequest& req,
                                                v1::RecordOutcomeResponse* resp) {
  SH_ASSIGN_OR_RETURN(const v1::ReasonCode code, OutcomeCode(req));
  const Mutation outcome = [&](PgTx&, v1::Referral& r, Actor, absl::Time, Change& ch) {
    ch.to = req.outcome();
    // The code is counted; the text stays in the record (child welfare, the provider).
    r.set_outcome_code(code);
    r.set_outcome_reason(req.reason());
    ch.reason = absl::StrCat("outcome recorded: ", ReasonLabel(code));
    return absl::OkStatus();
  };
  SH_ASSIGN_OR_RETURN(const v1::Referral r,
                      changes_.Apply(&ctx, req.id(), "record_outcome", outcome));
  *resp->mutable_referral() = ChangedView(ctx.caller(), r);
  return absl::OkStatus();
}

absl::Status ReferralServiceImpl::CancelReferral(CallContext& ctx,
                                                 const v1::CancelReferralRequest& req,
                                                 v1::CancelReferralResponse*) {
  const Mutation cancel = [&](PgTx& tx, v1::Referral& r, Actor actor, absl::Time,
                              Change& ch) -> absl::Status {
    if (actor == Actor::kReferrer && r.part_ids_size() > 0 && !r.needs().placement_tonight()) {
      // Issue 14: the officer cancels while its view (of the lead and its parts) could be
      // cancelled on one row: never once a service it shows has the youth.
      SH_ASSIGN_OR_RETURN(const std::vector<v1::Referral> parts,
                          ReferralStore::Parts(tx, {r.id()}));
      const v1::ReferrerView::Stage seen = ReferrerViewOf(r, parts).stage();
      if (seen != v1::ReferrerView::STAGE_ROUTING &&
          seen != v1::ReferrerView::STAGE_READY_FOR_HANDOFF) {
        return RefusedToReferrer(seen);
      }
    }
    ch.to = v1::REFERRAL_STATUS_CANCELLED;
    // The typed text may name the youth: kept in the body (child welfare only, purged with the
    // details), never in the append-only transition or audit row (issue 14).
    r.set_cancel_reason(req.reason());
    ch.reason = "cancelled";
    CloseOffers(r, v1::OFFER_STATE_WITHDRAWN, &ch.holds_to_release);
    return ReferralStore::SetRouteAfter(tx, r.id(), std::nullopt);
  };
  // Refused (closed, or in services) before any work: one path, whatever came after hand-off.
  // On the lead, every open row of the referral is cancelled with it (issue 14); on a part
  // (child welfare), that part.
  return changes_
      .ApplyToReferral(&ctx, req.id(), "cancel", cancel, v1::REFERRAL_STATUS_CANCELLED,
                       /*from_part=*/false)
      .status();
}

namespace {

// The window rounded out to whole days (Pacific; UTC when the time zone database is missing): a
// window moved by a second answers the same, so two windows cannot be differenced down to the
// referrals of one second.
std::pair<absl::Time, absl::Time> WholeDays(absl::Time from, absl::Time to) {
  const absl::TimeZone tz = WashingtonTimeZone().value_or(absl::UTCTimeZone());
  const absl::Time start = absl::FromCivil(absl::ToCivilDay(from, tz), tz);
  const absl::Time end = absl::FromCivil(absl::ToCivilDay(to - absl::Nanoseconds(1), tz) + 1, tz);
  return {start, end};
}

}  // namespace

absl::Status ReferralServiceImpl::GetReferralStats(CallContext& ctx,
                                                   const v1::GetReferralStatsRequest& req,
                                                   v1::GetReferralStatsResponse* resp) {
  const absl::Time now = ctx.Now();
  const absl::Time to = req.has_to_time() ? FromProtoTime(req.to_time()) : now;
  const absl::Time from =
      req.has_from_time() ? FromProtoTime(req.from_time()) : to - absl::Hours(24 * 30);
  if (from >= to) return absl::InvalidArgumentError("from_time must be before to_time");
  // Narrow windows single out referrals: at least a day, as small cells are withheld.
  if (to - from < absl::Hours(24)) {
    return absl::InvalidArgumentError(
        "the window from from_time to to_time must be at least 1 day");
  }
  const auto [day_from, day_to] = WholeDays(from, to);
  return ctx.Transact([&](PgTx& tx) -> absl::Status {
    SH_ASSIGN_OR_RETURN(const StatsCounts counts, ReferralStore::Stats(tx, day_from, day_to));
    *resp = StatsView(counts);
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::WatchReferralsResponse>* ReferralServiceImpl::WatchReferrals(
    CallContext& ctx, const v1::WatchReferralsRequest& req) {
  // The request was validated before this runs. Every stream can replay profiles from its
  // cursor: who opened it, from where, is audited, and the stream delivers nothing until that
  // audit row committed (it ends if the write failed). The write runs on the executor: never a
  // database write on this reactor thread.
  const Caller c = ctx.caller();
  uint64_t id = 0;
  auto* stream = hub_->NewWatcher(c.org_id, req.cursor(), ctx.TakeStreamSlot(), &id);
  if (id == 0) return stream;  // refused: nothing registered, nothing to audit
  const bool queued = env()->executor().TrySubmit([this, c, id, cursor = req.cursor()] {
    absl::Status s = pg_->Transact([&](PgTx& tx) {
      return ReferralStore::Audit(tx, c, "watch_opened", "*",
                                  absl::StrCat("cursor=", cursor.empty() ? "now" : cursor),
                                  clock_->Now());
    });
    if (!s.ok()) log::Error("audit_failed", {{"action", "watch_opened"}, {"error", s.message()}});
    hub_->Activate(id, s.ok() ? grpc::Status::OK
                              : grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                             "the watch could not be audited; retry"));
  });
  if (!queued) {
    hub_->Activate(
        id, grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "server busy; retry the watch"));
  }
  return stream;
}

// Statutory timers (issue 14): one timer marked filed, by the party CanRecordFiling names.
absl::Status ReferralServiceImpl::RecordStatutoryFiling(CallContext& ctx,
                                                        const v1::RecordStatutoryFilingRequest& req,
                                                        v1::RecordStatutoryFilingResponse* resp) {
  SH_ASSIGN_OR_RETURN(const StatutoryClock clock, ClockOf(req.kind()));
  SH_ASSIGN_OR_RETURN(const auto region, changes_.RegionOf(ctx.caller()));
  return ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    SH_ASSIGN_OR_RETURN(const v1::Referral r, ReferralStore::Get(tx, req.id(), false));
    SH_RETURN_IF_ERROR(ctx.Authorize(CanRead(ctx.caller(), r, region)));
    SH_RETURN_IF_ERROR(ctx.Authorize(CanRecordFiling(ctx.caller(), r, clock)));
    const absl::Time now = ctx.Now();
    SH_ASSIGN_OR_RETURN(*resp->mutable_timer(),
                        StatutoryTimers::RecordFiling(tx, r.id(), clock, ctx.caller().org_id, now));
    return ReferralStore::Audit(tx, ctx.caller(), "statutory_filing", r.id(), ClockName(clock),
                                now);
  });
}

// Issue 14, advocate response: the advocate's arrival on an advocacy row (advocate.h).
absl::Status ReferralServiceImpl::RecordAdvocateArrival(CallContext& ctx,
                                                        const v1::RecordAdvocateArrivalRequest& req,
                                                        v1::RecordAdvocateArrivalResponse* resp) {
  SH_ASSIGN_OR_RETURN(const v1::Referral r, timers_.advocate().RecordArrival(ctx, req));
  *resp->mutable_referral() = ProviderViewOf(r, ctx.caller().org_id);
  return absl::OkStatus();
}

}  // namespace safeharbor::referrals
