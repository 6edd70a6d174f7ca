#include "common/service_client.h"

#include <grpcpp/support/validate_service_config.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/auth.h"
#include "common/rpc_kit.h"
#include "common/status.h"

namespace safeharbor {
namespace {

// Every method of the peer: UNAVAILABLE retried by gRPC with exponential backoff, within the
// call's deadline.
std::string RetryServiceConfig(const PeerOptions& o) {
  if (o.max_attempts <= 1) return R"({"methodConfig":[{"name":[{}]}]})";
  const double backoff_s = std::max(0.001, absl::ToDoubleSeconds(o.backoff));
  return absl::StrFormat(
      R"({"methodConfig":[{"name":[{}],"retryPolicy":{"maxAttempts":%d,"initialBackoff":"%.3fs",)"
      R"("maxBackoff":"1s","backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}]})",
      std::min(5, o.max_attempts), backoff_s);
}

}  // namespace

Peer::Peer(PeerOptions options)
    : options_(std::move(options)),
      metrics_(options_.registry, options_.name),
      breaker_(std::make_unique<Breaker>(options_.name, options_.clock, options_.breaker,
                                         metrics_.StateObserver())) {}

absl::StatusOr<std::unique_ptr<Peer>> Peer::Connect(const PeerOptions& options) {
  std::unique_ptr<Peer> peer(new Peer(options));
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options.insecure_dev_mode) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    auto c = MakeChannelCredentials(options.tls);
    if (!c.ok()) return c.status();
    creds = *c;
  }
  grpc::ChannelArguments args = DefaultChannelArguments();
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetServiceConfigJSON(RetryServiceConfig(options));
  if (auto st = grpc::experimental::ValidateServiceConfigJSON(RetryServiceConfig(options));
      !st.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("peer ", options.name, ": ", st));
  }
  peer->channel_ = grpc::CreateCustomChannel(options.address, creds, args);
  // Connect (and do the TLS handshake) now, not on the first call's deadline.
  (void)peer->channel_->GetState(/*try_to_connect=*/true);
  return peer;
}

absl::Status Peer::CallIdempotent(
    const std::function<grpc::Status(grpc::ClientContext*)>& call) const {
  const absl::Time now = absl::Now();
  const absl::Time caller = CurrentCallDeadline();
  const absl::Duration cap =
      caller == absl::InfiniteFuture() ? options_.background_deadline : options_.deadline;
  const absl::Time deadline = std::min(caller, now + cap);
  if (deadline <= now) {
    return absl::UnavailableError(
        absl::StrCat(options_.name, " service not called: the caller's deadline has passed"));
  }
  if (in_flight_.fetch_add(1) >= options_.max_in_flight) {
    in_flight_.fetch_sub(1);
    return absl::UnavailableError(
        absl::StrCat(options_.name, " service busy: ", options_.max_in_flight, " calls in flight"));
  }
  const absl::Cleanup release = [this] { in_flight_.fetch_sub(1); };
  if (!breaker_->Allow()) return breaker_->Refusal();
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(deadline));
  if (options_.insecure_dev_mode) {
    ctx.AddMetadata(std::string(kDevIdentityHeader), options_.dev_identity);
  }
  const grpc::Status st = call(&ctx);
  const grpc::StatusCode code = st.error_code();
  if (code != grpc::StatusCode::UNAVAILABLE && code != grpc::StatusCode::DEADLINE_EXCEEDED) {
    breaker_->Succeeded();  // it answered, perhaps with an error of its own
    return st.ok() ? absl::OkStatus() : FromGrpcStatus(st);
  }
  if (code == grpc::StatusCode::DEADLINE_EXCEEDED &&
      !TimeoutIsTheDependencys(deadline - now, cap)) {
    // The caller left too little time: not the peer's failure (nor its success).
    return absl::UnavailableError(absl::StrCat(
        options_.name,
        " service did not answer within what the caller had left: ", st.error_message()));
  }
  breaker_->Failed();
  if (code == grpc::StatusCode::DEADLINE_EXCEEDED) metrics_.TimedOut();
  return absl::UnavailableError(
      absl::StrCat(options_.name, " service unavailable: ", st.error_message()));
}

}  // namespace safeharbor
