// request_id semantics for every creating or money-moving call: a retry with the same id and
// the same content returns the original response and changes nothing; the same id with other
// content is refused, naming the fields that differ. Requests are kept only as salted
// per-field SHA-256 digests, so no youth data is stored here in plain text.
#pragma once

#include <google/protobuf/message.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/auth.h"
#include "common/pg.h"

namespace safeharbor {

// INVALID_ARGUMENT unless 1 to 128 printable ASCII characters.
absl::Status ValidateRequestId(absl::string_view request_id);

// Pure: digest of every set field, keyed by its path ("service.name"); the field named
// "request_id" at the top level is left out.
std::map<std::string, std::string> FieldDigests(const google::protobuf::Message& request,
                                                absl::string_view salt);
// Pure: the paths whose digests differ or are present on one side only, sorted.
std::vector<std::string> DifferingFields(const std::map<std::string, std::string>& a,
                                         const std::map<std::string, std::string>& b);

// Runs `create` (which fills *response) once per (method, caller org, request_id), inside the
// caller's transaction. A replay parses the stored response into *response instead.
absl::Status RunIdempotent(PgTx& tx, absl::string_view method, const Caller& caller,
                           absl::string_view request_id, const google::protobuf::Message& request,
                           google::protobuf::Message* response,
                           const std::function<absl::Status()>& create);

}  // namespace safeharbor
