#include "services/beds/provider_check.h"

#include "absl/strings/str_cat.h"

namespace safeharbor::beds {

absl::Status DirectoryProviderCheck::CheckProvider(absl::string_view org_id) const {
  directory::v1::GetOrganizationRequest req;
  req.set_id(std::string(org_id));
  directory::v1::GetOrganizationResponse resp;
  absl::Status st = directory_->CallIdempotent(
      [&](grpc::ClientContext* ctx) { return stub_->GetOrganization(ctx, req, &resp); });
  if (st.code() == absl::StatusCode::kNotFound) {
    return absl::FailedPreconditionError(
        absl::StrCat("facility.organization_id '", org_id, "' is not in the directory"));
  }
  if (!st.ok()) return st;
  if (resp.organization().kind() != directory::v1::ORGANIZATION_KIND_SERVICE_PROVIDER) {
    return absl::FailedPreconditionError(absl::StrCat(
        "facility.organization_id '", org_id, "' is not a service provider in the directory"));
  }
  return absl::OkStatus();
}

}  // namespace safeharbor::beds
