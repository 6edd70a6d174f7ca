// HSDS 3.1 parsing and writing (pure).
#include "services/directory/hsds.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "common/testing/harness.h"
#include "common/tls.h"

namespace safeharbor::directory {
namespace {

std::string Sample() {
  auto text = ReadFileToString(
      safeharbor::testing::SourceDir() + "/services/directory/test/data/hsds_sample.json", 1 << 20);
  EXPECT_TRUE(text.ok());
  return *text;
}

TEST(Hsds, ReadsA211RecordAndSafeHarborAttributes) {
  auto data = ParseHsds(Sample(), WashingtonCounties());
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->organizations.size(), 2u);
  ASSERT_EQ(data->services.size(), 2u);
  const auto& org = data->organizations[0];
  EXPECT_EQ(org.id(), "7b2c1e1a-0000-4000-8000-00000000a001");
  EXPECT_EQ(org.kind(), v1::ORGANIZATION_KIND_SERVICE_PROVIDER);
  EXPECT_EQ(org.county_fips(), "53033");
  EXPECT_EQ(org.locations(0).id(), "loc-1");  // ids are normalized to lower case
  EXPECT_EQ(org.locations(0).city(), "Seattle");
  EXPECT_EQ(org.contacts(0).phones(0).number(), "206-555-0102");
  EXPECT_EQ(data->organizations[1].kind(), v1::ORGANIZATION_KIND_COURT);
  EXPECT_DOUBLE_EQ(data->organizations[1].locations(0).latitude(), 47.6612);

  const auto& shelter = data->services[0];
  EXPECT_EQ(shelter.id(), "svc-shelter-1");
  EXPECT_EQ(shelter.category(), v1::SERVICE_CATEGORY_EMERGENCY_YOUTH_SHELTER);  // inferred
  EXPECT_EQ(shelter.schedule().weekly_hours_size(), 5);
  EXPECT_EQ(shelter.schedule().weekly_hours(0).opens_at(), "18:00");
  EXPECT_EQ(shelter.service_area_county_fips(0), "53033");
  EXPECT_EQ(shelter.location_id(), "loc-1");
  EXPECT_EQ(shelter.languages_size(), 2);
  EXPECT_TRUE(shelter.has_last_verified_time());

  const auto& advocacy = data->services[1];
  EXPECT_EQ(advocacy.category(), v1::SERVICE_CATEGORY_CSEC_ADVOCACY);
  EXPECT_TRUE(advocacy.csec_specialized());
  EXPECT_TRUE(advocacy.accepting_referrals());
  EXPECT_TRUE(advocacy.schedule().open_24_7());
  EXPECT_EQ(advocacy.genders_served_size(), 2);
  EXPECT_EQ(advocacy.service_area_county_fips_size(), 2);
  EXPECT_EQ(advocacy.location_id(), "loc-1");  // the organization's first location
}

TEST(Hsds, WriteThenReadKeepsEveryField) {
  auto data = ParseHsds(Sample(), WashingtonCounties());
  ASSERT_TRUE(data.ok());
  const std::string written = WriteHsds(data->organizations, data->services, WashingtonCounties());
  auto again = ParseHsds(written, WashingtonCounties());
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->organizations.size(), data->organizations.size());
  ASSERT_EQ(again->services.size(), data->services.size());
  for (size_t i = 0; i < data->organizations.size(); ++i) {
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(data->organizations[i],
                                                                   again->organizations[i]))
        << data->organizations[i].DebugString() << again->organizations[i].DebugString();
  }
  for (size_t i = 0; i < data->services.size(); ++i) {
    EXPECT_TRUE(
        google::protobuf::util::MessageDifferencer::Equals(data->services[i], again->services[i]))
        << data->services[i].DebugString() << again->services[i].DebugString();
  }
  EXPECT_EQ(WriteHsds(again->organizations, again->services, WashingtonCounties()), written);
}

TEST(Hsds, ErrorsNameTheJsonPath) {
  struct Case {
    const char* json;
    const char* expect;
  };
  const Case cases[] = {
      {"{not json", "not valid JSON"},
      {"{\"organisations\": []}", "'organizations' array"},
      {"[{\"id\": \"org-1\", \"locations\": [{\"id\": \"a\", \"latitude\": 47, \"longitude\": "
       "-122}]}]",
       "organizations[0]: organization.name is required"},
      {"[{\"id\": \"org-1\", \"name\": \"x\", \"locations\": \"nope\"}]",
       "organizations[0].locations must be an array"},
      {"[{\"id\": \"org-1\", \"name\": \"x\", \"locations\": [{\"id\": \"loc\", \"latitude\": 47, "
       "\"longitude\": -122}], \"services\": [{\"id\": \"s-1\", \"name\": \"Something\", "
       "\"service_areas\": [{\"name\": \"King\"}]}]}]",
       "organizations[0].services[0]: no service category"},
      {"[{\"id\": \"org-1\", \"name\": \"x\", \"locations\": [{\"id\": \"loc\", \"latitude\": 47, "
       "\"longitude\": -122}], \"services\": [{\"id\": \"s-1\", \"name\": \"Youth shelter\", "
       "\"service_areas\": [{\"name\": \"Atlantis\"}]}]}]",
       "organizations[0].services[0].service_areas[0]"},
  };
  for (const auto& c : cases) {
    auto data = ParseHsds(c.json, WashingtonCounties());
    EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_NE(data.status().message().find(c.expect), std::string::npos) << data.status();
  }
}

}  // namespace
}  // namespace safeharbor::directory
