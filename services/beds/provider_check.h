// Facilities belong to provider organizations in the directory. The check runs before the
// facility's transaction, so no database connection is held while the directory answers.
#pragma once

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/service_client.h"
#include "safeharbor/directory/v1/directory.grpc.pb.h"

namespace safeharbor::beds {

class ProviderCheck {
 public:
  virtual ~ProviderCheck() = default;
  // OK when org_id is a service provider in the directory; FAILED_PRECONDITION naming
  // facility.organization_id when it is not; UNAVAILABLE when the directory cannot answer.
  virtual absl::Status CheckProvider(absl::string_view org_id) const = 0;
};

class DirectoryProviderCheck final : public ProviderCheck {
 public:
  explicit DirectoryProviderCheck(std::unique_ptr<Peer> directory)
      : directory_(std::move(directory)),
        stub_(directory::v1::DirectoryService::NewStub(directory_->channel())) {}
  absl::Status CheckProvider(absl::string_view org_id) const override;

 private:
  std::unique_ptr<Peer> directory_;
  std::unique_ptr<directory::v1::DirectoryService::Stub> stub_;
};

}  // namespace safeharbor::beds
