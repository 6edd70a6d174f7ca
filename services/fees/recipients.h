// Who receives "local direct service providers" shares: the provider organizations registered in
// the directory for the jurisdiction. Cached briefly (the recipients of every payment are written
// into the ledger, so a cache refresh never changes history). Also the directory's facts about
// one organization (its kind and county): which jurisdiction a court or fiscal office serves and
// whether a hosting agency is law enforcement. Only directory_admin changes those facts.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/service_client.h"
#include "safeharbor/directory/v1/directory.grpc.pb.h"

namespace safeharbor::fees {

struct OrganizationFacts {
  directory::v1::OrganizationKind kind = directory::v1::ORGANIZATION_KIND_UNSPECIFIED;
  std::string county_fips;
};

class RecipientSource {
 public:
  virtual ~RecipientSource() = default;
  // Sorted directory ids of the jurisdiction's service providers (possibly none).
  virtual absl::StatusOr<std::vector<std::string>> LocalProviders(
      absl::string_view jurisdiction_fips) const = 0;
  // The directory's kind and county of an organization; NOT_FOUND when it is not listed.
  virtual absl::StatusOr<OrganizationFacts> Organization(absl::string_view id) const = 0;
};

class DirectoryRecipients final : public RecipientSource {
 public:
  DirectoryRecipients(std::unique_ptr<Peer> directory, absl::Duration ttl)
      : directory_(std::move(directory)),
        stub_(directory::v1::DirectoryService::NewStub(directory_->channel())),
        ttl_(ttl) {}
  absl::StatusOr<std::vector<std::string>> LocalProviders(
      absl::string_view jurisdiction_fips) const override;
  absl::StatusOr<OrganizationFacts> Organization(absl::string_view id) const override;

 private:
  std::unique_ptr<Peer> directory_;
  std::unique_ptr<directory::v1::DirectoryService::Stub> stub_;
  const absl::Duration ttl_;
  mutable std::mutex mu_;
  mutable std::map<std::string, std::pair<absl::Time, std::vector<std::string>>> cache_;
  mutable std::map<std::string, std::pair<absl::Time, OrganizationFacts>> facts_;
};

}  // namespace safeharbor::fees
