#include "common/paging.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <openssl/sha.h>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace safeharbor {
namespace {
constexpr char kSep = '\x1f';
}

absl::StatusOr<std::optional<DistanceKey>> DecodeDistanceToken(absl::string_view token,
                                                               absl::string_view kind,
                                                               absl::string_view fingerprint) {
  if (token.empty()) return std::optional<DistanceKey>();
  auto parts = DecodePageToken(token, kind, fingerprint, 2);
  if (!parts.ok()) return parts.status();
  int64_t distance = 0;
  if (!absl::SimpleAtoi((*parts)[0], &distance)) {
    return absl::InvalidArgumentError("page_token is malformed");
  }
  return std::optional<DistanceKey>(DistanceKey{distance, (*parts)[1]});
}

std::string EncodeDistanceToken(absl::string_view kind, absl::string_view fingerprint,
                                int64_t distance_meters, absl::string_view id) {
  return EncodePageToken(kind, fingerprint, {absl::StrCat(distance_meters), std::string(id)});
}

std::string Sha256Hex(absl::string_view data) {
  unsigned char out[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(out), SHA256_DIGEST_LENGTH));
}

std::string DeterministicBytes(const google::protobuf::Message& message) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream raw(&bytes);
    google::protobuf::io::CodedOutputStream out(&raw);
    out.SetSerializationDeterministic(true);
    message.SerializePartialToCodedStream(&out);
  }
  return bytes;
}

std::string QueryFingerprint(const google::protobuf::Message& request) {
  std::unique_ptr<google::protobuf::Message> copy(request.New());
  copy->CopyFrom(request);
  const auto* desc = copy->GetDescriptor();
  for (const char* name : {"page_token", "page_size"}) {
    if (const auto* f = desc->FindFieldByName(name))
      copy->GetReflection()->ClearField(copy.get(), f);
  }
  return Sha256Hex(DeterministicBytes(*copy)).substr(0, 16);
}

std::string EncodePageToken(absl::string_view kind, absl::string_view fingerprint,
                            const std::vector<std::string>& parts) {
  std::string raw =
      absl::StrCat("v1", std::string(1, kSep), kind, std::string(1, kSep), fingerprint);
  for (const auto& p : parts) absl::StrAppend(&raw, std::string(1, kSep), p);
  return absl::WebSafeBase64Escape(raw);
}

absl::StatusOr<std::vector<std::string>> DecodePageToken(absl::string_view token,
                                                         absl::string_view kind,
                                                         absl::string_view fingerprint,
                                                         size_t part_count) {
  std::string raw;
  if (token.size() > 1024 || !absl::WebSafeBase64Unescape(token, &raw)) {
    return absl::InvalidArgumentError("page_token is malformed");
  }
  std::vector<std::string> fields = absl::StrSplit(raw, kSep);
  if (fields.size() != 3 + part_count || fields[0] != "v1" || fields[1] != kind) {
    return absl::InvalidArgumentError("page_token is malformed or belongs to another call");
  }
  if (fields[2] != fingerprint) {
    return absl::InvalidArgumentError(
        "page_token belongs to a different query; send the same filters as the first page");
  }
  return std::vector<std::string>(fields.begin() + 3, fields.end());
}

}  // namespace safeharbor
