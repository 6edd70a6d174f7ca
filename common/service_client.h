// Calls from one SafeHarbor service to another: one reused channel per peer over mTLS with this
// service's own certificate (role "service"); every call's deadline is what the incoming call
// has left (CurrentCallDeadline), capped by the peer's own maximum; a bounded budget of calls in
// flight per peer (a call over it fails at once), kept well below the worker threads, so that a
// peer that hangs holds only that many of them (a bulkhead); a circuit breaker per peer that
// refuses calls at once while the peer does not answer; retries on UNAVAILABLE done by gRPC's
// retry policy within that deadline, never by sleeping on a worker thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/breaker.h"
#include "common/clock.h"
#include "common/tls.h"

namespace safeharbor {

struct PeerOptions {
  std::string name;     // for messages, e.g. "directory"
  std::string address;  // host:port
  TlsFiles tls;         // this service's certificate as the client identity
  bool insecure_dev_mode = false;
  std::string dev_identity;  // SPIFFE id sent as a header in dev mode
  // The cap on a call made for an incoming call: a peer that does not answer costs the caller
  // at most this (and then its breaker refuses at once).
  absl::Duration deadline = absl::Milliseconds(1500);
  // A call made outside any incoming call (routing, timers): nobody waits on it, so it may take
  // longer (the three 2 s attempts of before), still bounded.
  absl::Duration background_deadline = absl::Seconds(6);
  int max_attempts = 3;  // gRPC retry policy, on UNAVAILABLE
  absl::Duration backoff = absl::Milliseconds(100);
  // Calls to this peer at once; more fail at once with UNAVAILABLE. Keep it well below the
  // service's worker threads (PeerFor: --peer_max_in_flight).
  int max_in_flight = 32;
  BreakerOptions breaker;
  const Clock* clock = SystemClock::Get();   // the breaker's
  prometheus::Registry* registry = nullptr;  // breaker state and time-outs; may be null
};

class Peer {
 public:
  static absl::StatusOr<std::unique_ptr<Peer>> Connect(const PeerOptions& options);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  // Runs call(ctx) once with a fresh context (deadline, dev identity); the channel retries
  // UNAVAILABLE within the deadline. Only for idempotent calls. A peer that does not answer in
  // time, whose budget of calls in flight is spent, or whose breaker is open, is UNAVAILABLE,
  // naming the peer.
  absl::Status CallIdempotent(const std::function<grpc::Status(grpc::ClientContext*)>& call) const;

  int in_flight() const { return in_flight_.load(); }
  BreakerState breaker_state() const { return breaker_->state(); }

 private:
  explicit Peer(PeerOptions options);
  PeerOptions options_;
  DependencyMetrics metrics_;
  std::unique_ptr<Breaker> breaker_;
  std::shared_ptr<grpc::Channel> channel_;
  mutable std::atomic<int> in_flight_{0};
};

}  // namespace safeharbor
