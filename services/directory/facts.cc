#include "services/directory/facts.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/proto_time.h"

namespace safeharbor::directory {
namespace {

// A location as far as reach is concerned: where it is and which county it belongs to.
std::map<std::string, std::string> Places(const v1::Organization* org) {
  std::map<std::string, std::string> out;
  if (org == nullptr) return out;
  for (const auto& l : org->locations()) {
    out[l.id()] = absl::StrFormat("%.6f,%.6f %s", l.latitude(), l.longitude(), l.county_fips());
  }
  return out;
}

std::string Area(const v1::Service* s) {
  if (s == nullptr) return "";
  std::set<std::string> counties(s->service_area_county_fips().begin(),
                                 s->service_area_county_fips().end());
  return absl::StrJoin(counties, ",");
}

void AddIfChanged(std::vector<FactChange>* out, std::string field, std::string old_value,
                  std::string new_value) {
  if (old_value != new_value) {
    out->push_back({std::move(field), std::move(old_value), std::move(new_value)});
  }
}

}  // namespace

std::vector<FactChange> OrganizationFactChanges(const v1::Organization* before,
                                                const v1::Organization& after) {
  std::vector<FactChange> out;
  AddIfChanged(&out, "kind", before ? v1::OrganizationKind_Name(before->kind()) : "",
               v1::OrganizationKind_Name(after.kind()));
  AddIfChanged(&out, "county_fips", before ? before->county_fips() : "", after.county_fips());
  const auto old_places = Places(before), new_places = Places(&after);
  std::set<std::string> ids;
  for (const auto& [id, v] : old_places) ids.insert(id);
  for (const auto& [id, v] : new_places) ids.insert(id);
  for (const std::string& id : ids) {
    const auto o = old_places.find(id), n = new_places.find(id);
    AddIfChanged(&out, absl::StrCat("locations[", id, "]"), o == old_places.end() ? "" : o->second,
                 n == new_places.end() ? "" : n->second);
  }
  return out;
}

std::vector<FactChange> ServiceFactChanges(const v1::Service* before, const v1::Service& after) {
  std::vector<FactChange> out;
  AddIfChanged(&out, "service_area_county_fips", Area(before), Area(&after));
  return out;
}

absl::Status MayChangeFacts(const Caller& caller, const std::vector<FactChange>& changes) {
  if (caller.role == Role::kDirectoryAdmin || changes.empty()) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat(changes.front().field,
                   " decides fees or reach: only directory_admin may change it (ask the state "
                   "directory; the change is recorded)"));
}

absl::Status ProviderMayServe(const v1::Organization& org, const v1::Service& service) {
  std::set<std::string> served = {org.county_fips()};
  for (const auto& l : org.locations()) served.insert(l.county_fips());
  for (const std::string& county : service.service_area_county_fips()) {
    if (!served.contains(county)) {
      return absl::PermissionDeniedError(absl::StrCat(
          "service.service_area_county_fips: county ", county,
          " is not one your organization serves; only directory_admin may widen a service area"));
    }
  }
  return absl::OkStatus();
}

absl::Status FactLog::Record(PgTx& tx, const Caller& by, absl::string_view organization_id,
                             absl::string_view resource, absl::string_view resource_id,
                             const std::vector<FactChange>& changes) {
  for (const FactChange& c : changes) {
    auto r = tx.Exec(
        "INSERT INTO fact_changes (organization_id, resource, resource_id, field, old_value, "
        "new_value, actor_org, actor_role) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        {organization_id, resource, resource_id, c.field, c.old_value, c.new_value, by.org_id,
         RoleName(by.role)});
    if (!r.ok()) return r.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::FactChange>> FactLog::List(PgTx& tx,
                                                          absl::string_view organization_id,
                                                          int64_t after_id, int limit) {
  auto r = tx.Exec(
      "SELECT id, organization_id, resource, resource_id, field, old_value, new_value, actor_org, "
      "actor_role, change_time FROM fact_changes WHERE id > $1 "
      "AND ($2 = '' OR organization_id = $2) ORDER BY id LIMIT $3",
      {after_id, organization_id, int32_t{limit}});
  if (!r.ok()) return r.status();
  std::vector<v1::FactChange> out(static_cast<size_t>(r->rows()));
  for (int i = 0; i < r->rows(); ++i) {
    v1::FactChange& c = out[static_cast<size_t>(i)];
    c.set_id(r->Int64(i, "id"));
    c.set_organization_id(r->String(i, "organization_id"));
    c.set_resource(r->String(i, "resource"));
    c.set_resource_id(r->String(i, "resource_id"));
    c.set_field(r->String(i, "field"));
    c.set_old_value(r->String(i, "old_value"));
    c.set_new_value(r->String(i, "new_value"));
    c.set_actor_organization_id(r->String(i, "actor_org"));
    c.set_actor_role(r->String(i, "actor_role"));
    *c.mutable_change_time() = ToProtoTime(r->Time(i, "change_time"));
  }
  return out;
}

}  // namespace safeharbor::directory
