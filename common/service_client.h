// Calls from one SafeHarbor service to another: one reused channel per peer over mTLS with this
// service's own certificate (role "service"), a deadline on every call, and bounded retries on
// UNAVAILABLE for idempotent calls.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tls.h"

namespace safeharbor {

struct PeerOptions {
  std::string name;     // for messages, e.g. "directory"
  std::string address;  // host:port
  TlsFiles tls;         // this service's certificate as the client identity
  bool insecure_dev_mode = false;
  std::string dev_identity;  // SPIFFE id sent as a header in dev mode
  absl::Duration deadline = absl::Seconds(2);
  int max_attempts = 3;
  absl::Duration backoff = absl::Milliseconds(100);
};

class Peer {
 public:
  static absl::StatusOr<std::unique_ptr<Peer>> Connect(const PeerOptions& options);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  // Runs call(ctx) with a fresh context (deadline, dev identity) until it succeeds, fails with
  // anything but UNAVAILABLE, or max_attempts is reached. Only for idempotent calls. A peer that
  // does not answer in time is UNAVAILABLE, naming the peer.
  absl::Status CallIdempotent(const std::function<grpc::Status(grpc::ClientContext*)>& call) const;

 private:
  explicit Peer(PeerOptions options) : options_(std::move(options)) {}
  PeerOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace safeharbor
