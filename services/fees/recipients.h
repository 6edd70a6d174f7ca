// Who receives "local direct service providers" shares: the provider organizations registered in
// the directory for the jurisdiction. Cached briefly (the recipients of every payment are written
// into the ledger, so a cache refresh never changes history).
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

class RecipientSource {
 public:
  virtual ~RecipientSource() = default;
  // Sorted directory ids of the jurisdiction's service providers (possibly none).
  virtual absl::StatusOr<std::vector<std::string>> LocalProviders(
      absl::string_view jurisdiction_fips) const = 0;
};

class DirectoryRecipients final : public RecipientSource {
 public:
  DirectoryRecipients(std::unique_ptr<Peer> directory, absl::Duration ttl)
      : directory_(std::move(directory)),
        stub_(directory::v1::DirectoryService::NewStub(directory_->channel())),
        ttl_(ttl) {}
  absl::StatusOr<std::vector<std::string>> LocalProviders(
      absl::string_view jurisdiction_fips) const override;

 private:
  std::unique_ptr<Peer> directory_;
  std::unique_ptr<directory::v1::DirectoryService::Stub> stub_;
  const absl::Duration ttl_;
  mutable std::mutex mu_;
  mutable std::map<std::string, std::pair<absl::Time, std::vector<std::string>>> cache_;
};

}  // namespace safeharbor::fees
