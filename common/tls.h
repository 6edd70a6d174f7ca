// Server and channel credentials for mTLS, and the loud development mode without TLS.
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace safeharbor {

struct TlsFiles {
  std::string ca_cert;  // PEM file of the network CA: verifies peers.
  std::string cert;     // PEM file: this process's certificate.
  std::string key;      // PEM file: its private key.
};

absl::StatusOr<std::string> ReadFileToString(const std::string& path, size_t max_bytes);

// Requires and verifies a client certificate from every caller.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files);

// For outgoing calls: presents `files.cert` and verifies the server against the CA.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsFiles& files);

// Channel arguments every client of a SafeHarbor service should use: server certificates
// are issued for "localhost" and the service's DNS names, so an override may be needed.
grpc::ChannelArguments DefaultChannelArguments(const std::string& ssl_target_override = "");

}  // namespace safeharbor
