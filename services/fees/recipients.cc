#include "services/fees/recipients.h"

#include <algorithm>

#include "absl/time/clock.h"

namespace safeharbor::fees {

absl::StatusOr<std::vector<std::string>> DirectoryRecipients::LocalProviders(
    absl::string_view jurisdiction) const {
  const std::string key(jurisdiction);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(key);
    if (it != cache_.end() && absl::Now() - it->second.first < ttl_) return it->second.second;
  }
  std::vector<std::string> ids;
  directory::v1::ListOrganizationsRequest req;
  req.set_kind(directory::v1::ORGANIZATION_KIND_SERVICE_PROVIDER);
  req.set_county_fips(key);
  req.set_page_size(500);
  for (int page = 0; page < 20; ++page) {  // At most 10,000 providers in one county.
    directory::v1::ListOrganizationsResponse resp;
    absl::Status st = directory_->CallIdempotent(
        [&](grpc::ClientContext* ctx) { return stub_->ListOrganizations(ctx, req, &resp); });
    if (!st.ok()) return st;
    for (const auto& o : resp.organizations()) ids.push_back(o.id());
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  std::sort(ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(mu_);
  if (cache_.size() > 256) cache_.clear();
  cache_[key] = {absl::Now(), ids};
  return ids;
}

absl::StatusOr<OrganizationFacts> DirectoryRecipients::Organization(absl::string_view id) const {
  const std::string key(id);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = facts_.find(key);
    if (it != facts_.end() && absl::Now() - it->second.first < ttl_) return it->second.second;
  }
  directory::v1::GetOrganizationRequest req;
  req.set_id(key);
  directory::v1::GetOrganizationResponse resp;
  absl::Status st = directory_->CallIdempotent(
      [&](grpc::ClientContext* ctx) { return stub_->GetOrganization(ctx, req, &resp); });
  if (!st.ok()) return st;
  const OrganizationFacts facts{resp.organization().kind(), resp.organization().county_fips()};
  std::lock_guard<std::mutex> lock(mu_);
  if (facts_.size() > 1024) facts_.clear();
  facts_[key] = {absl::Now(), facts};
  return facts;
}

}  // namespace safeharbor::fees
