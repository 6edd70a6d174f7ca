// The one table of SafeHarbor services (services/services.json, compiled in): name, binary, gRPC
// service, default ports and the peers each one calls. The scripts and the black-box harness
// read the same file.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace safeharbor {

struct ServiceSpec {
  std::string name;          // "beds"
  std::string binary;        // "beds-service"
  std::string grpc_service;  // "safeharbor.beds.v1.BedsService"
  int grpc_port = 0;
  int metrics_port = 0;
  std::vector<std::string> peers;  // names of the services it calls
};

const std::vector<ServiceSpec>& ServiceSpecs();
// The service named `name`; aborts when there is none (a programming error).
const ServiceSpec& SpecOf(absl::string_view name);
// "localhost:<grpc_port>" of the service named `name`: a peer's default address.
std::string DefaultAddress(absl::string_view name);
// The SPIFFE id a service presents to its peers:
// spiffe://safeharbor/org/safeharbor-<name>/role/service.
std::string ServiceIdentity(absl::string_view name);
// True only for the identity of a service in the table: the one kind of caller trusted with
// role "service".
bool IsServiceIdentity(absl::string_view spiffe_id);

}  // namespace safeharbor
