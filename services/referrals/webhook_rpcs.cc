// The webhook RPCs of the referral service (declared in its method table, referral_service.cc
// Methods()): an organization's own subscriptions, their secrets, and its dead letters.
#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/paging.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/validate.h"
#include "services/referrals/referral_service.h"
#include "services/referrals/webhook_store.h"

namespace safeharbor::referrals {
namespace {

absl::Status ValidateOrganization(absl::string_view org) {
  if (org.empty()) return absl::InvalidArgumentError("organization_id: required");
  return ValidateId(org, "organization_id");
}

}  // namespace

absl::Status ValidateWebhookCreate(const v1::CreateWebhookSubscriptionRequest& r,
                                   bool allow_loopback_http) {
  SH_RETURN_IF_ERROR(ValidateOrganization(r.organization_id()));
  SH_RETURN_IF_ERROR(CheckWebhookUrl(r.url(), allow_loopback_http));
  return ValidateWebhookEvents(r.events());
}

absl::Status ValidateWebhookTarget(absl::string_view org, absl::string_view subscription_id) {
  SH_RETURN_IF_ERROR(ValidateOrganization(org));
  return ValidateId(subscription_id, "subscription_id");
}

absl::Status ValidateWebhookOrganization(absl::string_view org) {
  return ValidateOrganization(org);
}

absl::Status ReferralServiceImpl::CreateWebhookSubscription(
    CallContext& ctx, const v1::CreateWebhookSubscriptionRequest& req,
    v1::CreateWebhookSubscriptionResponse* resp) {
  const Caller& c = ctx.caller();
  // A child-welfare office hears of escalations in its region (a directory call: before the
  // transaction).
  SH_ASSIGN_OR_RETURN(const std::vector<std::string> counties, changes_.RegionOf(c));
  v1::WebhookSubscription s;
  s.set_id(NewId("whs"));
  s.set_organization_id(req.organization_id());
  s.set_url(req.url());
  *s.mutable_events() = req.events();
  const std::string secret = NewWebhookSecret();
  SH_ASSIGN_OR_RETURN(const std::string sealed, sealer_->Seal(secret, s.id()));
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) -> absl::Status {
    const absl::Time now = ctx.Now();
    *s.mutable_create_time() = ToProtoTime(now);
    *s.mutable_secret_rotate_time() = ToProtoTime(now);
    // The cap is counted in the insert's own statement (concurrent creates cannot pass it).
    return WebhookStore::Create(tx, s, RoleName(c.role), counties, sealed,
                                webhooks_->options().max_subscriptions_per_organization);
  }));
  webhooks_->Subscribed();  // the directory vouches for it before its first delivery
  *resp->mutable_subscription() = s;
  resp->set_secret(secret);
  log::Info(
      "webhook_subscription_created",
      {{"subscription_id", s.id()}, {"events", absl::StrCat(s.events_size())}, {"by", c.org_id}});
  return absl::OkStatus();
}

absl::Status ReferralServiceImpl::ListWebhookSubscriptions(
    CallContext& ctx, const v1::ListWebhookSubscriptionsRequest& req,
    v1::ListWebhookSubscriptionsResponse* resp) {
  return ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    SH_ASSIGN_OR_RETURN(auto subs, WebhookStore::List(tx, req.organization_id()));
    for (auto& s : subs) *resp->add_subscriptions() = std::move(s);
    return absl::OkStatus();
  });
}

absl::Status ReferralServiceImpl::DeleteWebhookSubscription(
    CallContext& ctx, const v1::DeleteWebhookSubscriptionRequest& req,
    v1::DeleteWebhookSubscriptionResponse*) {
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) {
    return WebhookStore::Delete(tx, req.organization_id(), req.subscription_id());
  }));
  log::Info("webhook_subscription_deleted",
            {{"subscription_id", req.subscription_id()}, {"by", ctx.caller().org_id}});
  return absl::OkStatus();
}

absl::Status ReferralServiceImpl::RotateWebhookSecret(CallContext& ctx,
                                                      const v1::RotateWebhookSecretRequest& req,
                                                      v1::RotateWebhookSecretResponse* resp) {
  const std::string secret = NewWebhookSecret();
  SH_ASSIGN_OR_RETURN(const std::string sealed, sealer_->Seal(secret, req.subscription_id()));
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) -> absl::Status {
    SH_ASSIGN_OR_RETURN(
        *resp->mutable_subscription(),
        WebhookStore::Rotate(tx, req.organization_id(), req.subscription_id(), sealed, ctx.Now()));
    return absl::OkStatus();
  }));
  resp->set_secret(secret);
  log::Info("webhook_secret_rotated",
            {{"subscription_id", req.subscription_id()}, {"by", ctx.caller().org_id}});
  return absl::OkStatus();
}

absl::Status ReferralServiceImpl::ListWebhookDeadLetters(
    CallContext& ctx, const v1::ListWebhookDeadLettersRequest& req,
    v1::ListWebhookDeadLettersResponse* resp) {
  SH_ASSIGN_OR_RETURN(const int size, ValidatePageSize(req.page_size(), 50, 200));
  return ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    SH_ASSIGN_OR_RETURN(auto dead, WebhookStore::DeadLetters(tx, req.organization_id(), size));
    for (auto& d : dead) *resp->add_deliveries() = std::move(d);
    return absl::OkStatus();
  });
}

absl::Status ReferralServiceImpl::ReplayWebhookDeadLetters(
    CallContext& ctx, const v1::ReplayWebhookDeadLettersRequest& req,
    v1::ReplayWebhookDeadLettersResponse* resp) {
  const std::vector<std::string> ids(req.event_ids().begin(), req.event_ids().end());
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) -> absl::Status {
    const WebhookOptions& o = webhooks_->options();
    SH_ASSIGN_OR_RETURN(
        const int32_t n,
        WebhookStore::Replay(tx, req.organization_id(), ids, ctx.Now(), o.retry_window,
                             {o.replay_max_per_call, o.replay_max_per_window, o.replay_window}));
    resp->set_replayed(n);
    return absl::OkStatus();
  }));
  log::Info("webhook_dead_letters_replayed",
            {{"replayed", absl::StrCat(resp->replayed())}, {"by", ctx.caller().org_id}});
  webhooks_->Wake();
  return absl::OkStatus();
}

}  // namespace safeharbor::referrals
