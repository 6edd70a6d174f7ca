#include "services/beds/beds_service.h"

#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/idempotency.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/paging.h"
#include "common/proto_time.h"
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

}  // namespace

BedsServiceImpl::BedsServiceImpl(RpcEnv* env, PgPool* pg, RedisClient* redis,
                                 prometheus::Registry& registry, const CountyTable& counties,
                                 const Clock* clock, const ProviderCheck* providers,
                                 BedsOptions options)
    : env_(env),
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
                 .Help("Bed holds by event: created, expired, released, confirmed.")
                 .Register(registry)),
      hold_conflicts_(prometheus::BuildCounter()
                          .Name("safeharbor_beds_hold_conflicts_total")
                          .Help("HoldBed calls refused because no bed was free or countable.")
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
                 .Add({})) {
  for (const char* e : {"created", "expired", "released", "confirmed"}) {
    holds_.Add({{"event", e}});
  }
  auto& watchers = prometheus::BuildGauge()
                       .Name("safeharbor_beds_watchers")
                       .Help("Open WatchAvailability streams.")
                       .Register(registry)
                       .Add({});
  WatchSource<v1::WatchAvailabilityResponse> source;
  source.last_seq = [](PgTx& tx) { return BedsStore::LastEventSeq(tx); };
  source.after =
      [](PgTx& tx, int64_t after,
         int limit) -> absl::StatusOr<std::vector<WatchEvent<v1::WatchAvailabilityResponse>>> {
    auto stored = BedsStore::EventsAfter(tx, after, limit);
    if (!stored.ok()) return stored.status();
    std::vector<WatchEvent<v1::WatchAvailabilityResponse>> out(stored->size());
    for (size_t i = 0; i < stored->size(); ++i) {
      const StoredEvent& e = (*stored)[i];
      out[i].seq = e.seq;
      out[i].key = e.county_fips;
      *out[i].response.mutable_availability() = e.availability;
      out[i].response.set_county_fips(e.county_fips);
      out[i].response.set_reason(e.reason);
    }
    return out;
  };
  WatchOptions watch;
  watch.poll_interval = options_.watch_poll_interval;
  watch.max_pending = options_.watch_max_pending;
  watch.max_watchers = options_.max_watchers;
  hub_ = std::make_unique<WatchHub<v1::WatchAvailabilityResponse>>(
      pg_, redis_ ? &redis_->options() : nullptr, absl::StrCat(options_.key_namespace, ":events"),
      std::move(source), watch, &watchers);
}

BedsServiceImpl::~BedsServiceImpl() { StopBackground(); }

void BedsServiceImpl::StartBackground() {
  hub_->Start();
  bg_thread_ = std::thread([this] { BackgroundLoop(); });
}

void BedsServiceImpl::StopBackground() {
  {
    std::lock_guard<std::mutex> lock(bg_mu_);
    bg_stop_ = true;
  }
  bg_cv_.notify_all();
  if (bg_thread_.joinable()) bg_thread_.join();
  hub_->Stop();
}

void BedsServiceImpl::BackgroundLoop() {
  absl::Time next_gauges = absl::InfinitePast();
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(bg_mu_);
      if (bg_cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.sweep_interval),
                          [this] { return bg_stop_; })) {
        return;
      }
    }
    if (auto n = SweepExpiredHolds(); !n.ok()) {
      log::Warn("hold_sweep_failed", {{"error", n.status().message()}});
    }
    if (absl::Now() >= next_gauges) {
      (void)RefreshGauges();
      next_gauges = absl::Now() + options_.gauge_interval;
    }
  }
}

void BedsServiceImpl::Changed() {
  search_cache_.Invalidate();
  hub_->Notify();
  if (redis_ != nullptr)
    (void)redis_->Publish(absl::StrCat(options_.key_namespace, ":events"), "1");
}

void BedsServiceImpl::CountHold(const char* event) { holds_.Add({{"event", event}}).Increment(); }

absl::Status BedsServiceImpl::CanManage(const Caller& c, absl::string_view org_id) const {
  if (c.role == Role::kDirectoryAdmin) return absl::OkStatus();
  if (c.role == Role::kProvider && c.org_id == org_id) return absl::OkStatus();
  if (c.role == Role::kProvider) {
    return absl::PermissionDeniedError("a provider may manage only its own facilities");
  }
  return absl::PermissionDeniedError(
      absl::StrCat("role '", RoleName(c.role),
                   "' may not manage facilities; directory_admin or the "
                   "facility's own provider may"));
}

absl::StatusOr<std::pair<Inventory, absl::Time>> BedsServiceImpl::LockedInventory(
    PgTx& tx, absl::string_view facility_id, v1::BedType type) {
  if (auto st = BedsStore::LockInventory(tx, facility_id, type); !st.ok()) return st;
  const absl::Time now = clock_->Now();
  auto inv = BedsStore::GetInventory(tx, facility_id, type, now);
  if (!inv.ok()) return inv.status();
  return std::make_pair(*std::move(inv), now);
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

absl::StatusOr<int> BedsServiceImpl::SweepExpiredHolds() {
  int total = 0;
  for (int round = 0; round < 10; ++round) {  // At most 1000 holds per sweep.
    std::vector<ExpiredHold> expired;
    absl::Status st = pg_->Transact([&](PgTx& tx) -> absl::Status {
      const absl::Time now = clock_->Now();
      auto e = BedsStore::ExpireHolds(tx, now, 100);
      if (!e.ok()) return e.status();
      expired = *std::move(e);
      // Lock each affected bed type once, in the order every writer uses; append events last.
      std::set<std::pair<std::string, int>> types;
      for (const auto& h : expired) types.insert({h.facility_id, h.bed_type});
      for (const auto& [facility, type] : types) {
        if (auto s = BedsStore::LockInventory(tx, facility, static_cast<v1::BedType>(type));
            !s.ok()) {
          return s;
        }
      }
      for (const auto& [facility, type] : types) {
        auto f = BedsStore::GetFacility(tx, facility);
        if (!f.ok()) return f.status();
        const auto bed_type = static_cast<v1::BedType>(type);
        auto inv = BedsStore::GetInventory(tx, facility, bed_type, now);
        if (!inv.ok()) return inv.status();
        auto seq = BedsStore::AppendEvent(
            tx, f->county_fips(), "expiry",
            ToProto(facility, bed_type, *inv, now, options_.stale_after), now);
        if (!seq.ok()) return seq.status();
      }
      return absl::OkStatus();
    });
    if (!st.ok()) return st;
    if (expired.empty()) break;
    total += static_cast<int>(expired.size());
    for (const auto& h : expired) {
      CountHold("expired");
      log::Info("hold_expired", {{"hold_id", h.id}, {"facility_id", h.facility_id}});
    }
    Changed();
  }
  return total;
}

absl::Status BedsServiceImpl::RefreshGauges() {
  const absl::Time now = clock_->Now();
  auto r = pg_->Query(
      "SELECT f.county_fips, b.bed_type, b.licensed_capacity, b.occupied, b.out_of_service, "
      "b.confirmed_at, (SELECT count(*) FROM holds h WHERE h.facility_id = b.facility_id "
      "AND h.bed_type = b.bed_type AND h.state = 1 AND h.expire_time > $1) AS held "
      "FROM bed_inventory b JOIN facilities f ON f.id = b.facility_id "
      "WHERE f.routable AND b.licensed_capacity > 0",
      {PgTime(now)});
  if (!r.ok()) return r.status();
  std::map<std::pair<std::string, int>, std::pair<double, double>> sums;
  double stale = 0;
  for (int i = 0; i < r->rows(); ++i) {
    Inventory inv;
    inv.licensed_capacity = r->Int32(i, "licensed_capacity");
    inv.occupied = r->Int32(i, "occupied");
    inv.out_of_service = r->Int32(i, "out_of_service");
    inv.held = r->Int32(i, "held");
    if (!r->IsNull(i, "confirmed_at")) inv.confirmed_at = r->Time(i, "confirmed_at");
    auto& s = sums[{r->String(i, "county_fips"), r->Int32(i, "bed_type")}];
    if (StatusAt(inv, now, options_.stale_after) == v1::AVAILABILITY_STATUS_KNOWN) {
      s.first += AvailableBeds(inv);
    } else {
      stale += 1;
    }
    s.second += inv.held;
  }
  for (const auto& [key, value] : sums) {
    const std::string type = v1::BedType_Name(static_cast<v1::BedType>(key.second));
    available_.Add({{"county_fips", key.first}, {"bed_type", type}}).Set(value.first);
    held_.Add({{"county_fips", key.first}, {"bed_type", type}}).Set(value.second);
  }
  stale_.Set(stale);
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::CreateFacility(const Caller& c, const v1::CreateFacilityRequest& req,
                                             v1::CreateFacilityResponse* resp) {
  if (auto st = ValidateRequestId(req.request_id()); !st.ok()) return st;
  if (auto st = ValidateFacility(req.facility(), counties_, false); !st.ok()) return st;
  if (auto st = CanManage(c, req.facility().organization_id()); !st.ok()) return st;
  if (providers_ != nullptr) {
    if (auto st = providers_->CheckProvider(req.facility().organization_id()); !st.ok()) return st;
  }
  const std::string generated = NewId("fac");
  const absl::Time now = clock_->Now();
  absl::Status st = pg_->Transact([&](PgTx& tx) {
    resp->Clear();
    return RunIdempotent(tx, "CreateFacility", c, req.request_id(), req, resp, [&] {
      *resp->mutable_facility() = req.facility();
      if (resp->facility().id().empty()) resp->mutable_facility()->set_id(generated);
      return BedsStore::InsertFacility(tx, resp->mutable_facility(), now);
    });
  });
  if (!st.ok()) return st;
  Changed();
  log::Info("facility_created", {{"id", resp->facility().id()}, {"by", c.org_id}});
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::GetFacility(const Caller&, const v1::GetFacilityRequest& req,
                                          v1::GetFacilityResponse* resp) {
  if (auto st = ValidateId(req.id(), "id"); !st.ok()) return st;
  const absl::Time now = clock_->Now();
  return pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        resp->Clear();
        auto f = BedsStore::GetFacility(tx, req.id());
        if (!f.ok()) return f.status();
        *resp->mutable_facility() = *std::move(f);
        auto inv = BedsStore::FacilityInventory(tx, req.id(), now);
        if (!inv.ok()) return inv.status();
        for (const auto& row : *inv) {
          if (row.inventory.licensed_capacity == 0) continue;
          *resp->add_beds() = ToProto(req.id(), row.type, row.inventory, now, options_.stale_after);
        }
        return absl::OkStatus();
      },
      Isolation::kRepeatableRead, true);
}

absl::Status BedsServiceImpl::UpdateFacility(const Caller& c, const v1::UpdateFacilityRequest& req,
                                             v1::UpdateFacilityResponse* resp) {
  if (auto st = ValidateFacility(req.facility(), counties_, true); !st.ok()) return st;
  if (auto st = CanManage(c, req.facility().organization_id()); !st.ok()) return st;
  const absl::Time now = clock_->Now();
  absl::Status st = pg_->Transact([&](PgTx& tx) -> absl::Status {
    *resp->mutable_facility() = req.facility();
    if (auto s = BedsStore::UpdateFacility(tx, resp->mutable_facility(), now); !s.ok()) return s;
    auto inv = BedsStore::FacilityInventory(tx, req.facility().id(), now);
    if (!inv.ok()) return inv.status();
    for (const auto& row : *inv) {
      auto seq = BedsStore::AppendEvent(
          tx, req.facility().county_fips(), "facility",
          ToProto(req.facility().id(), row.type, row.inventory, now, options_.stale_after), now);
      if (!seq.ok()) return seq.status();
    }
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  Changed();
  log::Info("facility_updated", {{"id", req.facility().id()}, {"by", c.org_id}});
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::ListFacilities(const Caller&, const v1::ListFacilitiesRequest& req,
                                             v1::ListFacilitiesResponse* resp) {
  auto size = ValidatePageSize(req.page_size(), 50, 500);
  if (!size.ok()) return size.status();
  if (!req.organization_id().empty()) {
    if (auto st = ValidateId(req.organization_id(), "organization_id"); !st.ok()) return st;
  }
  if (!req.county_fips().empty() && counties_.Find(req.county_fips()) == nullptr) {
    return absl::InvalidArgumentError("county_fips must be a known county FIPS code");
  }
  const std::string fp = QueryFingerprint(req);
  std::string after;
  if (!req.page_token().empty()) {
    auto parts = DecodePageToken(req.page_token(), "facilities", fp, 1);
    if (!parts.ok()) return parts.status();
    after = (*parts)[0];
  }
  return pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        resp->Clear();
        auto list = BedsStore::ListFacilities(tx, req.organization_id(), req.county_fips(), after,
                                              *size + 1);
        if (!list.ok()) return list.status();
        for (int i = 0; i < static_cast<int>(list->size()) && i < *size; ++i) {
          *resp->add_facilities() = std::move((*list)[static_cast<size_t>(i)]);
        }
        if (static_cast<int>(list->size()) > *size) {
          resp->set_next_page_token(
              EncodePageToken("facilities", fp, {resp->facilities().rbegin()->id()}));
        }
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true);
}

absl::Status BedsServiceImpl::ReportCensus(const Caller& c, const v1::ReportCensusRequest& req,
                                           v1::ReportCensusResponse* resp) {
  if (auto st = ValidateRequestId(req.request_id()); !st.ok()) return st;
  if (auto st = ValidateId(req.facility_id(), "facility_id"); !st.ok()) return st;
  const absl::Time now = clock_->Now();
  absl::Status st = pg_->Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    auto f = BedsStore::GetFacility(tx, req.facility_id(), /*for_update=*/true);
    if (!f.ok()) return f.status();
    if (auto s = CanManage(c, f->organization_id()); !s.ok()) return s;
    if (auto s = ValidateCensus(req, *f, now, options_.stale_after); !s.ok()) return s;
    return RunIdempotent(tx, "ReportCensus", c, req.request_id(), req, resp, [&]() -> absl::Status {
      const absl::Time confirmed = FromProtoTime(req.confirmed_time());
      // Lock every reported bed type first, in bed-type order as every writer does, then write,
      // then append the events (always a change's last lock).
      std::vector<v1::CensusEntry> entries(req.entries().begin(), req.entries().end());
      std::sort(entries.begin(), entries.end(),
                [](const auto& a, const auto& b) { return a.bed_type() < b.bed_type(); });
      for (const auto& e : entries) {
        if (auto s = BedsStore::LockInventory(tx, req.facility_id(), e.bed_type()); !s.ok()) {
          return s;
        }
      }
      for (const auto& e : entries) {
        if (auto s = BedsStore::SetCensus(tx, req.facility_id(), e, confirmed); !s.ok()) return s;
      }
      for (const auto& e : entries) {
        auto inv = BedsStore::GetInventory(tx, req.facility_id(), e.bed_type(), now);
        if (!inv.ok()) return inv.status();
        const auto avail =
            ToProto(req.facility_id(), e.bed_type(), *inv, now, options_.stale_after);
        *resp->add_beds() = avail;
        auto seq = BedsStore::AppendEvent(tx, f->county_fips(), "census", avail, now);
        if (!seq.ok()) return seq.status();
      }
      return absl::OkStatus();
    });
  });
  if (!st.ok()) return st;
  Changed();
  log::Info("census_reported", {{"facility_id", req.facility_id()}, {"by", c.org_id}});
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::SearchAvailability(const Caller&,
                                                 const v1::SearchAvailabilityRequest& req,
                                                 v1::SearchAvailabilityResponse* resp) {
  if (auto st = ValidateSearch(req, counties_); !st.ok()) return st;
  const int size = *ValidatePageSize(req.page_size(), 20, 200);
  const absl::Time now = clock_->Now();
  const std::string fp = QueryFingerprint(req);
  auto after = DecodeDistanceToken(req.page_token(), "availability", fp);
  if (!after.ok()) return after.status();
  const auto [lat, lng] = SearchOrigin(req.has_near(), req.near().latitude(),
                                       req.near().longitude(), counties_, req.county_fips());
  AvailabilityQuery q{&req, lat, lng, *after, size + 1, now, options_.stale_after};
  // Answers depend on the time (staleness, expiry): the key includes the current TTL window.
  const int64_t window = absl::ToUnixSeconds(now) /
                         std::max<int64_t>(1, absl::ToInt64Seconds(options_.search_cache_ttl));
  const std::string key = Sha256Hex(absl::StrCat(window, ":", DeterministicBytes(req)));
  VersionedCache::Lookup cached = search_cache_.Get(key);
  if (cached.value && resp->ParseFromString(*cached.value)) return absl::OkStatus();
  absl::Status st = pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        resp->Clear();
        auto results = BedsStore::Search(tx, q);
        if (!results.ok()) return results.status();
        for (int i = 0; i < static_cast<int>(results->size()) && i < size; ++i) {
          *resp->add_results() = std::move((*results)[static_cast<size_t>(i)]);
        }
        if (static_cast<int>(results->size()) > size) {
          const auto& last = *resp->results().rbegin();
          resp->set_next_page_token(EncodeDistanceToken("availability", fp, last.distance_meters(),
                                                        last.facility().id()));
        }
        return absl::OkStatus();
      },
      Isolation::kRepeatableRead, true);
  if (!st.ok()) return st;
  search_cache_.Store(cached.generation, key, resp->SerializeAsString());
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::HoldBed(const Caller& c, const v1::HoldBedRequest& req,
                                      v1::HoldBedResponse* resp) {
  if (auto st = RequireRole(c, {Role::kChildWelfare, Role::kLawEnforcement, Role::kService});
      !st.ok()) {
    return st;
  }
  if (auto st = ValidateRequestId(req.request_id()); !st.ok()) return st;
  if (auto st = ValidateId(req.facility_id(), "facility_id"); !st.ok()) return st;
  if (auto st = ValidateBedType(req.bed_type()); !st.ok()) return st;
  if (auto st = ValidateReferralId(req.referral_id()); !st.ok()) return st;
  auto ttl = HoldTtl(req.ttl_seconds());
  if (!ttl.ok()) return ttl.status();
  const std::string hold_id = NewId("hold");
  bool no_bed = false;
  absl::Status st = pg_->Transact([&](PgTx& tx) {
    resp->Clear();
    no_bed = false;
    return RunIdempotent(tx, "HoldBed", c, req.request_id(), req, resp, [&]() -> absl::Status {
      auto f = BedsStore::GetFacility(tx, req.facility_id());
      if (!f.ok()) return f.status();
      // The row lock serializes every hold of this bed type, across replicas.
      auto locked = LockedInventory(tx, req.facility_id(), req.bed_type());
      if (!locked.ok()) return locked.status();
      Inventory* inv = &locked->first;
      const absl::Time now = locked->second;
      if (auto s = CanHold(*inv, f->routable(), now, options_.stale_after); !s.ok()) {
        no_bed = true;
        return s;
      }
      v1::Hold* h = resp->mutable_hold();
      h->set_id(hold_id);
      h->set_facility_id(req.facility_id());
      h->set_bed_type(req.bed_type());
      h->set_referral_id(req.referral_id());
      h->set_holder_organization_id(c.org_id);
      h->set_state(v1::HOLD_STATE_ACTIVE);
      *h->mutable_create_time() = ToProtoTime(now);
      *h->mutable_expire_time() = ToProtoTime(now + *ttl);
      if (auto s = BedsStore::InsertHold(tx, *h); !s.ok()) return s;
      inv->held += 1;
      assert(inv->held + inv->occupied + inv->out_of_service <= inv->licensed_capacity);
      return BedsStore::AppendEvent(
                 tx, f->county_fips(), "hold",
                 ToProto(req.facility_id(), req.bed_type(), *inv, now, options_.stale_after), now)
          .status();
    });
  });
  if (!st.ok()) {
    if (no_bed) hold_conflicts_.Increment();
    return st;
  }
  if (resp->hold().id() == hold_id) {  // Not a replay.
    CountHold("created");
    Changed();
    log::Info("bed_held", {{"hold_id", hold_id},
                           {"facility_id", req.facility_id()},
                           {"referral_id", req.referral_id()},
                           {"by", c.org_id}});
  }
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::ReleaseHold(const Caller& c, const v1::ReleaseHoldRequest& req,
                                          v1::ReleaseHoldResponse* resp) {
  if (auto st = ValidateId(req.hold_id(), "hold_id"); !st.ok()) return st;
  bool released = false;
  absl::Status st = pg_->Transact([&](PgTx& tx) -> absl::Status {
    released = false;
    auto hold = BedsStore::GetHold(tx, req.hold_id(), /*for_update=*/true);
    if (!hold.ok()) return hold.status();
    auto f = BedsStore::GetFacility(tx, hold->facility_id());
    if (!f.ok()) return f.status();
    if (auto s = CanActOnHold(c, *hold, *f); !s.ok()) return s;
    if (hold->state() == v1::HOLD_STATE_CONFIRMED) {
      return absl::FailedPreconditionError(
          "the hold was confirmed as a placement; discharge the placement instead");
    }
    auto locked = LockedInventory(tx, hold->facility_id(), hold->bed_type());
    if (!locked.ok()) return locked.status();
    Inventory* inv = &locked->first;
    const absl::Time now = locked->second;
    const bool active =
        hold->state() == v1::HOLD_STATE_ACTIVE && FromProtoTime(hold->expire_time()) > now;
    if (active) {
      if (auto s = BedsStore::CloseHold(tx, hold->id(), v1::HOLD_STATE_RELEASED, now); !s.ok()) {
        return s;
      }
      inv->held -= 1;
      auto seq = BedsStore::AppendEvent(
          tx, f->county_fips(), "release",
          ToProto(hold->facility_id(), hold->bed_type(), *inv, now, options_.stale_after), now);
      if (!seq.ok()) return seq.status();
      hold->set_state(v1::HOLD_STATE_RELEASED);
      released = true;
    } else if (hold->state() == v1::HOLD_STATE_ACTIVE) {
      hold->set_state(v1::HOLD_STATE_EXPIRED);  // The sweeper will record it.
    }
    *resp->mutable_hold() = *std::move(hold);
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  if (released) {
    CountHold("released");
    Changed();
    log::Info("hold_released", {{"hold_id", req.hold_id()}, {"by", c.org_id}});
  }
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::ConfirmPlacement(const Caller& c,
                                               const v1::ConfirmPlacementRequest& req,
                                               v1::ConfirmPlacementResponse* resp) {
  if (auto st = ValidateRequestId(req.request_id()); !st.ok()) return st;
  if (auto st = ValidateId(req.hold_id(), "hold_id"); !st.ok()) return st;
  const std::string placement_id = NewId("plc");
  absl::Status st = pg_->Transact([&](PgTx& tx) {
    resp->Clear();
    return RunIdempotent(
        tx, "ConfirmPlacement", c, req.request_id(), req, resp, [&]() -> absl::Status {
          auto hold = BedsStore::GetHold(tx, req.hold_id(), /*for_update=*/true);
          if (!hold.ok()) return hold.status();
          auto f = BedsStore::GetFacility(tx, hold->facility_id());
          if (!f.ok()) return f.status();
          if (auto s = CanActOnHold(c, *hold, *f); !s.ok()) return s;
          auto locked = LockedInventory(tx, hold->facility_id(), hold->bed_type());
          if (!locked.ok()) return locked.status();
          Inventory* inv = &locked->first;
          const absl::Time now = locked->second;
          if (hold->state() != v1::HOLD_STATE_ACTIVE || FromProtoTime(hold->expire_time()) <= now) {
            return absl::FailedPreconditionError(absl::StrCat(
                "hold '", hold->id(), "' is no longer active (",
                hold->state() == v1::HOLD_STATE_ACTIVE ? "expired"
                                                       : v1::HoldState_Name(hold->state()),
                "); hold a bed again"));
          }
          // This hold still counts (it is active by this clock): if the bed type is over its
          // capacity the bed was given to someone else when another replica saw this hold as
          // expired.
          if (inv->held + inv->occupied + inv->out_of_service > inv->licensed_capacity) {
            return absl::FailedPreconditionError(
                "the hold expired and its bed was taken; hold a bed again");
          }
          if (auto s = BedsStore::CloseHold(tx, hold->id(), v1::HOLD_STATE_CONFIRMED, now);
              !s.ok()) {
            return s;
          }
          if (auto s = BedsStore::AdjustOccupied(tx, hold->facility_id(), hold->bed_type(), 1);
              !s.ok()) {
            return s;
          }
          v1::Placement* p = resp->mutable_placement();
          p->set_id(placement_id);
          p->set_hold_id(hold->id());
          p->set_facility_id(hold->facility_id());
          p->set_bed_type(hold->bed_type());
          p->set_referral_id(hold->referral_id());
          *p->mutable_placed_time() = ToProtoTime(now);
          if (auto s = BedsStore::InsertPlacement(tx, *p); !s.ok()) return s;
          inv->held -= 1;  // The hold became an occupied bed: the sum is unchanged.
          inv->occupied += 1;
          return BedsStore::AppendEvent(tx, f->county_fips(), "placement",
                                        ToProto(hold->facility_id(), hold->bed_type(), *inv, now,
                                                options_.stale_after),
                                        now)
              .status();
        });
  });
  if (!st.ok()) return st;
  if (resp->placement().id() == placement_id) {
    CountHold("confirmed");
    Changed();
    log::Info("placement_confirmed",
              {{"placement_id", placement_id}, {"hold_id", req.hold_id()}, {"by", c.org_id}});
  }
  return absl::OkStatus();
}

absl::Status BedsServiceImpl::DischargePlacement(const Caller& c,
                                                 const v1::DischargePlacementRequest& req,
                                                 v1::DischargePlacementResponse* resp) {
  if (auto st = ValidateId(req.placement_id(), "placement_id"); !st.ok()) return st;
  bool discharged = false;
  absl::Status st = pg_->Transact([&](PgTx& tx) -> absl::Status {
    discharged = false;
    auto p = BedsStore::GetPlacement(tx, req.placement_id(), /*for_update=*/true);
    if (!p.ok()) return p.status();
    auto f = BedsStore::GetFacility(tx, p->facility_id());
    if (!f.ok()) return f.status();
    if (c.role != Role::kService && c.role != Role::kDirectoryAdmin &&
        !(c.role == Role::kProvider && c.org_id == f->organization_id())) {
      return absl::PermissionDeniedError(
          "only the facility's provider or the referral service may discharge");
    }
    if (!p->has_discharge_time()) {  // Discharging twice changes nothing.
      auto locked = LockedInventory(tx, p->facility_id(), p->bed_type());
      if (!locked.ok()) return locked.status();
      Inventory* inv = &locked->first;
      const absl::Time now = locked->second;
      if (auto s = BedsStore::SetDischarged(tx, p->id(), now); !s.ok()) return s;
      if (auto s = BedsStore::AdjustOccupied(tx, p->facility_id(), p->bed_type(), -1); !s.ok()) {
        return s;
      }
      inv->occupied = std::max(0, inv->occupied - 1);
      auto seq = BedsStore::AppendEvent(
          tx, f->county_fips(), "discharge",
          ToProto(p->facility_id(), p->bed_type(), *inv, now, options_.stale_after), now);
      if (!seq.ok()) return seq.status();
      *p->mutable_discharge_time() = ToProtoTime(now);
      discharged = true;
    }
    *resp->mutable_placement() = *std::move(p);
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  if (discharged) {
    Changed();
    log::Info("placement_discharged", {{"placement_id", req.placement_id()}, {"by", c.org_id}});
  }
  return absl::OkStatus();
}

grpc::ServerWriteReactor<v1::WatchAvailabilityResponse>* BedsServiceImpl::WatchAvailability(
    grpc::CallbackServerContext* ctx, const v1::WatchAvailabilityRequest* req) {
  absl::StatusOr<Caller> caller = env_->Identify(*ctx);
  if (caller.ok() && !req->county_fips().empty() && counties_.Find(req->county_fips()) == nullptr) {
    caller = absl::InvalidArgumentError("county_fips must be a known county FIPS code");
  }
  return hub_->NewWatcher(req->county_fips(), req->cursor(), ToGrpcStatus(caller.status()));
}

}  // namespace safeharbor::beds
