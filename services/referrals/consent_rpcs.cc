// The consent RPC of the referral service (method table in referral_service.cc).
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "services/referrals/referral_service.h"

namespace safeharbor::referrals {

absl::Status ReferralServiceImpl::RevokeConsent(CallContext& ctx,
                                                const v1::RevokeConsentRequest& req,
                                                v1::RevokeConsentResponse*) {
  bool revoked = false;
  const Mutation revoke = [&](PgTx&, v1::Referral& r, Actor actor, absl::Time now,
                              Change& ch) -> absl::Status {
    SH_RETURN_IF_ERROR(CanRevokeConsent(actor));
    revoked = false;
    if (!r.youth().has_consent() || r.youth().consent().has_revoke_time()) {
      ch.noop = true;  // Nothing consented to, or revoked already: the same empty answer.
      return absl::OkStatus();
    }
    *r.mutable_youth()->mutable_consent()->mutable_revoke_time() = ToProtoTime(now);
    ch.purge_identity = std::string(kPurgeRevoked);
    ch.reason = "consent revoked";
    revoked = true;
    return absl::OkStatus();
  };
  SH_RETURN_IF_ERROR(changes_.Apply(&ctx, req.id(), "revoke_consent", revoke).status());
  if (revoked) retention_.Purged(kPurgeRevoked);
  return absl::OkStatus();
}

}  // namespace safeharbor::referrals
