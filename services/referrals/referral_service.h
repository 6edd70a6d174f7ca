// The referral service's API, apart from its wiring in main.cc: the method table and the RPC
// handlers. The parts behind it, each its own class: the state-change path (changes.h), routing
// (router.h) and the durable timers (timers.h). PostgreSQL holds every referral, offer,
// transition and timer; the rest of the network is reached through `Network`. Intake stores
// the referral and returns; routing offers it as soon as the directory and beds service answer.
#pragma once

#include <prometheus/registry.h>

#include <memory>

#include "common/clock.h"
#include "common/counties.h"
#include "common/pg.h"
#include "common/redis.h"
#include "common/rpc_kit.h"
#include "common/sealer.h"
#include "common/watch_hub.h"
#include "safeharbor/referrals/v1/referrals.grpc.pb.h"
#include "services/referrals/changes.h"
#include "services/referrals/metrics.h"
#include "services/referrals/network.h"
#include "services/referrals/options.h"
#include "services/referrals/referral_store.h"
#include "services/referrals/retention.h"
#include "services/referrals/router.h"
#include "services/referrals/timers.h"
#include "services/referrals/webhook_sender.h"
#include "services/referrals/webhook_worker.h"

namespace safeharbor::referrals {

class ReferralServiceImpl final : public RpcService {
 public:
  // None owned; all must outlive this object. `redis` may be null (watchers then poll).
  // `routing_network`: how routing and the timers reach the network (peers with a budget of
  // their own); null: `network`, as the RPCs do.
  ReferralServiceImpl(RpcEnv* env, PgPool* pg, RedisClient* redis, prometheus::Registry& registry,
                      const CountyTable& counties, const Clock* clock, const Sealer* sealer,
                      Network* network, ReferralOptions options = {},
                      Network* routing_network = nullptr);
  ~ReferralServiceImpl() override;

  // Starts the watch hub and, when `timers`, the timers and the webhook workers. Tests with an
  // injected clock call RunTimers themselves instead.
  void StartBackground(bool timers = true);
  void StopBackground();
  // One pass of every timer: expire offers past their deadline, route what waits for routing,
  // confirm pending placements. Returns how many referrals it routed or escalated.
  absl::StatusOr<int> RunTimers() { return timers_.RunOnce(); }
  absl::Status RefreshGauges() { return timers_.RefreshGauges(); }
  // One pass pruning watch events older than the replay horizon (StartBackground runs it
  // periodically).
  absl::Status PruneWatchEvents() { return hub_->PruneOnce(); }
  // The webhook workers, for tests that run their passes by hand.
  WebhookWorker& webhooks() { return *webhooks_; }
  // The identifying-details purge, for tests that run its pass by hand.
  IdentityRetention& retention() { return retention_; }

 private:
  void Methods();
  void WebhookMethods();  // the webhook RPCs' part of the method table
  // Issue 14, advocate response.
  void AdvocateMethods();
  void EscalationMethods();  // issue 14, escalation keeps the loop closed (escalation_rpcs.cc)
  absl::Status CreateReferral(CallContext& ctx, const v1::CreateReferralRequest& req,
                              v1::CreateReferralResponse* resp);
  absl::Status GetReferralFhir(CallContext& ctx, const v1::GetReferralFhirRequest& req,
                               v1::GetReferralFhirResponse* resp);
  absl::Status GetReferral(CallContext& ctx, const v1::GetReferralRequest& req,
                           v1::GetReferralResponse* resp);
  absl::Status ListReferrals(CallContext& ctx, const v1::ListReferralsRequest& req,
                             v1::ListReferralsResponse* resp);
  absl::Status AcceptReferral(CallContext& ctx, const v1::AcceptReferralRequest& req,
                              v1::AcceptReferralResponse* resp);
  absl::Status DeclineReferral(CallContext& ctx, const v1::DeclineReferralRequest& req,
                               v1::DeclineReferralResponse* resp);
  absl::Status WaitlistReferral(CallContext& ctx, const v1::WaitlistReferralRequest& req,
                                v1::WaitlistReferralResponse* resp);
  absl::Status ConfirmHandoff(CallContext& ctx, const v1::ConfirmHandoffRequest& req,
                              v1::ConfirmHandoffResponse* resp);
  absl::Status StartServices(CallContext& ctx, const v1::StartServicesRequest& req,
                             v1::StartServicesResponse* resp);
  absl::Status RecordOutcome(CallContext& ctx, const v1::RecordOutcomeRequest& req,
                             v1::RecordOutcomeResponse* resp);
  absl::Status CancelReferral(CallContext& ctx, const v1::CancelReferralRequest& req,
                              v1::CancelReferralResponse* resp);
  // Consent (consent_rpcs.cc).
  absl::Status RevokeConsent(CallContext& ctx, const v1::RevokeConsentRequest& req,
                             v1::RevokeConsentResponse* resp);
  absl::Status GetReferralStats(CallContext& ctx, const v1::GetReferralStatsRequest& req,
                                v1::GetReferralStatsResponse* resp);
  grpc::ServerWriteReactor<v1::WatchReferralsResponse>* WatchReferrals(
      CallContext& ctx, const v1::WatchReferralsRequest& req);
  // Webhooks (webhook_rpcs.cc).
  absl::Status CreateWebhookSubscription(CallContext& ctx,
                                         const v1::CreateWebhookSubscriptionRequest& req,
                                         v1::CreateWebhookSubscriptionResponse* resp);
  absl::Status ListWebhookSubscriptions(CallContext& ctx,
                                        const v1::ListWebhookSubscriptionsRequest& req,
                                        v1::ListWebhookSubscriptionsResponse* resp);
  absl::Status DeleteWebhookSubscription(CallContext& ctx,
                                         const v1::DeleteWebhookSubscriptionRequest& req,
                                         v1::DeleteWebhookSubscriptionResponse* resp);
  absl::Status RotateWebhookSecret(CallContext& ctx, const v1::RotateWebhookSecretRequest& req,
                                   v1::RotateWebhookSecretResponse* resp);
  absl::Status ListWebhookDeadLetters(CallContext& ctx,
                                      const v1::ListWebhookDeadLettersRequest& req,
                                      v1::ListWebhookDeadLettersResponse* resp);
  absl::Status ReplayWebhookDeadLetters(CallContext& ctx,
                                        const v1::ReplayWebhookDeadLettersRequest& req,
                                        v1::ReplayWebhookDeadLettersResponse* resp);
  // Escalation keeps the loop closed (issue 14, escalation_rpcs.cc): the on-call office routes
  // an escalated referral again (it may also accept it itself: AcceptReferral).
  absl::Status RouteReferralAgain(CallContext& ctx, const v1::RouteReferralAgainRequest& req,
                                  v1::RouteReferralAgainResponse* resp);
  // Statutory timers (issue 14).
  absl::Status RecordStatutoryFiling(CallContext& ctx, const v1::RecordStatutoryFilingRequest& req,
                                     v1::RecordStatutoryFilingResponse* resp);
  // Advocate response (issue 14, advocate.h).
  absl::Status RecordAdvocateArrival(CallContext& ctx, const v1::RecordAdvocateArrivalRequest& req,
                                     v1::RecordAdvocateArrivalResponse* resp);

  // The stored referral built from an intake request.
  v1::Referral NewReferral(const Caller& c, const v1::CreateReferralRequest& req,
                           const std::string& id, absl::Time now) const;
  absl::Status Insert(PgTx& tx, const Caller& c, const v1::Referral& r, absl::Time now);
  // Issue 14: a row per need (the lead first, then its parts), with the ids given.
  std::vector<v1::Referral> NewRows(const Caller& c, const v1::CreateReferralRequest& req,
                                    const std::vector<std::string>& ids, absl::Time now) const;
  absl::Status ReadOtherRows(PgTx& tx, const Caller& c, const std::vector<std::string>& region,
                             std::vector<v1::Referral>& rows);
  absl::StatusOr<std::map<std::string, std::vector<v1::Referral>>> PartsForReferrer(
      PgTx& tx, const Caller& c, const std::vector<v1::Referral>& leads);
  // What the caller may see of a referral it may read; audited.
  absl::Status ReadAs(PgTx& tx, const Caller& c, v1::Referral r, v1::GetReferralResponse* resp);
  // What the caller may list: its own referrals, offers to it, or its region's.
  absl::StatusOr<ReferralStore::ListQuery> ListQueryFor(const Caller& c,
                                                        const v1::ListReferralsRequest& req);
  void Committed();  // wakes watchers on every replica

  PgPool* pg_;
  RedisClient* redis_;
  const CountyTable& counties_;
  const Clock* clock_;
  const Sealer* sealer_;
  const ReferralOptions options_;
  ReferralMetrics metrics_;
  std::unique_ptr<WatchHub<v1::WatchReferralsResponse>> hub_;
  ReferralChanges changes_;
  IdentityRetention retention_;
  Router router_;
  Timers timers_;
  std::unique_ptr<WebhookSender> webhook_sender_;
  std::unique_ptr<WebhookWorker> webhooks_;
};

}  // namespace safeharbor::referrals
