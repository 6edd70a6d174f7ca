// directory-service: wiring only. The logic lives in DirectoryServiceImpl.
#include <algorithm>

#include "absl/flags/flag.h"
#include "common/service_main.h"
#include "services/directory/directory_service.h"

ABSL_FLAG(int, search_cache_ttl_s, 60,
          "Longest a cached search answer lives (writes invalidate it sooner).");
ABSL_FLAG(int, search_local_cache_entries, 20000,
          "Most search answers kept in process, in front of Redis (0: none).");
ABSL_FLAG(int, search_local_cache_mib, 16, "Most memory the in-process search answers take.");
ABSL_FLAG(int, search_local_cache_ttl_s, 10,
          "Longest a search answer lives in process (invalidations drop it sooner).");

namespace safeharbor::directory {
const std::vector<Migration>& Migrations();
}

int main(int argc, char** argv) {
  using namespace safeharbor;
  auto deps =
      PrepareService(argc, argv, "directory",
                     "directory-service: the SafeHarbor provider directory (gRPC, mTLS).\n"
                     "Every flag may also be set as SAFEHARBOR_<FLAG>, e.g. SAFEHARBOR_GRPC_PORT.",
                     directory::Migrations());
  if (!deps.ok()) return 1;
  directory::DirectoryOptions options;
  options.search_cache_ttl = absl::Seconds(absl::GetFlag(FLAGS_search_cache_ttl_s));
  options.search_local_cache.max_entries =
      static_cast<size_t>(std::max(0, absl::GetFlag(FLAGS_search_local_cache_entries)));
  options.search_local_cache.max_bytes =
      static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_search_local_cache_mib))) << 20;
  options.search_local_cache.ttl = absl::Seconds(absl::GetFlag(FLAGS_search_local_cache_ttl_s));
  directory::DirectoryServiceImpl service(deps->env.get(), deps->pg.get(), deps->redis.get(),
                                          *deps->registry, WashingtonCounties(), options);
  return ServeUntilSignal(*deps, {&service});
}
