// The consent RPC of the referral service (method table in referral_service.cc).
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "services/referrals/referral_service.h"

namespace safeharbor::referrals {

absl::Status ReferralServiceImpl::RevokeConsent(CallContext& ctx,
                                                const v1::RevokeConsentRequest& req,
                                                v1::RevokeConsentResponse*) {
  const Mutation revoke = [&](PgTx&, v1::Referral& r, Actor actor, absl::Time now,
                              Change& ch) -> absl::Status {
    SH_RETURN_IF_ERROR(CanRevokeConsent(actor));
    if (!r.youth().has_consent() || r.youth().consent().has_revoke_time()) {
      ch.noop = true;  // Nothing consented to, or revoked already: the same empty answer.
      return absl::OkStatus();
    }
    *r.mutable_youth()->mutable_consent()->mutable_revoke_time() = ToProtoTime(now);
    ch.purge_identity = std::string(kPurgeRevoked);
    ch.reason = "consent revoked";
    return absl::OkStatus();
  };
  // Issue 14: the youth's consent is one for the whole referral: named on the lead or on a
  // part, every row's consent is revoked and its details purged, in one transaction.
  SH_ASSIGN_OR_RETURN(const int revoked,
                      changes_.ApplyToReferral(&ctx, req.id(), "revoke_consent", revoke,
                                               v1::REFERRAL_STATUS_UNSPECIFIED,
                                               /*from_part=*/true));
  for (int i = 0; i < revoked; ++i) retention_.Purged(kPurgeRevoked);
  return absl::OkStatus();
}

}  // namespace safeharbor::referrals
