// Calls from one SafeHarbor service to another: one reused channel per peer over mTLS with this
// service's own certificate (role "service"); every call's deadline is what the incoming call
// has left (CurrentCallDeadline), capped by the peer's own maximum; a bounded budget of calls in
// flight per peer (a call over it fails at once); retries on UNAVAILABLE done by gRPC's retry
// policy within that deadline, never by sleeping on a worker thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
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
  std::string dev_identity;                    // SPIFFE id sent as a header in dev mode
  absl::Duration deadline = absl::Seconds(2);  // the cap on a call made for an incoming call
  // A call made outside any incoming call (routing, timers): nobody waits on it, so it may take
  // longer (the three 2 s attempts of before), still bounded.
  absl::Duration background_deadline = absl::Seconds(6);
  int max_attempts = 3;  // gRPC retry policy, on UNAVAILABLE
  absl::Duration backoff = absl::Milliseconds(100);
  int max_in_flight = 32;  // calls to this peer at once; more fail at once with UNAVAILABLE
};

class Peer {
 public:
  static absl::StatusOr<std::unique_ptr<Peer>> Connect(const PeerOptions& options);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  // Runs call(ctx) once with a fresh context (deadline, dev identity); the channel retries
  // UNAVAILABLE within the deadline. Only for idempotent calls. A peer that does not answer in
  // time, or whose budget of calls in flight is spent, is UNAVAILABLE, naming the peer.
  absl::Status CallIdempotent(const std::function<grpc::Status(grpc::ClientContext*)>& call) const;

  int in_flight() const { return in_flight_.load(); }

 private:
  explicit Peer(PeerOptions options) : options_(std::move(options)) {}
  PeerOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  mutable std::atomic<int> in_flight_{0};
};

}  // namespace safeharbor
