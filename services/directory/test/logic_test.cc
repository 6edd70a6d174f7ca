// Pure decision logic of the directory: schedules, distance, validation, counties.
#include <gtest/gtest.h>

#include "common/counties.h"
#include "common/geo.h"
#include "common/proto_time.h"
#include "services/directory/facts.h"
#include "services/directory/schedule.h"
#include "services/directory/validation.h"

namespace safeharbor::directory {
namespace {

v1::WeeklyHours Hours(v1::DayOfWeek day, const char* opens, const char* closes) {
  v1::WeeklyHours h;
  h.set_day(day);
  h.set_opens_at(opens);
  h.set_closes_at(closes);
  return h;
}

TEST(Counties, WashingtonHasItsThirtyNineCounties) {
  const auto& wa = WashingtonCounties();
  EXPECT_EQ(wa.all().size(), 39u);
  ASSERT_NE(wa.Find("53033"), nullptr);
  EXPECT_EQ(wa.Find("53033")->name, "King");
  EXPECT_EQ(wa.FindByName("Walla Walla County")->fips, "53071");
  EXPECT_EQ(wa.Find("06037"), nullptr);
}

TEST(Geo, SeattleToSpokaneIsAbout368Km) {
  const int64_t d = HaversineMeters(47.6062, -122.3321, 47.6588, -117.4260);
  EXPECT_GT(d, 365000);
  EXPECT_LT(d, 372000);
  EXPECT_EQ(HaversineMeters(47.0, -122.0, 47.0, -122.0), 0);
  BoundingBox box = BoxAround(47.6, -122.3, 10000);
  EXPECT_LT(box.min_lat, 47.6 - 0.089);
  EXPECT_GT(box.max_lng, -122.3 + 0.13);
}

TEST(Schedule, DaytimeHoursBecomeOneInterval) {
  v1::Schedule s;
  *s.add_weekly_hours() = Hours(v1::DAY_OF_WEEK_TUESDAY, "09:00", "17:30");
  auto iv = OpenIntervals(s);
  ASSERT_TRUE(iv.ok()) << iv.status();
  ASSERT_EQ(iv->size(), 1u);
  EXPECT_EQ((*iv)[0], (MinuteInterval{1440 + 540, 1440 + 1050}));
}

TEST(Schedule, OvernightAndSundayWrapAreSplitAndMerged) {
  v1::Schedule s;
  *s.add_weekly_hours() = Hours(v1::DAY_OF_WEEK_SUNDAY, "20:00", "08:00");  // into Monday
  *s.add_weekly_hours() = Hours(v1::DAY_OF_WEEK_MONDAY, "08:00", "12:00");  // adjoins it
  auto iv = OpenIntervals(s);
  ASSERT_TRUE(iv.ok());
  ASSERT_EQ(iv->size(), 2u);
  EXPECT_EQ((*iv)[0], (MinuteInterval{0, 720}));  // Monday 00:00-12:00 merged
  EXPECT_EQ((*iv)[1], (MinuteInterval{6 * 1440 + 1200, kMinutesPerWeek}));
}

TEST(Schedule, BadTimesNameTheField) {
  v1::Schedule s;
  *s.add_weekly_hours() = Hours(v1::DAY_OF_WEEK_MONDAY, "09:00", "17:00");
  *s.add_weekly_hours() = Hours(v1::DAY_OF_WEEK_MONDAY, "25:00", "26:00");
  auto iv = OpenIntervals(s);
  EXPECT_EQ(iv.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(iv.status().message().find("weekly_hours[1].opens_at"), std::string::npos);
  EXPECT_FALSE(ParseHhMm("24:00", false).ok());
  EXPECT_EQ(*ParseHhMm("24:00", true), 1440);
}

TEST(Schedule, IsOpenAtUsesTheServicesTimeZone) {
  v1::Schedule s;
  s.set_time_zone("America/Los_Angeles");
  *s.add_weekly_hours() = Hours(v1::DAY_OF_WEEK_MONDAY, "09:00", "17:00");
  // Monday 2026-11-23 10:00 Pacific = 18:00 UTC.
  absl::Time monday_10_pacific =
      absl::FromCivil(absl::CivilSecond(2026, 11, 23, 18, 0, 0), absl::UTCTimeZone());
  EXPECT_TRUE(IsOpenAt(s, monday_10_pacific));
  EXPECT_FALSE(IsOpenAt(s, monday_10_pacific + absl::Hours(8)));  // 18:00 Pacific
  s.set_open_24_7(true);
  EXPECT_TRUE(IsOpenAt(s, monday_10_pacific + absl::Hours(8)));
}

v1::Service GoodService() {
  v1::Service s;
  s.set_organization_id("prov-a");
  s.set_name("Youth shelter");
  s.set_category(v1::SERVICE_CATEGORY_EMERGENCY_YOUTH_SHELTER);
  s.set_minimum_age(12);
  s.set_maximum_age(17);
  s.add_languages("en");
  s.mutable_schedule()->set_open_24_7(true);
  s.mutable_schedule()->set_time_zone("America/Los_Angeles");
  s.add_service_area_county_fips("53033");
  s.set_status(v1::SERVICE_STATUS_ACTIVE);
  s.set_location_id("main");
  return s;
}

TEST(Validation, AcceptsAGoodService) {
  EXPECT_TRUE(ValidateService(GoodService(), WashingtonCounties(), false).ok());
}

TEST(Validation, EachBadServiceFieldIsNamed) {
  struct Case {
    std::function<void(v1::Service*)> mutate;
    const char* field;
  };
  const std::vector<Case> cases = {
      {[](v1::Service* s) { s->set_name(""); }, "service.name"},
      {[](v1::Service* s) { s->set_id("Bad_Id"); }, "service.id"},
      {[](v1::Service* s) { s->set_organization_id(""); }, "service.organization_id"},
      {[](v1::Service* s) { s->set_category(v1::SERVICE_CATEGORY_UNSPECIFIED); },
       "service.category"},
      {[](v1::Service* s) { s->set_minimum_age(-1); }, "service.minimum_age"},
      {[](v1::Service* s) { s->set_maximum_age(31); }, "service.maximum_age"},
      {[](v1::Service* s) { s->set_minimum_age(18); }, "service.minimum_age"},
      {[](v1::Service* s) { s->add_genders_served(v1::GENDER_UNSPECIFIED); },
       "service.genders_served[0]"},
      {[](v1::Service* s) { s->add_languages("English"); }, "service.languages[1]"},
      {[](v1::Service* s) { s->mutable_schedule()->set_time_zone("Mars/Olympus"); },
       "service.schedule.time_zone"},
      {[](v1::Service* s) { s->clear_service_area_county_fips(); },
       "service.service_area_county_fips"},
      {[](v1::Service* s) { s->add_service_area_county_fips("99999"); },
       "service.service_area_county_fips[1]"},
      {[](v1::Service* s) { s->set_status(v1::SERVICE_STATUS_UNSPECIFIED); }, "service.status"},
      {[](v1::Service* s) { s->set_location_id(""); }, "service.location_id"},
      {[](v1::Service* s) { s->set_description(std::string(5000, 'x')); }, "service.description"},
  };
  for (const auto& c : cases) {
    v1::Service s = GoodService();
    c.mutate(&s);
    absl::Status st = ValidateService(s, WashingtonCounties(), false);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_NE(st.message().find(c.field), std::string::npos) << st.message();
  }
}

TEST(Validation, SecureCrisisResidentialIsNeverRoutable) {
  EXPECT_FALSE(IsRoutableCategory(v1::SERVICE_CATEGORY_SECURE_CRISIS_RESIDENTIAL_CENTER));
  EXPECT_TRUE(IsRoutableCategory(v1::SERVICE_CATEGORY_HOPE_CENTER));
  EXPECT_FALSE(IsRoutableCategory(v1::SERVICE_CATEGORY_UNSPECIFIED));
}

TEST(Validation, SearchNeedsAnAreaAndSaneFilters) {
  v1::SearchServicesRequest r;
  EXPECT_NE(ValidateSearch(r, WashingtonCounties()).message().find("county_fips or near"),
            std::string::npos);
  r.set_county_fips("53033");
  EXPECT_TRUE(ValidateSearch(r, WashingtonCounties()).ok());
  r.set_age(40);
  EXPECT_NE(ValidateSearch(r, WashingtonCounties()).message().find("age"), std::string::npos);
  r.clear_age();
  r.mutable_near()->set_latitude(47.6);
  r.mutable_near()->set_longitude(-122.3);
  EXPECT_NE(ValidateSearch(r, WashingtonCounties()).message().find("radius_meters"),
            std::string::npos);
  r.set_radius_meters(5000);
  r.set_page_size(1000);
  EXPECT_NE(ValidateSearch(r, WashingtonCounties()).message().find("page_size"), std::string::npos);
}

TEST(Facts, OnlyKindCountyLocationsAndAreaAreDecidingAndOnlyTheAdminChangesThem) {
  v1::Organization before;
  before.set_kind(v1::ORGANIZATION_KIND_SERVICE_PROVIDER);
  before.set_county_fips("53033");
  before.set_name("A");
  auto* l = before.add_locations();
  l->set_id("main");
  l->set_latitude(47.6);
  l->set_county_fips("53033");
  v1::Organization after = before;
  after.set_name("B");
  after.mutable_locations(0)->set_name("Front door");
  EXPECT_TRUE(OrganizationFactChanges(&before, after).empty());
  after.set_county_fips("53053");
  after.mutable_locations(0)->set_latitude(47.7);
  const auto changes = OrganizationFactChanges(&before, after);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].field, "county_fips");
  EXPECT_EQ(changes[0].old_value, "53033");
  EXPECT_EQ(changes[1].field, "locations[main]");
  EXPECT_EQ(OrganizationFactChanges(nullptr, before).size(), 3u);  // created: every fact
  const Caller provider{"prov-a", Role::kProvider, ""}, admin{"dir", Role::kDirectoryAdmin, ""};
  EXPECT_EQ(MayChangeFacts(provider, changes).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(MayChangeFacts(admin, changes).ok());
  EXPECT_TRUE(MayChangeFacts(provider, {}).ok());
  v1::Service s;
  s.add_service_area_county_fips("53033");
  EXPECT_TRUE(ProviderMayServe(before, s).ok());
  v1::Service wider = s;
  wider.add_service_area_county_fips("53053");
  EXPECT_EQ(ProviderMayServe(before, wider).code(), absl::StatusCode::kPermissionDenied);
  v1::Service reordered;
  reordered.add_service_area_county_fips("53053");
  reordered.add_service_area_county_fips("53033");
  EXPECT_TRUE(ServiceFactChanges(&wider, reordered).empty());  // the same set of counties
  EXPECT_EQ(ServiceFactChanges(&s, wider)[0].new_value, "53033,53053");
}

}  // namespace
}  // namespace safeharbor::directory
