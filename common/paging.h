// Opaque page tokens for List/Search calls (AIP-158). A token carries the keyset position and a
// fingerprint of the query, so a token from one query is refused by another.
#pragma once

#include <google/protobuf/message.h>

#include <optional>
#include <string>
#include <utility>
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

// Keyset paging for nearest-first searches: the position is (distance_meters, id).
using DistanceKey = std::pair<int64_t, std::string>;
// An empty token is the first page (nullopt).
absl::StatusOr<std::optional<DistanceKey>> DecodeDistanceToken(absl::string_view token,
                                                               absl::string_view kind,
                                                               absl::string_view fingerprint);
std::string EncodeDistanceToken(absl::string_view kind, absl::string_view fingerprint,
                                int64_t distance_meters, absl::string_view id);

// Deterministic serialization (stable map ordering), for cache keys and fingerprints.
std::string DeterministicBytes(const google::protobuf::Message& message);
std::string Sha256Hex(absl::string_view data);

}  // namespace safeharbor
