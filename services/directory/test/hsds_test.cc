// HSDS 3.1 parsing and writing (pure).
#include "services/directory/hsds.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <iostream>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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

std::string Example(const std::string& name) {
  auto text =
      ReadFileToString(safeharbor::testing::SourceDir() + "/data/hsds-3.1/" + name, 1 << 20);
  EXPECT_TRUE(text.ok()) << name;
  return text.ok() ? *text : "";
}

bool HasProblem(const HsdsRead& read, const std::string& path, const std::string& words) {
  v1::ImportHsdsResponse resp;
  read.report.Fill(&resp);
  for (const auto& p : resp.problems()) {
    if (p.path() == path && absl::StrContains(p.message(), words)) return true;
  }
  return false;
}

std::string Listed(const HsdsRead& read) {
  v1::ImportHsdsResponse resp;
  read.report.Fill(&resp);
  std::string out;
  for (const auto& p : resp.problems()) absl::StrAppend(&out, "  problem ", p.message(), "\n");
  for (const auto& n : resp.normalizations()) {
    absl::StrAppend(&out, "  ", n.rule(), " ", n.path(), ": ", n.original(), " -> ", n.normalized(),
                    "\n");
  }
  return out;
}

// The specification's own organization example, as a state directory administrator tried it:
// every problem at once, each with its path, and what could be normalized, normalized.
TEST(Hsds, TheOpenReferralOrganizationExampleListsEveryProblem) {
  const HsdsRead read = ReadHsds(Example("organization_full.json"), WashingtonCounties());
  std::cout << "organization_full.json:\n" << Listed(read);
  EXPECT_TRUE(HasProblem(read, "$.locations[0]",
                         "$: organization.locations[0].latitude must be between -90 and 90"));
  EXPECT_TRUE(HasProblem(read, "$.services[0]", "service.maximum_age must be between 0 and 30"));
  EXPECT_TRUE(HasProblem(read, "$.services[0].service_areas[0]", "not a known county"));
  EXPECT_TRUE(HasProblem(read, "$.services[0]", "was refused"));  // its location
  EXPECT_EQ(read.report.First().code(), absl::StatusCode::kInvalidArgument);
  // Every phone was written with quotes around it: normalized, not refused.
  v1::ImportHsdsResponse resp;
  read.report.Fill(&resp);
  int quoted = 0;
  for (const auto& n : resp.normalizations()) {
    if (n.rule() == "surrounding_quotes" && absl::EndsWith(n.path(), ".number")) {
      EXPECT_EQ(n.original(), "\"+44 1234 234567\"");
      EXPECT_EQ(n.normalized(), "+44 1234 234567");
      ++quoted;
    }
  }
  EXPECT_GE(quoted, 2);
  for (const auto& p : resp.problems()) EXPECT_FALSE(absl::StrContains(p.message(), "phones"));
  // The partial import: the organization without its bad location, the service skipped.
  ASSERT_EQ(read.data.organizations.size(), 1u);
  EXPECT_EQ(read.data.organizations[0].name(), "Example Organization Inc.");
  EXPECT_EQ(read.data.organizations[0].phones(0).number(), "+44 1234 234567");
  EXPECT_EQ(read.data.organizations[0].locations_size(), 0);
  EXPECT_EQ(read.locations_skipped, 1);
  EXPECT_EQ(read.data.services.size(), 0u);
  EXPECT_EQ(read.services_skipped, 1);
  EXPECT_EQ(resp.problems_not_listed(), 0);
}

// Every vendored example is read to the end: a report, never a refusal at the first problem.
TEST(Hsds, EveryVendoredExampleValidatesWithItsProblemsListed) {
  const std::map<std::string, int> organizations = {{"organization_full.json", 1},
                                                    {"organization_list.json", 1}};
  for (const char* name :
       {"base.json", "location.json", "organization_full.json", "organization_list.json",
        "service_at_location_full.json", "service_at_location_list.json", "service_full.json",
        "service_list.json", "tabular.json", "taxonomy.json", "taxonomy_list.json",
        "taxonomy_term.json", "taxonomy_term_list.json"}) {
    const HsdsRead read = ReadHsds(Example(name), WashingtonCounties());
    std::cout << name << ": " << read.report.problem_count() << " problems, "
              << read.data.organizations.size() << " organizations and "
              << read.data.services.size() << " services importable\n"
              << Listed(read);
    auto it = organizations.find(name);
    if (it == organizations.end()) {
      // Not organizations: one problem for the whole document, saying what to import instead.
      EXPECT_EQ(read.report.problem_count(), 1) << name;
      EXPECT_TRUE(HasProblem(read, "$", "organization")) << name;
    } else {
      EXPECT_EQ(static_cast<int>(read.data.organizations.size()), it->second) << name;
    }
  }
}

TEST(Hsds, SafeNormalizationsAreMadeAndReported) {
  const std::string doc = R"([{"id": "org-1", "name": "'Quoted Org'",
    "phones": [{"number": "tel:206/555\u20130100"}, {"number": "206 555 0100 ext 7"}],
    "locations": [{"id": "loc", "latitude": "47.6", "longitude": -122.3}],
    "services": [{"id": "s-1", "name": "Youth shelter", "service_areas": [
      {"name": "KING COUNTY, WA"}, {"extent": "53-063"}, {"extent": 53061}, {"name": "Pierce Co."}]}]}])";
  const HsdsRead read = ReadHsds(doc, WashingtonCounties());
  std::cout << Listed(read);
  v1::ImportHsdsResponse resp;
  read.report.Fill(&resp);
  std::map<std::string, std::string> rules;
  for (const auto& n : resp.normalizations()) rules[n.path()] = n.rule() + " " + n.normalized();
  EXPECT_EQ(rules["organizations[0].name"], "surrounding_quotes Quoted Org");
  EXPECT_EQ(rules["organizations[0].phones[0].number"], "phone_punctuation 206-555-0100");
  EXPECT_EQ(rules["organizations[0].locations[0].latitude"], "number_as_text 47.6");
  EXPECT_EQ(rules["organizations[0].services[0].service_areas[0].name"],
            "county_name King County (53033)");
  EXPECT_EQ(rules["organizations[0].services[0].service_areas[1].extent"], "county_fips 53063");
  EXPECT_EQ(rules["organizations[0].services[0].service_areas[2].extent"], "county_fips 53061");
  EXPECT_EQ(rules["organizations[0].services[0].service_areas[3].name"],
            "county_name Pierce County (53053)");
  // Letters in a phone number are not punctuation: refused, not guessed.
  EXPECT_TRUE(HasProblem(read, "organizations[0]", "phones[1].number has an invalid character"));
  EXPECT_EQ(read.data.organizations.size(), 0u);
  EXPECT_EQ(read.services_skipped, 1);  // with its organization
}

TEST(Hsds, AtMostAThousandProblemsAreListedAndTheRestCounted) {
  std::string doc = "[";
  for (int i = 0; i < 1500; ++i) {
    absl::StrAppend(&doc, i ? "," : "", "{\"id\": \"org-", i, "\", \"name\": \"\"}");
  }
  doc += "]";
  const HsdsRead read = ReadHsds(doc, WashingtonCounties());
  v1::ImportHsdsResponse resp;
  read.report.Fill(&resp);
  EXPECT_EQ(resp.problems_size(), 1000);
  EXPECT_EQ(resp.problems_not_listed(), 500);
  EXPECT_EQ(resp.problems(999).path(), "organizations[999]");
  EXPECT_EQ(read.organizations_skipped, 1500);
}

}  // namespace
}  // namespace safeharbor::directory
