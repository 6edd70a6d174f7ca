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

// One call's request_id record, written in the call's own transaction without a round trip of
// its own. Claim sends (without waiting) a plain INSERT of the request's digests, first in the
// transaction, so a request_id recorded already fails the transaction with a unique violation
// and nothing of it commits (a concurrent duplicate waits for the first to commit, then fails
// the same way); Record sends the response, to go out with the commit. After a failed
// transaction, Replayed() says whether the request_id was recorded already, and Answer reads the
// record in a transaction of its own: the stored response, or ALREADY_EXISTS naming the fields
// that differ.
class IdempotencyRecord {
 public:
  IdempotencyRecord(absl::string_view method, const Caller& caller, absl::string_view request_id,
                    const google::protobuf::Message& request);
  void Claim(PgTx& tx);
  void Record(PgTx& tx, const google::protobuf::Message& response);
  bool Replayed() const;
  absl::Status Answer(PgPool& pool, google::protobuf::Message* response) const;

 private:
  std::string method_;
  std::string caller_org_;
  std::string request_id_;
  std::map<std::string, std::string> digests_;
  std::optional<PgPending> claim_;  // this attempt's
};

// Runs `create` (which fills *response) once per (method, caller org, request_id), in a
// transaction with the record; a replay fills *response from the record instead (*replayed).
absl::Status RunIdempotent(PgPool& pool, absl::string_view method, const Caller& caller,
                           absl::string_view request_id, const google::protobuf::Message& request,
                           google::protobuf::Message* response,
                           const std::function<absl::Status(PgTx&)>& create,
                           bool* replayed = nullptr);

}  // namespace safeharbor
