#include "services/referrals/requests.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/validate.h"
#include "safeharbor/directory/v1/directory.pb.h"
#include "services/referrals/lifecycle.h"

namespace safeharbor::referrals {
namespace {

namespace dir = directory::v1;

absl::Status Invalid(absl::string_view message) { return absl::InvalidArgumentError(message); }

absl::Status CheckText(absl::string_view value, size_t max, absl::string_view field,
                       bool required) {
  if (required && value.empty()) return Invalid(absl::StrCat(field, " is required"));
  if (value.size() > max) {
    return Invalid(absl::StrCat(field, " is longer than ", max, " characters"));
  }
  return absl::OkStatus();
}

absl::Status ValidateYouth(const v1::YouthProfile& y) {
  const std::string& ref = y.youth_reference();
  if (ref.empty() || ref.size() > 64) {
    return Invalid(
        "youth.youth_reference is required (an opaque reference, at most 64 characters)");
  }
  for (char ch : ref) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_')) {
      return Invalid(
          "youth.youth_reference may hold only letters, digits, '-' and '_' (never a name)");
    }
  }
  if (y.age() < 0 || y.age() > 24) return Invalid("youth.age must be between 0 and 24");
  if (!dir::Gender_IsValid(y.gender())) return Invalid("youth.gender is not a known value");
  if (y.languages_size() > 5) return Invalid("youth.languages holds at most 5 languages");
  for (const auto& lang : y.languages()) {
    if (lang.size() != 2 || !absl::ascii_islower(static_cast<unsigned char>(lang[0])) ||
        !absl::ascii_islower(static_cast<unsigned char>(lang[1]))) {
      return Invalid("youth.languages must be lower-case ISO 639-1 codes such as \"es\"");
    }
  }
  const auto& id = y.identifying();
  SH_RETURN_IF_ERROR(CheckText(id.name(), 200, "youth.identifying.name", false));
  SH_RETURN_IF_ERROR(CheckText(id.contact(), 200, "youth.identifying.contact", false));
  return CheckText(id.notes(), 2000, "youth.identifying.notes", false);
}

// Issue 14: each category is a need of its own, at most kMaxServiceNeeds, none twice.
absl::Status ValidateCategories(const v1::Needs& needs) {
  if (needs.service_categories_size() > kMaxServiceNeeds) {
    return Invalid(absl::StrCat("needs.service_categories holds at most ", kMaxServiceNeeds,
                                " categories (", kMaxNeeds, " needs with the placement)"));
  }
  for (int i = 0; i < needs.service_categories_size(); ++i) {
    const int c = needs.service_categories(i);
    if (c == dir::SERVICE_CATEGORY_UNSPECIFIED || !dir::ServiceCategory_IsValid(c)) {
      return Invalid("needs.service_categories holds an unknown category");
    }
    if (c == dir::SERVICE_CATEGORY_SECURE_CRISIS_RESIDENTIAL_CENTER) {
      return Invalid(
          "needs.service_categories: a secure (locked) placement is never a referral destination");
    }
    for (int j = 0; j < i; ++j) {
      if (needs.service_categories(j) == c) {
        return Invalid(absl::StrCat("needs.service_categories lists ", dir::ServiceCategory_Name(c),
                                    " twice (each category is one need)"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<v1::Needs> SplitNeeds(const v1::Needs& needs) {
  std::vector<v1::Needs> out;
  if (needs.placement_tonight()) out.emplace_back().set_placement_tonight(true);
  for (int c : needs.service_categories()) {
    out.emplace_back().add_service_categories(static_cast<dir::ServiceCategory>(c));
  }
  return out;
}

absl::Status ValidateCreate(const v1::CreateReferralRequest& req, const CountyTable& counties) {
  SH_RETURN_IF_ERROR(ValidateYouth(req.youth()));
  if (counties.Find(req.county_fips()) == nullptr) {
    return Invalid("county_fips must be a known county FIPS code (where the youth was identified)");
  }
  if (req.has_location()) {
    SH_RETURN_IF_ERROR(
        ValidateLatLng(req.location().latitude(), req.location().longitude(), "location"));
  }
  const v1::Needs& needs = req.needs();
  if (!needs.placement_tonight() && needs.service_categories().empty()) {
    return Invalid("needs: ask for placement_tonight or at least one service category");
  }
  SH_RETURN_IF_ERROR(ValidateCategories(needs));
  if (!v1::Urgency_IsValid(req.urgency())) return Invalid("urgency is not a known value");
  const auto& rc = req.referrer_contact();
  SH_RETURN_IF_ERROR(CheckText(rc.name(), 100, "referrer_contact.name", false));
  SH_RETURN_IF_ERROR(CheckText(rc.phone(), 32, "referrer_contact.phone", true));
  return CheckText(rc.unit(), 100, "referrer_contact.unit", false);
}

absl::Status ValidateReason(absl::string_view reason) {
  return CheckText(reason, 500, "reason", true);
}

v1::Offer* PendingOfferTo(v1::Referral& r, absl::string_view org) {
  for (auto& o : *r.mutable_offers()) {
    if (o.provider_organization_id() == org && o.state() == v1::OFFER_STATE_PENDING) return &o;
  }
  return nullptr;
}

v1::Offer* OpenOfferTo(v1::Referral& r, absl::string_view org) {
  for (auto& o : *r.mutable_offers()) {
    if (o.provider_organization_id() == org && IsOpenOffer(o.state())) return &o;
  }
  return nullptr;
}

bool AnyPending(const v1::Referral& r) {
  for (const auto& o : r.offers()) {
    if (o.state() == v1::OFFER_STATE_PENDING) return true;
  }
  return false;
}

void CloseOffers(v1::Referral& r, v1::OfferState state, std::vector<std::string>* holds) {
  for (auto& o : *r.mutable_offers()) {
    if (IsOpenOffer(o.state())) o.set_state(state);
  }
  if (!r.bed_hold_id().empty()) holds->push_back(r.bed_hold_id());
  r.clear_bed_hold_id();
  r.clear_acceptance_deadline();
}

absl::Status ValidateOutcome(v1::ReferralStatus outcome) {
  if (outcome != v1::REFERRAL_STATUS_COMPLETED && outcome != v1::REFERRAL_STATUS_YOUTH_DECLINED &&
      outcome != v1::REFERRAL_STATUS_COULD_NOT_CONTACT) {
    return Invalid("outcome must be COMPLETED, YOUTH_DECLINED or COULD_NOT_CONTACT");
  }
  return absl::OkStatus();
}

bool BackToRoutingIfUnanswered(v1::Referral& r, std::vector<std::string>* holds) {
  if (AnyPending(r)) return false;
  if (!r.bed_hold_id().empty()) holds->push_back(r.bed_hold_id());
  r.clear_bed_hold_id();
  r.clear_acceptance_deadline();
  r.set_reroutes(r.reroutes() + 1);
  return true;
}

int LapseWaitlisted(v1::Referral& r, absl::Time now) {
  int lapsed = 0;
  for (auto& o : *r.mutable_offers()) {
    if (o.state() == v1::OFFER_STATE_WAITLISTED && FromProtoTime(o.respond_by()) <= now) {
      o.set_state(v1::OFFER_STATE_EXPIRED);
      ++lapsed;
    }
  }
  return lapsed;
}

namespace {

absl::Status CheckReasonText(const std::string& text, v1::ReasonCode code) {
  SH_RETURN_IF_ERROR(CheckText(text, 500, "reason", false));
  if (code == v1::REASON_CODE_OTHER && text.empty()) {
    return Invalid("reason: REASON_CODE_OTHER needs reason text saying what");
  }
  return absl::OkStatus();
}

absl::Status CheckCode(v1::ReasonCode code) {
  if (!v1::ReasonCode_IsValid(code)) return Invalid("reason_code is not a known value");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::ReasonCode> DeclineCode(const v1::DeclineReferralRequest& req) {
  SH_RETURN_IF_ERROR(CheckCode(req.reason_code()));
  v1::ReasonCode code = req.reason_code();
  if (code == v1::REASON_CODE_UNSPECIFIED) {
    // An older client sends text alone: kept, and counted as "other".
    if (req.reason().empty()) {
      return Invalid("reason_code is required (why the offer is declined, e.g. AT_CAPACITY)");
    }
    code = v1::REASON_CODE_OTHER;
  }
  if (code == v1::REASON_CODE_COMPLETED) {
    return Invalid("reason_code: REASON_CODE_COMPLETED is an outcome, not a reason to decline");
  }
  SH_RETURN_IF_ERROR(CheckReasonText(req.reason(), code));
  return code;
}

absl::StatusOr<v1::ReasonCode> OutcomeCode(const v1::RecordOutcomeRequest& req) {
  SH_RETURN_IF_ERROR(ValidateOutcome(req.outcome()));
  SH_RETURN_IF_ERROR(CheckCode(req.reason_code()));
  v1::ReasonCode own = v1::REASON_CODE_COMPLETED;
  if (req.outcome() == v1::REFERRAL_STATUS_YOUTH_DECLINED) own = v1::REASON_CODE_YOUTH_DECLINED;
  if (req.outcome() == v1::REFERRAL_STATUS_COULD_NOT_CONTACT) {
    own = v1::REASON_CODE_COULD_NOT_CONTACT;
  }
  const v1::ReasonCode code =
      req.reason_code() == v1::REASON_CODE_UNSPECIFIED ? own : req.reason_code();
  const bool consistent =
      code == own || code == v1::REASON_CODE_OTHER ||
      (own == v1::REASON_CODE_COMPLETED && code == v1::REASON_CODE_REFERRED_ELSEWHERE);
  if (!consistent) {
    return Invalid(absl::StrCat("reason_code ", v1::ReasonCode_Name(code),
                                " does not fit the outcome ",
                                v1::ReferralStatus_Name(req.outcome())));
  }
  SH_RETURN_IF_ERROR(CheckReasonText(req.reason(), code));
  return code;
}

absl::Status ValidateWaitlist(const v1::WaitlistReferralRequest& req) {
  SH_RETURN_IF_ERROR(ValidateId(req.id(), "id"));
  if (!req.has_until()) return Invalid("until is required (until when the offer stays open)");
  return CheckText(req.reason(), 500, "reason", false);
}

std::string ReasonLabel(v1::ReasonCode code) {
  if (code == v1::REASON_CODE_UNSPECIFIED || !v1::ReasonCode_IsValid(code)) return "unspecified";
  std::string label = absl::AsciiStrToLower(v1::ReasonCode_Name(code).substr(12));
  for (char& ch : label) ch = ch == '_' ? ' ' : ch;
  return label;
}

}  // namespace safeharbor::referrals
