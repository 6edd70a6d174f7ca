// Opaque page tokens for List/Search calls (AIP-158). A token carries the keyset position and a
// fingerprint of the query, so a token from one query is refused by another.
#pragma once

#include <google/protobuf/message.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace safeharbor {

// Hash of the request with its page_token and page_size fields cleared.
std::string QueryFingerprint(const google::protobuf::Message& request);

std::string EncodePageToken(absl::string_view kind, absl::string_view fingerprint,
                            const std::vector<std::string>& parts);

// INVALID_ARGUMENT naming page_token when malformed, of another kind, or of another query.
absl::StatusOr<std::vector<std::string>> DecodePageToken(absl::string_view token,
                                                         absl::string_view kind,
                                                         absl::string_view fingerprint,
                                                         size_t part_count);

// Deterministic serialization (stable map ordering), for cache keys and fingerprints.
std::string DeterministicBytes(const google::protobuf::Message& message);
std::string Sha256Hex(absl::string_view data);

}  // namespace safeharbor
