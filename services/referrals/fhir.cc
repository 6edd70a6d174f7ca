#include "services/referrals/fhir.h"

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/proto_time.h"

namespace safeharbor::referrals {
namespace {

using Json = nlohmann::json;

std::string Instant(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", FromProtoTime(t), absl::UTCTimeZone());
}

// "REFERRAL_STATUS_HANDED_OFF" -> "handed-off".
std::string StepOf(v1::ReferralStatus s) {
  return absl::StrReplaceAll(
      absl::AsciiStrToLower(absl::StripPrefix(v1::ReferralStatus_Name(s), "REFERRAL_STATUS_")),
      {{"_", "-"}});
}

absl::string_view PriorityOf(v1::Urgency u) {
  switch (u) {
    case v1::URGENCY_EMERGENCY:
      return "stat";
    case v1::URGENCY_URGENT:
      return "urgent";
    default:
      return "routine";
  }
}

absl::string_view GenderOf(int gender) {
  switch (gender) {
    case 1:
      return "female";
    case 2:
      return "male";
    case 3:
      return "other";
    default:
      return "unknown";
  }
}

// The Task of an accepted offer follows the referral.
FhirTaskStatus AcceptedTask(v1::ReferralStatus s) {
  switch (s) {
    case v1::REFERRAL_STATUS_ACCEPTED:
      return {"accepted", StepOf(s), ""};
    case v1::REFERRAL_STATUS_HANDED_OFF:
    case v1::REFERRAL_STATUS_IN_PROGRESS:
      return {"in-progress", StepOf(s), ""};
    case v1::REFERRAL_STATUS_COMPLETED:
      return {"completed", StepOf(s), ""};
    case v1::REFERRAL_STATUS_YOUTH_DECLINED:
      return {"completed", StepOf(s), "youth declined services"};
    case v1::REFERRAL_STATUS_COULD_NOT_CONTACT:
      return {"failed", StepOf(s), "could not contact"};
    default:
      return {"cancelled", StepOf(s), "referral cancelled"};
  }
}

Json Reference(absl::string_view type, absl::string_view id) {
  return Json{{"reference", absl::StrCat(type, "/", id)}};
}

Json PatientOf(const v1::Referral& r, bool with_identity) {
  Json p = {{"resourceType", "Patient"},
            {"id", absl::StrCat("youth-", r.id())},
            {"identifier", Json::array({{{"system", absl::StrCat("urn:safeharbor:youth-reference:",
                                                                 r.referrer_organization_id())},
                                         {"value", r.youth().youth_reference()}}})},
            {"gender", GenderOf(r.youth().gender())}};
  const v1::IdentifyingDetails& id = r.youth().identifying();
  if (with_identity && !id.name().empty()) p["name"] = Json::array({{{"text", id.name()}}});
  if (with_identity && !id.contact().empty()) {
    p["telecom"] = Json::array({{{"system", "other"}, {"value", id.contact()}}});
  }
  return p;
}

Json ServiceRequestOf(const v1::Referral& r) {
  Json sr = {{"resourceType", "ServiceRequest"},
             {"id", r.id()},
             {"status", FhirServiceRequestStatus(r.status())},
             {"intent", "order"},
             {"priority", PriorityOf(r.urgency())},
             {"code",
              {{"text", r.needs().placement_tonight()
                            ? "CSEC-specialized services with a placement tonight"
                            : "CSEC-specialized services"}}},
             {"subject", Reference("Patient", absl::StrCat("youth-", r.id()))},
             {"requester", Reference("Organization", r.referrer_organization_id())}};
  if (r.has_create_time()) sr["authoredOn"] = Instant(r.create_time());
  return sr;
}

Json TaskOf(const v1::Referral& r, const v1::Offer& o, int index) {
  const FhirTaskStatus st = FhirTaskStatusOf(o, r.status());
  Json t = {{"resourceType", "Task"},
            {"id", absl::StrCat(r.id(), "-offer-", index + 1)},
            {"status", st.status},
            {"intent", "order"},
            {"businessStatus", {{"text", st.business_status}}},
            {"focus", Reference("ServiceRequest", r.id())},
            {"for", Reference("Patient", absl::StrCat("youth-", r.id()))},
            {"owner", Reference("Organization", o.provider_organization_id())}};
  if (!st.status_reason.empty()) t["statusReason"] = {{"text", st.status_reason}};
  if (o.has_offered_time()) t["authoredOn"] = Instant(o.offered_time());
  if (o.has_respond_by()) t["restriction"] = {{"period", {{"end", Instant(o.respond_by())}}}};
  return t;
}

// A bundle entry; its fullUrl names the resource (the types and ids are this service's own).
Json Entry(absl::string_view type, absl::string_view id, Json resource) {
  return Json{{"fullUrl", absl::StrCat("urn:safeharbor:", type, ":", id)},
              {"resource", std::move(resource)}};
}

}  // namespace

absl::string_view FhirServiceRequestStatus(v1::ReferralStatus status) {
  switch (status) {
    case v1::REFERRAL_STATUS_COMPLETED:
    case v1::REFERRAL_STATUS_YOUTH_DECLINED:
    case v1::REFERRAL_STATUS_COULD_NOT_CONTACT:
      return "completed";
    case v1::REFERRAL_STATUS_CANCELLED:
      return "revoked";
    default:
      return "active";
  }
}

FhirTaskStatus FhirTaskStatusOf(const v1::Offer& offer, v1::ReferralStatus referral_status) {
  switch (offer.state()) {
    case v1::OFFER_STATE_PENDING:
      return {"requested", "offered", ""};
    case v1::OFFER_STATE_ACCEPTED:
      return AcceptedTask(referral_status);
    case v1::OFFER_STATE_DECLINED:
      return {"rejected", "declined", offer.decline_reason()};
    case v1::OFFER_STATE_EXPIRED:
      return {"failed", "expired", "no answer by the deadline"};
    default:
      return {"cancelled", "withdrawn",
              referral_status == v1::REFERRAL_STATUS_CANCELLED ? "referral cancelled"
                                                               : "another provider accepted"};
  }
}

std::string ReferralFhirBundle(const v1::Referral& r, bool with_identity) {
  Json entries =
      Json::array({Entry("ServiceRequest", r.id(), ServiceRequestOf(r)),
                   Entry("Patient", absl::StrCat("youth-", r.id()), PatientOf(r, with_identity))});
  for (int i = 0; i < r.offers_size(); ++i) {
    entries.push_back(
        Entry("Task", absl::StrCat(r.id(), "-offer-", i + 1), TaskOf(r, r.offers(i), i)));
  }
  Json bundle = {{"resourceType", "Bundle"}, {"type", "collection"}, {"entry", entries}};
  if (r.has_update_time()) bundle["timestamp"] = Instant(r.update_time());
  return bundle.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace safeharbor::referrals
