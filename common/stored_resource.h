// Resources stored whole as their protobuf ("body") beside revision, create_time and
// update_time columns: the server-set fields live in the columns, not in the body.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/pg.h"
#include "common/proto_time.h"

namespace safeharbor {

// The body to store: the message without create_time, update_time and etag.
template <typename T>
std::string StoredBody(const T& resource) {
  T copy = resource;
  copy.clear_create_time();
  copy.clear_update_time();
  copy.clear_etag();
  return copy.SerializeAsString();
}

// Parses row `row` (columns body, revision, create_time, update_time); etag = revision.
template <typename T>
absl::Status FillStored(const PgResult& r, int row, T* out) {
  if (!out->ParseFromString(r.Bytea(row, "body"))) {
    return absl::InternalError("stored record is unreadable");
  }
  *out->mutable_create_time() = ToProtoTime(r.Time(row, "create_time"));
  *out->mutable_update_time() = ToProtoTime(r.Time(row, "update_time"));
  out->set_etag(absl::StrCat(r.Int64(row, "revision")));
  return absl::OkStatus();
}

}  // namespace safeharbor
