#include "services/beds/beds_service.h"

#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/idempotency.h"
#include "common/ids.h"
#include "common/invariant.h"
#include "common/log.h"
#include "common/paging.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/validate.h"
#include "services/beds/availability.h"
#include "services/beds/beds_store.h"

namespace safeharbor::beds {
namespace {

absl::Status ValidateReferralId(absl::string_view id) {
  if (id.empty() || id.size() > 64) {
    return absl::InvalidArgumentError("referral_id is required (at most 64 characters)");
  }
  for (char c : id) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) {
      return absl::InvalidArgumentError("referral_id may hold only letters, digits, '-' and '_'");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateBedType(v1::BedType t) {
  if (t == v1::BED_TYPE_UNSPECIFIED || !v1::BedType_IsValid(t)) {
    return absl::InvalidArgumentError("bed_type is required");
  }
  return absl::OkStatus();
}

absl::Status ValidateHoldRequest(const v1::HoldBedRequest& req) {
  SH_RETURN_IF_ERROR(ValidateId(req.facility_id(), "facility_id"));
  SH_RETURN_IF_ERROR(ValidateBedType(req.bed_type()));
  SH_RETURN_IF_ERROR(ValidateReferralId(req.referral_id()));
  if (!req.for_organization_id().empty()) {
    SH_RETURN_IF_ERROR(ValidateId(req.for_organization_id(), "for_organization_id"));
  }
  return HoldTtl(req.ttl_seconds()).status();
}

absl::Status ValidateExtendRequest(const v1::ExtendHoldRequest& req) {
  SH_RETURN_IF_ERROR(ValidateId(req.hold_id(), "hold_id"));
  const auto& t = req.expire_time();
  if (!req.has_expire_time() || t.seconds() <= 0 || t.nanos() < 0 || t.nanos() > 999'999'999) {
    return absl::InvalidArgumentError("expire_time is required (a valid time)");
  }
  return absl::OkStatus();
}

// A bed given out (a hold, a placement) never takes held, occupied and out-of-service beds past
// what is licensed. (A census may report more occupied beds than are free of holds: those holds
// then fail to confirm.)
absl::Status CheckCapacity(const Inventory& inv) {
  SH_INVARIANT(inv.held + inv.occupied + inv.out_of_service <= inv.licensed_capacity,
               "beds.capacity");
  return absl::OkStatus();
}

// The watch hub reads availability events from PostgreSQL, keyed by county.
WatchSource<v1::WatchAvailabilityResponse> AvailabilityEvents() {
  WatchSource<v1::WatchAvailabilityResponse> source;
  source.last_seq = [](PgTx& tx) { return BedsStore::LastEventSeq(tx); };
  source.after =
      [](PgTx& tx, int64_t after,
         int limit) -> absl::StatusOr<std::vector<WatchEvent<v1::WatchAvailabilityResponse>>> {
    SH_ASSIGN_OR_RETURN(auto stored, BedsStore::EventsAfter(tx, after, limit));
    std::vector<WatchEvent<v1::WatchAvailabilityResponse>> out(stored.size());
    for (size_t i = 0; i < stored.size(); ++i) {
      const StoredEvent& e = stored[i];
      out[i].seq = e.seq;
      out[i].key = e.county_fips;
      *out[i].response.mutable_availability() = e.availability;
      out[i].response.set_county_fips(e.county_fips);
      out[i].response.set_reason(e.reason);
    }
    return out;
  };
  PruneEventsTable(source, "availability_events");
  return source;
}

}  // namespace

BedsServiceImpl::BedsServiceImpl(RpcEnv* env, PgPool* pg, RedisClient* redis,
                                 prometheus::Registry& registry, const CountyTable& counties,
                                 const Clock* clock, const ProviderCheck* providers,
                                 BedsOptions options)
    : RpcService("safeharbor.beds.v1.BedsService", KitDeps{env, pg, clock, &registry}),
      pg_(pg),
      redis_(redis),
      counties_(counties),
      clock_(clock),
      providers_(providers),
      options_(std::move(options)),
      search_cache_(redis, registry, "beds_search", options_.key_namespace,
                    options_.search_cache_ttl),
      holds_(prometheus::BuildCounter()
                 .Name("safeharbor_beds_holds_total")
                 .Help("Bed holds by event: created, expired, released, confirmed, extended.")
                 .Register(registry)),
      hold_conflicts_(prometheus::BuildCounter()
                          .Name("safeharbor_beds_hold_conflicts_total")
                          .Help("HoldBed calls refused because no bed was free or countable.")
                          .Register(registry)
                          .Add({})),
      hold_cap_refusals_(prometheus::BuildCounter()
                             .Name("safeharbor_beds_hold_cap_refusals_total")
                             .Help("HoldBed calls refused: the organization held for was at "
                                   "its cap of active holds.")
                             .Register(registry)
                             .Add({})),
      available_(prometheus::BuildGauge()
                     .Name("safeharbor_beds_available")
                     .Help("Beds available now (fresh census, net of holds) by county and type.")
                     .Register(registry)),
      held_(prometheus::BuildGauge()
                .Name("safeharbor_beds_held")
                .Help("Beds under an active hold by county and type.")
                .Register(registry)),
      stale_(prometheus::BuildGauge()
                 .Name("safeharbor_beds_stale_census")
                 .Help("Bed types of routable facilities whose census is stale or missing.")
                 .Register(registry)
                 .Add({})),
      sweeper_(
          "beds_hold_sweep", options_.sweep_interval,
          [this] { return SweepExpiredHolds().status(); }, &registry),
      gauges_(
          "beds_gauges", options_.gauge_interval, [this] { return RefreshGauges(); }, &registry) {
  Methods();
  for (const char* e : {"created", "expired", "released", "confirmed", "extended"}) {
    holds_.Add({{"event", e}});
  }
  auto& watchers = prometheus::BuildGauge()
                       .Name("safeharbor_beds_watchers")
                       .Help("Open WatchAvailability streams.")
                       .Register(registry)
                       .Add({});
  WatchOptions watch;
  watch.poll_interval = options_.watch_poll_interval;
  watch.max_pending = options_.watch_max_pending;
  watch.max_watchers = options_.max_watchers;
  watch.replay_horizon = options_.watch_replay_horizon;
  watch.max_stream_age = options_.watch_max_stream_age;
  hub_ = std::make_unique<WatchHub<v1::WatchAvailabilityResponse>>(
      pg_, redis_ ? &redis_->options() : nullptr, absl::StrCat(options_.key_namespace, ":events"),
      AvailabilityEvents(), watch, &watchers, clock_);
}

BedsServiceImpl::~BedsServiceImpl() { StopBackground(); }

// The beds service's method table: every RPC, who may call it, and how.
void BedsServiceImpl::Methods() {
  const RoleSet managers = {Role::kProvider, Role::kDirectoryAdmin};
  const RoleSet hold_parties = {Role::kChildWelfare, Role::kLawEnforcement, Role::kProvider,
                                Role::kService};
  const MethodPolicy own_facility{
      .roles = managers, .scope = Scope::kOwnOrganization, .any_org = {Role::kDirectoryAdmin}};
  MethodPolicy create = own_facility;
  create.idempotency = Idempotency::kRecorded;
  const MethodPolicy snapshot{
      .roles = RoleSet::Every(), .isolation = Isolation::kRepeatableRead, .read_only = true};
  const auto facility_org = [](const auto& r) { return r.facility().organization_id(); };
  SAFEHARBOR_RPC(
      CreateFacility, create,
      .validate =
          [this](const auto& r) { return ValidateFacility(r.facility(), counties_, false); },
      .organization = facility_org);
  SAFEHARBOR_RPC(
      GetFacility, snapshot, .validate = [](const auto& r) { return ValidateId(r.id(), "id"); });
  SAFEHARBOR_RPC(
      UpdateFacility, own_facility,
      .validate = [this](const auto& r) { return ValidateFacility(r.facility(), counties_, true); },
      .organization = facility_org);
  SAFEHARBOR_RPC(ListFacilities, (MethodPolicy{.roles = RoleSet::Every(), .read_only = true}));
  SAFEHARBOR_RPC(
      ReportCensus,
      (MethodPolicy{
          .roles = managers, .scope = Scope::kStored, .idempotency = Idempotency::kRecorded}),
      .validate = [](const auto& r) { return ValidateId(r.facility_id(), "facility_id"); });
  SAFEHARBOR_RPC(
      SearchAvailability, snapshot,
      .validate = [this](const auto& r) { return ValidateSearch(r, counties_); });
  // Only the referral service holds, for the referrals it routes: an officer or intake
  // worker holds a bed by making a referral, never for a made-up referral id.
  SAFEHARBOR_RPC(
      HoldBed, (MethodPolicy{.roles = {Role::kService}, .idempotency = Idempotency::kRecorded}),
      .validate = [](const auto& r) { return ValidateHoldRequest(r); });
  SAFEHARBOR_RPC(
      ReleaseHold, (MethodPolicy{.roles = hold_parties, .scope = Scope::kStored}),
      .validate = [](const auto& r) { return ValidateId(r.hold_id(), "hold_id"); });
  // The referral service, for a hold it placed (an accepted referral's hand-off deadline).
  SAFEHARBOR_RPC(
      ExtendHold,
      (MethodPolicy{.roles = {Role::kService},
                    .scope = Scope::kStored,
                    .idempotency = Idempotency::kRecorded}),
      .validate = [](const auto& r) { return ValidateExtendRequest(r); });
  SAFEHARBOR_RPC(
      ConfirmPlacement,
      (MethodPolicy{
          .roles = hold_parties, .scope = Scope::kStored, .idempotency = Idempotency::kRecorded}),
      .validate = [](const auto& r) { return ValidateId(r.hold_id(), "hold_id"); });
  SAFEHARBOR_RPC(
      DischargePlacement,
      (MethodPolicy{.roles = {Role::kProvider, Role::kDirectoryAdmin, Role::kService},
                    .scope = Scope::kStored}),
      .validate = [](const auto& r) { return ValidateId(r.placement_id(), "placement_id"); });
  SAFEHARBOR_STREAM_RPC(
      WatchAvailability, {.roles = RoleSet::Every()},
      .validate = [this](const auto& r) -> absl::Status {
        if (!r.county_fips().empty() && counties_.Find(r.county_fips()) == nullptr) {
          return absl::InvalidArgumentError("county_fips must be a known county FIPS code");
        }
        return ValidateCursor(r.cursor());
      });
  Seal();
}

void BedsServiceImpl::StartBackground() {
  hub_->Start();
  sweeper_.Start();
  gauges_.Start();
  gauges_.Wake();  // gauges from the start, then every gauge_interval
}

void BedsServiceImpl::StopBackground() {
  sweeper_.Stop();
  gauges_.Stop();
  hub_->Stop();
}

void BedsServiceImpl::Changed(CallContext* ctx) {
  // Before the answer: no caller told of the change reads a cached answer older than it.
  search_cache_.Invalidate();
  hub_->Notify();
  if (redis_ == nullptr) return;
  // The other replicas' watchers read the committed events; the nudge need not delay the answer.
  // It holds no pointer to this service (the executor that runs it may outlive the service, as
  // in tests; the Redis client outlives the executor).
  const auto nudge = [redis = redis_, channel = absl::StrCat(options_.key_namespace, ":events")] {
    (void)redis->Publish(channel, "1");
  };
  if (ctx != nullptr) {
    ctx->AfterReply(nudge);
  } else {
    nudge();
  }
}

void BedsServiceImpl::CountHold(const char* event) { holds_.Add({{"event", event}}).Increment(); }

absl::Status BedsServiceImpl::CanManage(const Caller& c, absl::string_view org_id) const {
  if (c.role == Role::kDirectoryAdmin) return absl::OkStatus();
  if (c.role == Role::kProvider && c.org_id == org_id) return absl::OkStatus();
  return absl::PermissionDeniedError("a provider may manage only its own facilities");
}

absl::Status BedsServiceImpl::CanActOnHold(const Caller& c, const v1::Hold& hold,
                                           const v1::Facility& facility) const {
  if (c.role == Role::kService || c.org_id == hold.holder_organization_id() ||
      (c.role == Role::kProvider && c.org_id == facility.organization_id())) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      "only the holder, the facility's provider or the referral service may act on a hold");
}

absl::StatusOr<std::pair<Inventory, absl::Time>> BedsServiceImpl::LockedInventory(
    PgTx& tx, absl::string_view facility_id, v1::BedType type) {
  auto locked = BedsStore::SendLockedInventory(tx, facility_id, type, clock_->Now());
  SH_ASSIGN_OR_RETURN(LockedBeds beds, locked.Get());
  const absl::Time now = clock_->Now();  // the lock is held
  return std::make_pair(beds.At(now), now);
}

absl::Status BedsServiceImpl::AppendAvailability(PgTx& tx, const std::string& county,
                                                 const char* reason, const std::string& facility_id,
                                                 v1::BedType type, const Inventory& inv,
                                                 absl::Time now) {
  BedsStore::AppendEvent(tx, county, reason,
                         ToProto(facility_id, type, inv, now, options_.stale_after), now);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ExpiredHold>> BedsServiceImpl::ExpireSome(PgTx& tx) {
  const absl::Time now = clock_->Now();
  SH_ASSIGN_OR_RETURN(std::vector<ExpiredHold> expired, BedsStore::ExpireHolds(tx, now, 100));
  // Lock each affected bed type once, in the order every writer uses; append events last.
  std::set<std::pair<std::string, int>> types;
  for (const auto& h : expired) types.insert({h.facility_id, h.bed_type});
  for (const auto& [facility, type] : types) {
    SH_RETURN_IF_ERROR(BedsStore::LockInventory(tx, facility, static_cast<v1::BedType>(type)));
  }
  for (const auto& [facility, type] : types) {
    SH_ASSIGN_OR_RETURN(v1::Facility f, BedsStore::GetFacility(tx, facility));
    const auto bed_type = static_cast<v1::BedType>(type);
    SH_ASSIGN_OR_RETURN(Inventory inv, BedsStore::GetInventory(tx, facility, bed_type, now));
    SH_RETURN_IF_ERROR(
        AppendAvailability(tx, f.county_fips(), "expiry", facility, bed_type, inv, now));
  }
  return expired;
}

absl::StatusOr<int> BedsServiceImpl::SweepExpiredHolds() {
  int total = 0;
  for (int round = 0; round < 10; ++round) {  // At most 1000 holds per sweep.
    std::vector<ExpiredHold> expired;
    SH_RETURN_IF_ERROR(pg_->Transact([&](PgTx& tx) -> absl::Status {
      SH_ASSIGN_OR_RETURN(expired, ExpireSome(tx));
      return absl::OkStatus();
    }));
    if (expired.empty()) break;
    total += static_cast<int>(expired.size());
    for (const auto& h : expired) {
      CountHold("expired");
      log::Info("hold_expired", {{"hold_id", h.id}, {"facility_id", h.facility_id}});
    }
    Changed(nullptr);
  }
  return total;
}

absl::Status BedsServiceImpl::RefreshGauges() {
  const absl::Time now = clock_->Now();
  SH_ASSIGN_OR_RETURN(
      PgResult r,
      pg_->Query("SELECT f.county_fips, b.bed_type, b.licensed_capacity, b.occupied, "
                 "b.out_of_service, b.confirmed_at, (SELECT count(*) FROM holds h WHERE "
                 "h.facility_id = b.facility_id AND h.bed_type = b.bed_type AND h.state = 1 AND "
                 "h.expire_time > $1) AS held "
                 "FROM bed_inventory b JOIN facilities f ON f.id = b.facility_id "
                 "WHERE f.routable AND b.licensed_capacity > 0",
                 {PgTime(now)}));
  std::map<std::pair<std::string, int>, std::pair<double, double>> sums;
  double stale = 0;
  for (int i = 0; i < r.rows(); ++i) {
    Inventory inv;
    inv.licensed_capacity = r.Int32(i, "licensed_capacity");
    inv.occupied = r.Int32(i, "occupied");
    inv.out_of_service = r.Int32(i, "out_of_service");
    inv.held = r.Int32(i, "held");
    if (!r.IsNull(i, "confirmed_at")) inv.confirmed_at = r.Time(i, "confirmed_at");
    auto& sum = sums[{r.String(i, "county_fips"), r.Int32(i, "bed_type")}];
    if (StatusAt(inv, now, options_.stale_after) == v1::AVAILABILITY_STATUS_KNOWN) {
      sum.first += AvailableBeds(inv);
    } else {
      stale += 1;
    }
    sum.second += inv.held;
  }
  for (const auto& [key, value] : sums) {
    const std::string type = v1::BedType_Name(static_cast<v1::BedType>(key.second));
    available_.Add({{"county_fips", key.first}, {"bed_type", type}}).Set(value.first);
    held_.Add({{"county_fips", key.first}, {"bed_type", type}}).Set(value.second);
  }
  stale_.Set(stale);
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::CreateFacility(CallContext& ctx, const v1::CreateFacilityRequest& req,
                                             v1::CreateFacilityResponse* resp) {
  if (providers_ != nullptr) {
    SH_RETURN_IF_ERROR(providers_->CheckProvider(req.facility().organization_id()));
  }
  const std::string generated = NewId("fac");
  const absl::Time now = ctx.Now();
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) {
    *resp->mutable_facility() = req.facility();
    if (resp->facility().id().empty()) resp->mutable_facility()->set_id(generated);
    ctx.AfterCommit([this, &ctx] { Changed(&ctx); });
    return BedsStore::InsertFacility(tx, resp->mutable_facility(), now);
  }));
  log::Info("facility_created", {{"id", resp->facility().id()}, {"by", ctx.caller().org_id}});
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::GetFacility(CallContext& ctx, const v1::GetFacilityRequest& req,
                                          v1::GetFacilityResponse* resp) {
  const absl::Time now = ctx.Now();
  return ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    SH_ASSIGN_OR_RETURN(*resp->mutable_facility(), BedsStore::GetFacility(tx, req.id()));
    SH_ASSIGN_OR_RETURN(auto inv, BedsStore::FacilityInventory(tx, req.id(), now));
    for (const auto& row : inv) {
      if (row.inventory.licensed_capacity == 0) continue;
      *resp->add_beds() = ToProto(req.id(), row.type, row.inventory, now, options_.stale_after);
    }
    return absl::OkStatus();
  });
}

absl::Status BedsServiceImpl::UpdateFacility(CallContext& ctx, const v1::UpdateFacilityRequest& req,
                                             v1::UpdateFacilityResponse* resp) {
  const absl::Time now = ctx.Now();
  const v1::Facility& f = req.facility();
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) -> absl::Status {
    *resp->mutable_facility() = f;
    SH_RETURN_IF_ERROR(BedsStore::UpdateFacility(tx, resp->mutable_facility(), now));
    SH_ASSIGN_OR_RETURN(auto inv, BedsStore::FacilityInventory(tx, f.id(), now));
    for (const auto& row : inv) {
      SH_RETURN_IF_ERROR(AppendAvailability(tx, f.county_fips(), "facility", f.id(), row.type,
                                            row.inventory, now));
    }
    return absl::OkStatus();
  }));
  Changed(&ctx);
  log::Info("facility_updated", {{"id", f.id()}, {"by", ctx.caller().org_id}});
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::ListFacilities(CallContext& ctx, const v1::ListFacilitiesRequest& req,
                                             v1::ListFacilitiesResponse* resp) {
  SH_ASSIGN_OR_RETURN(const int size, ValidatePageSize(req.page_size(), 50, 500));
  if (!req.organization_id().empty()) {
    SH_RETURN_IF_ERROR(ValidateId(req.organization_id(), "organization_id"));
  }
  if (!req.county_fips().empty() && counties_.Find(req.county_fips()) == nullptr) {
    return absl::InvalidArgumentError("county_fips must be a known county FIPS code");
  }
  const std::string fp = QueryFingerprint(req);
  std::string after;
  if (!req.page_token().empty()) {
    SH_ASSIGN_OR_RETURN(auto parts, DecodePageToken(req.page_token(), "facilities", fp, 1));
    after = parts[0];
  }
  return ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    SH_ASSIGN_OR_RETURN(auto list, BedsStore::ListFacilities(tx, req.organization_id(),
                                                             req.county_fips(), after, size + 1));
    for (int i = 0; i < static_cast<int>(list.size()) && i < size; ++i) {
      *resp->add_facilities() = std::move(list[static_cast<size_t>(i)]);
    }
    if (static_cast<int>(list.size()) > size) {
      resp->set_next_page_token(
          EncodePageToken("facilities", fp, {resp->facilities().rbegin()->id()}));
    }
    return absl::OkStatus();
  });
}

absl::Status BedsServiceImpl::WriteCensus(PgTx& tx, const v1::ReportCensusRequest& req,
                                          const std::string& county, absl::Time now,
                                          v1::ReportCensusResponse* resp) {
  const absl::Time confirmed = FromProtoTime(req.confirmed_time());
  // Lock every reported bed type first, in bed-type order as every writer does, then write,
  // then append the events (always a change's last lock).
  std::vector<v1::CensusEntry> entries(req.entries().begin(), req.entries().end());
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.bed_type() < b.bed_type(); });
  for (const auto& e : entries) {
    SH_RETURN_IF_ERROR(BedsStore::LockInventory(tx, req.facility_id(), e.bed_type()));
  }
  for (const auto& e : entries) {
    SH_RETURN_IF_ERROR(BedsStore::SetCensus(tx, req.facility_id(), e, confirmed));
  }
  for (const auto& e : entries) {
    SH_ASSIGN_OR_RETURN(Inventory inv,
                        BedsStore::GetInventory(tx, req.facility_id(), e.bed_type(), now));
    *resp->add_beds() = ToProto(req.facility_id(), e.bed_type(), inv, now, options_.stale_after);
    SH_RETURN_IF_ERROR(
        AppendAvailability(tx, county, "census", req.facility_id(), e.bed_type(), inv, now));
  }
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::ReportCensus(CallContext& ctx, const v1::ReportCensusRequest& req,
                                           v1::ReportCensusResponse* resp) {
  const absl::Time now = ctx.Now();
  v1::Facility f;
  // Checked on a replay too: the facility is still the caller's and the census still fresh.
  const auto owned_and_valid = [&](PgTx& tx) -> absl::Status {
    SH_ASSIGN_OR_RETURN(f, BedsStore::GetFacility(tx, req.facility_id(), /*for_update=*/true));
    SH_RETURN_IF_ERROR(ctx.Authorize(CanManage(ctx.caller(), f.organization_id())));
    return ValidateCensus(req, f, now, options_.stale_after);
  };
  SH_RETURN_IF_ERROR(ctx.Transact(
      [&](PgTx& tx) {
        ctx.AfterCommit([this, &ctx] { Changed(&ctx); });
        return WriteCensus(tx, req, f.county_fips(), now, resp);
      },
      owned_and_valid));
  log::Info("census_reported", {{"facility_id", req.facility_id()}, {"by", ctx.caller().org_id}});
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::SearchAvailability(CallContext& ctx,
                                                 const v1::SearchAvailabilityRequest& req,
                                                 v1::SearchAvailabilityResponse* resp) {
  const int size = *ValidatePageSize(req.page_size(), 20, 200);
  const absl::Time now = ctx.Now();
  const std::string fp = QueryFingerprint(req);
  SH_ASSIGN_OR_RETURN(auto after, DecodeDistanceToken(req.page_token(), "availability", fp));
  const auto [lat, lng] = SearchOrigin(req.has_near(), req.near().latitude(),
                                       req.near().longitude(), counties_, req.county_fips());
  AvailabilityQuery q{&req, lat, lng, after, size + 1, now, options_.stale_after};
  // Answers depend on the time (staleness, expiry): the key includes the current TTL window.
  const int64_t window = absl::ToUnixSeconds(now) /
                         std::max<int64_t>(1, absl::ToInt64Seconds(options_.search_cache_ttl));
  const std::string key = Sha256Hex(absl::StrCat(window, ":", DeterministicBytes(req)));
  VersionedCache::Lookup cached = search_cache_.Get(key);
  if (cached.value && resp->ParseFromString(*cached.value)) return absl::OkStatus();
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    SH_ASSIGN_OR_RETURN(auto results, BedsStore::Search(tx, q));
    for (int i = 0; i < static_cast<int>(results.size()) && i < size; ++i) {
      *resp->add_results() = std::move(results[static_cast<size_t>(i)]);
    }
    if (static_cast<int>(results.size()) > size) {
      const auto& last = *resp->results().rbegin();
      resp->set_next_page_token(
          EncodeDistanceToken("availability", fp, last.distance_meters(), last.facility().id()));
    }
    return absl::OkStatus();
  }));
  search_cache_.Store(cached.generation, key, resp->SerializeAsString());
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::CheckHoldCap(int64_t active) const {
  if (active < options_.max_active_holds_per_org) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "the organization this bed would be held for already has ", active,
      " active bed holds or more, the most one organization may have; a hold is freed when its "
      "referral is accepted, "
      "declined or cancelled, or when it expires"));
}

absl::Status BedsServiceImpl::HoldBed(CallContext& ctx, const v1::HoldBedRequest& req,
                                      v1::HoldBedResponse* resp) {
  const absl::Duration ttl = *HoldTtl(req.ttl_seconds());
  const std::string hold_id = NewId("hold");
  const std::string& for_org =
      req.for_organization_id().empty() ? ctx.caller().org_id : req.for_organization_id();
  bool no_bed = false;
  absl::Status st = ctx.Transact([&](PgTx& tx) -> absl::Status {
    no_bed = false;
    // One round trip (with BEGIN and the request_id claim): the cap, the facility, and the bed
    // type locked and counted. The row lock serializes every hold of this bed type, across
    // replicas.
    auto active = BedsStore::SendActiveHoldsFor(tx, for_org, clock_->Now(),
                                                options_.max_active_holds_per_org);
    auto facility = BedsStore::SendGetFacility(tx, req.facility_id());
    auto locked = LockedInventory(tx, req.facility_id(), req.bed_type());
    SH_ASSIGN_OR_RETURN(const int64_t holds_for_org, active.Get());
    SH_RETURN_IF_ERROR(CheckHoldCap(holds_for_org));
    SH_ASSIGN_OR_RETURN(v1::Facility f, facility.Get());
    if (!locked.ok()) return locked.status();
    auto& [inv, now] = *locked;
    if (auto s = CanHold(inv, f.routable(), now, options_.stale_after); !s.ok()) {
      no_bed = true;
      return s;
    }
    v1::Hold* h = resp->mutable_hold();
    h->set_id(hold_id);
    h->set_facility_id(req.facility_id());
    h->set_bed_type(req.bed_type());
    h->set_referral_id(req.referral_id());
    h->set_holder_organization_id(ctx.caller().org_id);
    h->set_state(v1::HOLD_STATE_ACTIVE);
    *h->mutable_create_time() = ToProtoTime(now);
    *h->mutable_expire_time() = ToProtoTime(now + ttl);
    // Sent with the commit, in one round trip.
    BedsStore::InsertHold(tx, *h, for_org);
    inv.held += 1;
    SH_RETURN_IF_ERROR(CheckCapacity(inv));
    return AppendAvailability(tx, f.county_fips(), "hold", req.facility_id(), req.bed_type(), inv,
                              now);
  });
  if (!st.ok()) {
    if (no_bed) hold_conflicts_.Increment();
    if (st.code() == absl::StatusCode::kResourceExhausted) hold_cap_refusals_.Increment();
    return st;
  }
  if (ctx.replayed()) return absl::OkStatus();
  CountHold("created");
  Changed(&ctx);
  log::Info("bed_held", {{"hold_id", hold_id},
                         {"facility_id", req.facility_id()},
                         {"referral_id", req.referral_id()},
                         {"by", ctx.caller().org_id}});
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::ReleaseHold(CallContext& ctx, const v1::ReleaseHoldRequest& req,
                                          v1::ReleaseHoldResponse* resp) {
  bool released = false;
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) -> absl::Status {
    released = false;
    SH_ASSIGN_OR_RETURN(v1::Hold hold, BedsStore::GetHold(tx, req.hold_id(), /*for_update=*/true));
    SH_ASSIGN_OR_RETURN(v1::Facility f, BedsStore::GetFacility(tx, hold.facility_id()));
    SH_RETURN_IF_ERROR(ctx.Authorize(CanActOnHold(ctx.caller(), hold, f)));
    if (hold.state() == v1::HOLD_STATE_CONFIRMED) {
      return absl::FailedPreconditionError(
          "the hold was confirmed as a placement; discharge the placement instead");
    }
    SH_ASSIGN_OR_RETURN(auto locked, LockedInventory(tx, hold.facility_id(), hold.bed_type()));
    auto& [inv, now] = locked;
    const bool active =
        hold.state() == v1::HOLD_STATE_ACTIVE && FromProtoTime(hold.expire_time()) > now;
    if (active) {
      SH_RETURN_IF_ERROR(BedsStore::CloseHold(tx, hold.id(), v1::HOLD_STATE_RELEASED, now));
      inv.held -= 1;
      SH_RETURN_IF_ERROR(AppendAvailability(tx, f.county_fips(), "release", hold.facility_id(),
                                            hold.bed_type(), inv, now));
      hold.set_state(v1::HOLD_STATE_RELEASED);
      released = true;
    } else if (hold.state() == v1::HOLD_STATE_ACTIVE) {
      hold.set_state(v1::HOLD_STATE_EXPIRED);  // The sweeper will record it.
    }
    *resp->mutable_hold() = std::move(hold);
    return absl::OkStatus();
  }));
  if (released) {
    CountHold("released");
    Changed(&ctx);
    log::Info("hold_released", {{"hold_id", req.hold_id()}, {"by", ctx.caller().org_id}});
  }
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::CanExtendHold(const Caller& c, const v1::Hold& hold) {
  if (c.role == Role::kService && c.org_id == hold.holder_organization_id()) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError("only the service that placed a hold may extend it");
}

absl::Status BedsServiceImpl::ExtendLocked(PgTx& tx, CallContext& ctx,
                                           const v1::ExtendHoldRequest& req,
                                           v1::ExtendHoldResponse* resp, bool* extended) {
  *extended = false;
  SH_ASSIGN_OR_RETURN(v1::Hold hold, BedsStore::GetHold(tx, req.hold_id(), /*for_update=*/true));
  SH_RETURN_IF_ERROR(ctx.Authorize(CanExtendHold(ctx.caller(), hold)));
  // The bed type's lock, then the clock: the hold is decided active by the time every writer of
  // this bed type uses.
  SH_ASSIGN_OR_RETURN(auto locked, LockedInventory(tx, hold.facility_id(), hold.bed_type()));
  auto& [inv, now] = locked;
  SH_ASSIGN_OR_RETURN(
      const absl::Time expiry,
      ExtendedExpiry(hold, FromProtoTime(req.expire_time()), now, options_.max_hold_extension));
  // As in ConfirmHold: over capacity means another replica saw this hold as expired and gave its
  // bed away; extending it would promise that bed twice.
  if (inv.held + inv.occupied + inv.out_of_service > inv.licensed_capacity) {
    return absl::FailedPreconditionError("the hold expired and its bed was taken");
  }
  if (expiry != FromProtoTime(hold.expire_time())) {
    SH_RETURN_IF_ERROR(BedsStore::SetHoldExpiry(tx, hold.id(), expiry));
    *hold.mutable_expire_time() = ToProtoTime(expiry);
    *extended = true;
  }
  *resp->mutable_hold() = std::move(hold);
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::ExtendHold(CallContext& ctx, const v1::ExtendHoldRequest& req,
                                         v1::ExtendHoldResponse* resp) {
  bool extended = false;
  SH_RETURN_IF_ERROR(
      ctx.Transact([&](PgTx& tx) { return ExtendLocked(tx, ctx, req, resp, &extended); }));
  if (ctx.replayed() || !extended) return absl::OkStatus();
  // Availability now is unchanged (the hold counted and still counts): no event, no
  // invalidation; the bed is simply not freed at the old expiry.
  CountHold("extended");
  log::Info("hold_extended",
            {{"hold_id", req.hold_id()},
             {"expire_time", Rfc3339Seconds(FromProtoTime(resp->hold().expire_time()))},
             {"by", ctx.caller().org_id}});
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::ConfirmHold(PgTx& tx, CallContext& ctx,
                                          const v1::ConfirmPlacementRequest& req,
                                          const std::string& placement_id,
                                          v1::ConfirmPlacementResponse* resp) {
  SH_ASSIGN_OR_RETURN(v1::Hold hold, BedsStore::GetHold(tx, req.hold_id(), /*for_update=*/true));
  SH_ASSIGN_OR_RETURN(v1::Facility f, BedsStore::GetFacility(tx, hold.facility_id()));
  SH_RETURN_IF_ERROR(ctx.Authorize(CanActOnHold(ctx.caller(), hold, f)));
  SH_ASSIGN_OR_RETURN(auto locked, LockedInventory(tx, hold.facility_id(), hold.bed_type()));
  auto& [inv, now] = locked;
  if (hold.state() != v1::HOLD_STATE_ACTIVE || FromProtoTime(hold.expire_time()) <= now) {
    return absl::FailedPreconditionError(absl::StrCat(
        "hold '", hold.id(), "' is no longer active (",
        hold.state() == v1::HOLD_STATE_ACTIVE ? "expired" : v1::HoldState_Name(hold.state()),
        "); hold a bed again"));
  }
  // This hold still counts (it is active by this clock): if the bed type is over its capacity
  // the bed was given to someone else when another replica saw this hold as expired.
  if (inv.held + inv.occupied + inv.out_of_service > inv.licensed_capacity) {
    return absl::FailedPreconditionError(
        "the hold expired and its bed was taken; hold a bed again");
  }
  SH_RETURN_IF_ERROR(BedsStore::CloseHold(tx, hold.id(), v1::HOLD_STATE_CONFIRMED, now));
  SH_RETURN_IF_ERROR(BedsStore::AdjustOccupied(tx, hold.facility_id(), hold.bed_type(), 1));
  v1::Placement* p = resp->mutable_placement();
  p->set_id(placement_id);
  p->set_hold_id(hold.id());
  p->set_facility_id(hold.facility_id());
  p->set_bed_type(hold.bed_type());
  p->set_referral_id(hold.referral_id());
  *p->mutable_placed_time() = ToProtoTime(now);
  SH_RETURN_IF_ERROR(BedsStore::InsertPlacement(tx, *p));
  inv.held -= 1;  // The hold became an occupied bed: the sum is unchanged.
  inv.occupied += 1;
  SH_RETURN_IF_ERROR(CheckCapacity(inv));
  return AppendAvailability(tx, f.county_fips(), "placement", hold.facility_id(), hold.bed_type(),
                            inv, now);
}

absl::Status BedsServiceImpl::ConfirmPlacement(CallContext& ctx,
                                               const v1::ConfirmPlacementRequest& req,
                                               v1::ConfirmPlacementResponse* resp) {
  const std::string placement_id = NewId("plc");
  SH_RETURN_IF_ERROR(
      ctx.Transact([&](PgTx& tx) { return ConfirmHold(tx, ctx, req, placement_id, resp); }));
  if (ctx.replayed()) return absl::OkStatus();
  CountHold("confirmed");
  Changed(&ctx);
  log::Info(
      "placement_confirmed",
      {{"placement_id", placement_id}, {"hold_id", req.hold_id()}, {"by", ctx.caller().org_id}});
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::DischargePlacement(CallContext& ctx,
                                                 const v1::DischargePlacementRequest& req,
                                                 v1::DischargePlacementResponse* resp) {
  const Caller& c = ctx.caller();
  bool discharged = false;
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) -> absl::Status {
    discharged = false;
    SH_ASSIGN_OR_RETURN(v1::Placement p,
                        BedsStore::GetPlacement(tx, req.placement_id(), /*for_update=*/true));
    SH_ASSIGN_OR_RETURN(v1::Facility f, BedsStore::GetFacility(tx, p.facility_id()));
    if (c.role != Role::kService && c.role != Role::kDirectoryAdmin &&
        !(c.role == Role::kProvider && c.org_id == f.organization_id())) {
      return ctx.Authorize(absl::PermissionDeniedError(
          "only the facility's provider or the referral service may discharge"));
    }
    (void)ctx.Authorize(absl::OkStatus());
    if (!p.has_discharge_time()) {  // Discharging twice changes nothing.
      SH_ASSIGN_OR_RETURN(auto locked, LockedInventory(tx, p.facility_id(), p.bed_type()));
      auto& [inv, now] = locked;
      SH_RETURN_IF_ERROR(BedsStore::SetDischarged(tx, p.id(), now));
      SH_RETURN_IF_ERROR(BedsStore::AdjustOccupied(tx, p.facility_id(), p.bed_type(), -1));
      inv.occupied = std::max(0, inv.occupied - 1);
      SH_RETURN_IF_ERROR(AppendAvailability(tx, f.county_fips(), "discharge", p.facility_id(),
                                            p.bed_type(), inv, now));
      *p.mutable_discharge_time() = ToProtoTime(now);
      discharged = true;
    }
    *resp->mutable_placement() = std::move(p);
    return absl::OkStatus();
  }));
  if (discharged) {
    Changed(&ctx);
    log::Info("placement_discharged", {{"placement_id", req.placement_id()}, {"by", c.org_id}});
  }
  return absl::OkStatus();
}

grpc::ServerWriteReactor<v1::WatchAvailabilityResponse>* BedsServiceImpl::WatchAvailability(
    CallContext& ctx, const v1::WatchAvailabilityRequest& req) {
  return hub_->NewWatcher(req.county_fips(), req.cursor(), ctx.TakeStreamSlot());
}

}  // namespace safeharbor::beds
