#include "common/tls.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace safeharbor {

absl::StatusOr<std::string> ReadFileToString(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::string data;
  char buf[8192];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    data.append(buf, static_cast<size_t>(in.gcount()));
    if (data.size() > max_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " is larger than ", max_bytes, " bytes"));
    }
  }
  return data;
}

namespace {
constexpr size_t kMaxPemBytes = 1 << 20;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files) {
  auto ca = ReadFileToString(files.ca_cert, kMaxPemBytes);
  if (!ca.ok()) return ca.status();
  auto cert = ReadFileToString(files.cert, kMaxPemBytes);
  if (!cert.ok()) return cert.status();
  auto key = ReadFileToString(files.key, kMaxPemBytes);
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions opts(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  opts.pem_root_certs = *ca;
  opts.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(opts);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsFiles& files) {
  auto ca = ReadFileToString(files.ca_cert, kMaxPemBytes);
  if (!ca.ok()) return ca.status();
  grpc::SslCredentialsOptions opts;
  opts.pem_root_certs = *ca;
  if (!files.cert.empty()) {
    auto cert = ReadFileToString(files.cert, kMaxPemBytes);
    if (!cert.ok()) return cert.status();
    auto key = ReadFileToString(files.key, kMaxPemBytes);
    if (!key.ok()) return key.status();
    opts.pem_cert_chain = *cert;
    opts.pem_private_key = *key;
  }
  return grpc::SslCredentials(opts);
}

grpc::ChannelArguments DefaultChannelArguments(const std::string& ssl_target_override) {
  grpc::ChannelArguments args;
  if (!ssl_target_override.empty()) args.SetSslTargetNameOverride(ssl_target_override);
  args.SetMaxReceiveMessageSize(64 << 20);
  return args;
}

}  // namespace safeharbor
