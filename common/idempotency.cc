#include "common/idempotency.h"

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/paging.h"
#include "common/status_macros.h"

namespace safeharbor {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

void Collect(const Message& msg, const std::string& prefix, absl::string_view salt, int depth,
             std::map<std::string, std::string>* out) {
  const auto* refl = msg.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  refl->ListFields(msg, &fields);
  for (const FieldDescriptor* f : fields) {
    if (prefix.empty() && f->name() == "request_id") continue;
    const std::string path = prefix.empty() ? f->name() : absl::StrCat(prefix, ".", f->name());
    if (f->type() == FieldDescriptor::TYPE_MESSAGE && !f->is_repeated() && depth < 4) {
      Collect(refl->GetMessage(msg, f), path, salt, depth + 1, out);
      continue;
    }
    // Serialize a copy holding only this field.
    std::unique_ptr<Message> only(msg.New());
    only->CopyFrom(msg);
    for (const FieldDescriptor* other : fields) {
      if (other != f) only->GetReflection()->ClearField(only.get(), other);
    }
    std::string bytes;
    only->SerializePartialToString(&bytes);
    (*out)[path] = Sha256Hex(absl::StrCat(salt, "\n", path, "\n", bytes));
  }
}

}  // namespace

absl::Status ValidateRequestId(absl::string_view request_id) {
  if (request_id.empty()) {
    return absl::InvalidArgumentError("request_id is required (a client-chosen idempotency key)");
  }
  if (request_id.size() > 128) {
    return absl::InvalidArgumentError("request_id must be at most 128 characters");
  }
  for (unsigned char c : request_id) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError("request_id must be printable ASCII without spaces");
    }
  }
  return absl::OkStatus();
}

std::map<std::string, std::string> FieldDigests(const Message& request, absl::string_view salt) {
  std::map<std::string, std::string> out;
  Collect(request, "", salt, 0, &out);
  return out;
}

std::vector<std::string> DifferingFields(const std::map<std::string, std::string>& a,
                                         const std::map<std::string, std::string>& b) {
  std::vector<std::string> diff;
  for (const auto& [k, v] : a) {
    auto it = b.find(k);
    if (it == b.end() || it->second != v) diff.push_back(k);
  }
  for (const auto& [k, v] : b) {
    if (!a.contains(k)) diff.push_back(k);
  }
  std::sort(diff.begin(), diff.end());
  return diff;
}

IdempotencyRecord::IdempotencyRecord(absl::string_view method, const Caller& caller,
                                     absl::string_view request_id, const Message& request)
    : method_(method),
      caller_org_(caller.org_id),
      request_id_(request_id),
      digests_(FieldDigests(request, request_id)) {}

void IdempotencyRecord::Claim(PgTx& tx) {
  claim_.emplace(
      tx.Send("INSERT INTO idempotency_keys (method, caller_org, request_id, field_digests) "
              "VALUES ($1, $2, $3, $4::jsonb)",
              {method_, caller_org_, request_id_, nlohmann::json(digests_).dump()}));
}

void IdempotencyRecord::Record(PgTx& tx, const Message& response) {
  std::string bytes;
  response.SerializeToString(&bytes);
  (void)tx.Send(
      "UPDATE idempotency_keys SET response = $4 "
      "WHERE method = $1 AND caller_org = $2 AND request_id = $3",
      {method_, caller_org_, request_id_, PgParam::Bytea(bytes)});
}

bool IdempotencyRecord::Replayed() const {
  // The claim's own failure (a statement skipped after another's failure does not count).
  return claim_.has_value() && claim_->answered() && !claim_->skipped() &&
         SqlStateOf(claim_->status()) == "23505";
}

absl::Status IdempotencyRecord::Answer(PgPool& pool, Message* response) const {
  SH_ASSIGN_OR_RETURN(PgResult prior,
                      pool.Query("SELECT field_digests::text AS d, response FROM idempotency_keys "
                                 "WHERE method = $1 AND caller_org = $2 AND request_id = $3",
                                 {method_, caller_org_, request_id_}));
  if (prior.rows() != 1 || prior.IsNull(0, "response")) {
    return absl::AbortedError("request_id record vanished; retry");
  }
  std::map<std::string, std::string> stored;
  try {
    stored = nlohmann::json::parse(prior.Text(0, "d")).get<std::map<std::string, std::string>>();
  } catch (const std::exception&) {
    return absl::InternalError("stored request digest is unreadable");
  }
  auto diff = DifferingFields(digests_, stored);
  if (!diff.empty()) {
    return absl::AlreadyExistsError(absl::StrCat(
        "request_id '", request_id_,
        "' was already used with different content: ", absl::StrJoin(diff, ", "), " differ"));
  }
  if (!response->ParseFromString(prior.Bytea(0, "response"))) {
    return absl::InternalError("stored response is unreadable");
  }
  return absl::OkStatus();
}

absl::Status RunIdempotent(PgPool& pool, absl::string_view method, const Caller& caller,
                           absl::string_view request_id, const Message& request, Message* response,
                           const std::function<absl::Status(PgTx&)>& create, bool* replayed) {
  SH_RETURN_IF_ERROR(ValidateRequestId(request_id));
  IdempotencyRecord record(method, caller, request_id, request);
  absl::Status st = pool.Transact([&](PgTx& tx) -> absl::Status {
    response->Clear();
    record.Claim(tx);
    SH_RETURN_IF_ERROR(create(tx));
    record.Record(tx, *response);
    return absl::OkStatus();
  });
  const bool again = !st.ok() && record.Replayed();
  if (replayed != nullptr) *replayed = again;
  return again ? record.Answer(pool, response) : st;
}

}  // namespace safeharbor
