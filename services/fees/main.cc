// fee-service: wiring only. The logic lives in FeeServiceImpl.

#include "absl/flags/flag.h"
#include "common/log.h"
#include "common/periodic.h"
#include "common/service_main.h"
#include "services/fees/fee_service.h"

ABSL_FLAG(std::string, directory_address, safeharbor::DefaultAddress("directory"),
          "directory-service host:port: recipients (local providers) are read from it.");
ABSL_FLAG(std::string, commerce_organization_id, "demo-state-commerce",
          "Directory id of the Department of Commerce (2% and the state account).");
ABSL_FLAG(std::string, state_fiscal_organization_id, "",
          "Directory id of the state's fiscal office: its fiscal callers adopt disbursement "
          "policies for any jurisdiction (others only for their own county). Empty: the "
          "Commerce organization.");
ABSL_FLAG(int, recipients_cache_s, 60,
          "How long a jurisdiction's provider list and an organization's kind and county are "
          "cached.");

namespace safeharbor::fees {
const std::vector<Migration>& Migrations();
}

int main(int argc, char** argv) {
  using namespace safeharbor;
  auto deps = PrepareService(
      argc, argv, "fees",
      "fee-service: SafeHarbor fee assessments, payments and disbursement ledger (gRPC, mTLS).\n"
      "Every flag may also be set as SAFEHARBOR_<FLAG>, e.g. SAFEHARBOR_GRPC_PORT.",
      fees::Migrations());
  if (!deps.ok()) return 1;
  auto peer =
      Peer::Connect(PeerFor(*deps, "fees", "directory", absl::GetFlag(FLAGS_directory_address)));
  if (!peer.ok()) {
    log::Error("directory_client_failed", {{"error", peer.status().message()}});
    return 1;
  }
  fees::DirectoryRecipients recipients(*std::move(peer),
                                       absl::Seconds(absl::GetFlag(FLAGS_recipients_cache_s)));
  fees::FeeOptions options;
  options.commerce_organization_id = absl::GetFlag(FLAGS_commerce_organization_id);
  options.state_fiscal_organization_id = absl::GetFlag(FLAGS_state_fiscal_organization_id);
  fees::FeeServiceImpl service(deps->env.get(), deps->pg.get(), &recipients, *deps->registry,
                               WashingtonCounties(), SystemClock::Get(), options);
  // The suspense gauge is recomputed from the ledger every 15 s (one indexed query).
  PeriodicTask gauges(
      "fees_gauges", absl::Seconds(15), [&] { return service.RefreshGauges(); },
      deps->registry.get());
  gauges.Start();
  gauges.Wake();
  return ServeUntilSignal(*deps, {&service}, [&] { gauges.Stop(); });
}
