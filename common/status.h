// absl::Status inside, grpc::Status at the edge: the one place the two meet.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace safeharbor {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace safeharbor
