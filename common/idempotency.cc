#include "common/idempotency.h"

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/paging.h"

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

absl::Status RunIdempotent(PgTx& tx, absl::string_view method, const Caller& caller,
                           absl::string_view request_id, const Message& request, Message* response,
                           const std::function<absl::Status()>& create) {
  if (absl::Status st = ValidateRequestId(request_id); !st.ok()) return st;
  const auto digests = FieldDigests(request, request_id);
  const std::string digests_json = nlohmann::json(digests).dump();
  auto claimed = tx.Exec(
      "INSERT INTO idempotency_keys (method, caller_org, request_id, field_digests) "
      "VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT DO NOTHING RETURNING 1",
      {std::string(method), caller.org_id, std::string(request_id), digests_json});
  if (!claimed.ok()) return claimed.status();
  if (claimed->rows() == 0) {
    auto prior = tx.Exec(
        "SELECT field_digests::text AS d, response FROM idempotency_keys "
        "WHERE method = $1 AND caller_org = $2 AND request_id = $3",
        {std::string(method), caller.org_id, std::string(request_id)});
    if (!prior.ok()) return prior.status();
    if (prior->rows() != 1) return absl::AbortedError("request_id claim vanished; retry");
    std::map<std::string, std::string> stored;
    try {
      stored = nlohmann::json::parse(prior->Text(0, "d")).get<std::map<std::string, std::string>>();
    } catch (const std::exception&) {
      return absl::InternalError("stored request digest is unreadable");
    }
    auto diff = DifferingFields(digests, stored);
    if (!diff.empty()) {
      return absl::AlreadyExistsError(absl::StrCat(
          "request_id '", request_id,
          "' was already used with different content: ", absl::StrJoin(diff, ", "), " differ"));
    }
    if (!response->ParseFromString(prior->Bytea(0, "response"))) {
      return absl::InternalError("stored response is unreadable");
    }
    return absl::OkStatus();
  }
  if (absl::Status st = create(); !st.ok()) return st;
  std::string bytes;
  response->SerializeToString(&bytes);
  return tx
      .Exec(
          "UPDATE idempotency_keys SET response = $4 "
          "WHERE method = $1 AND caller_org = $2 AND request_id = $3",
          {std::string(method), caller.org_id, std::string(request_id), PgParam::Bytea(bytes)})
      .status();
}

}  // namespace safeharbor
