#include "services/directory/validation.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "services/directory/schedule.h"

namespace safeharbor::directory {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;

absl::Status MaxLen(absl::string_view value, size_t max, absl::string_view field) {
  if (value.size() > max) {
    return InvalidArgumentError(StrCat(field, " must be at most ", max, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status Required(absl::string_view value, size_t max, absl::string_view field) {
  if (absl::StripAsciiWhitespace(value).empty()) {
    return InvalidArgumentError(StrCat(field, " is required"));
  }
  return MaxLen(value, max, field);
}

absl::Status Email(absl::string_view value, absl::string_view field) {
  if (value.empty()) return absl::OkStatus();
  auto at = value.find('@');
  if (value.size() > 254 || at == absl::string_view::npos || at == 0 || at == value.size() - 1 ||
      absl::StrContains(value, " ")) {
    return InvalidArgumentError(StrCat(field, " must be an email address"));
  }
  return absl::OkStatus();
}

absl::Status Phone(const v1::Phone& p, absl::string_view field) {
  int digits = 0;
  for (size_t i = 0; i < p.number().size(); ++i) {
    char c = p.number()[i];
    if (absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      ++digits;
    } else if (!(c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' ||
                 (c == '+' && i == 0))) {
      return InvalidArgumentError(StrCat(field, ".number has an invalid character"));
    }
  }
  if (digits < 7 || digits > 15) {
    return InvalidArgumentError(StrCat(field, ".number must have 7 to 15 digits"));
  }
  return MaxLen(p.description(), 200, StrCat(field, ".description"));
}

// Collects every problem of a record, in the order they are checked.
struct Add {
  std::vector<absl::Status>* out;
  void operator()(absl::Status st) const {
    if (!st.ok()) out->push_back(std::move(st));
  }
};

void Phones(const google::protobuf::RepeatedPtrField<v1::Phone>& phones, absl::string_view field,
            Add add) {
  if (phones.size() > 20) add(InvalidArgumentError(StrCat(field, " has more than 20 entries")));
  for (int i = 0; i < phones.size() && i < 20; ++i)
    add(Phone(phones[i], StrCat(field, "[", i, "]")));
}

absl::Status First(const std::vector<absl::Status>& problems) {
  return problems.empty() ? absl::OkStatus() : problems.front();
}

absl::Status County(absl::string_view fips, const CountyTable& counties, absl::string_view field,
                    bool required) {
  if (fips.empty() && !required) return absl::OkStatus();
  if (counties.Find(fips) == nullptr) {
    return InvalidArgumentError(StrCat(field, " must be a known five-digit county FIPS code, got '",
                                       fips.substr(0, 16), "'"));
  }
  return absl::OkStatus();
}

void Location(const v1::Location& l, const CountyTable& counties, absl::string_view f, Add add) {
  add(ValidateId(l.id(), StrCat(f, ".id")));
  add(ValidateLatLng(l.latitude(), l.longitude(), StrCat(f, ".")));
  for (const auto& [value, name] : {std::pair{&l.name(), "name"},
                                    {&l.address_1(), "address_1"},
                                    {&l.city(), "city"},
                                    {&l.state_province(), "state_province"},
                                    {&l.postal_code(), "postal_code"}}) {
    add(MaxLen(*value, 200, StrCat(f, ".", name)));
  }
  add(County(l.county_fips(), counties, StrCat(f, ".county_fips"), false));
}

void Contacts(const v1::Organization& org, Add add) {
  if (org.contacts_size() > 50) {
    add(InvalidArgumentError("organization.contacts has more than 50 entries"));
  }
  for (int i = 0; i < org.contacts_size() && i < 50; ++i) {
    const auto& c = org.contacts(i);
    const std::string f = StrCat("organization.contacts[", i, "]");
    add(MaxLen(c.name(), 200, StrCat(f, ".name")));
    add(MaxLen(c.title(), 200, StrCat(f, ".title")));
    add(Email(c.email(), StrCat(f, ".email")));
    Phones(c.phones(), StrCat(f, ".phones"), add);
  }
}

}  // namespace

bool IsRoutableCategory(v1::ServiceCategory category) {
  return category != v1::SERVICE_CATEGORY_UNSPECIFIED &&
         category != v1::SERVICE_CATEGORY_SECURE_CRISIS_RESIDENTIAL_CENTER &&
         v1::ServiceCategory_IsValid(category);
}

std::vector<absl::Status> OrganizationProblems(const v1::Organization& org,
                                               const CountyTable& counties, bool require_id) {
  std::vector<absl::Status> problems;
  const Add add{&problems};
  if (require_id || !org.id().empty()) add(ValidateId(org.id(), "organization.id"));
  if (org.kind() == v1::ORGANIZATION_KIND_UNSPECIFIED ||
      !v1::OrganizationKind_IsValid(org.kind())) {
    add(InvalidArgumentError("organization.kind is required"));
  }
  add(Required(org.name(), 200, "organization.name"));
  add(MaxLen(org.description(), 4000, "organization.description"));
  add(MaxLen(org.website(), 500, "organization.website"));
  add(Email(org.email(), "organization.email"));
  add(County(org.county_fips(), counties, "organization.county_fips", false));
  if (org.locations_size() > 50) {
    add(InvalidArgumentError("organization.locations has more than 50 entries"));
  }
  std::set<std::string> ids;
  for (int i = 0; i < org.locations_size() && i < 50; ++i) {
    const std::string f = StrCat("organization.locations[", i, "]");
    Location(org.locations(i), counties, f, add);
    if (!ids.insert(org.locations(i).id()).second) {
      add(InvalidArgumentError(StrCat(f, ".id '", org.locations(i).id(), "' is repeated")));
    }
  }
  Contacts(org, add);
  Phones(org.phones(), "organization.phones", add);
  return problems;
}

absl::Status ValidateOrganization(const v1::Organization& org, const CountyTable& counties,
                                  bool require_id) {
  return First(OrganizationProblems(org, counties, require_id));
}

namespace {

// Genders served (distinct, specified) and languages (ISO 639-1).
void ServedPeople(const v1::Service& s, Add add) {
  std::set<int> genders;
  for (int i = 0; i < s.genders_served_size(); ++i) {
    const auto g = s.genders_served(i);
    if (g == v1::GENDER_UNSPECIFIED || !v1::Gender_IsValid(g) || !genders.insert(g).second) {
      add(InvalidArgumentError(
          StrCat("service.genders_served[", i, "] must be a distinct, specified gender")));
    }
  }
  if (s.languages_size() > 30)
    add(InvalidArgumentError("service.languages has more than 30 entries"));
  for (int i = 0; i < s.languages_size() && i < 30; ++i) {
    const auto& l = s.languages(i);
    if (l.size() != 2 || !absl::ascii_islower(l[0]) || !absl::ascii_islower(l[1])) {
      add(InvalidArgumentError(
          StrCat("service.languages[", i, "] must be a lower-case ISO 639-1 code such as 'en'")));
    }
  }
}

void Ages(const v1::Service& s, Add add) {
  if (s.minimum_age() < 0 || s.minimum_age() > 30) {
    add(InvalidArgumentError("service.minimum_age must be between 0 and 30"));
  }
  if (s.maximum_age() < 0 || s.maximum_age() > 30) {
    add(InvalidArgumentError("service.maximum_age must be between 0 and 30"));
  }
  if (s.minimum_age() > s.maximum_age()) {
    add(InvalidArgumentError("service.minimum_age must not exceed service.maximum_age"));
  }
}

void ScheduleAndArea(const v1::Service& s, const CountyTable& counties, Add add) {
  absl::TimeZone tz;
  if (s.schedule().time_zone().empty() || !absl::LoadTimeZone(s.schedule().time_zone(), &tz)) {
    add(InvalidArgumentError(
        "service.schedule.time_zone must be an IANA time zone such as America/Los_Angeles"));
  }
  if (auto iv = OpenIntervals(s.schedule()); !iv.ok()) {
    add(InvalidArgumentError(StrCat("service.", iv.status().message())));
  }
  if (s.service_area_county_fips_size() == 0) {
    add(InvalidArgumentError("service.service_area_county_fips needs at least one county"));
  }
  if (s.service_area_county_fips_size() > 200) {
    add(InvalidArgumentError("service.service_area_county_fips has more than 200 entries"));
  }
  for (int i = 0; i < s.service_area_county_fips_size() && i < 200; ++i) {
    add(County(s.service_area_county_fips(i), counties,
               StrCat("service.service_area_county_fips[", i, "]"), true));
  }
}

}  // namespace

std::vector<absl::Status> ServiceProblems(const v1::Service& s, const CountyTable& counties,
                                          bool require_id) {
  std::vector<absl::Status> problems;
  const Add add{&problems};
  if (require_id || !s.id().empty()) add(ValidateId(s.id(), "service.id"));
  add(ValidateId(s.organization_id(), "service.organization_id"));
  add(Required(s.name(), 200, "service.name"));
  add(MaxLen(s.description(), 4000, "service.description"));
  add(MaxLen(s.eligibility_description(), 4000, "service.eligibility_description"));
  if (s.category() == v1::SERVICE_CATEGORY_UNSPECIFIED ||
      !v1::ServiceCategory_IsValid(s.category())) {
    add(InvalidArgumentError("service.category is required"));
  }
  Ages(s, add);
  ServedPeople(s, add);
  ScheduleAndArea(s, counties, add);
  if (s.status() == v1::SERVICE_STATUS_UNSPECIFIED || !v1::ServiceStatus_IsValid(s.status())) {
    add(InvalidArgumentError("service.status is required"));
  }
  add(ValidateId(s.location_id(), "service.location_id"));
  if (s.has_last_verified_time()) {
    const auto& t = s.last_verified_time();
    if (t.seconds() < 0 || t.seconds() > 253402300799 || t.nanos() < 0 || t.nanos() > 999999999) {
      add(InvalidArgumentError("service.last_verified_time is not a valid timestamp"));
    }
  }
  return problems;
}

absl::Status ValidateService(const v1::Service& s, const CountyTable& counties, bool require_id) {
  return First(ServiceProblems(s, counties, require_id));
}

absl::Status ValidateSearch(const v1::SearchServicesRequest& req, const CountyTable& counties) {
  if (req.county_fips().empty() && !req.has_near()) {
    return InvalidArgumentError("one of county_fips or near is required");
  }
  SH_RETURN_IF_ERROR(County(req.county_fips(), counties, "county_fips", false));
  if (req.has_near()) {
    if (!(req.near().latitude() >= -90 && req.near().latitude() <= 90)) {
      return InvalidArgumentError("near.latitude must be between -90 and 90");
    }
    if (!(req.near().longitude() >= -180 && req.near().longitude() <= 180)) {
      return InvalidArgumentError("near.longitude must be between -180 and 180");
    }
    if (req.radius_meters() < 1 || req.radius_meters() > 1000000) {
      return InvalidArgumentError("radius_meters must be between 1 and 1000000 with near");
    }
  } else if (req.radius_meters() != 0) {
    return InvalidArgumentError("radius_meters needs near");
  }
  if (req.categories_size() > 20)
    return InvalidArgumentError("categories has more than 20 entries");
  for (int i = 0; i < req.categories_size(); ++i) {
    const auto c = req.categories(i);
    if (c == v1::SERVICE_CATEGORY_UNSPECIFIED || !v1::ServiceCategory_IsValid(c)) {
      return InvalidArgumentError(StrCat("categories[", i, "] is not a service category"));
    }
  }
  if (req.has_age() && (req.age() < 0 || req.age() > 30)) {
    return InvalidArgumentError("age must be between 0 and 30");
  }
  if (!v1::Gender_IsValid(req.gender())) return InvalidArgumentError("gender is not valid");
  if (!req.language().empty() &&
      (req.language().size() != 2 || !absl::ascii_islower(req.language()[0]) ||
       !absl::ascii_islower(req.language()[1]))) {
    return InvalidArgumentError("language must be a lower-case ISO 639-1 code such as 'es'");
  }
  if (req.has_open_at() &&
      (req.open_at().seconds() < 0 || req.open_at().seconds() > 253402300799)) {
    return InvalidArgumentError("open_at is not a valid timestamp");
  }
  return ValidatePageSize(req.page_size(), 20, 200).status();
}

}  // namespace safeharbor::directory
