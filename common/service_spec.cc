#include "common/service_spec.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/invariant.h"

namespace safeharbor {

absl::string_view ServicesJson();  // embedded services/services.json

namespace {

std::vector<ServiceSpec> Parse() {
  const auto js = nlohmann::json::parse(ServicesJson(), nullptr, /*allow_exceptions=*/false);
  SH_RELEASE_ASSERT(js.is_object() && js.contains("services"), "services.json is malformed");
  std::vector<ServiceSpec> out;
  for (const auto& s : js["services"]) {
    ServiceSpec spec;
    spec.name = s.value("name", "");
    spec.binary = s.value("binary", "");
    spec.grpc_service = s.value("grpc_service", "");
    spec.grpc_port = s.value("grpc_port", 0);
    spec.metrics_port = s.value("metrics_port", 0);
    for (const auto& p : s.value("peers", nlohmann::json::array())) {
      spec.peers.push_back(p.get<std::string>());
    }
    SH_RELEASE_ASSERT(!spec.name.empty() && spec.grpc_port > 0 && spec.metrics_port > 0,
                      "services.json: an entry lacks name or ports");
    out.push_back(std::move(spec));
  }
  return out;
}

}  // namespace

const std::vector<ServiceSpec>& ServiceSpecs() {
  static const std::vector<ServiceSpec>* specs = new std::vector<ServiceSpec>(Parse());
  return *specs;
}

const ServiceSpec& SpecOf(absl::string_view name) {
  for (const ServiceSpec& s : ServiceSpecs()) {
    if (s.name == name) return s;
  }
  SH_RELEASE_ASSERT(false, absl::StrCat("no service '", name, "' in services.json"));
  std::abort();
}

std::string DefaultAddress(absl::string_view name) {
  return absl::StrCat("localhost:", SpecOf(name).grpc_port);
}

std::string ServiceIdentity(absl::string_view name) {
  return absl::StrCat("spiffe://safeharbor/org/safeharbor-", name, "/role/service");
}

bool IsServiceIdentity(absl::string_view spiffe_id) {
  for (const ServiceSpec& s : ServiceSpecs()) {
    if (spiffe_id == ServiceIdentity(s.name)) return true;
  }
  return false;
}

}  // namespace safeharbor
