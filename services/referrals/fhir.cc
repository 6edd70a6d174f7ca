#include "services/referrals/fhir.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "services/referrals/lifecycle.h"
#include "services/referrals/requests.h"

namespace safeharbor::referrals {
namespace {

using google::protobuf::Value;
using Fields = std::vector<std::pair<const char*, Value>>;

// Code systems of this network's own codes (FHIR allows any URI as a system).
constexpr char kReferralIds[] = "urn:safeharbor:referral";
constexpr char kOrganizationIds[] = "urn:safeharbor:organization";
constexpr char kYouthReferences[] = "urn:safeharbor:youth-reference";
constexpr char kNeeds[] = "urn:safeharbor:need";
constexpr char kAgeExtension[] = "urn:safeharbor:fhir:youth-age-years";
// Decline and outcome reasons (issue 14): ReasonCode as "at-capacity", "not-eligible", ...
constexpr char kReasons[] = "urn:safeharbor:reason";

Value Str(absl::string_view s) {
  Value v;
  v.set_string_value(std::string(s));
  return v;
}

Value Num(int64_t n) {
  Value v;
  v.set_number_value(static_cast<double>(n));
  return v;
}

Value Obj(Fields fields) {
  Value v;
  auto* m = v.mutable_struct_value()->mutable_fields();
  for (auto& [name, value] : fields) (*m)[name] = std::move(value);
  return v;
}

Value List(std::vector<Value> items) {
  Value v;
  for (Value& item : items) *v.mutable_list_value()->add_values() = std::move(item);
  return v;
}

Value Text(absl::string_view text) { return Obj({{"text", Str(text)}}); }

Value Identifier(const char* system, absl::string_view value) {
  return Obj({{"system", Str(system)}, {"value", Str(value)}});
}

Value OrganizationRef(absl::string_view org_id) {
  return Obj({{"type", Str("Organization")}, {"identifier", Identifier(kOrganizationIds, org_id)}});
}

std::string Instant(const google::protobuf::Timestamp& ts) {
  return Rfc3339Millis(FromProtoTime(ts));
}

const char* Priority(v1::Urgency u) {
  switch (u) {
    case v1::URGENCY_EMERGENCY:
      return "stat";
    case v1::URGENCY_URGENT:
      return "urgent";
    default:
      return "routine";
  }
}

const char* Gender(safeharbor::directory::v1::Gender g) {
  switch (g) {
    case safeharbor::directory::v1::GENDER_FEMALE:
      return "female";
    case safeharbor::directory::v1::GENDER_MALE:
      return "male";
    case safeharbor::directory::v1::GENDER_NONBINARY:
      return "other";
    default:
      return "unknown";
  }
}

// "SERVICE_CATEGORY_CSEC_ADVOCACY" -> "csec-advocacy".
std::string NeedCode(absl::string_view enum_name, absl::string_view prefix) {
  std::string code = absl::AsciiStrToLower(enum_name.substr(prefix.size()));
  for (char& ch : code) ch = ch == '_' ? '-' : ch;
  return code;
}

void AddNeedCodings(const v1::Needs& needs, std::vector<Value>& codings) {
  if (needs.placement_tonight()) {
    codings.push_back(Obj({{"system", Str(kNeeds)}, {"code", Str("placement-tonight")}}));
  }
  for (int c : needs.service_categories()) {
    const auto category = static_cast<safeharbor::directory::v1::ServiceCategory>(c);
    codings.push_back(
        Obj({{"system", Str(kNeeds)},
             {"code", Str(NeedCode(safeharbor::directory::v1::ServiceCategory_Name(category),
                                   "SERVICE_CATEGORY_"))}}));
  }
}

// The needs of every row given (issue 14: each row holds one), as one CodeableConcept.
Value NeedsCode(const std::vector<v1::Referral>& rows, absl::string_view text) {
  std::vector<Value> codings;
  for (const v1::Referral& r : rows) AddNeedCodings(r.needs(), codings);
  Fields f = {{"text", Str(text)}};
  if (!codings.empty()) f.emplace_back("coding", List(std::move(codings)));  // never an empty array
  return Obj(std::move(f));
}

// The referral a row belongs to (issue 14): the lead's id, on the lead and on its parts.
std::string ReferralId(const v1::Referral& r) {
  return r.parent_id().empty() ? r.id() : r.parent_id();
}

std::string PatientId(const v1::Referral& r) { return absl::StrCat(ReferralId(r), "-youth"); }

std::string RequestRef(const v1::Referral& r) {
  return absl::StrCat("ServiceRequest/", ReferralId(r));
}

std::string NeedTaskId(const v1::Referral& r) { return absl::StrCat(r.id(), "-need"); }

Value Entry(Value resource) { return Obj({{"resource", std::move(resource)}}); }

}  // namespace

const char* FhirRequestStatus(v1::ReferralStatus status) {
  switch (status) {
    case v1::REFERRAL_STATUS_COMPLETED:
    case v1::REFERRAL_STATUS_YOUTH_DECLINED:
    case v1::REFERRAL_STATUS_COULD_NOT_CONTACT:
      return "completed";
    case v1::REFERRAL_STATUS_CANCELLED:
      return "revoked";
    case v1::REFERRAL_STATUS_UNSPECIFIED:
      return "unknown";
    default:
      return "active";
  }
}

const char* FhirRequestStatus(const std::vector<v1::ReferralStatus>& rows) {
  bool cancelled = true;
  for (v1::ReferralStatus s : rows) {
    if (!IsTerminal(s)) return rows.size() == 1 ? FhirRequestStatus(s) : "active";
    cancelled = cancelled && s == v1::REFERRAL_STATUS_CANCELLED;
  }
  if (rows.empty()) return "unknown";
  return cancelled ? "revoked" : "completed";
}

FhirTaskStatus FhirNeedStatusOf(v1::ReferralStatus status) {
  switch (status) {
    case v1::REFERRAL_STATUS_REQUESTED:
      return {"requested", "routing"};
    case v1::REFERRAL_STATUS_OFFERED:
      return {"requested", "offered"};
    case v1::REFERRAL_STATUS_ACCEPTED:
      return {"accepted", "accepted: awaiting hand-off"};
    case v1::REFERRAL_STATUS_HANDED_OFF:
      return {"in-progress", "handed off"};
    case v1::REFERRAL_STATUS_IN_PROGRESS:
      return {"in-progress", "services started"};
    case v1::REFERRAL_STATUS_COMPLETED:
      return {"completed", "completed"};
    case v1::REFERRAL_STATUS_YOUTH_DECLINED:
      return {"failed", "youth declined"};
    case v1::REFERRAL_STATUS_COULD_NOT_CONTACT:
      return {"failed", "could not contact"};
    case v1::REFERRAL_STATUS_CANCELLED:
      return {"cancelled", "cancelled"};
    case v1::REFERRAL_STATUS_ESCALATED:
      return {"received", "escalated to the on-call child-welfare office"};
    default:
      return {"draft", "unknown"};
  }
}

FhirTaskStatus FhirTaskStatusOf(const v1::Offer& offer, v1::ReferralStatus status) {
  switch (offer.state()) {
    case v1::OFFER_STATE_PENDING:
      return {"requested", "offered"};
    case v1::OFFER_STATE_DECLINED:
      return {"rejected", "declined"};
    case v1::OFFER_STATE_EXPIRED:
      return {"cancelled", "no answer by the deadline"};
    case v1::OFFER_STATE_WITHDRAWN:
      return {"cancelled", "withdrawn"};
    case v1::OFFER_STATE_WAITLISTED:
      return {"on-hold", "waitlisted"};
    case v1::OFFER_STATE_ACCEPTED:
      break;
    default:
      return {"draft", "unknown"};
  }
  // Accepted: the referral's course after the hand-off, as its need's Task has it.
  if (status == v1::REFERRAL_STATUS_CANCELLED) return {"cancelled", "referral cancelled"};
  if (ReferrerStage(status) == v1::ReferrerView::STAGE_CONNECTED_TO_SERVICES) {
    return FhirNeedStatusOf(status);
  }
  return {"accepted", "accepted: awaiting hand-off"};
}

namespace {

Value PatientOf(const v1::Referral& r) {
  const v1::YouthProfile& y = r.youth();
  Fields f = {
      {"resourceType", Str("Patient")},
      {"id", Str(PatientId(r))},
      {"identifier", List({Obj({{"system", Str(kYouthReferences)},
                                {"value", Str(y.youth_reference())},
                                {"assigner", OrganizationRef(r.referrer_organization_id())}})})},
      {"gender", Str(Gender(y.gender()))},
      {"extension", List({Obj({{"url", Str(kAgeExtension)}, {"valueInteger", Num(y.age())}})})},
  };
  std::vector<Value> languages;
  for (const std::string& l : y.languages()) {
    languages.push_back(
        Obj({{"language", Obj({{"coding", List({Obj({{"system", Str("urn:ietf:bcp:47")},
                                                     {"code", Str(l)}})})}})}}));
  }
  if (!languages.empty()) f.emplace_back("communication", List(std::move(languages)));
  if (y.has_identifying()) {  // only in the accepting provider's view
    if (!y.identifying().name().empty()) {
      f.emplace_back("name", List({Text(y.identifying().name())}));
    }
    if (!y.identifying().contact().empty()) {
      f.emplace_back(
          "telecom",
          List({Obj({{"system", Str("other")}, {"value", Str(y.identifying().contact())}})}));
    }
  }
  return Obj(std::move(f));
}

// The referral (issue 14: every row given, rows[0] the one asked for) as one ServiceRequest.
Value ServiceRequestOf(const std::vector<v1::Referral>& rows) {
  const v1::Referral& r = rows.front();
  std::vector<v1::ReferralStatus> statuses;
  std::vector<std::string> performers;
  for (const v1::Referral& row : rows) {
    statuses.push_back(row.status());
    const std::string& org = row.handoff().provider_organization_id();
    if (!org.empty() && std::find(performers.begin(), performers.end(), org) == performers.end()) {
      performers.push_back(org);
    }
  }
  Fields f = {
      {"resourceType", Str("ServiceRequest")},
      {"id", Str(ReferralId(r))},
      {"identifier", List({Identifier(kReferralIds, ReferralId(r))})},
      {"status", Str(FhirRequestStatus(statuses))},
      {"intent", Str("order")},
      {"priority", Str(Priority(r.urgency()))},
      {"code", NeedsCode(rows, "CSEC referral")},
      {"subject", Obj({{"reference", Str(absl::StrCat("Patient/", PatientId(r)))}})},
      {"authoredOn", Str(Instant(r.create_time()))},
      {"requester", OrganizationRef(r.referrer_organization_id())},
  };
  std::vector<Value> performing;
  for (const std::string& org : performers) performing.push_back(OrganizationRef(org));
  if (!performing.empty()) f.emplace_back("performer", List(std::move(performing)));
  if (r.youth().has_identifying() && !r.youth().identifying().notes().empty()) {
    f.emplace_back("note", List({Text(r.youth().identifying().notes())}));
  }
  return Obj(std::move(f));
}

// A Task's statusReason: the code (this network's CodeSystem) and the free text beside it (this
// view is only for those who may see the referral's details).
Value ReasonOf(v1::ReasonCode code, absl::string_view text) {
  Fields f;
  if (code != v1::REASON_CODE_UNSPECIFIED) {
    f.emplace_back("coding",
                   List({Obj({{"system", Str(kReasons)},
                              {"code", Str(NeedCode(v1::ReasonCode_Name(code), "REASON_CODE_"))},
                              {"display", Str(ReasonLabel(code))}})}));
  }
  f.emplace_back("text", Str(text.empty() ? ReasonLabel(code) : std::string(text)));
  return Obj(std::move(f));
}

// Issue 14: a need (a row) as a Task on the ServiceRequest: its status, its owner once
// accepted (or the on-call office it was escalated to).
Value NeedTaskOf(const v1::Referral& r) {
  const FhirTaskStatus s = FhirNeedStatusOf(r.status());
  Fields f = {
      {"resourceType", Str("Task")},
      {"id", Str(NeedTaskId(r))},
      {"identifier", List({Identifier(kReferralIds, r.id())})},
      {"status", Str(s.status)},
      {"businessStatus", Text(s.business_status)},
      {"intent", Str("order")},
      {"code", NeedsCode({r}, "need")},
      {"focus", Obj({{"reference", Str(RequestRef(r))}})},
      {"for", Obj({{"reference", Str(absl::StrCat("Patient/", PatientId(r)))}})},
      {"authoredOn", Str(Instant(r.create_time()))},
      {"lastModified", Str(Instant(r.update_time()))},
      {"requester", OrganizationRef(r.referrer_organization_id())},
  };
  if (!r.handoff().provider_organization_id().empty()) {
    f.emplace_back("owner", OrganizationRef(r.handoff().provider_organization_id()));
  }
  return Obj(std::move(f));
}

Value TaskOf(const v1::Referral& r, const v1::Offer& offer, int index) {
  const FhirTaskStatus s = FhirTaskStatusOf(offer, r.status());
  Fields f = {
      {"resourceType", Str("Task")},
      {"id", Str(absl::StrCat(r.id(), "-offer-", index + 1))},
      {"status", Str(s.status)},
      {"businessStatus", Text(s.business_status)},
      {"intent", Str("order")},
      {"partOf", List({Obj({{"reference", Str(absl::StrCat("Task/", NeedTaskId(r)))}})})},
      {"focus", Obj({{"reference", Str(RequestRef(r))}})},
      {"for", Obj({{"reference", Str(absl::StrCat("Patient/", PatientId(r)))}})},
      {"authoredOn", Str(Instant(offer.offered_time()))},
      {"requester", OrganizationRef(r.referrer_organization_id())},
      {"owner", OrganizationRef(offer.provider_organization_id())},
  };
  if (offer.has_respond_by()) {
    f.emplace_back("restriction",
                   Obj({{"period", Obj({{"end", Str(Instant(offer.respond_by()))}})}}));
  }
  if (offer.state() == v1::OFFER_STATE_ACCEPTED &&
      r.outcome_code() != v1::REASON_CODE_UNSPECIFIED) {
    f.emplace_back("statusReason", ReasonOf(r.outcome_code(), r.outcome_reason()));
  } else if (offer.decline_code() != v1::REASON_CODE_UNSPECIFIED ||
             !offer.decline_reason().empty()) {
    f.emplace_back("statusReason", ReasonOf(offer.decline_code(), offer.decline_reason()));
  }
  return Obj(std::move(f));
}

// A statutory timer (issue 14) as a Task on the ServiceRequest: requested until marked filed
// (then completed, its filer the owner), the clock as restriction.period.
Value TimerTaskOf(const v1::Referral& r, const v1::StatutoryTimer& t) {
  const bool filed = t.has_satisfied_time();
  Fields f = {
      {"resourceType", Str("Task")},
      {"id", Str(absl::StrCat(r.id(), "-timer-", static_cast<int>(t.kind())))},
      {"status", Str(filed ? "completed" : "requested")},
      {"businessStatus", Text(filed         ? "filed"
                              : t.overdue() ? "overdue"
                                            : "pending")},
      {"intent", Str("order")},
      {"code", Text(v1::StatutoryTimerKind_Name(t.kind()))},
      {"description", Str(t.citation())},
      {"partOf", List({Obj({{"reference", Str(absl::StrCat("Task/", NeedTaskId(r)))}})})},
      {"focus", Obj({{"reference", Str(RequestRef(r))}})},
      {"for", Obj({{"reference", Str(absl::StrCat("Patient/", PatientId(r)))}})},
      {"authoredOn", Str(Instant(t.start_time()))},
      {"restriction", Obj({{"period", Obj({{"start", Str(Instant(t.start_time()))},
                                           {"end", Str(Instant(t.due_time()))}})}})},
  };
  if (filed) {
    f.emplace_back("lastModified", Str(Instant(t.satisfied_time())));
    f.emplace_back("owner", OrganizationRef(t.satisfied_by_organization_id()));
  }
  return Obj(std::move(f));
}

}  // namespace

absl::StatusOr<std::string> ReferralFhirBundle(const std::vector<v1::Referral>& rows,
                                               absl::Time now) {
  if (rows.empty()) return absl::InternalError("a FHIR bundle of no referral");
  std::vector<Value> entries;
  entries.push_back(Entry(ServiceRequestOf(rows)));
  for (const v1::Referral& view : rows) {
    entries.push_back(Entry(NeedTaskOf(view)));
    for (int i = 0; i < view.offers_size(); ++i)
      entries.push_back(Entry(TaskOf(view, view.offers(i), i)));
    for (const auto& t : view.statutory_timers()) entries.push_back(Entry(TimerTaskOf(view, t)));
  }
  entries.push_back(Entry(PatientOf(rows.front())));
  const Value bundle = Obj({{"resourceType", Str("Bundle")},
                            {"type", Str("collection")},
                            {"timestamp", Str(Rfc3339Millis(now))},
                            {"entry", List(std::move(entries))}});
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(bundle.struct_value(), &json);
  if (!status.ok()) return absl::InternalError("the FHIR bundle could not be written as JSON");
  return json;
}

}  // namespace safeharbor::referrals
