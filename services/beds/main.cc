// beds-service: wiring only. The logic lives in BedsServiceImpl.
#include <algorithm>

#include "absl/flags/flag.h"
#include "common/log.h"
#include "common/service_main.h"
#include "services/beds/beds_service.h"

ABSL_FLAG(int, stale_after_s, 12 * 3600,
          "A census older than this many seconds makes availability unknown.");
ABSL_FLAG(int, search_cache_ttl_s, 5, "Longest a cached availability answer lives.");
ABSL_FLAG(int, sweep_interval_ms, 1000, "How often expired holds are swept.");
ABSL_FLAG(int, max_active_holds_per_organization, 25,
          "Active bed holds one organization may have (held for it by the referral service); "
          "beyond it HoldBed answers RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, max_hold_extension_s, 8 * 3600,
          "ExtendHold moves a hold's expiry at most this many seconds from now (an accepted "
          "referral's hand-off deadline must fit).");
ABSL_FLAG(std::string, directory_address, safeharbor::DefaultAddress("directory"),
          "directory-service host:port; facility owners are checked against it.");

namespace safeharbor::beds {
const std::vector<Migration>& Migrations();
}

int main(int argc, char** argv) {
  using namespace safeharbor;
  auto deps =
      PrepareService(argc, argv, "beds",
                     "beds-service: SafeHarbor placement-bed availability (gRPC, mTLS).\n"
                     "Every flag may also be set as SAFEHARBOR_<FLAG>, e.g. SAFEHARBOR_GRPC_PORT.",
                     beds::Migrations());
  if (!deps.ok()) return 1;
  beds::BedsOptions options;
  options.stale_after = absl::Seconds(absl::GetFlag(FLAGS_stale_after_s));
  options.search_cache_ttl = absl::Seconds(absl::GetFlag(FLAGS_search_cache_ttl_s));
  options.sweep_interval = absl::Milliseconds(absl::GetFlag(FLAGS_sweep_interval_ms));
  options.max_active_holds_per_org = absl::GetFlag(FLAGS_max_active_holds_per_organization);
  if (options.max_active_holds_per_org < 1) {
    log::Error("max_active_holds_per_organization_invalid",
               {{"error", "--max_active_holds_per_organization must be 1 or more"}});
    return 1;
  }
  options.max_hold_extension =
      absl::Seconds(std::clamp(absl::GetFlag(FLAGS_max_hold_extension_s), 60, 7 * 24 * 3600));
  options.watch_replay_horizon = deps->config.watch_replay_horizon;
  options.watch_max_stream_age = deps->config.watch_max_stream_age;
  auto peer =
      Peer::Connect(PeerFor(*deps, "beds", "directory", absl::GetFlag(FLAGS_directory_address)));
  if (!peer.ok()) {
    log::Error("directory_client_failed", {{"error", peer.status().message()}});
    return 1;
  }
  beds::DirectoryProviderCheck providers(*std::move(peer));
  beds::BedsServiceImpl service(deps->env.get(), deps->pg.get(), deps->redis.get(), *deps->registry,
                                WashingtonCounties(), SystemClock::Get(), &providers, options);
  service.StartBackground();
  // Open watch streams end first; clients resume with their cursor on another replica.
  return ServeUntilSignal(*deps, {&service}, [&] { service.StopBackground(); });
}
