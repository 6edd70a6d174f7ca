#include "services/directory/hsds.h"

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
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

// A value without the quotes an export left around it ("\"+44 1234 234567\""); the value
// itself when it has none.
std::string Unquoted(absl::string_view v) {
  static constexpr std::pair<absl::string_view, absl::string_view> kQuotes[] = {
      {"\"", "\""}, {"'", "'"}, {"\xE2\x80\x9C", "\xE2\x80\x9D"}};  // "", '', “”
  absl::string_view cur = v;
  bool any = false;
  for (bool changed = true; changed;) {
    changed = false;
    const absl::string_view t = absl::StripAsciiWhitespace(cur);
    for (const auto& [open, close] : kQuotes) {
      if (t.size() >= open.size() + close.size() && absl::StartsWith(t, open) &&
          absl::EndsWith(t, close)) {
        cur = t.substr(open.size(), t.size() - open.size() - close.size());
        changed = any = true;
        break;
      }
    }
  }
  return std::string(any ? cur : v);
}

// A phone number with its punctuation made plain: slashes, underscores, Unicode dashes and
// non-breaking spaces as '-' and ' ', a "tel:" prefix dropped. Digits are never changed;
// anything else is left for validation to refuse.
std::string PlainPhone(absl::string_view n) {
  n = absl::StripAsciiWhitespace(n);
  if (absl::StartsWithIgnoreCase(n, "tel:")) n.remove_prefix(4);
  static constexpr std::pair<absl::string_view, char> kMapped[] = {
      {"/", '-'},
      {"_", '-'},
      {"\\", '-'},
      {"\t", ' '},
      {"\xE2\x80\x90", '-'},
      {"\xE2\x80\x91", '-'},
      {"\xE2\x80\x92", '-'},  // hyphens, dashes
      {"\xE2\x80\x93", '-'},
      {"\xE2\x80\x94", '-'},
      {"\xE2\x88\x92", '-'},  // en, em, minus
      {"\xC2\xA0", ' '}};     // no-break space
  std::string out;
  while (!n.empty()) {
    bool mapped = false;
    for (const auto& [from, to] : kMapped) {
      if (absl::StartsWith(n, from)) {
        out.push_back(to);
        n.remove_prefix(from.size());
        mapped = true;
        break;
      }
    }
    if (!mapped) {
      out.push_back(n.front());
      n.remove_prefix(1);
    }
  }
  return std::string(absl::StripAsciiWhitespace(out));
}

// A county name as 211 exports write it ("KING COUNTY, WA", "King Co.") without its trimmings.
std::string CountyName(absl::string_view name) {
  std::string n = absl::AsciiStrToLower(absl::StripAsciiWhitespace(name));
  for (bool changed = true; changed;) {
    changed = false;
    for (absl::string_view suffix :
         {", washington", ", wa", " washington", " wa", " county", " co.", " co", ","}) {
      if (absl::EndsWith(n, suffix)) {
        n.resize(n.size() - suffix.size());
        n = std::string(absl::StripAsciiWhitespace(n));
        changed = true;
      }
    }
  }
  return n;
}

// Checked accessors: a wrong type is a problem naming the path, never an exception. Every
// problem goes to the report; a value changed on reading is reported too.
class Reader {
 public:
  explicit Reader(HsdsReport* report) : report_(report) {}

  int64_t problems() const { return report_->problem_count(); }
  HsdsReport& report() { return *report_; }

  std::string Str(const json& obj, const char* key, const std::string& path) {
    if (!obj.contains(key) || obj[key].is_null()) return "";
    if (!obj[key].is_string()) {
      Fail(StrCat(path, ".", key), StrCat(path, ".", key, " must be a string"));
      return "";
    }
    const std::string raw = obj[key].get<std::string>();
    std::string v = Unquoted(raw);
    if (v != raw) {
      report_->Normalized(StrCat(path, ".", key), raw, v, "surrounding_quotes");
    }
    return v;
  }
  double Num(const json& obj, const char* key, const std::string& path, double dflt) {
    if (!obj.contains(key) || obj[key].is_null()) return dflt;
    if (obj[key].is_number()) return obj[key].get<double>();
    if (obj[key].is_string()) {  // Some exports quote coordinates.
      const std::string raw = obj[key].get<std::string>();
      double v = 0;
      if (absl::SimpleAtod(Unquoted(raw), &v)) {
        report_->Normalized(StrCat(path, ".", key), raw, StrCat(v), "number_as_text");
        return v;
      }
    }
    Fail(StrCat(path, ".", key), StrCat(path, ".", key, " must be a number"));
    return dflt;
  }
  const json& Arr(const json& obj, const char* key, const std::string& path) {
    static const json kEmpty = json::array();
    if (!obj.contains(key) || obj[key].is_null()) return kEmpty;
    if (!obj[key].is_array()) {
      Fail(StrCat(path, ".", key), StrCat(path, ".", key, " must be an array"));
      return kEmpty;
    }
    return obj[key];
  }
  void Fail(std::string path, std::string text) {
    report_->Problem(std::move(path), std::move(text));
  }
  // The problems of a record's validation, each at the record's path.
  void FailAll(const std::string& path, const std::vector<absl::Status>& problems,
               absl::string_view except_prefix = "") {
    for (const absl::Status& st : problems) {
      if (!except_prefix.empty() && absl::StartsWith(st.message(), except_prefix)) continue;
      Fail(path, StrCat(path, ": ", st.message()));
    }
  }

 private:
  HsdsReport* report_;
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
      rd.Fail(p, StrCat(p, " must be an object"));
      continue;
    }
    auto* ph = out->Add();
    const std::string number = rd.Str(phones[i], "number", p);
    ph->set_number(PlainPhone(number));
    if (ph->number() != number) {
      rd.report().Normalized(StrCat(p, ".number"), number, ph->number(), "phone_punctuation");
    }
    ph->set_description(rd.Str(phones[i], "description", p));
  }
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
void ReadAttributes(Reader& rd, const json& js, const std::string& path, v1::Service* s) {
  std::string words = StrCat(s->name(), " ", s->description());
  for (const std::string& code : Codes(rd, js, path)) {
    if (absl::StartsWith(code, "category:")) {
      s->set_category(static_cast<v1::ServiceCategory>(ValueOf(kCategories, code.substr(9))));
      if (s->category() == 0) rd.Fail(path, StrCat(path, ": unknown category '", code, "'"));
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
    rd.Fail(path,
            StrCat(path,
                   ": no service category; add an attribute with taxonomy 'safeharbor' and code "
                   "'category:<name>' (e.g. category:emergency_youth_shelter)"));
  }
}

// Weekly schedules (opens_at/closes_at on the days of byday).
void ReadSchedules(Reader& rd, const json& js, const std::string& path, v1::Service* s) {
  const json& schedules = rd.Arr(js, "schedules", path);
  for (size_t i = 0; i < schedules.size(); ++i) {
    const std::string p = StrCat(path, ".schedules[", i, "]");
    const json& sc = schedules[i];
    if (!sc.is_object()) {
      rd.Fail(p, StrCat(p, " must be an object"));
      continue;
    }
    const std::string freq = absl::AsciiStrToUpper(rd.Str(sc, "freq", p));
    if (!freq.empty() && freq != "WEEKLY") {
      rd.Fail(p + ".freq", StrCat(p, ".freq: only WEEKLY schedules are supported"));
      continue;
    }
    std::string opens = rd.Str(sc, "opens_at", p).substr(0, 5);
    std::string closes = rd.Str(sc, "closes_at", p).substr(0, 5);
    for (absl::string_view day : absl::StrSplit(rd.Str(sc, "byday", p), ',', absl::SkipEmpty())) {
      int d = 0;
      for (int k = 0; k < 7; ++k) {
        if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(day), kDays[k])) d = k + 1;
      }
      if (d == 0) {
        rd.Fail(p + ".byday", StrCat(p, ".byday: unknown day '", day, "'"));
        continue;
      }
      auto* h = s->mutable_schedule()->add_weekly_hours();
      h->set_day(static_cast<v1::DayOfWeek>(d));
      h->set_opens_at(opens);
      h->set_closes_at(closes);
    }
  }
}

// A service area's county: the FIPS code as extent (also written as a number or with
// separators), else the county's name (also with "County, WA" trimmings); each normalization
// reported. Null when it is not a known county.
const CountyInfo* AreaCounty(Reader& rd, const json& area, const std::string& p,
                             const CountyTable& counties) {
  std::string extent;
  if (area.contains("extent") && area["extent"].is_number_integer()) {
    extent = StrCat(area["extent"].get<int64_t>());
    if (const CountyInfo* c = counties.Find(extent)) {
      rd.report().Normalized(p + ".extent", area["extent"].dump(), c->fips, "county_fips");
      return c;
    }
  } else {
    extent = rd.Str(area, "extent", p);
  }
  if (const CountyInfo* c = counties.Find(extent)) return c;
  std::string digits;
  bool only_fips_chars = !extent.empty();
  for (char ch : extent) {
    if (absl::ascii_isdigit(static_cast<unsigned char>(ch))) {
      digits.push_back(ch);
    } else if (ch != ' ' && ch != '-' && ch != '.') {
      only_fips_chars = false;
    }
  }
  if (only_fips_chars && digits.size() == 5) {
    if (const CountyInfo* c = counties.Find(digits)) {
      rd.report().Normalized(p + ".extent", extent, c->fips, "county_fips");
      return c;
    }
  }
  const std::string name = rd.Str(area, "name", p);
  if (const CountyInfo* c = counties.FindByName(name)) return c;
  const CountyInfo* c = counties.FindByName(CountyName(name));
  if (c != nullptr) {
    rd.report().Normalized(p + ".name", name, StrCat(c->name, " County (", c->fips, ")"),
                           "county_name");
  }
  return c;
}

// Counties served; the organization's county when none is given. Returns how many areas were
// refused.
int ReadServiceAreas(Reader& rd, const json& js, const std::string& path,
                     const v1::Organization& org, const CountyTable& counties, v1::Service* s) {
  const json& areas = rd.Arr(js, "service_areas", path);
  int refused = 0;
  for (size_t i = 0; i < areas.size(); ++i) {
    const std::string p = StrCat(path, ".service_areas[", i, "]");
    const CountyInfo* county =
        areas[i].is_object() ? AreaCounty(rd, areas[i], p, counties) : nullptr;
    if (county == nullptr) {
      rd.Fail(p, areas[i].is_object()
                     ? StrCat(p,
                              ": not a known county (give extent_type 'text' with the FIPS code "
                              "as extent, or the county name as name)")
                     : StrCat(p, " must be an object"));
      ++refused;
      continue;
    }
    s->add_service_area_county_fips(county->fips);
  }
  if (s->service_area_county_fips_size() == 0 && refused == 0 && !org.county_fips().empty()) {
    s->add_service_area_county_fips(org.county_fips());
  }
  return refused;
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

// The ids seen so far in the document, by kind.
struct Seen {
  std::map<std::string, std::string> organizations;  // id -> path
  std::map<std::string, std::string> services;
  std::set<std::string> refused_locations;  // "org id/location id"
};

void CheckServiceLocation(Reader& rd, const std::string& path, const v1::Organization& org,
                          const Seen& seen, const v1::Service& s) {
  if (s.location_id().empty()) return;  // validation names it
  for (const auto& l : org.locations()) {
    if (l.id() == s.location_id()) return;
  }
  const bool refused = seen.refused_locations.count(StrCat(org.id(), "/", s.location_id())) > 0;
  rd.Fail(path, StrCat(path, ": location '", s.location_id(), "' ",
                       refused ? "was refused (see its problems)"
                               : "is not one of its organization's locations"));
}

// A service; true when it has no problem.
bool ReadService(Reader& rd, const json& js, const std::string& path, const v1::Organization& org,
                 const CountyTable& counties, Seen& seen, v1::Service* s) {
  if (!js.is_object()) {
    rd.Fail(path, StrCat(path, " must be an object"));
    return false;
  }
  const int64_t before = rd.problems();
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
      rd.Fail(path + ".assured_date", StrCat(path, ".assured_date must be YYYY-MM-DD"));
    } else {
      *s->mutable_last_verified_time() = ToProtoTime(t);
    }
  }
  ReadLanguages(rd, js, path, s);
  s->mutable_schedule()->set_time_zone(kDefaultHsdsTimeZone);
  ReadAttributes(rd, js, path, s);
  ReadSchedules(rd, js, path, s);
  const int areas_refused = ReadServiceAreas(rd, js, path, org, counties, s);
  ReadServiceLocation(rd, js, path, org, s);
  // Already reported above: a missing category, or service areas none of which is a county.
  const bool areas_reported = areas_refused > 0 && s->service_area_county_fips_size() == 0;
  for (const absl::Status& st : ServiceProblems(*s, counties, true)) {
    if (absl::StartsWith(st.message(), "service.category") ||
        (areas_reported && absl::StartsWith(st.message(), "service.service_area_county_fips"))) {
      continue;
    }
    rd.Fail(path, StrCat(path, ": ", st.message()));
  }
  CheckServiceLocation(rd, path, org, seen, *s);
  if (!s->id().empty() && !seen.services.emplace(s->id(), path).second) {
    rd.Fail(path, StrCat(path, ": service id '", s->id(), "' appears twice (first at ",
                         seen.services[s->id()], ")"));
  }
  return rd.problems() == before;
}

// The organization's fields other than its locations and services.
void ReadOrganizationFields(Reader& rd, const json& js, const std::string& path,
                            v1::Organization* org) {
  org->set_id(NormalizeId(rd.Str(js, "id", path)));
  org->set_name(rd.Str(js, "name", path));
  org->set_description(rd.Str(js, "description", path));
  org->set_email(rd.Str(js, "email", path));
  org->set_website(rd.Str(js, "website", path));
  org->set_kind(v1::ORGANIZATION_KIND_SERVICE_PROVIDER);
  for (const std::string& code : Codes(rd, js, path)) {
    if (absl::StartsWith(code, "organization_kind:")) {
      org->set_kind(static_cast<v1::OrganizationKind>(ValueOf(kKinds, code.substr(18))));
    } else if (absl::StartsWith(code, "county_fips:")) {
      org->set_county_fips(code.substr(12));
    }
  }
  ReadPhones(rd, js, path, org->mutable_phones());
  const json& contacts = rd.Arr(js, "contacts", path);
  for (size_t i = 0; i < contacts.size(); ++i) {
    const std::string p = StrCat(path, ".contacts[", i, "]");
    if (!contacts[i].is_object()) {
      rd.Fail(p, StrCat(p, " must be an object"));
      continue;
    }
    auto* c = org->add_contacts();
    c->set_name(rd.Str(contacts[i], "name", p));
    c->set_title(rd.Str(contacts[i], "title", p));
    c->set_email(rd.Str(contacts[i], "email", p));
    ReadPhones(rd, contacts[i], p, c->mutable_phones());
  }
}

// One location, into `l`; true when reading it found no problem (validation comes later).
bool ReadLocation(Reader& rd, const json& lj, const std::string& p, v1::Location* l) {
  if (!lj.is_object()) {
    rd.Fail(p, StrCat(p, " must be an object"));
    return false;
  }
  const int64_t before = rd.problems();
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
  return rd.problems() == before;
}

// The location a validation problem is about ("organization.locations[3].latitude ..."), or -1.
int LocationOf(absl::string_view message) {
  constexpr absl::string_view kPrefix = "organization.locations[";
  if (!absl::StartsWith(message, kPrefix)) return -1;
  message.remove_prefix(kPrefix.size());
  int index = -1;
  const size_t close = message.find(']');
  if (close == absl::string_view::npos || !absl::SimpleAtoi(message.substr(0, close), &index)) {
    return -1;
  }
  return index;
}

// Validates the organization read with all its locations: the problems of a location refuse
// that location alone (left out, remembered, counted); true when the organization itself has
// none.
bool ValidateOrganizationRead(Reader& rd, const std::string& path, const CountyTable& counties,
                              std::set<int> refused, v1::Organization* org, Seen& seen,
                              HsdsRead* out) {
  bool ok = true;
  for (const absl::Status& st : OrganizationProblems(*org, counties, true)) {
    const int loc = LocationOf(st.message());
    if (loc >= 0) refused.insert(loc);
    ok = ok && loc >= 0;
    rd.Fail(loc >= 0 ? StrCat(path, ".locations[", loc, "]") : path,
            StrCat(path, ": ", st.message()));
  }
  google::protobuf::RepeatedPtrField<v1::Location> kept;
  for (int i = 0; i < org->locations_size(); ++i) {
    if (refused.count(i) == 0) {
      *kept.Add() = org->locations(i);
    } else {
      seen.refused_locations.insert(StrCat(org->id(), "/", org->locations(i).id()));
      ++out->locations_skipped;
    }
  }
  org->mutable_locations()->Swap(&kept);
  return ok;
}

void ReadOrganization(Reader& rd, const json& js, const std::string& path,
                      const CountyTable& counties, Seen& seen, HsdsRead* out) {
  if (!js.is_object()) {
    rd.Fail(path, StrCat(path, " must be an object"));
    ++out->organizations_skipped;
    return;
  }
  v1::Organization org;
  int64_t before = rd.problems();
  ReadOrganizationFields(rd, js, path, &org);
  bool org_ok = rd.problems() == before;
  std::set<int> unreadable;
  const json& locations = rd.Arr(js, "locations", path);
  for (size_t i = 0; i < locations.size(); ++i) {
    if (!ReadLocation(rd, locations[i], StrCat(path, ".locations[", i, "]"), org.add_locations())) {
      unreadable.insert(static_cast<int>(i));
    }
  }
  org_ok = ValidateOrganizationRead(rd, path, counties, unreadable, &org, seen, out) && org_ok;
  if (!org.id().empty() && !seen.organizations.emplace(org.id(), path).second) {
    rd.Fail(path, StrCat(path, ": organization id '", org.id(), "' appears twice (first at ",
                         seen.organizations[org.id()], ")"));
    org_ok = false;
  }
  const json& services = rd.Arr(js, "services", path);
  for (size_t i = 0; i < services.size(); ++i) {
    v1::Service s;
    const bool ok =
        ReadService(rd, services[i], StrCat(path, ".services[", i, "]"), org, counties, seen, &s);
    if (ok && org_ok) {
      out->data.services.push_back(std::move(s));
    } else {
      ++out->services_skipped;
    }
  }
  if (org_ok) {
    out->data.organizations.push_back(std::move(org));
  } else {
    ++out->organizations_skipped;
  }
}

// The organizations of a document and the path prefix of each: an array of organizations,
// {"organizations": [...]}, an HSDS API page {"contents": [...]}, or one organization.
struct Roots {
  std::vector<const json*> items;
  std::string prefix;  // "organizations" ("organizations[3]"); "$" for a single organization
};

// Whether a record reads as an organization (not a service, location or taxonomy term).
bool LooksLikeOrganization(const json& j) {
  if (!j.is_object() || !j.contains("id") || !j.contains("name")) return false;
  for (const char* other : {"status", "organization", "organization_id", "service", "latitude",
                            "location_type", "code", "taxonomy", "version"}) {
    if (j.contains(other)) return false;
  }
  return true;
}

absl::StatusOr<Roots> FindOrganizations(const json& doc) {
  Roots r;
  auto all = [&r](const json& arr, const char* prefix) {
    for (const json& item : arr) r.items.push_back(&item);
    r.prefix = prefix;
  };
  const bool page = doc.is_object() && doc.contains("contents") && doc["contents"].is_array();
  if (doc.is_array()) {
    all(doc, "organizations");
  } else if (doc.is_object() && doc.contains("organizations") && doc["organizations"].is_array()) {
    all(doc["organizations"], "organizations");
  } else if (page && (doc["contents"].empty() || LooksLikeOrganization(doc["contents"][0]))) {
    all(doc["contents"], "contents");
  } else if (page) {
    return absl::InvalidArgumentError(
        "hsds_json is an HSDS page of records other than organizations (services, locations or "
        "taxonomy terms): import organizations, with their services and locations nested");
  } else if (LooksLikeOrganization(doc)) {
    r.items.push_back(&doc);
    r.prefix.push_back('$');  // not = "$": GCC 12 -O3 warns falsely (-Wrestrict)
  } else {
    return absl::InvalidArgumentError(
        "hsds_json must be an array of organizations, an object with an 'organizations' array, "
        "an HSDS page of organizations ('contents') or one organization");
  }
  if (r.items.size() > 100000) {
    return absl::InvalidArgumentError("hsds_json has more than 100000 organizations");
  }
  return r;
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

void HsdsReport::Problem(std::string path, std::string text) {
  if (++problems_total_ > static_cast<int64_t>(kMaxHsdsListed)) return;
  v1::HsdsProblem& p = problems_.emplace_back();
  p.set_path(std::move(path));
  p.set_message(std::move(text));
}

void HsdsReport::Normalized(std::string path, std::string original, std::string normalized,
                            const char* rule) {
  if (++normalizations_total_ > static_cast<int64_t>(kMaxHsdsListed)) return;
  v1::HsdsNormalization& n = normalizations_.emplace_back();
  n.set_path(std::move(path));
  n.set_original(std::move(original));
  n.set_normalized(std::move(normalized));
  n.set_rule(rule);
}

absl::Status HsdsReport::First() const {
  if (problems_.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(problems_.front().message());
}

void HsdsReport::Fill(v1::ImportHsdsResponse* resp) const {
  for (const auto& p : problems_) *resp->add_problems() = p;
  resp->set_problems_not_listed(
      static_cast<int32_t>(problems_total_ - static_cast<int64_t>(problems_.size())));
  for (const auto& n : normalizations_) *resp->add_normalizations() = n;
  resp->set_normalizations_not_listed(
      static_cast<int32_t>(normalizations_total_ - static_cast<int64_t>(normalizations_.size())));
}

HsdsRead ReadHsds(absl::string_view text, const CountyTable& counties) {
  HsdsRead out;
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    out.report.Problem("$", "hsds_json is not valid JSON");
    return out;
  }
  auto roots = FindOrganizations(doc);
  if (!roots.ok()) {
    out.report.Problem("$", std::string(roots.status().message()));
    return out;
  }
  Reader rd(&out.report);
  Seen seen;
  for (size_t i = 0; i < roots->items.size(); ++i) {
    const std::string path =
        roots->prefix == "$" ? std::string("$") : StrCat(roots->prefix, "[", i, "]");
    ReadOrganization(rd, *roots->items[i], path, counties, seen, &out);
  }
  return out;
}

absl::StatusOr<HsdsData> ParseHsds(absl::string_view text, const CountyTable& counties) {
  HsdsRead read = ReadHsds(text, counties);
  SH_RETURN_IF_ERROR(read.report.First());
  return std::move(read.data);
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
