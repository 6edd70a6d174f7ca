#include "services/directory/directory_store.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/geo.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/stored_resource.h"
#include "services/directory/schedule.h"

namespace safeharbor::directory {
namespace {

PgParam TextArray(const google::protobuf::RepeatedPtrField<std::string>& values) {
  return PgTextArray(std::vector<std::string>(values.begin(), values.end()));
}

std::string IntArray(const google::protobuf::RepeatedField<int>& values) {
  return absl::StrCat("{", absl::StrJoin(values, ","), "}");
}

absl::Status CheckEtag(const std::string& given, const std::string& current,
                       absl::string_view what) {
  if (given.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ".etag is required on update"));
  }
  if (given != current) {
    return absl::AbortedError(absl::StrCat(
        what, " was changed since it was read (etag mismatch); read it again and retry"));
  }
  return absl::OkStatus();
}

absl::Status ReplaceLocations(PgTx& tx, const v1::Organization& org) {
  if (auto r = tx.Exec("DELETE FROM locations WHERE org_id = $1", {org.id()}); !r.ok()) {
    return r.status();
  }
  for (const auto& l : org.locations()) {
    auto r = tx.Exec(
        "INSERT INTO locations (org_id, id, latitude, longitude, county_fips) "
        "VALUES ($1, $2, $3, $4, NULLIF($5, ''))",
        {org.id(), l.id(), l.latitude(), l.longitude(), l.county_fips()});
    if (!r.ok()) return r.status();
  }
  return absl::OkStatus();
}

absl::Status WriteIntervals(PgTx& tx, const v1::Service& s) {
  if (auto r = tx.Exec("DELETE FROM service_open_intervals WHERE service_id = $1", {s.id()});
      !r.ok()) {
    return r.status();
  }
  auto intervals = OpenIntervals(s.schedule());
  if (!intervals.ok()) return intervals.status();
  for (const auto& iv : *intervals) {
    auto r = tx.Exec(
        "INSERT INTO service_open_intervals (service_id, start_min, end_min) VALUES ($1, $2, $3)",
        {s.id(), int32_t{iv.start}, int32_t{iv.end}});
    if (!r.ok()) return r.status();
  }
  return absl::OkStatus();
}

// The service's position from its organization's location; FAILED_PRECONDITION if absent.
absl::StatusOr<std::pair<double, double>> ServicePosition(PgTx& tx, const v1::Service& s) {
  auto org = tx.Exec("SELECT kind FROM organizations WHERE id = $1", {s.organization_id()});
  if (!org.ok()) return org.status();
  if (org->rows() == 0) {
    return absl::NotFoundError(
        absl::StrCat("service.organization_id '", s.organization_id(), "' does not exist"));
  }
  if (org->Int32(0, "kind") != v1::ORGANIZATION_KIND_SERVICE_PROVIDER) {
    return absl::FailedPreconditionError(
        absl::StrCat("organization '", s.organization_id(), "' is not a service provider"));
  }
  auto loc = tx.Exec("SELECT latitude, longitude FROM locations WHERE org_id = $1 AND id = $2",
                     {s.organization_id(), s.location_id()});
  if (!loc.ok()) return loc.status();
  if (loc->rows() == 0) {
    return absl::FailedPreconditionError(absl::StrCat("service.location_id '", s.location_id(),
                                                      "' is not a location of organization '",
                                                      s.organization_id(), "'"));
  }
  return std::make_pair(loc->Double(0, "latitude"), loc->Double(0, "longitude"));
}

std::vector<PgParam> ServiceColumns(const v1::Service& s, std::pair<double, double> pos) {
  return {s.id(),
          s.organization_id(),
          s.location_id(),
          int32_t{s.category()},
          s.csec_specialized(),
          int32_t{s.minimum_age()},
          int32_t{s.maximum_age()},
          IntArray(s.genders_served()),
          TextArray(s.languages()),
          s.schedule().open_24_7(),
          s.schedule().time_zone(),
          TextArray(s.service_area_county_fips()),
          int32_t{s.status()},
          s.accepting_referrals(),
          pos.first,
          pos.second,
          PgParam::Bytea(StoredBody(s))};
}

constexpr char kOrgColumns[] = "body, revision, create_time, update_time";

// The service search, nearest first: by county, or around a point within a radius.
// $1,$2 origin; $3 county; $4 categories; $5 age; $6 gender; $7 language; $8 specialized;
// $9 accepting; $10 open_at; $11,$12 after; $13 limit; $14 radius.
const std::string& SearchSql(bool radius) {
  // Filters every variant shares ($3-$10); `s` is the service row.
  static const std::string kFilters = R"sql(
      s.status = 1 AND s.category <> 14
      AND ($3::text = '' OR s.area_counties @> ARRAY[$3::text])
      AND (cardinality($4::smallint[]) = 0 OR s.category = ANY($4::smallint[]))
      AND ($5::int IS NULL OR (s.minimum_age <= $5::int AND s.maximum_age >= $5::int))
      AND ($6::smallint = 0 OR cardinality(s.genders) = 0 OR $6::smallint = ANY(s.genders))
      AND ($7::text = '' OR $7::text = ANY(s.languages))
      AND (NOT $8::bool OR s.csec_specialized)
      AND (NOT $9::bool OR s.accepting_referrals)
      AND ($10::timestamptz IS NULL OR s.open_24_7 OR EXISTS (
        SELECT 1 FROM service_open_intervals i,
          LATERAL (SELECT ($10::timestamptz AT TIME ZONE s.time_zone) AS lt) l
        WHERE i.service_id = s.id
          AND i.start_min <= (extract(isodow FROM l.lt)::int - 1) * 1440
                             + extract(hour FROM l.lt)::int * 60 + extract(minute FROM l.lt)::int
          AND i.end_min > (extract(isodow FROM l.lt)::int - 1) * 1440
                          + extract(hour FROM l.lt)::int * 60 + extract(minute FROM l.lt)::int))
      AND ($11::bigint IS NULL OR ()sql" +
                                      DistanceSql("s.latitude", "s.longitude", "$1", "$2") +
                                      R"sql(, s.id) > ($11::bigint, $12::text)))sql";
  // The page's ids nearest first (narrow rows), then the bodies of the page alone.
  static const std::string kPage = R"sql(
  ORDER BY q.dist, q.id
  LIMIT $13
)
SELECT s.id, s.body, s.revision, s.create_time, s.update_time, o.name AS org_name, top.dist
FROM top JOIN services s ON s.id = top.id JOIN organizations o ON o.id = s.org_id
ORDER BY top.dist, top.id)sql";
  // Without a point: the county's services by distance from its centroid.
  static const std::string kCountySql =
      absl::StrCat("WITH top AS (SELECT q.id, q.dist FROM (SELECT s.id, ",
                   DistanceSql("s.latitude", "s.longitude", "$1", "$2"),
                   " AS dist FROM services s WHERE ", kFilters, ") q", kPage);
  // Around a point, exactly and at a cost that follows the page, not the directory: the GiST
  // index gives the page's nearest matches in degree space (knn); their farthest bounds how far
  // the true nearest can be (a degree spans at most 111.2 km), so the exact great-circle query
  // reads only that disc (never more than the requested radius, $14).
  static const std::string kRadiusSql = absl::StrCat(
      "WITH knn AS (SELECT point(s.longitude, s.latitude) <-> point($2::float8, $1::float8) AS dd "
      "FROM services s WHERE ",
      kFilters,
      " ORDER BY point(s.longitude, s.latitude) <-> point($2::float8, $1::float8) LIMIT $13), ",
      "bound AS (SELECT CASE WHEN count(*) < $13 THEN $14::float8 "
      "ELSE least($14::float8, max(dd) * 111195.0 * 1.01 + 1) END AS r FROM knn), ",
      "geo AS (SELECT r, r / 111195.0 AS dlat, (r / 111195.0) / greatest(0.01, "
      "cos(radians(least(89.0, abs($1::float8) + r / 111195.0)))) AS dlng FROM bound), ",
      "top AS (SELECT q.id, q.dist FROM (SELECT s.id, ",
      DistanceSql("s.latitude", "s.longitude", "$1", "$2"), " AS dist FROM services s WHERE ",
      kFilters,
      " AND point(s.longitude, s.latitude) <@ box("
      "point($2::float8 - (SELECT dlng FROM geo), $1::float8 - (SELECT dlat FROM geo)), "
      "point($2::float8 + (SELECT dlng FROM geo), $1::float8 + (SELECT dlat FROM geo)))) q "
      "WHERE q.dist <= (SELECT r FROM geo)",
      kPage);
  return radius ? kRadiusSql : kCountySql;
}

std::vector<PgParam> SearchParams(const SearchQuery& q) {
  const v1::SearchServicesRequest& req = *q.request;
  std::vector<int> cats(req.categories().begin(), req.categories().end());
  std::string open_at;
  if (req.has_open_at()) {
    open_at =
        absl::FormatTime("%Y-%m-%d %H:%M:%S+00", FromProtoTime(req.open_at()), absl::UTCTimeZone());
  }
  std::vector<PgParam> params = {q.origin_latitude,
                                 q.origin_longitude,
                                 req.county_fips(),
                                 absl::StrCat("{", absl::StrJoin(cats, ","), "}"),
                                 req.has_age() ? PgParam(int32_t{req.age()}) : PgParam(nullptr),
                                 int32_t{req.gender()},
                                 req.language(),
                                 req.csec_specialized_only(),
                                 req.accepting_referrals_only(),
                                 open_at.empty() ? PgParam(nullptr) : PgParam(open_at),
                                 q.after ? PgParam(q.after->first) : PgParam(nullptr),
                                 q.after ? PgParam(q.after->second) : PgParam(""),
                                 int32_t{q.limit}};
  if (req.has_near()) params.push_back(static_cast<double>(req.radius_meters()));
  return params;
}

}  // namespace

absl::Status DirectoryStore::InsertOrganization(PgTx& tx, v1::Organization* org) {
  auto r = tx.Exec(
      "INSERT INTO organizations (id, kind, name, county_fips, body) "
      "VALUES ($1, $2, $3, NULLIF($4, ''), $5) RETURNING revision, create_time, update_time",
      {org->id(), int32_t{org->kind()}, org->name(), org->county_fips(),
       PgParam::Bytea(StoredBody(*org))});
  if (!r.ok()) {
    if (r.status().code() == absl::StatusCode::kAlreadyExists) {
      return absl::AlreadyExistsError(
          absl::StrCat("organization '", org->id(), "' already exists"));
    }
    return r.status();
  }
  SH_RETURN_IF_ERROR(ReplaceLocations(tx, *org));
  *org->mutable_create_time() = ToProtoTime(r->Time(0, "create_time"));
  *org->mutable_update_time() = ToProtoTime(r->Time(0, "update_time"));
  org->set_etag(absl::StrCat(r->Int64(0, "revision")));
  return absl::OkStatus();
}

absl::StatusOr<v1::Organization> DirectoryStore::GetOrganization(PgTx& tx, absl::string_view id,
                                                                 bool for_update) {
  auto r = tx.Exec(absl::StrCat("SELECT ", kOrgColumns, " FROM organizations WHERE id = $1",
                                for_update ? " FOR UPDATE" : ""),
                   {id});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return absl::NotFoundError(absl::StrCat("organization '", id, "' not found"));
  v1::Organization org;
  SH_RETURN_IF_ERROR(FillStored(*r, 0, &org));
  return org;
}

absl::Status DirectoryStore::UpdateOrganization(PgTx& tx, v1::Organization* org) {
  auto current = GetOrganization(tx, org->id(), /*for_update=*/true);
  if (!current.ok()) return current.status();
  SH_RETURN_IF_ERROR(CheckEtag(org->etag(), current->etag(), "organization"));

  // Every service must keep a location, and moves with it.
  auto services =
      tx.Exec("SELECT id, location_id FROM services WHERE org_id = $1 ORDER BY id", {org->id()});
  if (!services.ok()) return services.status();
  std::set<std::string> ids;
  for (const auto& l : org->locations()) ids.insert(l.id());
  for (int i = 0; i < services->rows(); ++i) {
    if (!ids.contains(services->String(i, "location_id"))) {
      return absl::FailedPreconditionError(
          absl::StrCat("organization.locations: location '", services->Text(i, "location_id"),
                       "' is still used by service '", services->Text(i, "id"), "'"));
    }
  }
  if (services->rows() > 0 && org->kind() != v1::ORGANIZATION_KIND_SERVICE_PROVIDER) {
    return absl::FailedPreconditionError(
        "organization.kind: an organization with services must stay a service provider");
  }
  auto r = tx.Exec(
      "UPDATE organizations SET kind = $2, name = $3, county_fips = NULLIF($4, ''), body = $5, "
      "revision = revision + 1, update_time = now() WHERE id = $1 "
      "RETURNING revision, create_time, update_time",
      {org->id(), int32_t{org->kind()}, org->name(), org->county_fips(),
       PgParam::Bytea(StoredBody(*org))});
  if (!r.ok()) return r.status();
  SH_RETURN_IF_ERROR(ReplaceLocations(tx, *org));
  auto moved = tx.Exec(
      "UPDATE services s SET latitude = l.latitude, longitude = l.longitude FROM locations l "
      "WHERE s.org_id = $1 AND l.org_id = s.org_id AND l.id = s.location_id",
      {org->id()});
  if (!moved.ok()) return moved.status();
  *org->mutable_create_time() = ToProtoTime(r->Time(0, "create_time"));
  *org->mutable_update_time() = ToProtoTime(r->Time(0, "update_time"));
  org->set_etag(absl::StrCat(r->Int64(0, "revision")));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::Organization>> DirectoryStore::ListOrganizations(
    PgTx& tx, v1::OrganizationKind kind, absl::string_view county_fips, absl::string_view after_id,
    int limit) {
  auto r = tx.Exec(absl::StrCat("SELECT ", kOrgColumns,
                                " FROM organizations WHERE id > $1 "
                                "AND ($2::smallint = 0 OR kind = $2::smallint) "
                                "AND ($3 = '' OR county_fips = $3) ORDER BY id LIMIT $4"),
                   {after_id, int32_t{kind}, county_fips, int32_t{limit}});
  if (!r.ok()) return r.status();
  std::vector<v1::Organization> out(static_cast<size_t>(r->rows()));
  for (int i = 0; i < r->rows(); ++i) {
    SH_RETURN_IF_ERROR(FillStored(*r, i, &out[static_cast<size_t>(i)]));
  }
  return out;
}

absl::Status DirectoryStore::InsertService(PgTx& tx, v1::Service* s) {
  auto pos = ServicePosition(tx, *s);
  if (!pos.ok()) return pos.status();
  auto r = tx.Exec(
      "INSERT INTO services (id, org_id, location_id, category, csec_specialized, minimum_age, "
      "maximum_age, genders, languages, open_24_7, time_zone, area_counties, status, "
      "accepting_referrals, latitude, longitude, body) VALUES ($1, $2, $3, $4, $5, $6, $7, "
      "$8::smallint[], $9::text[], $10, $11, $12::text[], $13, $14, $15, $16, $17) "
      "RETURNING revision, create_time, update_time",
      ServiceColumns(*s, *pos));
  if (!r.ok()) {
    if (r.status().code() == absl::StatusCode::kAlreadyExists) {
      return absl::AlreadyExistsError(absl::StrCat("service '", s->id(), "' already exists"));
    }
    return r.status();
  }
  SH_RETURN_IF_ERROR(WriteIntervals(tx, *s));
  *s->mutable_create_time() = ToProtoTime(r->Time(0, "create_time"));
  *s->mutable_update_time() = ToProtoTime(r->Time(0, "update_time"));
  s->set_etag(absl::StrCat(r->Int64(0, "revision")));
  return absl::OkStatus();
}

absl::StatusOr<v1::Service> DirectoryStore::GetService(PgTx& tx, absl::string_view id,
                                                       bool for_update) {
  auto r = tx.Exec(absl::StrCat("SELECT ", kOrgColumns, " FROM services WHERE id = $1",
                                for_update ? " FOR UPDATE" : ""),
                   {id});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return absl::NotFoundError(absl::StrCat("service '", id, "' not found"));
  v1::Service s;
  SH_RETURN_IF_ERROR(FillStored(*r, 0, &s));
  return s;
}

absl::Status DirectoryStore::UpdateService(PgTx& tx, v1::Service* s) {
  auto current = GetService(tx, s->id(), /*for_update=*/true);
  if (!current.ok()) return current.status();
  SH_RETURN_IF_ERROR(CheckEtag(s->etag(), current->etag(), "service"));
  if (current->organization_id() != s->organization_id()) {
    return absl::InvalidArgumentError(
        "service.organization_id cannot change; create the service under the new organization");
  }
  auto pos = ServicePosition(tx, *s);
  if (!pos.ok()) return pos.status();
  auto r = tx.Exec(
      "UPDATE services SET org_id = $2, location_id = $3, category = $4, csec_specialized = $5, "
      "minimum_age = $6, maximum_age = $7, genders = $8::smallint[], languages = $9::text[], "
      "open_24_7 = $10, time_zone = $11, area_counties = $12::text[], status = $13, "
      "accepting_referrals = $14, latitude = $15, longitude = $16, body = $17, "
      "revision = revision + 1, update_time = now() WHERE id = $1 "
      "RETURNING revision, create_time, update_time",
      ServiceColumns(*s, *pos));
  if (!r.ok()) return r.status();
  SH_RETURN_IF_ERROR(WriteIntervals(tx, *s));
  *s->mutable_create_time() = ToProtoTime(r->Time(0, "create_time"));
  *s->mutable_update_time() = ToProtoTime(r->Time(0, "update_time"));
  s->set_etag(absl::StrCat(r->Int64(0, "revision")));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::Service>> DirectoryStore::ListServices(
    PgTx& tx, absl::string_view organization_id, absl::string_view after_id, int limit) {
  auto r = tx.Exec(absl::StrCat("SELECT ", kOrgColumns,
                                " FROM services WHERE id > $1 AND ($2 = '' OR org_id = $2) "
                                "ORDER BY id LIMIT $3"),
                   {after_id, organization_id, int32_t{limit}});
  if (!r.ok()) return r.status();
  std::vector<v1::Service> out(static_cast<size_t>(r->rows()));
  for (int i = 0; i < r->rows(); ++i) {
    SH_RETURN_IF_ERROR(FillStored(*r, i, &out[static_cast<size_t>(i)]));
  }
  return out;
}

absl::StatusOr<std::vector<v1::ServiceMatch>> DirectoryStore::Search(PgTx& tx,
                                                                     const SearchQuery& q) {
  auto r = tx.Exec(SearchSql(q.request->has_near()), SearchParams(q));
  if (!r.ok()) return r.status();
  std::vector<v1::ServiceMatch> out(static_cast<size_t>(r->rows()));
  for (int i = 0; i < r->rows(); ++i) {
    auto& m = out[static_cast<size_t>(i)];
    SH_RETURN_IF_ERROR(FillStored(*r, i, m.mutable_service()));
    m.set_organization_name(r->String(i, "org_name"));
    m.set_distance_meters(r->Int64(i, "dist"));
  }
  return out;
}

absl::Status DirectoryStore::UpsertOrganization(PgTx& tx, v1::Organization* org) {
  auto current = GetOrganization(tx, org->id(), /*for_update=*/true);
  if (current.status().code() == absl::StatusCode::kNotFound) return InsertOrganization(tx, org);
  if (!current.ok()) return current.status();
  org->set_etag(current->etag());
  return UpdateOrganization(tx, org);
}

absl::Status DirectoryStore::UpsertService(PgTx& tx, v1::Service* s) {
  auto current = GetService(tx, s->id(), /*for_update=*/true);
  if (current.status().code() == absl::StatusCode::kNotFound) return InsertService(tx, s);
  if (!current.ok()) return current.status();
  s->set_etag(current->etag());
  return UpdateService(tx, s);
}

}  // namespace safeharbor::directory
