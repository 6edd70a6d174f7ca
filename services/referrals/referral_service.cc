#include "services/referrals/referral_service.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/idempotency.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/paging.h"
#include "common/proto_time.h"
#include "common/validate.h"
#include "services/referrals/referral_store.h"
#include "services/referrals/views.h"

namespace safeharbor::referrals {
namespace {

namespace dir = directory::v1;

// "requested", "offered", ...: the status as a metric label.
std::string StatusLabel(v1::ReferralStatus s) {
  return absl::AsciiStrToLower(absl::StripPrefix(v1::ReferralStatus_Name(s), "REFERRAL_STATUS_"));
}

absl::Status Invalid(absl::string_view message) { return absl::InvalidArgumentError(message); }

absl::Status CheckText(absl::string_view value, size_t max, absl::string_view field,
                       bool required) {
  if (required && value.empty()) return Invalid(absl::StrCat(field, " is required"));
  if (value.size() > max) {
    return Invalid(absl::StrCat(field, " is longer than ", max, " characters"));
  }
  return absl::OkStatus();
}

absl::Status ValidateYouth(const v1::YouthProfile& y) {
  const std::string& ref = y.youth_reference();
  if (ref.empty() || ref.size() > 64) {
    return Invalid(
        "youth.youth_reference is required (an opaque reference, at most 64 characters)");
  }
  for (char ch : ref) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_')) {
      return Invalid(
          "youth.youth_reference may hold only letters, digits, '-' and '_' (never a name)");
    }
  }
  if (y.age() < 0 || y.age() > 24) return Invalid("youth.age must be between 0 and 24");
  if (!dir::Gender_IsValid(y.gender())) return Invalid("youth.gender is not a known value");
  if (y.languages_size() > 5) return Invalid("youth.languages holds at most 5 languages");
  for (const auto& lang : y.languages()) {
    if (lang.size() != 2 || !absl::ascii_islower(static_cast<unsigned char>(lang[0])) ||
        !absl::ascii_islower(static_cast<unsigned char>(lang[1]))) {
      return Invalid("youth.languages must be lower-case ISO 639-1 codes such as \"es\"");
    }
  }
  const auto& id = y.identifying();
  if (auto s = CheckText(id.name(), 200, "youth.identifying.name", false); !s.ok()) return s;
  if (auto s = CheckText(id.contact(), 200, "youth.identifying.contact", false); !s.ok()) return s;
  return CheckText(id.notes(), 2000, "youth.identifying.notes", false);
}

absl::Status ValidateCreate(const v1::CreateReferralRequest& req, const CountyTable& counties) {
  if (auto s = ValidateRequestId(req.request_id()); !s.ok()) return s;
  if (auto s = ValidateYouth(req.youth()); !s.ok()) return s;
  if (counties.Find(req.county_fips()) == nullptr) {
    return Invalid("county_fips must be a known county FIPS code (where the youth was identified)");
  }
  if (req.has_location()) {
    if (auto s = ValidateLatLng(req.location().latitude(), req.location().longitude(), "location");
        !s.ok()) {
      return s;
    }
  }
  const v1::Needs& needs = req.needs();
  if (!needs.placement_tonight() && needs.service_categories().empty()) {
    return Invalid("needs: ask for placement_tonight or at least one service category");
  }
  if (needs.service_categories_size() > 10) {
    return Invalid("needs.service_categories holds at most 10 categories");
  }
  for (int c : needs.service_categories()) {
    if (c == dir::SERVICE_CATEGORY_UNSPECIFIED || !dir::ServiceCategory_IsValid(c)) {
      return Invalid("needs.service_categories holds an unknown category");
    }
    if (c == dir::SERVICE_CATEGORY_SECURE_CRISIS_RESIDENTIAL_CENTER) {
      return Invalid(
          "needs.service_categories: a secure (locked) placement is never a referral destination");
    }
  }
  if (!v1::Urgency_IsValid(req.urgency())) return Invalid("urgency is not a known value");
  const auto& rc = req.referrer_contact();
  if (auto s = CheckText(rc.name(), 100, "referrer_contact.name", false); !s.ok()) return s;
  if (auto s = CheckText(rc.phone(), 32, "referrer_contact.phone", true); !s.ok()) return s;
  return CheckText(rc.unit(), 100, "referrer_contact.unit", false);
}

absl::Status ValidateReason(absl::string_view reason) {
  return CheckText(reason, 500, "reason", true);
}

v1::Offer* PendingOfferTo(v1::Referral& r, absl::string_view org) {
  for (auto& o : *r.mutable_offers()) {
    if (o.provider_organization_id() == org && o.state() == v1::OFFER_STATE_PENDING) return &o;
  }
  return nullptr;
}

bool AnyPending(const v1::Referral& r) {
  for (const auto& o : r.offers()) {
    if (o.state() == v1::OFFER_STATE_PENDING) return true;
  }
  return false;
}

// Every pending offer becomes `state`; the bed hold (if any) is to be released after commit.
void CloseOffers(v1::Referral& r, v1::OfferState state, std::vector<std::string>* holds) {
  for (auto& o : *r.mutable_offers()) {
    if (o.state() == v1::OFFER_STATE_PENDING) o.set_state(state);
  }
  if (!r.bed_hold_id().empty()) holds->push_back(r.bed_hold_id());
  r.clear_bed_hold_id();
  r.clear_acceptance_deadline();
}

}  // namespace

ReferralServiceImpl::ReferralServiceImpl(RpcEnv* env, PgPool* pg, RedisClient* redis,
                                         prometheus::Registry& registry,
                                         const CountyTable& counties, const Clock* clock,
                                         const Sealer* sealer, Network* network,
                                         ReferralOptions options)
    : env_(env),
      pg_(pg),
      redis_(redis),
      counties_(counties),
      clock_(clock),
      sealer_(sealer),
      network_(network),
      options_(std::move(options)),
      system_{"referral-service", Role::kService, ""},
      created_(prometheus::BuildCounter()
                   .Name("safeharbor_referrals_created_total")
                   .Help("Referrals received, by urgency.")
                   .Register(registry)),
      transitions_(prometheus::BuildCounter()
                       .Name("safeharbor_referrals_transitions_total")
                       .Help("Referral status changes, by the status entered.")
                       .Register(registry)),
      by_status_(prometheus::BuildGauge()
                     .Name("safeharbor_referrals_by_status")
                     .Help("Referrals by current status (all time).")
                     .Register(registry)),
      time_to_acceptance_(
          prometheus::BuildHistogram()
              .Name("safeharbor_referrals_time_to_acceptance_seconds")
              .Help("From intake to a provider's acceptance.")
              .Register(registry)
              .Add({}, prometheus::Histogram::BucketBoundaries{30, 60, 120, 300, 600, 900, 1200,
                                                               1800, 2700, 3600, 7200})),
      reroutes_(prometheus::BuildCounter()
                    .Name("safeharbor_referrals_reroutes_total")
                    .Help("Referrals sent back to routing: declined by every offered provider, "
                          "or no answer by the deadline.")
                    .Register(registry)),
      escalations_(prometheus::BuildCounter()
                       .Name("safeharbor_referrals_escalations_total")
                       .Help("Referrals escalated to the county's on-call child-welfare office.")
                       .Register(registry)
                       .Add({})),
      placement_unavailable_(prometheus::BuildCounter()
                                 .Name("safeharbor_referrals_placement_unavailable_total")
                                 .Help("Referred for a placement when no bed could be held.")
                                 .Register(registry)
                                 .Add({})),
      routing_errors_(prometheus::BuildCounter()
                          .Name("safeharbor_referrals_routing_errors_total")
                          .Help("Routing attempts put off because a dependency did not answer.")
                          .Register(registry)),
      overdue_(prometheus::BuildGauge()
                   .Name("safeharbor_referrals_offers_overdue")
                   .Help("Referrals still offered more than the grace period past their "
                         "acceptance deadline (the deadline timer is not running).")
                   .Register(registry)
                   .Add({})),
      oldest_unrouted_(prometheus::BuildGauge()
                           .Name("safeharbor_referrals_oldest_unrouted_seconds")
                           .Help("Age of the oldest referral waiting to be routed.")
                           .Register(registry)
                           .Add({})),
      audit_reads_(prometheus::BuildCounter()
                       .Name("safeharbor_referrals_youth_data_reads_total")
                       .Help("Audited reads of referral youth data.")
                       .Register(registry)
                       .Add({})),
      placements_unrecorded_(
          prometheus::BuildCounter()
              .Name("safeharbor_referrals_placements_unrecorded_total")
              .Help("Hand-offs whose bed hold had lapsed, so the beds service could not record "
                    "the placement: the provider's census must be corrected.")
              .Register(registry)
              .Add({})) {
  for (const char* u : {"routine", "urgent", "emergency"}) created_.Add({{"urgency", u}});
  for (const char* r : {"declined", "deadline"}) reroutes_.Add({{"reason", r}});
  for (const char* d : {"directory", "beds", "other"}) routing_errors_.Add({{"dependency", d}});
  for (int s = v1::REFERRAL_STATUS_REQUESTED; s <= v1::REFERRAL_STATUS_ESCALATED; ++s) {
    const std::string name = StatusLabel(static_cast<v1::ReferralStatus>(s));
    transitions_.Add({{"to", name}});
    by_status_.Add({{"status", name}});
  }
  auto& watchers = prometheus::BuildGauge()
                       .Name("safeharbor_referrals_watchers")
                       .Help("Open WatchReferrals streams.")
                       .Register(registry)
                       .Add({});
  WatchSource<v1::WatchReferralsResponse> source;
  source.last_seq = [](PgTx& tx) { return ReferralStore::LastEventSeq(tx); };
  source.after =
      [](PgTx& tx, int64_t after,
         int limit) -> absl::StatusOr<std::vector<WatchEvent<v1::WatchReferralsResponse>>> {
    auto stored = ReferralStore::EventsAfter(tx, after, limit);
    if (!stored.ok()) return stored.status();
    std::vector<WatchEvent<v1::WatchReferralsResponse>> out(stored->size());
    for (size_t i = 0; i < stored->size(); ++i) {
      out[i].seq = (*stored)[i].seq;
      out[i].key = (*stored)[i].provider_org;
      *out[i].response.mutable_referral() = std::move((*stored)[i].view);
    }
    return out;
  };
  hub_ = std::make_unique<WatchHub<v1::WatchReferralsResponse>>(
      pg_, redis_ ? &redis_->options() : nullptr, absl::StrCat(options_.key_namespace, ":events"),
      std::move(source), options_.watch, &watchers);
}

ReferralServiceImpl::~ReferralServiceImpl() { StopBackground(); }

void ReferralServiceImpl::StartBackground(bool timers) {
  hub_->Start();
  if (timers) bg_thread_ = std::thread([this] { RouterLoop(); });
}

void ReferralServiceImpl::StopBackground() {
  {
    std::lock_guard<std::mutex> lock(bg_mu_);
    bg_stop_ = true;
  }
  bg_cv_.notify_all();
  if (bg_thread_.joinable()) bg_thread_.join();
  hub_->Stop();
}

void ReferralServiceImpl::Wake() {
  {
    std::lock_guard<std::mutex> lock(bg_mu_);
    bg_wake_ = true;
  }
  bg_cv_.notify_all();
}

void ReferralServiceImpl::AfterCommit(const std::vector<std::string>& holds_to_release) {
  // The holds are in the hold_releases outbox already: released now when the beds service
  // answers, else by the router on a later tick.
  for (const std::string& hold : holds_to_release) {
    if (auto s = ReleaseHold(hold); !s.ok()) {
      log::Warn("hold_release_deferred", {{"hold_id", hold}, {"error", s.message()}});
    }
  }
  hub_->Notify();
  if (redis_ != nullptr) {
    (void)redis_->Publish(absl::StrCat(options_.key_namespace, ":events"), "1");
  }
}

absl::Status ReferralServiceImpl::ReleaseHold(const std::string& hold_id) {
  absl::Status s = network_->ReleaseHold(hold_id);
  // Gone already (expired, released, confirmed) counts as released.
  if (!s.ok() && s.code() != absl::StatusCode::kFailedPrecondition &&
      s.code() != absl::StatusCode::kNotFound) {
    return s;
  }
  return pg_->Transact([&](PgTx& tx) { return ReferralStore::HoldReleased(tx, hold_id); });
}

absl::StatusOr<std::vector<std::string>> ReferralServiceImpl::RegionOf(const Caller& c) {
  if (c.role != Role::kChildWelfare) return std::vector<std::string>();
  return network_->OrganizationCounties(c.org_id);  // A directory call: never inside a transaction.
}

absl::StatusOr<Actor> ReferralServiceImpl::ActorFor(const Caller& c, const v1::Referral& r) const {
  const absl::Status denied =
      absl::PermissionDeniedError("this referral is not addressed to or made by your organization");
  switch (c.role) {
    case Role::kProvider:
      if (r.has_accepted_time() && r.handoff().provider_organization_id() == c.org_id) {
        return Actor::kAcceptedProvider;
      }
      if (ActiveOfferTo(r, c.org_id) != nullptr) return Actor::kOfferedProvider;
      return denied;
    case Role::kLawEnforcement:
      if (r.referrer_organization_id() == c.org_id) return Actor::kReferrer;
      return denied;
    case Role::kChildWelfare:
      return Actor::kChildWelfare;  // CanRead checks the region.
    default:
      return absl::PermissionDeniedError(
          absl::StrCat("role '", RoleName(c.role), "' may not act on referrals"));
  }
}

absl::Status ReferralServiceImpl::CanRead(const Caller& c, const v1::Referral& r,
                                          const std::vector<std::string>& region) const {
  auto actor = ActorFor(c, r);
  if (!actor.ok()) return actor.status();
  if (c.role != Role::kChildWelfare || r.referrer_organization_id() == c.org_id) {
    return absl::OkStatus();
  }
  if (std::find(region.begin(), region.end(), r.county_fips()) != region.end()) {
    return absl::OkStatus();
  }
  // The on-call office a referral was escalated to owns it, wherever it is.
  if (r.status() == v1::REFERRAL_STATUS_ESCALATED &&
      r.handoff().provider_organization_id() == c.org_id) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError("this referral is outside your child-welfare region");
}

absl::Status ReferralServiceImpl::Store(PgTx& tx, v1::Referral& r, const v1::Referral& before,
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
  if (auto s = ReferralStore::Update(tx, &r, moved ? &t : nullptr, now); !s.ok()) return s;
  for (const std::string& provider : ProvidersConcerned(before, r)) {
    auto seq = ReferralStore::AppendEvent(tx, provider, ProviderViewOf(r, provider), now);
    if (!seq.ok()) return seq.status();
    // The profile reaches this provider's watch stream: a disclosure, audited as such.
    Caller reader{provider, Role::kProvider, ""};
    if (auto s = ReferralStore::Audit(tx, reader, "disclosed_on_watch", r.id(),
                                      v1::ReferralStatus_Name(r.status()), now);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Referral> ReferralServiceImpl::Mutate(const Caller& c, absl::string_view id,
                                                         absl::string_view action,
                                                         const Mutation& mutate, bool internal) {
  if (auto s = ValidateId(id, "id"); !s.ok()) return s;
  std::vector<std::string> region;
  if (!internal) {
    auto got = RegionOf(c);
    if (!got.ok()) return got.status();
    region = *std::move(got);
  }
  const Caller& actor_caller = internal ? system_ : c;
  v1::Referral out;
  Change change;
  v1::ReferralStatus from = v1::REFERRAL_STATUS_UNSPECIFIED;
  absl::Status st = pg_->Transact([&](PgTx& tx) -> absl::Status {
    change = Change{};
    auto r = ReferralStore::Get(tx, id, /*for_update=*/true);
    if (!r.ok()) return r.status();
    Actor actor = Actor::kSystem;
    if (!internal) {
      if (auto s = CanRead(c, *r, region); !s.ok()) return s;
      auto a = ActorFor(c, *r);
      if (!a.ok()) return a.status();
      actor = *a;
    }
    const v1::Referral before = *r;
    from = r->status();
    const absl::Time now = clock_->Now();
    if (auto s = mutate(tx, *r, actor, now, change); !s.ok()) return s;
    if (change.to != v1::REFERRAL_STATUS_UNSPECIFIED && !change.noop) {
      const Actor checked = change.as_system ? Actor::kSystem : actor;
      if (auto s = CheckTransition(from, change.to, checked); !s.ok()) {
        if (actor != Actor::kReferrer) return s;
        // The officer learns nothing past "connected" from an error either.
        return absl::FailedPreconditionError(
            absl::StrCat("this referral can no longer be changed by you (stage ",
                         v1::ReferrerView::Stage_Name(ReferrerStage(from)), ")"));
      }
      r->set_status(change.to);
    }
    if (change.open_identity) {
      auto identity = ReferralStore::OpenIdentity(tx, r->id(), *sealer_);
      if (!identity.ok()) return identity.status();
      *r->mutable_youth()->mutable_identifying() = *std::move(identity);
      if (auto s = ReferralStore::Audit(tx, c, "identity_read", r->id(), "", now); !s.ok()) {
        return s;
      }
    }
    if (change.noop) {
      out = *std::move(r);
      return absl::OkStatus();
    }
    if (r->status() == v1::REFERRAL_STATUS_REQUESTED && from != r->status()) {
      if (auto s = ReferralStore::SetRouteAfter(tx, r->id(), now); !s.ok()) return s;
    }
    for (const std::string& hold : change.holds_to_release) {
      if (auto s = ReferralStore::QueueHoldRelease(tx, hold, r->id(), now); !s.ok()) return s;
    }
    v1::Referral stored = *r;
    stored.mutable_youth()->clear_identifying();
    if (auto s = Store(tx, stored, before, actor_caller, change.reason, now); !s.ok()) return s;
    if (auto s = ReferralStore::Audit(tx, actor_caller, action, r->id(), change.reason, now);
        !s.ok()) {
      return s;
    }
    *stored.mutable_youth()->mutable_identifying() = r->youth().identifying();
    out = std::move(stored);
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  if (change.open_identity) audit_reads_.Increment();
  if (change.noop) return out;
  if (out.status() != from) {
    const std::string name = StatusLabel(out.status());
    transitions_.Add({{"to", name}}).Increment();
    log::Info("referral_transition", {{"referral_id", out.id()},
                                      {"from", v1::ReferralStatus_Name(from)},
                                      {"to", v1::ReferralStatus_Name(out.status())},
                                      {"by", actor_caller.org_id}});
  }
  AfterCommit(change.holds_to_release);
  if (out.status() == v1::REFERRAL_STATUS_REQUESTED || change.wake) Wake();
  return out;
}

absl::Status ReferralServiceImpl::CreateReferral(const Caller& c,
                                                 const v1::CreateReferralRequest& req,
                                                 v1::CreateReferralResponse* resp) {
  if (auto s = RequireRole(c, {Role::kLawEnforcement, Role::kChildWelfare}); !s.ok()) return s;
  if (auto s = ValidateCreate(req, counties_); !s.ok()) return s;
  const std::string id = NewId("ref");
  // The idempotency record keeps per-field digests; identifying details go in only as keyed
  // fingerprints, so the record cannot be used to test guesses of a youth's name.
  v1::CreateReferralRequest digested = req;
  if (digested.youth().has_identifying()) {
    auto* ident = digested.mutable_youth()->mutable_identifying();
    for (std::string* field :
         {ident->mutable_name(), ident->mutable_contact(), ident->mutable_notes()}) {
      if (!field->empty()) *field = sealer_->Fingerprint(*field);
    }
  }
  absl::Status st = pg_->Transact([&](PgTx& tx) {
    resp->Clear();
    return RunIdempotent(
        tx, "CreateReferral", c, req.request_id(), digested, resp, [&]() -> absl::Status {
          const absl::Time now = clock_->Now();
          v1::Referral r;
          r.set_id(id);
          r.set_referrer_organization_id(c.org_id);
          *r.mutable_referrer_contact() = req.referrer_contact();
          *r.mutable_youth() = req.youth();
          r.set_county_fips(req.county_fips());
          if (req.has_location()) *r.mutable_location() = req.location();
          *r.mutable_needs() = req.needs();
          r.set_urgency(req.urgency() == v1::URGENCY_UNSPECIFIED ? v1::URGENCY_ROUTINE
                                                                 : req.urgency());
          *r.mutable_safety() = req.safety();
          r.set_status(v1::REFERRAL_STATUS_REQUESTED);
          *r.mutable_create_time() = ToProtoTime(now);
          *r.mutable_update_time() = ToProtoTime(now);
          *r.mutable_referrer_view_time() = ToProtoTime(now);
          if (auto s = ReferralStore::Insert(tx, r, c, *sealer_, now); !s.ok()) {
            return s;
          }
          v1::Transition t;
          t.set_to_status(v1::REFERRAL_STATUS_REQUESTED);
          t.set_actor_organization_id(c.org_id);
          t.set_actor_role(std::string(RoleName(c.role)));
          *t.mutable_time() = ToProtoTime(now);
          t.set_reason("referral received");
          if (auto s = ReferralStore::AppendTransition(tx, id, t); !s.ok()) {
            return s;
          }
          if (auto s = ReferralStore::Audit(tx, c, "create", id, "", now); !s.ok()) {
            return s;
          }
          *resp->mutable_referral() = ReferrerViewOf(r);
          return absl::OkStatus();
        });
  });
  if (!st.ok()) return st;
  if (resp->referral().id() == id) {  // Not a replay.
    const v1::Urgency u =
        req.urgency() == v1::URGENCY_UNSPECIFIED ? v1::URGENCY_ROUTINE : req.urgency();
    created_.Add({{"urgency", absl::AsciiStrToLower(v1::Urgency_Name(u).substr(8))}}).Increment();
    log::Info("referral_created", {{"referral_id", id},
                                   {"county_fips", req.county_fips()},
                                   {"urgency", v1::Urgency_Name(u)},
                                   {"placement", req.needs().placement_tonight() ? "yes" : "no"},
                                   {"by", c.org_id}});
    Wake();
  }
  return absl::OkStatus();
}

absl::Status ReferralServiceImpl::GetReferral(const Caller& c, const v1::GetReferralRequest& req,
                                              v1::GetReferralResponse* resp) {
  if (auto s = ValidateId(req.id(), "id"); !s.ok()) return s;
  auto region = RegionOf(c);
  if (!region.ok()) return region.status();
  bool identity = false;
  absl::Status st = pg_->Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    identity = false;
    auto r = ReferralStore::Get(tx, req.id(), false);
    if (!r.ok()) return r.status();
    if (auto s = CanRead(c, *r, *region); !s.ok()) return s;
    const absl::Time now = clock_->Now();
    if (c.role == Role::kLawEnforcement) {
      *resp->mutable_referrer_view() = ReferrerViewOf(*r);
      return absl::OkStatus();  // No youth data in it.
    }
    if (c.role == Role::kProvider) {
      *resp->mutable_referral() = ProviderViewOf(*r, c.org_id);
      if (r->has_accepted_time() && r->handoff().provider_organization_id() == c.org_id) {
        auto id = ReferralStore::OpenIdentity(tx, r->id(), *sealer_);
        if (!id.ok()) return id.status();
        *resp->mutable_referral()->mutable_youth()->mutable_identifying() = *std::move(id);
        identity = true;
      }
    } else {
      *resp->mutable_referral() = *std::move(r);  // Child welfare: never the identity.
    }
    return ReferralStore::Audit(tx, c, identity ? "identity_read" : "read", req.id(), "", now);
  });
  if (st.ok() && resp->has_referral()) audit_reads_.Increment();
  return st;
}

absl::Status ReferralServiceImpl::ListReferrals(const Caller& c,
                                                const v1::ListReferralsRequest& req,
                                                v1::ListReferralsResponse* resp) {
  ReferralStore::ListQuery q;
  q.org_id = c.org_id;
  switch (c.role) {
    case Role::kLawEnforcement:
      q.scope = ReferralStore::ListQuery::Scope::kReferrer;
      break;
    case Role::kProvider:
      q.scope = ReferralStore::ListQuery::Scope::kProvider;
      break;
    case Role::kChildWelfare: {
      q.scope = ReferralStore::ListQuery::Scope::kRegion;
      auto region = RegionOf(c);
      if (!region.ok()) return region.status();
      q.counties = *std::move(region);
      break;
    }
    default:
      return absl::PermissionDeniedError(
          absl::StrCat("role '", RoleName(c.role), "' may not list referrals"));
  }
  if (!v1::ReferralStatus_IsValid(req.status())) return Invalid("status is not a known value");
  if (c.role == Role::kLawEnforcement && req.status() != v1::REFERRAL_STATUS_UNSPECIFIED) {
    // A filter on the real status would reveal what the referrer view hides.
    return Invalid("status: law enforcement lists its referrals without a status filter");
  }
  q.status = req.status();
  auto size = ValidatePageSize(req.page_size(), 20, 100);
  if (!size.ok()) return size.status();
  q.limit = *size + 1;
  const std::string fingerprint = QueryFingerprint(req);
  if (!req.page_token().empty()) {
    auto parts = DecodePageToken(req.page_token(), "referrals", fingerprint, 2);
    if (!parts.ok()) return parts.status();
    absl::Time t;
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, (*parts)[0], &t, &err)) {
      return Invalid("page_token is malformed");
    }
    q.before = std::make_pair(t, (*parts)[1]);
  }
  int64_t audited = 0;
  absl::Status st = pg_->Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    audited = 0;
    auto rows = ReferralStore::List(tx, q);
    if (!rows.ok()) return rows.status();
    const absl::Time now = clock_->Now();
    for (size_t i = 0; i < rows->size() && static_cast<int>(i) < *size; ++i) {
      v1::Referral& r = (*rows)[i];
      auto* item = resp->add_referrals();
      if (c.role == Role::kLawEnforcement) {
        *item->mutable_referrer_view() = ReferrerViewOf(r);
        continue;
      }
      *item->mutable_referral() =
          c.role == Role::kProvider ? ProviderViewOf(r, c.org_id) : std::move(r);
      if (auto s = ReferralStore::Audit(tx, c, "list", item->referral().id(), "", now); !s.ok()) {
        return s;
      }
      ++audited;
    }
    if (static_cast<int>(rows->size()) > *size) {
      const v1::Referral& last = (*rows)[static_cast<size_t>(*size) - 1];
      resp->set_next_page_token(
          EncodePageToken("referrals", fingerprint,
                          {absl::FormatTime(absl::RFC3339_full, FromProtoTime(last.create_time()),
                                            absl::UTCTimeZone()),
                           last.id()}));
    }
    return absl::OkStatus();
  });
  if (st.ok()) audit_reads_.Increment(static_cast<double>(audited));
  return st;
}

absl::Status ReferralServiceImpl::AcceptReferral(const Caller& c,
                                                 const v1::AcceptReferralRequest& req,
                                                 v1::AcceptReferralResponse* resp) {
  if (auto s = RequireRole(c, {Role::kProvider}); !s.ok()) return s;
  if (auto s = ValidateRequestId(req.request_id()); !s.ok()) return s;
  absl::Time created;
  auto r =
      Mutate(c, req.id(), "accept",
             [&](PgTx&, v1::Referral& r, Actor, absl::Time now, Change& ch) -> absl::Status {
               ch.open_identity = true;
               if (r.has_accepted_time() && r.handoff().provider_organization_id() == c.org_id) {
                 ch.noop = true;  // A retry of an accept that went through: the same answer.
                 return absl::OkStatus();
               }
               ch.to = v1::REFERRAL_STATUS_ACCEPTED;
               v1::Offer* offer = PendingOfferTo(r, c.org_id);
               if (offer == nullptr || r.status() != v1::REFERRAL_STATUS_OFFERED) {
                 return absl::FailedPreconditionError(
                     absl::StrCat("no pending offer of this referral to your organization (status ",
                                  v1::ReferralStatus_Name(r.status()), ")"));
               }
               if (now > FromProtoTime(offer->respond_by())) {
                 return absl::FailedPreconditionError(
                     "the offer expired at its acceptance deadline; the referral is being offered "
                     "elsewhere");
               }
               offer->set_state(v1::OFFER_STATE_ACCEPTED);
               *r.mutable_handoff() = offer->handoff();
               std::vector<std::string> none;
               const std::string hold = r.bed_hold_id();
               CloseOffers(r, v1::OFFER_STATE_WITHDRAWN, &none);  // The first to accept wins.
               r.set_bed_hold_id(hold);                           // The hold stays with the winner.
               *r.mutable_accepted_time() = ToProtoTime(now);
               created = FromProtoTime(r.create_time());
               ch.reason = absl::StrCat("accepted by ", c.org_id);
               return absl::OkStatus();
             });
  if (!r.ok()) return r.status();
  if (created != absl::Time()) {
    time_to_acceptance_.Observe(absl::ToDoubleSeconds(FromProtoTime(r->accepted_time()) - created));
  }
  *resp->mutable_referral() = ProviderViewOf(*r, c.org_id);
  *resp->mutable_referral()->mutable_youth()->mutable_identifying() = r->youth().identifying();
  return absl::OkStatus();
}

absl::Status ReferralServiceImpl::DeclineReferral(const Caller& c,
                                                  const v1::DeclineReferralRequest& req,
                                                  v1::DeclineReferralResponse*) {
  if (auto s = RequireRole(c, {Role::kProvider}); !s.ok()) return s;
  if (auto s = ValidateReason(req.reason()); !s.ok()) return s;
  bool rerouted = false;
  auto r = Mutate(c, req.id(), "decline",
                  [&](PgTx&, v1::Referral& r, Actor, absl::Time, Change& ch) -> absl::Status {
                    rerouted = false;
                    v1::Offer* offer = PendingOfferTo(r, c.org_id);
                    if (offer == nullptr) {
                      return absl::FailedPreconditionError(
                          "no pending offer of this referral to your organization");
                    }
                    offer->set_state(v1::OFFER_STATE_DECLINED);
                    offer->set_decline_reason(req.reason());
                    ch.reason = absl::StrCat("declined by ", c.org_id, ": ", req.reason());
                    if (AnyPending(r)) return absl::OkStatus();
                    // Nobody left to answer: back to routing, the next candidate is offered.
                    CloseOffers(r, v1::OFFER_STATE_WITHDRAWN, &ch.holds_to_release);
                    r.set_reroutes(r.reroutes() + 1);
                    ch.to = v1::REFERRAL_STATUS_REQUESTED;
                    ch.as_system = true;
                    rerouted = true;
                    return absl::OkStatus();
                  });
  if (!r.ok()) return r.status();
  if (rerouted) reroutes_.Add({{"reason", "declined"}}).Increment();
  return absl::OkStatus();
}

absl::Status ReferralServiceImpl::ConfirmHandoff(const Caller& c,
                                                 const v1::ConfirmHandoffRequest& req,
                                                 v1::ConfirmHandoffResponse* resp) {
  if (auto s = RequireRole(c, {Role::kProvider}); !s.ok()) return s;
  auto r =
      Mutate(c, req.id(), "confirm_handoff",
             [&](PgTx& tx, v1::Referral& r, Actor, absl::Time now, Change& ch) -> absl::Status {
               ch.to = v1::REFERRAL_STATUS_HANDED_OFF;
               ch.reason = "the provider has the youth";
               *r.mutable_handoff()->mutable_handed_off_time() = ToProtoTime(now);
               if (r.bed_hold_id().empty()) return absl::OkStatus();
               // The bed becomes occupied in the beds service; retried until it answers.
               ch.wake = true;
               return ReferralStore::SetPlacementPending(tx, r.id(), true);
             });
  if (!r.ok()) return r.status();
  *resp->mutable_referral() = ProviderViewOf(*r, c.org_id);
  return absl::OkStatus();
}

absl::Status ReferralServiceImpl::StartServices(const Caller& c,
                                                const v1::StartServicesRequest& req,
                                                v1::StartServicesResponse* resp) {
  if (auto s = RequireRole(c, {Role::kProvider}); !s.ok()) return s;
  auto r = Mutate(c, req.id(), "start_services",
                  [&](PgTx&, v1::Referral&, Actor, absl::Time, Change& ch) {
                    ch.to = v1::REFERRAL_STATUS_IN_PROGRESS;
                    ch.reason = "services started";
                    return absl::OkStatus();
                  });
  if (!r.ok()) return r.status();
  *resp->mutable_referral() = ProviderViewOf(*r, c.org_id);
  return absl::OkStatus();
}

absl::Status ReferralServiceImpl::RecordOutcome(const Caller& c,
                                                const v1::RecordOutcomeRequest& req,
                                                v1::RecordOutcomeResponse* resp) {
  if (auto s = RequireRole(c, {Role::kProvider}); !s.ok()) return s;
  if (req.outcome() != v1::REFERRAL_STATUS_COMPLETED &&
      req.outcome() != v1::REFERRAL_STATUS_YOUTH_DECLINED &&
      req.outcome() != v1::REFERRAL_STATUS_COULD_NOT_CONTACT) {
    return Invalid("outcome must be COMPLETED, YOUTH_DECLINED or COULD_NOT_CONTACT");
  }
  auto r = Mutate(c, req.id(), "record_outcome",
                  [&](PgTx&, v1::Referral&, Actor, absl::Time, Change& ch) {
                    ch.to = req.outcome();
                    ch.reason = "outcome recorded";
                    return absl::OkStatus();
                  });
  if (!r.ok()) return r.status();
  *resp->mutable_referral() = ProviderViewOf(*r, c.org_id);
  return absl::OkStatus();
}

absl::Status ReferralServiceImpl::CancelReferral(const Caller& c,
                                                 const v1::CancelReferralRequest& req,
                                                 v1::CancelReferralResponse*) {
  if (auto s = RequireRole(c, {Role::kLawEnforcement, Role::kChildWelfare}); !s.ok()) return s;
  if (auto s = ValidateReason(req.reason()); !s.ok()) return s;
  return Mutate(c, req.id(), "cancel",
                [&](PgTx& tx, v1::Referral& r, Actor, absl::Time, Change& ch) {
                  ch.to = v1::REFERRAL_STATUS_CANCELLED;
                  ch.reason = req.reason();
                  if (IsTerminal(r.status())) return absl::OkStatus();  // Refused by the check.
                  CloseOffers(r, v1::OFFER_STATE_WITHDRAWN, &ch.holds_to_release);
                  return ReferralStore::SetRouteAfter(tx, r.id(), std::nullopt);
                })
      .status();
}

absl::Status ReferralServiceImpl::GetReferralStats(const Caller& c,
                                                   const v1::GetReferralStatsRequest& req,
                                                   v1::GetReferralStatsResponse* resp) {
  if (auto s = RequireRole(c, {Role::kAuditor}); !s.ok()) return s;
  const absl::Time now = clock_->Now();
  const absl::Time to = req.has_to_time() ? FromProtoTime(req.to_time()) : now;
  const absl::Time from =
      req.has_from_time() ? FromProtoTime(req.from_time()) : to - absl::Hours(24 * 30);
  if (from >= to) return Invalid("from_time must be before to_time");
  return pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        auto s = ReferralStore::Stats(tx, from, to);
        if (!s.ok()) return s.status();
        *resp = *std::move(s);
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true);
}

grpc::ServerWriteReactor<v1::WatchReferralsResponse>* ReferralServiceImpl::WatchReferrals(
    grpc::CallbackServerContext* ctx, const v1::WatchReferralsRequest* req) {
  absl::StatusOr<Caller> caller = env_->Identify(*ctx);
  if (caller.ok() && caller->role != Role::kProvider) {
    caller = absl::PermissionDeniedError("only a provider watches the referrals addressed to it");
  }
  if (caller.ok()) {
    // Every stream can replay profiles from its cursor: who opened it, from where, is audited
    // (on the executor: never a database write on this reactor thread).
    const bool queued = env_->executor().TrySubmit([this, c = *caller, cursor = req->cursor()] {
      absl::Status s = pg_->Transact([&](PgTx& tx) {
        return ReferralStore::Audit(tx, c, "watch_opened", "*",
                                    absl::StrCat("cursor=", cursor.empty() ? "now" : cursor),
                                    clock_->Now());
      });
      if (!s.ok()) log::Error("audit_failed", {{"action", "watch_opened"}, {"error", s.message()}});
    });
    if (!queued) caller = absl::ResourceExhaustedError("server busy; retry the watch");
  }
  return hub_->NewWatcher(caller.ok() ? caller->org_id : "", req->cursor(),
                          ToGrpcStatus(caller.status()));
}

absl::Status ReferralServiceImpl::RefreshGauges() {
  return pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        auto counts = ReferralStore::CountByStatus(tx);
        if (!counts.ok()) return counts.status();
        for (int s = v1::REFERRAL_STATUS_REQUESTED; s <= v1::REFERRAL_STATUS_ESCALATED; ++s) {
          const std::string name = StatusLabel(static_cast<v1::ReferralStatus>(s));
          auto it = counts->find(s);
          by_status_.Add({{"status", name}})
              .Set(it == counts->end() ? 0.0 : static_cast<double>(it->second));
        }
        const absl::Time now = clock_->Now();
        auto overdue = ReferralStore::OverdueOffers(tx, now, options_.overdue_grace);
        if (!overdue.ok()) return overdue.status();
        overdue_.Set(static_cast<double>(*overdue));
        auto oldest = ReferralStore::OldestUnroutedSeconds(tx, now);
        if (!oldest.ok()) return oldest.status();
        oldest_unrouted_.Set(static_cast<double>(*oldest));
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true);
}

}  // namespace safeharbor::referrals
