// Escalation keeps the loop closed (issue 14, branch escalation): the RPCs by which the on-call
// child-welfare office an escalated referral is with carries it on (method table below; the
// pure rules in escalation.h and lifecycle.h, who is which party in access.h).
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/validate.h"
#include "services/referrals/access.h"
#include "services/referrals/escalation.h"
#include "services/referrals/referral_service.h"

namespace safeharbor::referrals {

void ReferralServiceImpl::EscalationMethods() {
  // Only the office the referral was escalated to (decided on the stored referral: RouteAgain);
  // a retry of the same request_id finds it recorded on the referral and routes nothing.
  SAFEHARBOR_RPC(
      RouteReferralAgain,
      (MethodPolicy{.roles = {Role::kChildWelfare},
                    .scope = Scope::kStored,
                    .idempotency = Idempotency::kByState}),
      .validate = [](const auto& r) { return ValidateId(r.id(), "id"); });
}

absl::Status ReferralServiceImpl::RouteReferralAgain(CallContext& ctx,
                                                     const v1::RouteReferralAgainRequest& req,
                                                     v1::RouteReferralAgainResponse* resp) {
  const std::string& org = ctx.caller().org_id;
  bool routed = false;
  const Mutation again = [&](PgTx&, v1::Referral& r, Actor actor, absl::Time,
                             Change& ch) -> absl::Status {
    SH_ASSIGN_OR_RETURN(routed, RouteAgain(r, actor, req.request_id()));
    ch.noop = !routed;  // A retry: answered with the referral as it is now.
    ch.to = v1::REFERRAL_STATUS_REQUESTED;
    ch.reason = absl::StrCat("routed again by ", org, " (the on-call office)");
    return absl::OkStatus();
  };
  SH_ASSIGN_OR_RETURN(const v1::Referral r, changes_.Apply(&ctx, req.id(), "route_again", again));
  *resp->mutable_referral() = ChangedView(ctx.caller(), r);
  if (routed) metrics_.reroutes.Add({{"reason", "routed_again"}}).Increment();
  return absl::OkStatus();
}

}  // namespace safeharbor::referrals
