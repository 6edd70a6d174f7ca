#include "services/directory/hsds.h"

#include <map>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "services/directory/validation.h"

namespace safeharbor::directory {
namespace {

using absl::StrCat;
using nlohmann::json;

constexpr char kTaxonomy[] = "safeharbor";

struct Named {
  int value;
  const char* name;
};
constexpr Named kCategories[] = {
    {v1::SERVICE_CATEGORY_CRISIS_RESIDENTIAL_CENTER, "crisis_residential_center"},
    {v1::SERVICE_CATEGORY_HOPE_CENTER, "hope_center"},
    {v1::SERVICE_CATEGORY_RECEIVING_CENTER, "receiving_center"},
    {v1::SERVICE_CATEGORY_SPECIALIZED_FOSTER_HOME, "specialized_foster_home"},
    {v1::SERVICE_CATEGORY_THERAPEUTIC_GROUP_HOME, "therapeutic_group_home"},
    {v1::SERVICE_CATEGORY_EMERGENCY_YOUTH_SHELTER, "emergency_youth_shelter"},
    {v1::SERVICE_CATEGORY_CSEC_ADVOCACY, "csec_advocacy"},
    {v1::SERVICE_CATEGORY_MENTAL_HEALTH, "mental_health"},
    {v1::SERVICE_CATEGORY_SUBSTANCE_USE_TREATMENT, "substance_use_treatment"},
    {v1::SERVICE_CATEGORY_MEDICAL_FORENSIC_EXAM, "medical_forensic_exam"},
    {v1::SERVICE_CATEGORY_LEGAL_ADVOCACY, "legal_advocacy"},
    {v1::SERVICE_CATEGORY_EDUCATION_EMPLOYMENT, "education_employment"},
    {v1::SERVICE_CATEGORY_FAMILY_SUPPORT, "family_support"},
    {v1::SERVICE_CATEGORY_SECURE_CRISIS_RESIDENTIAL_CENTER, "secure_crisis_residential_center"},
};
constexpr Named kKinds[] = {
    {v1::ORGANIZATION_KIND_SERVICE_PROVIDER, "service_provider"},
    {v1::ORGANIZATION_KIND_LAW_ENFORCEMENT_AGENCY, "law_enforcement_agency"},
    {v1::ORGANIZATION_KIND_COURT, "court"},
    {v1::ORGANIZATION_KIND_STATE_AGENCY, "state_agency"},
    {v1::ORGANIZATION_KIND_CHILD_WELFARE_OFFICE, "child_welfare_office"},
};
constexpr Named kGenders[] = {
    {v1::GENDER_FEMALE, "female"}, {v1::GENDER_MALE, "male"}, {v1::GENDER_NONBINARY, "nonbinary"}};
constexpr Named kStatuses[] = {
    {v1::SERVICE_STATUS_ACTIVE, "active"},
    {v1::SERVICE_STATUS_INACTIVE, "inactive"},
    {v1::SERVICE_STATUS_TEMPORARILY_CLOSED, "temporarily closed"},
    {v1::SERVICE_STATUS_DEFUNCT, "defunct"},
};
constexpr const char* kDays[] = {"MO", "TU", "WE", "TH", "FR", "SA", "SU"};

template <size_t N>
const char* NameOf(const Named (&table)[N], int value) {
  for (const auto& e : table) {
    if (e.value == value) return e.name;
  }
  return "";
}
template <size_t N>
int ValueOf(const Named (&table)[N], absl::string_view name) {
  for (const auto& e : table) {
    if (absl::EqualsIgnoreCase(e.name, name)) return e.value;
  }
  return 0;
}

// Category from a 211 record's words when it carries no safeharbor attribute.
int InferCategory(const std::string& text) {
  const std::string t = absl::AsciiStrToLower(text);
  struct Rule {
    const char* word;
    int category;
  };
  static constexpr Rule kRules[] = {
      {"hope center", v1::SERVICE_CATEGORY_HOPE_CENTER},
      {"crisis residential", v1::SERVICE_CATEGORY_CRISIS_RESIDENTIAL_CENTER},
      {"receiving center", v1::SERVICE_CATEGORY_RECEIVING_CENTER},
      {"foster", v1::SERVICE_CATEGORY_SPECIALIZED_FOSTER_HOME},
      {"group home", v1::SERVICE_CATEGORY_THERAPEUTIC_GROUP_HOME},
      {"shelter", v1::SERVICE_CATEGORY_EMERGENCY_YOUTH_SHELTER},
      {"exploitation", v1::SERVICE_CATEGORY_CSEC_ADVOCACY},
      {"trafficking", v1::SERVICE_CATEGORY_CSEC_ADVOCACY},
      {"advoca", v1::SERVICE_CATEGORY_CSEC_ADVOCACY},
      {"mental", v1::SERVICE_CATEGORY_MENTAL_HEALTH},
      {"counsel", v1::SERVICE_CATEGORY_MENTAL_HEALTH},
      {"substance", v1::SERVICE_CATEGORY_SUBSTANCE_USE_TREATMENT},
      {"addiction", v1::SERVICE_CATEGORY_SUBSTANCE_USE_TREATMENT},
      {"legal", v1::SERVICE_CATEGORY_LEGAL_ADVOCACY},
      {"medical", v1::SERVICE_CATEGORY_MEDICAL_FORENSIC_EXAM},
      {"clinic", v1::SERVICE_CATEGORY_MEDICAL_FORENSIC_EXAM},
      {"education", v1::SERVICE_CATEGORY_EDUCATION_EMPLOYMENT},
      {"employment", v1::SERVICE_CATEGORY_EDUCATION_EMPLOYMENT},
      {"family", v1::SERVICE_CATEGORY_FAMILY_SUPPORT},
  };
  for (const auto& r : kRules) {
    if (absl::StrContains(t, r.word)) return r.category;
  }
  return 0;
}

// Checked accessors: a wrong type is an error naming the path, never an exception.
class Reader {
 public:
  absl::Status error;

  std::string Str(const json& obj, const char* key, const std::string& path) {
    if (!obj.contains(key) || obj[key].is_null()) return "";
    if (!obj[key].is_string()) {
      Fail(StrCat(path, ".", key, " must be a string"));
      return "";
    }
    return obj[key].get<std::string>();
  }
  double Num(const json& obj, const char* key, const std::string& path, double dflt) {
    if (!obj.contains(key) || obj[key].is_null()) return dflt;
    if (obj[key].is_number()) return obj[key].get<double>();
    if (obj[key].is_string()) {  // Some exports quote coordinates.
      try {
        return std::stod(obj[key].get<std::string>());
      } catch (...) {
      }
    }
    Fail(StrCat(path, ".", key, " must be a number"));
    return dflt;
  }
  const json& Arr(const json& obj, const char* key, const std::string& path) {
    static const json kEmpty = json::array();
    if (!obj.contains(key) || obj[key].is_null()) return kEmpty;
    if (!obj[key].is_array()) {
      Fail(StrCat(path, ".", key, " must be an array"));
      return kEmpty;
    }
    return obj[key];
  }
  void Fail(std::string message) {
    if (error.ok()) error = absl::InvalidArgumentError(std::move(message));
  }
};

std::string NormalizeId(std::string id) {
  id = absl::AsciiStrToLower(id);
  for (char& c : id) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-')) c = '-';
  }
  if (id.size() > 63) id.resize(63);
  return id;
}

// safeharbor attribute codes of an object.
std::vector<std::string> Codes(Reader& rd, const json& obj, const std::string& path) {
  std::vector<std::string> out;
  const json& attrs = rd.Arr(obj, "attributes", path);
  for (size_t i = 0; i < attrs.size(); ++i) {
    const json& a = attrs[i];
    if (!a.is_object() || !a.contains("taxonomy_term") || !a["taxonomy_term"].is_object()) {
      continue;
    }
    const json& term = a["taxonomy_term"];
    const std::string p = StrCat(path, ".attributes[", i, "].taxonomy_term");
    std::string code = rd.Str(term, "code", p);
    std::string taxonomy = rd.Str(term, "taxonomy", p);
    if (taxonomy == kTaxonomy || absl::StartsWith(code, "safeharbor:")) {
      if (absl::StartsWith(code, "safeharbor:")) code = code.substr(11);
      out.push_back(code);
    } else {
      out.push_back(StrCat("term:", rd.Str(term, "name", p), " ", code));
    }
  }
  return out;
}

void ReadPhones(Reader& rd, const json& obj, const std::string& path,
                google::protobuf::RepeatedPtrField<v1::Phone>* out) {
  const json& phones = rd.Arr(obj, "phones", path);
  for (size_t i = 0; i < phones.size(); ++i) {
    const std::string p = StrCat(path, ".phones[", i, "]");
    if (!phones[i].is_object()) {
      rd.Fail(StrCat(p, " must be an object"));
      return;
    }
    auto* ph = out->Add();
    ph->set_number(rd.Str(phones[i], "number", p));
    ph->set_description(rd.Str(phones[i], "description", p));
  }
}

absl::Status WithPath(const absl::Status& st, const std::string& path) {
  if (st.ok()) return st;
  return absl::InvalidArgumentError(StrCat(path, ": ", st.message()));
}

// Languages: plain codes or {code} objects, as ISO 639-1.
void ReadLanguages(Reader& rd, const json& js, const std::string& path, v1::Service* s) {
  const json& langs = rd.Arr(js, "languages", path);
  for (size_t i = 0; i < langs.size(); ++i) {
    const std::string p = StrCat(path, ".languages[", i, "]");
    std::string code = langs[i].is_string()
                           ? langs[i].get<std::string>()
                           : (langs[i].is_object() ? rd.Str(langs[i], "code", p) : "");
    s->add_languages(absl::AsciiStrToLower(code.substr(0, 2)));
  }
}

// The "safeharbor" attribute codes: category, flags, genders, time zone; else the category is
// inferred from the service's words.
absl::Status ReadAttributes(Reader& rd, const json& js, const std::string& path, v1::Service* s) {
  std::string words = StrCat(s->name(), " ", s->description());
  for (const std::string& code : Codes(rd, js, path)) {
    if (absl::StartsWith(code, "category:")) {
      s->set_category(static_cast<v1::ServiceCategory>(ValueOf(kCategories, code.substr(9))));
      if (s->category() == 0) {
        return absl::InvalidArgumentError(StrCat(path, ": unknown category '", code, "'"));
      }
    } else if (code == "csec_specialized") {
      s->set_csec_specialized(true);
    } else if (code == "trauma_informed") {
      s->set_trauma_informed(true);
    } else if (code == "accepting_referrals") {
      s->set_accepting_referrals(true);
    } else if (code == "open_24_7") {
      s->mutable_schedule()->set_open_24_7(true);
    } else if (absl::StartsWith(code, "gender:")) {
      s->add_genders_served(static_cast<v1::Gender>(ValueOf(kGenders, code.substr(7))));
    } else if (absl::StartsWith(code, "time_zone:")) {
      s->mutable_schedule()->set_time_zone(code.substr(10));
    } else if (absl::StartsWith(code, "term:")) {
      absl::StrAppend(&words, " ", code.substr(5));
    }
  }
  if (s->category() == 0) s->set_category(static_cast<v1::ServiceCategory>(InferCategory(words)));
  if (s->category() == 0) {
    return absl::InvalidArgumentError(
        StrCat(path,
               ": no service category; add an attribute with taxonomy 'safeharbor' and code "
               "'category:<name>' (e.g. category:emergency_youth_shelter)"));
  }
  return absl::OkStatus();
}

// Weekly schedules (opens_at/closes_at on the days of byday).
absl::Status ReadSchedules(Reader& rd, const json& js, const std::string& path, v1::Service* s) {
  const json& schedules = rd.Arr(js, "schedules", path);
  for (size_t i = 0; i < schedules.size(); ++i) {
    const std::string p = StrCat(path, ".schedules[", i, "]");
    const json& sc = schedules[i];
    if (!sc.is_object()) return absl::InvalidArgumentError(StrCat(p, " must be an object"));
    const std::string freq = absl::AsciiStrToUpper(rd.Str(sc, "freq", p));
    if (!freq.empty() && freq != "WEEKLY") {
      return absl::InvalidArgumentError(StrCat(p, ".freq: only WEEKLY schedules are supported"));
    }
    std::string opens = rd.Str(sc, "opens_at", p).substr(0, 5);
    std::string closes = rd.Str(sc, "closes_at", p).substr(0, 5);
    for (absl::string_view day : absl::StrSplit(rd.Str(sc, "byday", p), ',', absl::SkipEmpty())) {
      int d = 0;
      for (int k = 0; k < 7; ++k) {
        if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(day), kDays[k])) d = k + 1;
      }
      if (d == 0) {
        return absl::InvalidArgumentError(StrCat(p, ".byday: unknown day '", day, "'"));
      }
      auto* h = s->mutable_schedule()->add_weekly_hours();
      h->set_day(static_cast<v1::DayOfWeek>(d));
      h->set_opens_at(opens);
      h->set_closes_at(closes);
    }
  }
  return absl::OkStatus();
}

// Counties served (by FIPS extent or name); the organization's county when none is given.
absl::Status ReadServiceAreas(Reader& rd, const json& js, const std::string& path,
                              const v1::Organization& org, const CountyTable& counties,
                              v1::Service* s) {
  const json& areas = rd.Arr(js, "service_areas", path);
  for (size_t i = 0; i < areas.size(); ++i) {
    const std::string p = StrCat(path, ".service_areas[", i, "]");
    if (!areas[i].is_object()) return absl::InvalidArgumentError(StrCat(p, " must be an object"));
    std::string extent = rd.Str(areas[i], "extent", p);
    const CountyInfo* county = counties.Find(extent);
    if (county == nullptr) county = counties.FindByName(rd.Str(areas[i], "name", p));
    if (county == nullptr) {
      return absl::InvalidArgumentError(
          StrCat(p,
                 ": not a known county (give extent_type 'text' with the FIPS code as extent, "
                 "or the county name as name)"));
    }
    s->add_service_area_county_fips(county->fips);
  }
  if (s->service_area_county_fips_size() == 0 && !org.county_fips().empty()) {
    s->add_service_area_county_fips(org.county_fips());
  }
  return absl::OkStatus();
}

// The first service_at_location's location, else the organization's first.
void ReadServiceLocation(Reader& rd, const json& js, const std::string& path,
                         const v1::Organization& org, v1::Service* s) {
  const json& sal = rd.Arr(js, "service_at_locations", path);
  for (size_t i = 0; i < sal.size() && s->location_id().empty(); ++i) {
    const std::string p = StrCat(path, ".service_at_locations[", i, "]");
    if (!sal[i].is_object()) continue;
    std::string loc = rd.Str(sal[i], "location_id", p);
    if (loc.empty() && sal[i].contains("location") && sal[i]["location"].is_object()) {
      loc = rd.Str(sal[i]["location"], "id", p + ".location");
    }
    s->set_location_id(NormalizeId(loc));
  }
  if (s->location_id().empty() && org.locations_size() > 0) {
    s->set_location_id(org.locations(0).id());
  }
}

absl::Status ReadService(Reader& rd, const json& js, const std::string& path,
                         const v1::Organization& org, const CountyTable& counties, v1::Service* s) {
  if (!js.is_object()) return absl::InvalidArgumentError(StrCat(path, " must be an object"));
  s->set_id(NormalizeId(rd.Str(js, "id", path)));
  s->set_organization_id(org.id());
  s->set_name(rd.Str(js, "name", path));
  s->set_description(rd.Str(js, "description", path));
  s->set_eligibility_description(rd.Str(js, "eligibility_description", path));
  const std::string status = rd.Str(js, "status", path);
  s->set_status(
      static_cast<v1::ServiceStatus>(ValueOf(kStatuses, status.empty() ? "active" : status)));
  s->set_minimum_age(static_cast<int32_t>(rd.Num(js, "minimum_age", path, 0)));
  s->set_maximum_age(static_cast<int32_t>(rd.Num(js, "maximum_age", path, 30)));
  const std::string assured = rd.Str(js, "assured_date", path);
  if (!assured.empty()) {
    absl::Time t;
    std::string err;
    if (!absl::ParseTime("%Y-%m-%d", assured, absl::UTCTimeZone(), &t, &err)) {
      return absl::InvalidArgumentError(StrCat(path, ".assured_date must be YYYY-MM-DD"));
    }
    *s->mutable_last_verified_time() = ToProtoTime(t);
  }
  ReadLanguages(rd, js, path, s);
  s->mutable_schedule()->set_time_zone(kDefaultHsdsTimeZone);
  SH_RETURN_IF_ERROR(ReadAttributes(rd, js, path, s));
  SH_RETURN_IF_ERROR(ReadSchedules(rd, js, path, s));
  SH_RETURN_IF_ERROR(ReadServiceAreas(rd, js, path, org, counties, s));
  ReadServiceLocation(rd, js, path, org, s);
  if (!rd.error.ok()) return rd.error;
  return WithPath(ValidateService(*s, counties, true), path);
}

absl::Status ReadOrganization(Reader& rd, const json& js, const std::string& path,
                              const CountyTable& counties, HsdsData* out) {
  if (!js.is_object()) return absl::InvalidArgumentError(StrCat(path, " must be an object"));
  v1::Organization org;
  org.set_id(NormalizeId(rd.Str(js, "id", path)));
  org.set_name(rd.Str(js, "name", path));
  org.set_description(rd.Str(js, "description", path));
  org.set_email(rd.Str(js, "email", path));
  org.set_website(rd.Str(js, "website", path));
  org.set_kind(v1::ORGANIZATION_KIND_SERVICE_PROVIDER);
  for (const std::string& code : Codes(rd, js, path)) {
    if (absl::StartsWith(code, "organization_kind:")) {
      org.set_kind(static_cast<v1::OrganizationKind>(ValueOf(kKinds, code.substr(18))));
    } else if (absl::StartsWith(code, "county_fips:")) {
      org.set_county_fips(code.substr(12));
    }
  }
  ReadPhones(rd, js, path, org.mutable_phones());
  const json& contacts = rd.Arr(js, "contacts", path);
  for (size_t i = 0; i < contacts.size(); ++i) {
    const std::string p = StrCat(path, ".contacts[", i, "]");
    if (!contacts[i].is_object())
      return absl::InvalidArgumentError(StrCat(p, " must be an object"));
    auto* c = org.add_contacts();
    c->set_name(rd.Str(contacts[i], "name", p));
    c->set_title(rd.Str(contacts[i], "title", p));
    c->set_email(rd.Str(contacts[i], "email", p));
    ReadPhones(rd, contacts[i], p, c->mutable_phones());
  }
  const json& locations = rd.Arr(js, "locations", path);
  for (size_t i = 0; i < locations.size(); ++i) {
    const std::string p = StrCat(path, ".locations[", i, "]");
    const json& lj = locations[i];
    if (!lj.is_object()) return absl::InvalidArgumentError(StrCat(p, " must be an object"));
    auto* l = org.add_locations();
    l->set_id(NormalizeId(rd.Str(lj, "id", p)));
    l->set_name(rd.Str(lj, "name", p));
    l->set_latitude(rd.Num(lj, "latitude", p, 0));
    l->set_longitude(rd.Num(lj, "longitude", p, 0));
    const json& addrs = rd.Arr(lj, "addresses", p);
    if (!addrs.empty() && addrs[0].is_object()) {
      const std::string ap = p + ".addresses[0]";
      l->set_address_1(rd.Str(addrs[0], "address_1", ap));
      l->set_city(rd.Str(addrs[0], "city", ap));
      l->set_state_province(rd.Str(addrs[0], "state_province", ap));
      l->set_postal_code(rd.Str(addrs[0], "postal_code", ap));
    }
    for (const std::string& code : Codes(rd, lj, p)) {
      if (absl::StartsWith(code, "county_fips:")) l->set_county_fips(code.substr(12));
    }
  }
  if (!rd.error.ok()) return rd.error;
  SH_RETURN_IF_ERROR(WithPath(ValidateOrganization(org, counties, true), path));
  const json& services = rd.Arr(js, "services", path);
  for (size_t i = 0; i < services.size(); ++i) {
    v1::Service s;
    if (auto st =
            ReadService(rd, services[i], StrCat(path, ".services[", i, "]"), org, counties, &s);
        !st.ok()) {
      return st;
    }
    out->services.push_back(std::move(s));
  }
  out->organizations.push_back(std::move(org));
  return rd.error;
}

json AttributesJson(const std::vector<std::string>& codes) {
  json attrs = json::array();
  for (const auto& code : codes) {
    attrs.push_back({{"taxonomy_term", {{"taxonomy", kTaxonomy}, {"code", code}}}});
  }
  return attrs;
}

json PhonesJson(const google::protobuf::RepeatedPtrField<v1::Phone>& phones) {
  json out = json::array();
  for (const auto& p : phones)
    out.push_back({{"number", p.number()}, {"description", p.description()}});
  return out;
}

json ServiceJson(const v1::Service& s, const CountyTable& counties) {
  std::vector<std::string> codes = {StrCat("category:", NameOf(kCategories, s.category()))};
  if (s.csec_specialized()) codes.push_back("csec_specialized");
  if (s.trauma_informed()) codes.push_back("trauma_informed");
  if (s.accepting_referrals()) codes.push_back("accepting_referrals");
  if (s.schedule().open_24_7()) codes.push_back("open_24_7");
  for (int g : s.genders_served()) codes.push_back(StrCat("gender:", NameOf(kGenders, g)));
  codes.push_back(StrCat("time_zone:", s.schedule().time_zone()));
  json langs = json::array();
  for (const auto& l : s.languages()) langs.push_back({{"code", l}});
  json schedules = json::array();
  for (const auto& h : s.schedule().weekly_hours()) {
    schedules.push_back({{"freq", "WEEKLY"},
                         {"byday", kDays[static_cast<int>(h.day()) - 1]},
                         {"opens_at", h.opens_at()},
                         {"closes_at", h.closes_at()}});
  }
  json areas = json::array();
  for (const auto& fips : s.service_area_county_fips()) {
    const CountyInfo* c = counties.Find(fips);
    areas.push_back({{"name", c ? StrCat(c->name, " County") : fips},
                     {"extent_type", "text"},
                     {"extent", fips}});
  }
  json out = {{"id", s.id()},
              {"organization_id", s.organization_id()},
              {"name", s.name()},
              {"description", s.description()},
              {"status", NameOf(kStatuses, s.status())},
              {"minimum_age", s.minimum_age()},
              {"maximum_age", s.maximum_age()},
              {"eligibility_description", s.eligibility_description()},
              {"languages", langs},
              {"schedules", schedules},
              {"service_areas", areas},
              {"service_at_locations", json::array({{{"location_id", s.location_id()}}})},
              {"attributes", AttributesJson(codes)}};
  if (s.has_last_verified_time()) {
    out["assured_date"] =
        absl::FormatTime("%Y-%m-%d", FromProtoTime(s.last_verified_time()), absl::UTCTimeZone());
  }
  return out;
}

}  // namespace

absl::StatusOr<HsdsData> ParseHsds(absl::string_view text, const CountyTable& counties) {
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError("hsds_json is not valid JSON");
  const json* orgs = nullptr;
  if (doc.is_array()) {
    orgs = &doc;
  } else if (doc.is_object() && doc.contains("organizations") && doc["organizations"].is_array()) {
    orgs = &doc["organizations"];
  } else {
    return absl::InvalidArgumentError(
        "hsds_json must be an array of organizations or an object with an 'organizations' array");
  }
  if (orgs->size() > 100000) {
    return absl::InvalidArgumentError("hsds_json has more than 100000 organizations");
  }
  HsdsData data;
  Reader rd;
  for (size_t i = 0; i < orgs->size(); ++i) {
    if (auto st =
            ReadOrganization(rd, (*orgs)[i], StrCat("organizations[", i, "]"), counties, &data);
        !st.ok()) {
      return st;
    }
  }
  std::map<std::string, int> seen;
  for (const auto& o : data.organizations) {
    if (seen[StrCat("o:", o.id())]++ > 0) {
      return absl::InvalidArgumentError(StrCat("organization id '", o.id(), "' appears twice"));
    }
  }
  for (const auto& s : data.services) {
    if (seen[StrCat("s:", s.id())]++ > 0) {
      return absl::InvalidArgumentError(StrCat("service id '", s.id(), "' appears twice"));
    }
  }
  return data;
}

std::string WriteHsds(const std::vector<v1::Organization>& organizations,
                      const std::vector<v1::Service>& services, const CountyTable& counties) {
  std::map<std::string, json> by_org;
  for (const auto& s : services) by_org[s.organization_id()].push_back(ServiceJson(s, counties));
  json orgs = json::array();
  for (const auto& o : organizations) {
    std::vector<std::string> codes = {StrCat("organization_kind:", NameOf(kKinds, o.kind()))};
    if (!o.county_fips().empty()) codes.push_back(StrCat("county_fips:", o.county_fips()));
    json contacts = json::array();
    for (const auto& c : o.contacts()) {
      contacts.push_back({{"name", c.name()},
                          {"title", c.title()},
                          {"email", c.email()},
                          {"phones", PhonesJson(c.phones())}});
    }
    json locations = json::array();
    for (const auto& l : o.locations()) {
      json loc = {{"id", l.id()},
                  {"location_type", "physical"},
                  {"name", l.name()},
                  {"latitude", l.latitude()},
                  {"longitude", l.longitude()},
                  {"addresses", json::array({{{"address_1", l.address_1()},
                                              {"city", l.city()},
                                              {"state_province", l.state_province()},
                                              {"postal_code", l.postal_code()},
                                              {"country", "US"},
                                              {"address_type", "physical"}}})}};
      if (!l.county_fips().empty()) {
        loc["attributes"] = AttributesJson({StrCat("county_fips:", l.county_fips())});
      }
      locations.push_back(std::move(loc));
    }
    auto it = by_org.find(o.id());
    orgs.push_back({{"id", o.id()},
                    {"name", o.name()},
                    {"description", o.description()},
                    {"email", o.email()},
                    {"website", o.website()},
                    {"phones", PhonesJson(o.phones())},
                    {"contacts", contacts},
                    {"locations", locations},
                    {"attributes", AttributesJson(codes)},
                    {"services", it == by_org.end() ? json::array() : it->second}});
  }
  json doc = {{"hsds_version", "3.1"},
              {"generator", "SafeHarbor Network directory-service"},
              {"organizations", orgs}};
  return doc.dump(2);
}

}  // namespace safeharbor::directory
