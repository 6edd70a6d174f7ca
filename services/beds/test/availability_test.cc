// Pure decisions of the beds service.
#include "services/beds/availability.h"

#include <gtest/gtest.h>

#include "common/proto_time.h"

namespace safeharbor::beds {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1795000000);

Inventory Inv(int cap, int occ, int oos, int held, absl::Duration age) {
  Inventory i;
  i.licensed_capacity = cap;
  i.occupied = occ;
  i.out_of_service = oos;
  i.held = held;
  i.confirmed_at = kNow - age;
  return i;
}

TEST(Availability, NetOfOccupiedOutOfServiceAndHolds) {
  EXPECT_EQ(AvailableBeds(Inv(10, 4, 1, 2, absl::Hours(1))), 3);
  EXPECT_EQ(AvailableBeds(Inv(2, 2, 0, 1, absl::Hours(1))), 0);  // never negative
}

TEST(Availability, StaleAndNeverReportedAreUnknown) {
  const absl::Duration window = absl::Hours(12);
  EXPECT_EQ(StatusAt(Inv(5, 0, 0, 0, absl::Hours(11)), kNow, window),
            v1::AVAILABILITY_STATUS_KNOWN);
  EXPECT_EQ(StatusAt(Inv(5, 0, 0, 0, absl::Hours(13)), kNow, window),
            v1::AVAILABILITY_STATUS_STALE);
  Inventory never;
  never.licensed_capacity = 5;
  EXPECT_EQ(StatusAt(never, kNow, window), v1::AVAILABILITY_STATUS_NEVER_REPORTED);
}

TEST(Availability, CanHoldSaysWhyNot) {
  const absl::Duration w = absl::Hours(12);
  EXPECT_TRUE(CanHold(Inv(3, 1, 0, 1, absl::Hours(1)), true, kNow, w).ok());
  auto full = CanHold(Inv(3, 1, 1, 1, absl::Hours(1)), true, kNow, w);
  EXPECT_EQ(full.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(full.message().find("no bed"), std::string::npos);
  auto stale = CanHold(Inv(3, 0, 0, 0, absl::Hours(13)), true, kNow, w);
  EXPECT_NE(stale.message().find("stale"), std::string::npos);
  auto secure = CanHold(Inv(3, 0, 0, 0, absl::Hours(1)), false, kNow, w);
  EXPECT_NE(secure.message().find("never"), std::string::npos);
}

TEST(Availability, DetentionAndSecureAreNeverRoutable) {
  EXPECT_FALSE(IsRoutable(v1::PLACEMENT_TYPE_DETENTION));
  EXPECT_FALSE(IsRoutable(v1::PLACEMENT_TYPE_SECURE_CRISIS_RESIDENTIAL_CENTER));
  EXPECT_FALSE(IsRoutable(v1::PLACEMENT_TYPE_UNSPECIFIED));
  EXPECT_TRUE(IsRoutable(v1::PLACEMENT_TYPE_HOPE_CENTER));
}

TEST(Availability, HoldTtlBounds) {
  EXPECT_EQ(*HoldTtl(0), absl::Minutes(30));
  EXPECT_EQ(*HoldTtl(60), absl::Minutes(1));
  EXPECT_FALSE(HoldTtl(59).ok());
  EXPECT_FALSE(HoldTtl(4 * 3600 + 1).ok());
}

TEST(Availability, ExtendedExpiryNeverShortensAndIsBounded) {
  const absl::Time now = absl::FromUnixSeconds(1795000000);
  v1::Hold h;
  h.set_id("hold-1");
  h.set_state(v1::HOLD_STATE_ACTIVE);
  *h.mutable_expire_time() = ToProtoTime(now + absl::Hours(1));
  const absl::Duration max = absl::Hours(8);
  EXPECT_EQ(*ExtendedExpiry(h, now + absl::Hours(4), now, max), now + absl::Hours(4));
  EXPECT_EQ(*ExtendedExpiry(h, now + absl::Hours(1), now, max), now + absl::Hours(1));
  EXPECT_EQ(*ExtendedExpiry(h, now + max, now, max), now + max);
  EXPECT_EQ(ExtendedExpiry(h, now + absl::Minutes(59), now, max).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto over = ExtendedExpiry(h, now + max + absl::Seconds(1), now, max);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(over.status().message().find("expire_time"), std::string::npos);
  // Past its expiry (the sweeper has not marked it yet), released or confirmed: gone.
  EXPECT_EQ(ExtendedExpiry(h, now + absl::Hours(4), now + absl::Hours(1), max).status().code(),
            absl::StatusCode::kFailedPrecondition);
  for (auto state : {v1::HOLD_STATE_RELEASED, v1::HOLD_STATE_EXPIRED, v1::HOLD_STATE_CONFIRMED}) {
    h.set_state(state);
    EXPECT_EQ(ExtendedExpiry(h, now + absl::Hours(4), now, max).status().code(),
              absl::StatusCode::kFailedPrecondition)
        << v1::HoldState_Name(state);
  }
}

v1::Facility GoodFacility() {
  v1::Facility f;
  f.set_organization_id("prov-a");
  f.set_name("HOPE house");
  f.set_placement_type(v1::PLACEMENT_TYPE_HOPE_CENTER);
  f.set_county_fips("53033");
  f.set_latitude(47.6);
  f.set_longitude(-122.3);
  f.set_minimum_age(12);
  f.set_maximum_age(17);
  auto* b = f.add_bed_types();
  b->set_bed_type(v1::BED_TYPE_GENERAL);
  b->set_licensed_capacity(4);
  return f;
}

TEST(Validation, FacilityFieldsAreNamed) {
  EXPECT_TRUE(ValidateFacility(GoodFacility(), WashingtonCounties(), false).ok());
  struct Case {
    std::function<void(v1::Facility*)> mutate;
    const char* field;
  };
  const std::vector<Case> cases = {
      {[](v1::Facility* f) { f->set_name(""); }, "facility.name"},
      {[](v1::Facility* f) { f->set_organization_id("X"); }, "facility.organization_id"},
      {[](v1::Facility* f) { f->set_placement_type(v1::PLACEMENT_TYPE_UNSPECIFIED); },
       "facility.placement_type"},
      {[](v1::Facility* f) { f->set_county_fips("00000"); }, "facility.county_fips"},
      {[](v1::Facility* f) { f->set_latitude(95); }, "facility.latitude"},
      {[](v1::Facility* f) { f->set_maximum_age(40); }, "facility.maximum_age"},
      {[](v1::Facility* f) { f->clear_bed_types(); }, "facility.bed_types"},
      {[](v1::Facility* f) { f->mutable_bed_types(0)->set_licensed_capacity(-1); },
       "facility.bed_types[0].licensed_capacity"},
      {[](v1::Facility* f) { *f->add_bed_types() = f->bed_types(0); }, "facility.bed_types[1]"},
  };
  for (const auto& c : cases) {
    v1::Facility f = GoodFacility();
    c.mutate(&f);
    absl::Status st = ValidateFacility(f, WashingtonCounties(), false);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_NE(st.message().find(c.field), std::string::npos) << st.message();
  }
}

TEST(Validation, CensusMustFitCapacityAndBeRecent) {
  v1::Facility f = GoodFacility();
  v1::ReportCensusRequest r;
  r.set_facility_id("fac-1");
  *r.mutable_confirmed_time() = ToProtoTime(kNow - absl::Minutes(5));
  auto* e = r.add_entries();
  e->set_bed_type(v1::BED_TYPE_GENERAL);
  e->set_occupied(3);
  e->set_out_of_service(1);
  EXPECT_TRUE(ValidateCensus(r, f, kNow, absl::Hours(12)).ok());
  e->set_occupied(4);
  EXPECT_NE(ValidateCensus(r, f, kNow, absl::Hours(12)).message().find("exceeds"),
            std::string::npos);
  e->set_occupied(1);
  e->set_bed_type(v1::BED_TYPE_MALE);
  EXPECT_NE(ValidateCensus(r, f, kNow, absl::Hours(12)).message().find("entries[0].bed_type"),
            std::string::npos);
  e->set_bed_type(v1::BED_TYPE_GENERAL);
  *r.mutable_confirmed_time() = ToProtoTime(kNow + absl::Hours(1));
  EXPECT_NE(ValidateCensus(r, f, kNow, absl::Hours(12)).message().find("future"),
            std::string::npos);
  *r.mutable_confirmed_time() = ToProtoTime(kNow - absl::Hours(13));
  EXPECT_FALSE(ValidateCensus(r, f, kNow, absl::Hours(12)).ok());
}

}  // namespace
}  // namespace safeharbor::beds
