// GetReferralFhir (issue 15, started): the FHIR R4 Bundle of one referral, for the provider that
// accepted it and for child welfare (its region, or the office it was escalated to). The officer
// has no FHIR view beyond its referrer view (the role is not in the method table's entry). The
// Bundle shows what GetReferral shows the same caller: identifying details only to the accepting
// provider, every read audited.
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "services/referrals/access.h"
#include "services/referrals/fhir.h"
#include "services/referrals/referral_service.h"
#include "services/referrals/views.h"

namespace safeharbor::referrals {
namespace {

// A provider sees the FHIR view of the referrals it accepted only.
absl::Status CanReadFhir(const Caller& c, const v1::Referral& r,
                         const std::vector<std::string>& region) {
  SH_RETURN_IF_ERROR(CanRead(c, r, region));
  if (c.role == Role::kProvider &&
      !(r.has_accepted_time() && r.handoff().provider_organization_id() == c.org_id)) {
    return absl::PermissionDeniedError(
        "the FHIR view of a referral is for the provider that accepted it and child welfare");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ReferralServiceImpl::GetReferralFhir(CallContext& ctx,
                                                  const v1::GetReferralFhirRequest& req,
                                                  v1::GetReferralFhirResponse* resp) {
  const Caller& c = ctx.caller();
  SH_ASSIGN_OR_RETURN(const auto region, changes_.RegionOf(c));
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    SH_ASSIGN_OR_RETURN(v1::Referral r, ReferralStore::Get(tx, req.id(), false));
    SH_RETURN_IF_ERROR(ctx.Authorize(CanReadFhir(c, r, region)));
    const bool identity = c.role == Role::kProvider;  // the accepting provider (checked above)
    v1::Referral view = identity ? ProviderViewOf(r, c.org_id) : r;
    if (identity) {
      SH_ASSIGN_OR_RETURN(*view.mutable_youth()->mutable_identifying(),
                          ReferralStore::OpenIdentity(tx, r.id(), *sealer_));
    }
    resp->set_bundle_json(ReferralFhirBundle(view, identity));
    return ReferralStore::Audit(tx, c, identity ? "identity_read" : "read", r.id(), "fhir",
                                ctx.Now());
  }));
  metrics_.audit_reads.Increment();
  return absl::OkStatus();
}

}  // namespace safeharbor::referrals
