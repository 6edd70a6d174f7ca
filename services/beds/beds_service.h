// The beds service's RPC logic, apart from its wiring in main.cc. PostgreSQL is the system of
// record and the lock that prevents double booking; Redis caches searches and wakes watchers.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "common/clock.h"
#include "common/counties.h"
#include "common/pg.h"
#include "common/redis.h"
#include "common/rpc.h"
#include "common/versioned_cache.h"
#include "common/watch_hub.h"
#include "safeharbor/beds/v1/beds.grpc.pb.h"
#include "services/beds/availability.h"
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
};

class BedsServiceImpl final : public v1::BedsService::CallbackService {
 public:
  // None owned; all must outlive this object. `redis` may be null; `providers` may be null
  // (facility owners are then not checked against the directory: tests only).
  BedsServiceImpl(RpcEnv* env, PgPool* pg, RedisClient* redis, prometheus::Registry& registry,
                  const CountyTable& counties, const Clock* clock, const ProviderCheck* providers,
                  BedsOptions options = {});
  ~BedsServiceImpl() override;

  // Starts the background sweeper, gauge refresher and watch hub. Tests with an injected clock
  // may instead call SweepExpiredHolds and RefreshGauges directly.
  void StartBackground();
  void StopBackground();
  absl::StatusOr<int> SweepExpiredHolds();
  absl::Status RefreshGauges();

  absl::Status CreateFacility(const Caller& c, const v1::CreateFacilityRequest& req,
                              v1::CreateFacilityResponse* resp);
  absl::Status GetFacility(const Caller& c, const v1::GetFacilityRequest& req,
                           v1::GetFacilityResponse* resp);
  absl::Status UpdateFacility(const Caller& c, const v1::UpdateFacilityRequest& req,
                              v1::UpdateFacilityResponse* resp);
  absl::Status ListFacilities(const Caller& c, const v1::ListFacilitiesRequest& req,
                              v1::ListFacilitiesResponse* resp);
  absl::Status ReportCensus(const Caller& c, const v1::ReportCensusRequest& req,
                            v1::ReportCensusResponse* resp);
  absl::Status SearchAvailability(const Caller& c, const v1::SearchAvailabilityRequest& req,
                                  v1::SearchAvailabilityResponse* resp);
  absl::Status HoldBed(const Caller& c, const v1::HoldBedRequest& req, v1::HoldBedResponse* resp);
  absl::Status ReleaseHold(const Caller& c, const v1::ReleaseHoldRequest& req,
                           v1::ReleaseHoldResponse* resp);
  absl::Status ConfirmPlacement(const Caller& c, const v1::ConfirmPlacementRequest& req,
                                v1::ConfirmPlacementResponse* resp);
  absl::Status DischargePlacement(const Caller& c, const v1::DischargePlacementRequest& req,
                                  v1::DischargePlacementResponse* resp);

  SAFEHARBOR_UNARY_RPC(CreateFacility)
  SAFEHARBOR_UNARY_RPC(GetFacility)
  SAFEHARBOR_UNARY_RPC(UpdateFacility)
  SAFEHARBOR_UNARY_RPC(ListFacilities)
  SAFEHARBOR_UNARY_RPC(ReportCensus)
  SAFEHARBOR_UNARY_RPC(SearchAvailability)
  SAFEHARBOR_UNARY_RPC(HoldBed)
  SAFEHARBOR_UNARY_RPC(ReleaseHold)
  SAFEHARBOR_UNARY_RPC(ConfirmPlacement)
  SAFEHARBOR_UNARY_RPC(DischargePlacement)

  grpc::ServerWriteReactor<v1::WatchAvailabilityResponse>* WatchAvailability(
      grpc::CallbackServerContext* ctx, const v1::WatchAvailabilityRequest* req) override;

 private:
  absl::Status CanManage(const Caller& c, absl::string_view org_id) const;
  // The holder, the facility's provider, or the referral service.
  absl::Status CanActOnHold(const Caller& c, const v1::Hold& hold,
                            const v1::Facility& facility) const;
  // After a committed change: drop cached searches and wake watchers on every replica.
  void Changed();
  void CountHold(const char* event);
  // Locks the bed type, then reads the clock: every decision about expiry and capacity uses a
  // time taken while no other writer can change this bed type.
  absl::StatusOr<std::pair<Inventory, absl::Time>> LockedInventory(PgTx& tx,
                                                                   absl::string_view facility_id,
                                                                   v1::BedType type);
  void BackgroundLoop();

  RpcEnv* env_;
  PgPool* pg_;
  RedisClient* redis_;
  const CountyTable& counties_;
  const Clock* clock_;
  const ProviderCheck* providers_;
  const BedsOptions options_;
  VersionedCache search_cache_;
  prometheus::Family<prometheus::Counter>& holds_;
  prometheus::Counter& hold_conflicts_;
  prometheus::Family<prometheus::Gauge>& available_;
  prometheus::Family<prometheus::Gauge>& held_;
  prometheus::Gauge& stale_;
  std::unique_ptr<WatchHub<v1::WatchAvailabilityResponse>> hub_;

  std::mutex bg_mu_;
  std::condition_variable bg_cv_;
  bool bg_stop_ = false;
  std::thread bg_thread_;
};

}  // namespace safeharbor::beds
