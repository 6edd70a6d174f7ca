#include "services/beds/beds_store.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/geo.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/stored_resource.h"

namespace safeharbor::beds {
namespace {

std::string IntArray(const std::vector<int>& v) {
  return absl::StrCat("{", absl::StrJoin(v, ","), "}");
}

std::vector<int> Genders(const v1::Facility& f) {
  return std::vector<int>(f.genders_accepted().begin(), f.genders_accepted().end());
}

constexpr char kInventorySql[] = R"sql(
SELECT b.facility_id, b.bed_type, b.licensed_capacity, b.occupied, b.out_of_service,
       b.confirmed_at,
       (SELECT count(*) FROM holds h WHERE h.facility_id = b.facility_id
          AND h.bed_type = b.bed_type AND h.state = 1 AND h.expire_time > $2) AS held
FROM bed_inventory b WHERE b.facility_id = ANY($1::text[])
ORDER BY b.facility_id, b.bed_type)sql";

Inventory InventoryFromRow(const PgResult& r, int i) {
  Inventory inv;
  inv.licensed_capacity = r.Int32(i, "licensed_capacity");
  inv.occupied = r.Int32(i, "occupied");
  inv.out_of_service = r.Int32(i, "out_of_service");
  inv.held = r.Int32(i, "held");
  if (!r.IsNull(i, "confirmed_at")) inv.confirmed_at = r.Time(i, "confirmed_at");
  return inv;
}

absl::StatusOr<std::map<std::string, std::vector<BedRow>>> InventoryOf(
    PgTx& tx, const std::vector<std::string>& ids, absl::Time now) {
  auto r = tx.Exec(kInventorySql, {PgTextArray(ids), PgTime(now)});
  if (!r.ok()) return r.status();
  std::map<std::string, std::vector<BedRow>> out;
  for (int i = 0; i < r->rows(); ++i) {
    out[r->String(i, "facility_id")].push_back(
        {static_cast<v1::BedType>(r->Int32(i, "bed_type")), InventoryFromRow(*r, i)});
  }
  return out;
}

v1::Hold HoldFromRow(const PgResult& r, int i) {
  v1::Hold h;
  h.set_id(r.String(i, "id"));
  h.set_facility_id(r.String(i, "facility_id"));
  h.set_bed_type(static_cast<v1::BedType>(r.Int32(i, "bed_type")));
  h.set_referral_id(r.String(i, "referral_id"));
  h.set_holder_organization_id(r.String(i, "holder_org"));
  h.set_state(static_cast<v1::HoldState>(r.Int32(i, "state")));
  *h.mutable_create_time() = ToProtoTime(r.Time(i, "create_time"));
  *h.mutable_expire_time() = ToProtoTime(r.Time(i, "expire_time"));
  return h;
}

// The availability search: nearest first by county, or around a point within a radius.
// $1,$2 origin; $3 county; $4 age; $5 gender; $6 specialized; $7 bed types; $8 fresh only;
// $9 fresh since; $10 now; $11,$12 page start; $13 limit; $14 radius (point searches).
const std::string& AvailabilitySql(bool radius) {
  static const std::string kFacility = R"sql(
      f.routable
      AND ($3::text = '' OR f.county_fips = $3::text)
      AND ($4::int IS NULL OR (f.minimum_age <= $4::int AND f.maximum_age >= $4::int))
      AND ($5::smallint = 0 OR cardinality(f.genders) = 0 OR $5::smallint = ANY(f.genders))
      AND (NOT $6::bool OR f.csec_specialized)
      AND ($11::bigint IS NULL OR ()sql" +
                                       DistanceSql("f.latitude", "f.longitude", "$1", "$2") +
                                       R"sql(, f.id) > ($11::bigint, $12::text)))sql";
  auto beds_free = [](absl::string_view id) {
    return absl::StrCat(" EXISTS (SELECT 1 FROM bed_inventory b WHERE b.facility_id = ", id,
                        " AND b.licensed_capacity > 0"
                        " AND (cardinality($7::smallint[]) = 0 OR b.bed_type = ANY($7::smallint[]))"
                        " AND (NOT $8::bool OR (b.confirmed_at >= $9::timestamptz"
                        " AND b.licensed_capacity - b.out_of_service - b.occupied - ("
                        " SELECT count(*) FROM holds h WHERE h.facility_id = b.facility_id"
                        " AND h.bed_type = b.bed_type AND h.state = 1 AND h.expire_time > "
                        "$10::timestamptz) > 0)))");
  };
  // Nearest first (narrow rows), then the bed check walks that order and stops at the page size.
  auto page = [&](absl::string_view extra_where) {
    return absl::StrCat("top AS (SELECT n.id, n.dist FROM (SELECT q.id, q.dist FROM (SELECT f.id, ",
                        DistanceSql("f.latitude", "f.longitude", "$1", "$2"),
                        " AS dist FROM facilities f WHERE ", kFacility, extra_where,
                        ") q ORDER BY q.dist, q.id OFFSET 0) n WHERE ", beds_free("n.id"),
                        " ORDER BY n.dist, n.id LIMIT $13) "
                        "SELECT f.id, f.body, f.revision, f.create_time, f.update_time, top.dist "
                        "FROM top JOIN facilities f ON f.id = top.id ORDER BY top.dist, top.id");
  };
  static const std::string kCountySql = absl::StrCat("WITH ", page(""));
  // Around a point: the GiST index finds the page's nearest matches in degree space (knn); the
  // farthest of them bounds how far the true nearest can be (a degree spans at most 111.2 km),
  // so the exact query reads only that disc, never more than the requested radius.
  static const std::string kRadiusSql = absl::StrCat(
      "WITH knn AS (SELECT point(f.longitude, f.latitude) <-> point($2::float8, $1::float8) AS dd "
      "FROM facilities f WHERE ",
      kFacility, " AND ", beds_free("f.id"),
      " ORDER BY point(f.longitude, f.latitude) <-> point($2::float8, $1::float8) LIMIT $13), "
      "bound AS (SELECT CASE WHEN count(*) < $13 THEN $14::float8 "
      "ELSE least($14::float8, max(dd) * 111195.0 * 1.01 + 1) END AS r FROM knn), "
      "geo AS (SELECT r, r / 111195.0 AS dlat, (r / 111195.0) / greatest(0.01, "
      "cos(radians(least(89.0, abs($1::float8) + r / 111195.0)))) AS dlng FROM bound), ",
      page(" AND point(f.longitude, f.latitude) <@ box("
           "point($2::float8 - (SELECT dlng FROM geo), $1::float8 - (SELECT dlat FROM geo)), "
           "point($2::float8 + (SELECT dlng FROM geo), $1::float8 + (SELECT dlat FROM geo))) AND " +
           DistanceSql("f.latitude", "f.longitude", "$1", "$2") + " <= (SELECT r FROM geo)"));
  return radius ? kRadiusSql : kCountySql;
}

std::vector<PgParam> AvailabilityParams(const AvailabilityQuery& q, const std::vector<int>& types,
                                        bool fresh_only, absl::Time fresh_since) {
  const auto& req = *q.request;
  std::vector<PgParam> params = {q.origin_latitude,
                                 q.origin_longitude,
                                 req.county_fips(),
                                 req.has_age() ? PgParam(int32_t{req.age()}) : PgParam(nullptr),
                                 int32_t{req.gender()},
                                 req.csec_specialized_only(),
                                 IntArray(types),
                                 fresh_only,
                                 PgTime(fresh_since),
                                 PgTime(q.now),
                                 q.after ? PgParam(q.after->first) : PgParam(nullptr),
                                 q.after ? PgParam(q.after->second) : PgParam(""),
                                 int32_t{q.limit}};
  if (req.has_near()) params.push_back(static_cast<double>(req.radius_meters()));
  return params;
}

}  // namespace

absl::Status BedsStore::InsertFacility(PgTx& tx, v1::Facility* f, absl::Time now) {
  f->set_routable(IsRoutable(f->placement_type()));
  auto r = tx.Exec(
      "INSERT INTO facilities (id, org_id, placement_type, routable, county_fips, latitude, "
      "longitude, minimum_age, maximum_age, genders, csec_specialized, body, create_time, "
      "update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::smallint[], $11, $12, $13, "
      "$13) RETURNING revision",
      {f->id(), f->organization_id(), int32_t{f->placement_type()}, f->routable(), f->county_fips(),
       f->latitude(), f->longitude(), int32_t{f->minimum_age()}, int32_t{f->maximum_age()},
       IntArray(Genders(*f)), f->csec_specialized(), PgParam::Bytea(StoredBody(*f)), PgTime(now)});
  if (!r.ok()) {
    if (r.status().code() == absl::StatusCode::kAlreadyExists) {
      return absl::AlreadyExistsError(absl::StrCat("facility '", f->id(), "' already exists"));
    }
    return r.status();
  }
  for (const auto& b : f->bed_types()) {
    auto ins = tx.Exec(
        "INSERT INTO bed_inventory (facility_id, bed_type, licensed_capacity) VALUES ($1, $2, $3)",
        {f->id(), int32_t{b.bed_type()}, int32_t{b.licensed_capacity()}});
    if (!ins.ok()) return ins.status();
  }
  *f->mutable_create_time() = ToProtoTime(now);
  *f->mutable_update_time() = ToProtoTime(now);
  f->set_etag(absl::StrCat(r->Int64(0, "revision")));
  return absl::OkStatus();
}

absl::StatusOr<v1::Facility> BedsStore::GetFacility(PgTx& tx, absl::string_view id,
                                                    bool for_update) {
  return SendGetFacility(tx, id, for_update).Get();
}

PgPendingAs<v1::Facility> BedsStore::SendGetFacility(PgTx& tx, absl::string_view id,
                                                     bool for_update) {
  return {tx.Send(absl::StrCat("SELECT body, revision, create_time, update_time FROM facilities "
                               "WHERE id = $1",
                               for_update ? " FOR UPDATE" : ""),
                  {id}),
          [id = std::string(id)](const PgResult& r) -> absl::StatusOr<v1::Facility> {
            if (r.rows() == 0) {
              return absl::NotFoundError(absl::StrCat("facility '", id, "' not found"));
            }
            v1::Facility f;
            SH_RETURN_IF_ERROR(FillStored(r, 0, &f));
            return f;
          }};
}

absl::Status BedsStore::UpdateFacility(PgTx& tx, v1::Facility* f, absl::Time now) {
  auto current = GetFacility(tx, f->id(), /*for_update=*/true);
  if (!current.ok()) return current.status();
  if (f->etag().empty()) return absl::InvalidArgumentError("facility.etag is required on update");
  if (f->etag() != current->etag()) {
    return absl::AbortedError(
        "facility was changed since it was read (etag mismatch); read it again and retry");
  }
  if (f->organization_id() != current->organization_id()) {
    return absl::InvalidArgumentError("facility.organization_id cannot change");
  }
  f->set_routable(IsRoutable(f->placement_type()));
  // Bed types: new ones are added, kept ones get their new capacity, removed ones must be empty.
  // Lock them (in bed-type order, as every other writer does) before looking.
  if (auto l = tx.Exec("SELECT 1 FROM bed_inventory WHERE facility_id = $1 ORDER BY bed_type "
                       "FOR UPDATE",
                       {f->id()});
      !l.ok()) {
    return l.status();
  }
  auto inventory = FacilityInventory(tx, f->id(), now);
  if (!inventory.ok()) return inventory.status();
  for (const auto& row : *inventory) {
    bool kept = false;
    for (const auto& b : f->bed_types()) kept = kept || b.bed_type() == row.type;
    int32_t new_capacity = 0;
    for (const auto& b : f->bed_types()) {
      if (b.bed_type() == row.type) new_capacity = b.licensed_capacity();
    }
    if (kept && new_capacity < row.inventory.occupied + row.inventory.held) {
      return absl::FailedPreconditionError(absl::StrCat(
          "facility.bed_types: ", v1::BedType_Name(row.type), " cannot shrink below its ",
          row.inventory.occupied + row.inventory.held, " occupied and held beds"));
    }
    if (!kept && (row.inventory.occupied > 0 || row.inventory.held > 0)) {
      return absl::FailedPreconditionError(
          absl::StrCat("facility.bed_types: bed type ", v1::BedType_Name(row.type),
                       " still has occupied or held beds; discharge or release them first"));
    }
    if (!kept) {
      auto del = tx.Exec(
          "UPDATE bed_inventory SET licensed_capacity = 0 WHERE facility_id = $1 AND bed_type = $2",
          {f->id(), int32_t{row.type}});
      if (!del.ok()) return del.status();
    }
  }
  for (const auto& b : f->bed_types()) {
    auto up = tx.Exec(
        "INSERT INTO bed_inventory (facility_id, bed_type, licensed_capacity) VALUES ($1, $2, $3) "
        "ON CONFLICT (facility_id, bed_type) DO UPDATE SET licensed_capacity = $3",
        {f->id(), int32_t{b.bed_type()}, int32_t{b.licensed_capacity()}});
    if (!up.ok()) return up.status();
  }
  auto r = tx.Exec(
      "UPDATE facilities SET placement_type = $2, routable = $3, county_fips = $4, latitude = $5, "
      "longitude = $6, minimum_age = $7, maximum_age = $8, genders = $9::smallint[], "
      "csec_specialized = $10, body = $11, revision = revision + 1, update_time = $12 "
      "WHERE id = $1 RETURNING revision, create_time",
      {f->id(), int32_t{f->placement_type()}, f->routable(), f->county_fips(), f->latitude(),
       f->longitude(), int32_t{f->minimum_age()}, int32_t{f->maximum_age()}, IntArray(Genders(*f)),
       f->csec_specialized(), PgParam::Bytea(StoredBody(*f)), PgTime(now)});
  if (!r.ok()) return r.status();
  *f->mutable_create_time() = ToProtoTime(r->Time(0, "create_time"));
  *f->mutable_update_time() = ToProtoTime(now);
  f->set_etag(absl::StrCat(r->Int64(0, "revision")));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::Facility>> BedsStore::ListFacilities(PgTx& tx,
                                                                    absl::string_view org_id,
                                                                    absl::string_view county,
                                                                    absl::string_view after_id,
                                                                    int limit) {
  auto r = tx.Exec(
      "SELECT body, revision, create_time, update_time FROM facilities WHERE id > $1 "
      "AND ($2 = '' OR org_id = $2) AND ($3 = '' OR county_fips = $3) ORDER BY id LIMIT $4",
      {after_id, org_id, county, int32_t{limit}});
  if (!r.ok()) return r.status();
  std::vector<v1::Facility> out(static_cast<size_t>(r->rows()));
  for (int i = 0; i < r->rows(); ++i) {
    SH_RETURN_IF_ERROR(FillStored(*r, i, &out[static_cast<size_t>(i)]));
  }
  return out;
}

absl::Status BedsStore::LockInventory(PgTx& tx, absl::string_view facility_id, v1::BedType type) {
  auto r =
      tx.Exec("SELECT 1 FROM bed_inventory WHERE facility_id = $1 AND bed_type = $2 FOR UPDATE",
              {facility_id, int32_t{type}});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) {
    return absl::NotFoundError(
        absl::StrCat("facility '", facility_id, "' has no ", v1::BedType_Name(type), " beds"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Inventory> BedsStore::GetInventory(PgTx& tx, absl::string_view facility_id,
                                                  v1::BedType type, absl::Time now) {
  auto r = tx.Exec(
      "SELECT licensed_capacity, occupied, out_of_service, confirmed_at, 0 AS held "
      "FROM bed_inventory WHERE facility_id = $1 AND bed_type = $2",
      {facility_id, int32_t{type}});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) {
    return absl::NotFoundError(
        absl::StrCat("facility '", facility_id, "' has no ", v1::BedType_Name(type), " beds"));
  }
  Inventory inv = InventoryFromRow(*r, 0);
  // Holds of a bed type are only created under its row lock, so after LockInventory this count
  // cannot change until the caller's transaction ends.
  auto held = tx.Exec(
      "SELECT count(*) AS n FROM holds WHERE facility_id = $1 AND bed_type = $2 AND state = 1 "
      "AND expire_time > $3",
      {facility_id, int32_t{type}, PgTime(now)});
  if (!held.ok()) return held.status();
  inv.held = held->Int32(0, "n");
  return inv;
}

Inventory LockedBeds::At(absl::Time now) const {
  Inventory inv = inventory;
  inv.held = 0;
  for (absl::Time t : hold_expiry) inv.held += t > now ? 1 : 0;
  return inv;
}

PgPendingAs<LockedBeds> BedsStore::SendLockedInventory(PgTx& tx, absl::string_view facility_id,
                                                       v1::BedType type, absl::Time since) {
  (void)tx.Send("SELECT 1 FROM bed_inventory WHERE facility_id = $1 AND bed_type = $2 FOR UPDATE",
                {facility_id, int32_t{type}});
  // Holds of a bed type are only created under its row lock, so once the lock is held its
  // active holds cannot change until the caller's transaction ends. One row per active hold.
  return {tx.Send("SELECT b.licensed_capacity, b.occupied, b.out_of_service, b.confirmed_at, "
                  "0 AS held, h.expire_time FROM bed_inventory b LEFT JOIN holds h "
                  "ON h.facility_id = b.facility_id AND h.bed_type = b.bed_type AND h.state = 1 "
                  "AND h.expire_time > $3 WHERE b.facility_id = $1 AND b.bed_type = $2",
                  {facility_id, int32_t{type}, PgTime(since)}),
          [facility_id = std::string(facility_id),
           type](const PgResult& r) -> absl::StatusOr<LockedBeds> {
            if (r.rows() == 0) {
              return absl::NotFoundError(absl::StrCat("facility '", facility_id, "' has no ",
                                                      v1::BedType_Name(type), " beds"));
            }
            LockedBeds out{InventoryFromRow(r, 0), {}};
            for (int i = 0; i < r.rows(); ++i) {
              if (!r.IsNull(i, "expire_time")) out.hold_expiry.push_back(r.Time(i, "expire_time"));
            }
            return out;
          }};
}

absl::StatusOr<std::vector<BedRow>> BedsStore::FacilityInventory(PgTx& tx,
                                                                 absl::string_view facility_id,
                                                                 absl::Time now) {
  auto all = InventoryOf(tx, {std::string(facility_id)}, now);
  if (!all.ok()) return all.status();
  return (*all)[std::string(facility_id)];
}

absl::Status BedsStore::SetCensus(PgTx& tx, absl::string_view facility_id, const v1::CensusEntry& e,
                                  absl::Time confirmed_at) {
  return tx
      .Exec(
          "UPDATE bed_inventory SET occupied = $3, out_of_service = $4, confirmed_at = $5 "
          "WHERE facility_id = $1 AND bed_type = $2",
          {facility_id, int32_t{e.bed_type()}, int32_t{e.occupied()}, int32_t{e.out_of_service()},
           PgTime(confirmed_at)})
      .status();
}

absl::Status BedsStore::AdjustOccupied(PgTx& tx, absl::string_view facility_id, v1::BedType type,
                                       int32_t delta) {
  return tx
      .Exec(
          "UPDATE bed_inventory SET occupied = greatest(0, occupied + $3) "
          "WHERE facility_id = $1 AND bed_type = $2",
          {facility_id, int32_t{type}, delta})
      .status();
}

void BedsStore::InsertHold(PgTx& tx, const v1::Hold& h, absl::string_view for_org) {
  (void)tx.Send(
      "INSERT INTO holds (id, facility_id, bed_type, referral_id, holder_org, state, "
      "create_time, expire_time, for_org) VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8)",
      {h.id(), h.facility_id(), int32_t{h.bed_type()}, h.referral_id(), h.holder_organization_id(),
       PgTime(FromProtoTime(h.create_time())), PgTime(FromProtoTime(h.expire_time())), for_org});
}

PgPendingAs<int64_t> BedsStore::SendActiveHoldsFor(PgTx& tx, absl::string_view for_org,
                                                   absl::Time now, int64_t up_to) {
  (void)tx.Send("SELECT pg_advisory_xact_lock(hashtextextended('holds_for:' || $1, 0))", {for_org});
  // Counted up to the cap only: the work per hold stays bounded by the cap, however many
  // active holds the organization has (more than the cap after the cap was lowered).
  return {tx.Send("SELECT count(*) AS n FROM (SELECT 1 FROM holds WHERE for_org = $1 AND "
                  "state = 1 AND expire_time > $2 LIMIT $3) AS active",
                  {for_org, PgTime(now), up_to}),
          [](const PgResult& r) -> absl::StatusOr<int64_t> { return r.Int64(0, "n"); }};
}

absl::StatusOr<v1::Hold> BedsStore::GetHold(PgTx& tx, absl::string_view id, bool for_update) {
  auto r = tx.Exec(absl::StrCat("SELECT id, facility_id, bed_type, referral_id, holder_org, state, "
                                "create_time, expire_time FROM holds WHERE id = $1",
                                for_update ? " FOR UPDATE" : ""),
                   {id});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return absl::NotFoundError(absl::StrCat("hold '", id, "' not found"));
  return HoldFromRow(*r, 0);
}

absl::Status BedsStore::CloseHold(PgTx& tx, absl::string_view id, v1::HoldState state,
                                  absl::Time now) {
  return tx
      .Exec("UPDATE holds SET state = $2, closed_time = $3 WHERE id = $1",
            {id, int32_t{state}, PgTime(now)})
      .status();
}

absl::Status BedsStore::SetHoldExpiry(PgTx& tx, absl::string_view id, absl::Time expire_time) {
  return tx
      .Exec("UPDATE holds SET expire_time = $2 WHERE id = $1 AND state = 1",
            {id, PgTime(expire_time)})
      .status();
}

absl::StatusOr<std::vector<ExpiredHold>> BedsStore::ExpireHolds(PgTx& tx, absl::Time now,
                                                                int limit) {
  auto r = tx.Exec(
      "UPDATE holds SET state = 3, closed_time = $1 WHERE id IN ("
      "  SELECT id FROM holds WHERE state = 1 AND expire_time <= $1 ORDER BY id "
      "  LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id, facility_id, bed_type",
      {PgTime(now), int32_t{limit}});
  if (!r.ok()) return r.status();
  std::vector<ExpiredHold> out;
  for (int i = 0; i < r->rows(); ++i) {
    out.push_back({r->String(i, "id"), r->String(i, "facility_id"),
                   static_cast<v1::BedType>(r->Int32(i, "bed_type"))});
  }
  return out;
}

absl::Status BedsStore::InsertPlacement(PgTx& tx, const v1::Placement& p) {
  return tx
      .Exec(
          "INSERT INTO placements (id, hold_id, facility_id, bed_type, referral_id, placed_time) "
          "VALUES ($1, $2, $3, $4, $5, $6)",
          {p.id(), p.hold_id(), p.facility_id(), int32_t{p.bed_type()}, p.referral_id(),
           PgTime(FromProtoTime(p.placed_time()))})
      .status();
}

absl::StatusOr<v1::Placement> BedsStore::GetPlacement(PgTx& tx, absl::string_view id,
                                                      bool for_update) {
  auto r = tx.Exec(absl::StrCat("SELECT id, hold_id, facility_id, bed_type, referral_id, "
                                "placed_time, discharge_time FROM placements WHERE id = $1",
                                for_update ? " FOR UPDATE" : ""),
                   {id});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return absl::NotFoundError(absl::StrCat("placement '", id, "' not found"));
  v1::Placement p;
  p.set_id(r->String(0, "id"));
  p.set_hold_id(r->String(0, "hold_id"));
  p.set_facility_id(r->String(0, "facility_id"));
  p.set_bed_type(static_cast<v1::BedType>(r->Int32(0, "bed_type")));
  p.set_referral_id(r->String(0, "referral_id"));
  *p.mutable_placed_time() = ToProtoTime(r->Time(0, "placed_time"));
  if (!r->IsNull(0, "discharge_time")) {
    *p.mutable_discharge_time() = ToProtoTime(r->Time(0, "discharge_time"));
  }
  return p;
}

absl::Status BedsStore::SetDischarged(PgTx& tx, absl::string_view id, absl::Time now) {
  return tx.Exec("UPDATE placements SET discharge_time = $2 WHERE id = $1", {id, PgTime(now)})
      .status();
}

void BedsStore::AppendEvent(PgTx& tx, absl::string_view county_fips, absl::string_view reason,
                            const v1::BedAvailability& availability, absl::Time now) {
  // No lock orders the writers (migration 005): the event is numbered after a shared advisory
  // lock keyed by the sequence's last value marks this transaction as a writer whose number is
  // above it, until it ends; readers stop below the lowest marker still held. The CTE runs
  // first: the marker is held before the number is taken.
  (void)tx.Send(
      "WITH marker AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared("
      "coalesce(pg_sequence_last_value('availability_events_seq_seq'), 0)) IS NULL AS held) "
      "INSERT INTO availability_events (seq, facility_id, county_fips, reason, payload, at) "
      "SELECT nextval('availability_events_seq_seq'), $1, $2, $3, $4, $5 FROM marker",
      {availability.facility_id(), county_fips, reason,
       PgParam::Bytea(availability.SerializeAsString()), PgTime(now)});
}

// Events up to the safe horizon only, read by a statement that starts after the horizon was
// taken (READ COMMITTED: its own snapshot), so every event at or below it that committed is
// seen; both go out in one round trip.
absl::StatusOr<std::vector<StoredEvent>> BedsStore::EventsAfter(PgTx& tx, int64_t after_seq,
                                                                int limit) {
  (void)tx.Send(
      "SELECT set_config('safeharbor.events_horizon', availability_events_horizon()::text, true)");
  auto r = tx.Exec(
      "SELECT seq, county_fips, reason, payload FROM availability_events WHERE seq > $1 "
      "AND seq <= current_setting('safeharbor.events_horizon')::bigint ORDER BY seq LIMIT $2",
      {after_seq, int32_t{limit}});
  if (!r.ok()) return r.status();
  std::vector<StoredEvent> out(static_cast<size_t>(r->rows()));
  for (int i = 0; i < r->rows(); ++i) {
    auto& e = out[static_cast<size_t>(i)];
    e.seq = r->Int64(i, "seq");
    e.county_fips = r->String(i, "county_fips");
    e.reason = r->String(i, "reason");
    if (!e.availability.ParseFromString(r->Bytea(i, "payload"))) {
      return absl::InternalError("stored event is unreadable");
    }
  }
  return out;
}

// Where a watch "from now" starts: the safe horizon.
absl::StatusOr<int64_t> BedsStore::LastEventSeq(PgTx& tx) {
  auto r = tx.Exec("SELECT availability_events_horizon() AS s");
  if (!r.ok()) return r.status();
  return r->Int64(0, "s");
}

absl::StatusOr<std::vector<v1::FacilityAvailability>> BedsStore::Search(
    PgTx& tx, const AvailabilityQuery& q) {
  const auto& req = *q.request;
  std::vector<int> types(req.bed_types().begin(), req.bed_types().end());
  const bool fresh_only = req.max_staleness_seconds() > 0;
  const absl::Time fresh_since = q.now - absl::Seconds(req.max_staleness_seconds());
  auto r = tx.Exec(AvailabilitySql(req.has_near()),
                   AvailabilityParams(q, types, fresh_only, fresh_since));
  if (!r.ok()) return r.status();
  std::vector<v1::FacilityAvailability> out(static_cast<size_t>(r->rows()));
  std::vector<std::string> ids;
  for (int i = 0; i < r->rows(); ++i) {
    auto& fa = out[static_cast<size_t>(i)];
    SH_RETURN_IF_ERROR(FillStored(*r, i, fa.mutable_facility()));
    fa.set_distance_meters(r->Int64(i, "dist"));
    ids.push_back(fa.facility().id());
  }
  if (ids.empty()) return out;
  auto inventory = InventoryOf(tx, ids, q.now);
  if (!inventory.ok()) return inventory.status();
  for (auto& fa : out) {
    for (const BedRow& row : (*inventory)[fa.facility().id()]) {
      if (row.inventory.licensed_capacity == 0) continue;
      if (!types.empty() && std::find(types.begin(), types.end(), row.type) == types.end()) {
        continue;
      }
      if (fresh_only && (!row.inventory.confirmed_at || *row.inventory.confirmed_at < fresh_since ||
                         AvailableBeds(row.inventory) <= 0)) {
        continue;
      }
      *fa.add_beds() = ToProto(fa.facility().id(), row.type, row.inventory, q.now, q.stale_after);
    }
  }
  return out;
}

}  // namespace safeharbor::beds
