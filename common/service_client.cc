#include "common/service_client.h"

#include "absl/strings/str_cat.h"
#include "common/auth.h"
#include "common/status.h"

namespace safeharbor {

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
  peer->channel_ = grpc::CreateCustomChannel(options.address, creds, args);
  return peer;
}

absl::Status Peer::CallIdempotent(
    const std::function<grpc::Status(grpc::ClientContext*)>& call) const {
  grpc::Status st;
  for (int attempt = 1; attempt <= options_.max_attempts; ++attempt) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     absl::ToChronoMilliseconds(options_.deadline));
    if (options_.insecure_dev_mode) {
      ctx.AddMetadata(std::string(kDevIdentityHeader), options_.dev_identity);
    }
    st = call(&ctx);
    if (st.ok()) return absl::OkStatus();
    if (st.error_code() != grpc::StatusCode::UNAVAILABLE &&
        st.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
      break;
    }
    if (attempt < options_.max_attempts) absl::SleepFor(options_.backoff * attempt);
  }
  if (st.error_code() == grpc::StatusCode::UNAVAILABLE ||
      st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::UnavailableError(
        absl::StrCat(options_.name, " service unavailable: ", st.error_message()));
  }
  return FromGrpcStatus(st);
}

}  // namespace safeharbor
