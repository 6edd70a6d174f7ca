// The referral service's RPC logic, apart from its wiring in main.cc. PostgreSQL holds every
// referral, offer, transition and timer; the rest of the network is reached through `Network`.
// Routing and deadlines run on background threads, never on an RPC thread: intake stores the
// referral and returns; routing offers it as soon as the directory and beds service answer.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/counties.h"
#include "common/pg.h"
#include "common/redis.h"
#include "common/rpc.h"
#include "common/sealer.h"
#include "common/watch_hub.h"
#include "safeharbor/referrals/v1/referrals.grpc.pb.h"
#include "services/referrals/lifecycle.h"
#include "services/referrals/network.h"

namespace safeharbor::referrals {

struct ReferralOptions {
  DeadlinePolicy deadlines;
  // A held bed stays held this long past the acceptance deadline, for the drive to the provider
  // (the beds service caps a hold at 4 hours).
  absl::Duration hold_margin = absl::Hours(3);
  // Routing attempts failing for another reason than an outage before the referral is
  // escalated instead.
  int max_routing_failures = 5;
  // A routing claim; another replica takes the referral over if this one dies mid-routing.
  absl::Duration routing_lease = absl::Seconds(30);
  // Wait before routing again after the directory or beds service failed to answer.
  absl::Duration routing_retry = absl::Seconds(2);
  // How often timers (deadlines, unrouted referrals, pending placements) are checked.
  absl::Duration tick = absl::Seconds(1);
  absl::Duration gauge_interval = absl::Seconds(15);
  // Offers past their deadline by more than this count as overdue (the alert's metric).
  absl::Duration overdue_grace = absl::Minutes(2);
  // Per tick, at most this many referrals are routed and this many deadlines handled.
  int batch = 20;
  std::string key_namespace = "referrals";
  WatchOptions watch;
};

class ReferralServiceImpl final : public v1::ReferralService::CallbackService {
 public:
  // None owned; all must outlive this object. `redis` may be null (watchers then poll).
  ReferralServiceImpl(RpcEnv* env, PgPool* pg, RedisClient* redis, prometheus::Registry& registry,
                      const CountyTable& counties, const Clock* clock, const Sealer* sealer,
                      Network* network, ReferralOptions options = {});
  ~ReferralServiceImpl() override;

  // Starts the watch hub and, when `timers`, the router thread. Tests with an injected clock
  // call RunTimers themselves instead.
  void StartBackground(bool timers = true);
  void StopBackground();
  // One pass of every timer: expire offers past their deadline, route what waits for routing,
  // confirm pending placements. Returns how many referrals it routed or escalated.
  absl::StatusOr<int> RunTimers();
  absl::Status RefreshGauges();

  absl::Status CreateReferral(const Caller& c, const v1::CreateReferralRequest& req,
                              v1::CreateReferralResponse* resp);
  absl::Status GetReferral(const Caller& c, const v1::GetReferralRequest& req,
                           v1::GetReferralResponse* resp);
  absl::Status ListReferrals(const Caller& c, const v1::ListReferralsRequest& req,
                             v1::ListReferralsResponse* resp);
  absl::Status AcceptReferral(const Caller& c, const v1::AcceptReferralRequest& req,
                              v1::AcceptReferralResponse* resp);
  absl::Status DeclineReferral(const Caller& c, const v1::DeclineReferralRequest& req,
                               v1::DeclineReferralResponse* resp);
  absl::Status ConfirmHandoff(const Caller& c, const v1::ConfirmHandoffRequest& req,
                              v1::ConfirmHandoffResponse* resp);
  absl::Status StartServices(const Caller& c, const v1::StartServicesRequest& req,
                             v1::StartServicesResponse* resp);
  absl::Status RecordOutcome(const Caller& c, const v1::RecordOutcomeRequest& req,
                             v1::RecordOutcomeResponse* resp);
  absl::Status CancelReferral(const Caller& c, const v1::CancelReferralRequest& req,
                              v1::CancelReferralResponse* resp);
  absl::Status GetReferralStats(const Caller& c, const v1::GetReferralStatsRequest& req,
                                v1::GetReferralStatsResponse* resp);

  SAFEHARBOR_UNARY_RPC(CreateReferral)
  SAFEHARBOR_UNARY_RPC(GetReferral)
  SAFEHARBOR_UNARY_RPC(ListReferrals)
  SAFEHARBOR_UNARY_RPC(AcceptReferral)
  SAFEHARBOR_UNARY_RPC(DeclineReferral)
  SAFEHARBOR_UNARY_RPC(ConfirmHandoff)
  SAFEHARBOR_UNARY_RPC(StartServices)
  SAFEHARBOR_UNARY_RPC(RecordOutcome)
  SAFEHARBOR_UNARY_RPC(CancelReferral)
  SAFEHARBOR_UNARY_RPC(GetReferralStats)

  grpc::ServerWriteReactor<v1::WatchReferralsResponse>* WatchReferrals(
      grpc::CallbackServerContext* ctx, const v1::WatchReferralsRequest* req) override;

 private:
  // A change made by an RPC or a timer, applied under the referral's row lock.
  struct Change {
    v1::ReferralStatus to = v1::REFERRAL_STATUS_UNSPECIFIED;  // unspecified: status unchanged
    bool as_system = false;      // the status change is routing's consequence, not the caller's
    bool noop = false;           // nothing to store (a retry of a change already made)
    bool open_identity = false;  // return the identifying details (audited)
    bool wake = false;           // the router has work (a placement to confirm)
    std::string reason;
    std::vector<std::string> holds_to_release;  // after commit
  };
  using Mutation = std::function<absl::Status(PgTx& tx, v1::Referral& referral, Actor actor,
                                              absl::Time now, Change& change)>;
  // Locks the referral, checks the caller may act on it, applies `mutate`, checks the
  // transition, stores it with its transition, audit row and watch events, and releases holds
  // after commit. `internal`: routing and timers, acting as the system.
  absl::StatusOr<v1::Referral> Mutate(const Caller& c, absl::string_view id,
                                      absl::string_view action, const Mutation& mutate,
                                      bool internal = false);
  absl::StatusOr<Actor> ActorFor(const Caller& c, const v1::Referral& r) const;
  // Commits the body with its transition (if the status moved) and the watch events of every
  // provider concerned.
  absl::Status Store(PgTx& tx, v1::Referral& r, const v1::Referral& before, const Caller& actor,
                     const std::string& reason, absl::Time now);
  // The caller may see this referral at all (a child-welfare office: in its region).
  absl::Status CanRead(const Caller& c, const v1::Referral& r,
                       const std::vector<std::string>& region) const;
  // A child-welfare office's counties (from the directory; empty for other roles). Called
  // before any transaction.
  absl::StatusOr<std::vector<std::string>> RegionOf(const Caller& c);
  // After a commit: releases the holds it queued in the outbox, wakes watchers.
  void AfterCommit(const std::vector<std::string>& holds_to_release);
  // Releases one hold at the beds service and removes it from the outbox.
  absl::Status ReleaseHold(const std::string& hold_id);
  absl::Status ReleaseQueuedHolds();
  void Wake();

  // Routing (router.cc).
  // The referral as stored, read outside any lock (routing decides, then commits under one).
  absl::StatusOr<v1::Referral> Load(const std::string& id);
  absl::StatusOr<bool> Route(const std::string& id);
  // No candidate left: to the county's on-call child-welfare office.
  absl::StatusOr<bool> Escalate(const v1::Referral& r, bool placement_needed,
                                const std::string& why);
  absl::StatusOr<int> ExpireDueOffers();
  // A routing failure that is not an outage: retried, and escalated after a few.
  absl::StatusOr<bool> GiveUpRouting(const std::string& id, const absl::Status& error);
  // A HoldBed recorded as about to be made but never offered (a crash): released.
  absl::Status RecoverPendingHold(const std::string& id);
  absl::Status ConfirmPendingPlacements();
  void RouterLoop();

  RpcEnv* env_;
  PgPool* pg_;
  RedisClient* redis_;
  const CountyTable& counties_;
  const Clock* clock_;
  const Sealer* sealer_;
  Network* network_;
  const ReferralOptions options_;
  const Caller system_;

  prometheus::Family<prometheus::Counter>& created_;
  prometheus::Family<prometheus::Counter>& transitions_;
  prometheus::Family<prometheus::Gauge>& by_status_;
  prometheus::Histogram& time_to_acceptance_;
  prometheus::Family<prometheus::Counter>& reroutes_;
  prometheus::Counter& escalations_;
  prometheus::Counter& placement_unavailable_;
  prometheus::Family<prometheus::Counter>& routing_errors_;
  prometheus::Gauge& overdue_;
  prometheus::Gauge& oldest_unrouted_;
  prometheus::Counter& audit_reads_;
  prometheus::Counter& placements_unrecorded_;
  std::unique_ptr<WatchHub<v1::WatchReferralsResponse>> hub_;

  std::mutex bg_mu_;
  std::condition_variable bg_cv_;
  bool bg_stop_ = false;
  bool bg_wake_ = false;
  std::thread bg_thread_;
};

}  // namespace safeharbor::referrals
