// The beds service's RPC logic, apart from its wiring in main.cc. PostgreSQL is the system of
// record and the lock that prevents double booking; Redis caches searches and wakes watchers.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <memory>

#include "common/clock.h"
#include "common/counties.h"
#include "common/periodic.h"
#include "common/pg.h"
#include "common/redis.h"
#include "common/rpc_kit.h"
#include "common/versioned_cache.h"
#include "common/watch_hub.h"
#include "safeharbor/beds/v1/beds.grpc.pb.h"
#include "services/beds/availability.h"
#include "services/beds/beds_store.h"
#include "services/beds/provider_check.h"

namespace safeharbor::beds {

struct BedsOptions {
  // A census older than this makes availability unknown (DOMAIN.md §5).
  absl::Duration stale_after = absl::Hours(12);
  absl::Duration search_cache_ttl = absl::Seconds(5);
  std::string key_namespace = "beds";
  // How often expired holds are swept (the bed is free at expiry either way).
  absl::Duration sweep_interval = absl::Seconds(1);
  // How often the availability gauges are recomputed.
  absl::Duration gauge_interval = absl::Seconds(15);
  // Watch streams: how often PostgreSQL is polled when no Redis wake-up arrives.
  absl::Duration watch_poll_interval = absl::Seconds(1);
  // A watcher further behind than this many events is ended (it resumes with its cursor).
  size_t watch_max_pending = 1000;
  size_t max_watchers = 1000;
  // Active holds one organization may have (counted for the organization a hold is for):
  // beyond it HoldBed answers RESOURCE_EXHAUSTED.
  int64_t max_active_holds_per_org = 25;
  // How far back a cursor resumes (older events pruned); how long one stream stays open.
  absl::Duration watch_replay_horizon = absl::Hours(24 * 7);
  absl::Duration watch_max_stream_age = absl::Hours(1);
  // ExtendHold moves a hold's expiry at most this far from now (an accepted referral's
  // hand-off deadline, 4 hours by default, must fit).
  absl::Duration max_hold_extension = absl::Hours(8);
};

// The method table (beds_service.cc, Methods) declares every RPC with its policy.
class BedsServiceImpl final : public RpcService {
 public:
  // None owned; all must outlive this object. `redis` may be null; `providers` may be null
  // (facility owners are then not checked against the directory: tests only).
  BedsServiceImpl(RpcEnv* env, PgPool* pg, RedisClient* redis, prometheus::Registry& registry,
                  const CountyTable& counties, const Clock* clock, const ProviderCheck* providers,
                  BedsOptions options = {});
  ~BedsServiceImpl() override;

  // One pass pruning watch events older than the replay horizon (tests; StartBackground runs
  // it periodically).
  absl::Status PruneWatchEvents() { return hub_->PruneOnce(); }
  // Starts the background sweeper, gauge refresher and watch hub. Tests with an injected clock
  // may instead call SweepExpiredHolds and RefreshGauges directly.
  void StartBackground();
  void StopBackground();
  absl::StatusOr<int> SweepExpiredHolds();
  absl::Status RefreshGauges();

 private:
  void Methods();
  absl::Status CreateFacility(CallContext& ctx, const v1::CreateFacilityRequest& req,
                              v1::CreateFacilityResponse* resp);
  absl::Status GetFacility(CallContext& ctx, const v1::GetFacilityRequest& req,
                           v1::GetFacilityResponse* resp);
  absl::Status UpdateFacility(CallContext& ctx, const v1::UpdateFacilityRequest& req,
                              v1::UpdateFacilityResponse* resp);
  absl::Status ListFacilities(CallContext& ctx, const v1::ListFacilitiesRequest& req,
                              v1::ListFacilitiesResponse* resp);
  absl::Status ReportCensus(CallContext& ctx, const v1::ReportCensusRequest& req,
                            v1::ReportCensusResponse* resp);
  absl::Status SearchAvailability(CallContext& ctx, const v1::SearchAvailabilityRequest& req,
                                  v1::SearchAvailabilityResponse* resp);
  absl::Status HoldBed(CallContext& ctx, const v1::HoldBedRequest& req, v1::HoldBedResponse* resp);
  absl::Status ReleaseHold(CallContext& ctx, const v1::ReleaseHoldRequest& req,
                           v1::ReleaseHoldResponse* resp);
  absl::Status ExtendHold(CallContext& ctx, const v1::ExtendHoldRequest& req,
                          v1::ExtendHoldResponse* resp);
  absl::Status ConfirmPlacement(CallContext& ctx, const v1::ConfirmPlacementRequest& req,
                                v1::ConfirmPlacementResponse* resp);
  absl::Status DischargePlacement(CallContext& ctx, const v1::DischargePlacementRequest& req,
                                  v1::DischargePlacementResponse* resp);
  grpc::ServerWriteReactor<v1::WatchAvailabilityResponse>* WatchAvailability(
      CallContext& ctx, const v1::WatchAvailabilityRequest& req);

  absl::Status CanManage(const Caller& c, absl::string_view org_id) const;
  // The holder, the facility's provider, or the referral service.
  absl::Status CanActOnHold(const Caller& c, const v1::Hold& hold,
                            const v1::Facility& facility) const;
  // Only the service identity that placed a hold extends it.
  static absl::Status CanExtendHold(const Caller& c, const v1::Hold& hold);
  absl::Status ExtendLocked(PgTx& tx, CallContext& ctx, const v1::ExtendHoldRequest& req,
                            v1::ExtendHoldResponse* resp, bool* extended);
  // After a committed change: drop cached searches and wake watchers on every replica. The
  // cache's generation bump is made before the answer; the other replicas' watchers are nudged
  // after it (ctx->AfterReply; at once without a call).
  void Changed(CallContext* ctx);
  void CountHold(const char* event);
  // Locks the bed type, then reads the clock: every decision about expiry and capacity uses a
  // time taken while no other writer can change this bed type.
  absl::StatusOr<std::pair<Inventory, absl::Time>> LockedInventory(PgTx& tx,
                                                                   absl::string_view facility_id,
                                                                   v1::BedType type);
  // Appends the availability event of one bed type (always a change's last lock); sent with the
  // next wait or the commit.
  absl::Status AppendAvailability(PgTx& tx, const std::string& county, const char* reason,
                                  const std::string& facility_id, v1::BedType type,
                                  const Inventory& inv, absl::Time now);
  absl::StatusOr<std::vector<ExpiredHold>> ExpireSome(PgTx& tx);
  // RESOURCE_EXHAUSTED when the organization held for has `active` holds, its cap
  // (max_active_holds_per_org); BedsStore::SendActiveHoldsFor counts them.
  absl::Status CheckHoldCap(int64_t active) const;
  absl::Status WriteCensus(PgTx& tx, const v1::ReportCensusRequest& req, const std::string& county,
                           absl::Time now, v1::ReportCensusResponse* resp);
  absl::Status ConfirmHold(PgTx& tx, CallContext& ctx, const v1::ConfirmPlacementRequest& req,
                           const std::string& placement_id, v1::ConfirmPlacementResponse* resp);

  PgPool* pg_;
  RedisClient* redis_;
  const CountyTable& counties_;
  const Clock* clock_;
  const ProviderCheck* providers_;
  const BedsOptions options_;
  VersionedCache search_cache_;
  prometheus::Family<prometheus::Counter>& holds_;
  prometheus::Counter& hold_conflicts_;
  prometheus::Counter& hold_cap_refusals_;
  prometheus::Family<prometheus::Gauge>& available_;
  prometheus::Family<prometheus::Gauge>& held_;
  prometheus::Gauge& stale_;
  std::unique_ptr<WatchHub<v1::WatchAvailabilityResponse>> hub_;
  PeriodicTask sweeper_;
  PeriodicTask gauges_;
};

}  // namespace safeharbor::beds
