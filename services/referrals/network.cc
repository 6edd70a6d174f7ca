#include "services/referrals/network.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/counties.h"
#include "common/proto_time.h"
#include "common/status_macros.h"

namespace safeharbor::referrals {
namespace {

namespace dir = directory::v1;

dir::ServiceCategory CategoryOf(beds::v1::PlacementType t) {
  switch (t) {
    case beds::v1::PLACEMENT_TYPE_CRISIS_RESIDENTIAL_CENTER:
      return dir::SERVICE_CATEGORY_CRISIS_RESIDENTIAL_CENTER;
    case beds::v1::PLACEMENT_TYPE_HOPE_CENTER:
      return dir::SERVICE_CATEGORY_HOPE_CENTER;
    case beds::v1::PLACEMENT_TYPE_RECEIVING_CENTER:
      return dir::SERVICE_CATEGORY_RECEIVING_CENTER;
    case beds::v1::PLACEMENT_TYPE_SPECIALIZED_FOSTER_HOME:
      return dir::SERVICE_CATEGORY_SPECIALIZED_FOSTER_HOME;
    case beds::v1::PLACEMENT_TYPE_THERAPEUTIC_GROUP_HOME:
      return dir::SERVICE_CATEGORY_THERAPEUTIC_GROUP_HOME;
    case beds::v1::PLACEMENT_TYPE_EMERGENCY_YOUTH_SHELTER:
      return dir::SERVICE_CATEGORY_EMERGENCY_YOUTH_SHELTER;
    default:  // Secure crisis residential and detention: never routable.
      return dir::SERVICE_CATEGORY_SECURE_CRISIS_RESIDENTIAL_CENTER;
  }
}

std::string FirstPhone(const dir::Organization& org) {
  for (const auto& p : org.phones()) return p.number();
  for (const auto& c : org.contacts()) {
    for (const auto& p : c.phones()) return p.number();
  }
  return "";
}

std::string Place(absl::string_view name, const dir::Location* loc) {
  if (loc == nullptr) return std::string(name);
  std::vector<std::string> parts = {std::string(name)};
  for (const std::string* s : {&loc->address_1(), &loc->city()}) {
    if (!s->empty()) parts.push_back(*s);
  }
  return absl::StrJoin(parts, ", ");
}

}  // namespace

std::vector<beds::v1::BedType> BedTypesFor(dir::Gender gender) {
  using B = beds::v1::BedType;
  switch (gender) {
    case dir::GENDER_FEMALE:
      return {B::BED_TYPE_FEMALE, B::BED_TYPE_GENERAL, B::BED_TYPE_GENDER_AFFIRMING};
    case dir::GENDER_MALE:
      return {B::BED_TYPE_MALE, B::BED_TYPE_GENERAL, B::BED_TYPE_GENDER_AFFIRMING};
    case dir::GENDER_NONBINARY:
      return {B::BED_TYPE_GENDER_AFFIRMING, B::BED_TYPE_GENERAL};
    default:
      return {B::BED_TYPE_GENERAL};
  }
}

GrpcNetwork::GrpcNetwork(std::unique_ptr<Peer> directory, std::unique_ptr<Peer> beds,
                         const CountyTable& counties, GrpcNetworkOptions options)
    : directory_peer_(std::move(directory)),
      beds_peer_(std::move(beds)),
      directory_(dir::DirectoryService::NewStub(directory_peer_->channel())),
      beds_(beds::v1::BedsService::NewStub(beds_peer_->channel())),
      counties_(counties),
      options_(options) {}

absl::StatusOr<dir::Organization> GrpcNetwork::Organization(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = orgs_.find(id);
    if (it != orgs_.end() && absl::Now() - it->second.first < options_.organization_cache_ttl) {
      return it->second.second;
    }
  }
  dir::GetOrganizationRequest req;
  req.set_id(id);
  dir::GetOrganizationResponse resp;
  absl::Status st = directory_peer_->CallIdempotent(
      [&](grpc::ClientContext* ctx) { return directory_->GetOrganization(ctx, req, &resp); });
  if (!st.ok()) return st;
  std::lock_guard<std::mutex> lock(mu_);
  if (orgs_.size() > 1024) orgs_.clear();  // Bounded; refilled on demand.
  orgs_[id] = {absl::Now(), resp.organization()};
  return resp.organization();
}

absl::StatusOr<std::vector<Option>> GrpcNetwork::FindServices(const v1::Referral& r,
                                                              absl::Time now) {
  dir::SearchServicesRequest req;
  auto [lat, lon] = SearchOrigin(r.has_location(), r.location().latitude(),
                                 r.location().longitude(), counties_, r.county_fips());
  req.mutable_near()->set_latitude(lat);
  req.mutable_near()->set_longitude(lon);
  req.set_radius_meters(options_.search_radius_meters);
  for (int c : r.needs().service_categories()) {
    req.add_categories(static_cast<dir::ServiceCategory>(c));
  }
  req.set_age(r.youth().age());
  req.set_gender(r.youth().gender());
  *req.mutable_open_at() = ToProtoTime(now);
  req.set_accepting_referrals_only(true);
  req.set_page_size(options_.max_options);
  dir::SearchServicesResponse resp;
  absl::Status st = directory_peer_->CallIdempotent(
      [&](grpc::ClientContext* ctx) { return directory_->SearchServices(ctx, req, &resp); });
  if (!st.ok()) return st;
  std::vector<Option> out;
  for (const auto& m : resp.matches()) {
    const dir::Service& s = m.service();
    Option o;
    o.provider_organization_id = s.organization_id();
    o.service_id = s.id();
    o.category = s.category();
    o.routable = s.category() != dir::SERVICE_CATEGORY_SECURE_CRISIS_RESIDENTIAL_CENTER;
    o.csec_specialized = s.csec_specialized();
    o.open_24_7 = s.schedule().open_24_7();
    o.languages.assign(s.languages().begin(), s.languages().end());
    o.distance_meters = m.distance_meters();
    o.location_id = s.location_id();
    o.name = absl::StrCat(m.organization_name(), " — ", s.name());
    if (r.safety().exploiter_known_in_area()) {
      // Where the service is delivered decides whether it is "in the area".
      auto org = Organization(s.organization_id());
      if (!org.ok()) return org.status();
      o.county_fips = org->county_fips();
      for (const auto& loc : org->locations()) {
        if (loc.id() == s.location_id() && !loc.county_fips().empty())
          o.county_fips = loc.county_fips();
      }
    }
    out.push_back(std::move(o));
  }
  return out;
}

absl::StatusOr<std::vector<Option>> GrpcNetwork::FindBeds(const v1::Referral& r) {
  beds::v1::SearchAvailabilityRequest req;
  auto [lat, lon] = SearchOrigin(r.has_location(), r.location().latitude(),
                                 r.location().longitude(), counties_, r.county_fips());
  req.mutable_near()->set_latitude(lat);
  req.mutable_near()->set_longitude(lon);
  req.set_radius_meters(options_.search_radius_meters);
  req.set_age(r.youth().age());
  req.set_gender(static_cast<beds::v1::Gender>(r.youth().gender()));
  const std::vector<beds::v1::BedType> types = BedTypesFor(r.youth().gender());
  for (auto t : types) req.add_bed_types(t);
  req.set_max_staleness_seconds(12 * 3600);
  req.set_page_size(options_.max_options);
  beds::v1::SearchAvailabilityResponse resp;
  absl::Status st = beds_peer_->CallIdempotent(
      [&](grpc::ClientContext* ctx) { return beds_->SearchAvailability(ctx, req, &resp); });
  if (!st.ok()) return st;
  std::vector<Option> out;
  for (const auto& fa : resp.results()) {
    const beds::v1::Facility& f = fa.facility();
    // The best-fitting bed type with a bed free now.
    beds::v1::BedType chosen = beds::v1::BED_TYPE_UNSPECIFIED;
    for (auto t : types) {
      for (const auto& b : fa.beds()) {
        if (b.bed_type() == t && b.status() == beds::v1::AVAILABILITY_STATUS_KNOWN &&
            b.available_beds() > 0 && chosen == beds::v1::BED_TYPE_UNSPECIFIED) {
          chosen = t;
        }
      }
    }
    if (chosen == beds::v1::BED_TYPE_UNSPECIFIED) continue;
    Option o;
    o.provider_organization_id = f.organization_id();
    o.facility_id = f.id();
    o.bed_type = chosen;
    o.category = CategoryOf(f.placement_type());
    o.routable =
        f.routable() && o.category != dir::SERVICE_CATEGORY_SECURE_CRISIS_RESIDENTIAL_CENTER;
    o.csec_specialized = f.csec_specialized();
    o.county_fips = f.county_fips();
    o.distance_meters = fa.distance_meters();
    o.name = f.name();
    out.push_back(std::move(o));
  }
  return out;
}

absl::StatusOr<std::string> GrpcNetwork::HoldBed(const std::string& request_id,
                                                 const v1::Candidate& candidate,
                                                 const std::string& referral_id,
                                                 const std::string& for_org, absl::Duration ttl) {
  beds::v1::HoldBedRequest req;
  req.set_request_id(request_id);
  req.set_facility_id(candidate.facility_id());
  req.set_bed_type(candidate.bed_type());
  req.set_referral_id(referral_id);
  req.set_for_organization_id(for_org);
  req.set_ttl_seconds(static_cast<int32_t>(absl::ToInt64Seconds(ttl)));
  beds::v1::HoldBedResponse resp;
  absl::Status st = beds_peer_->CallIdempotent(
      [&](grpc::ClientContext* ctx) { return beds_->HoldBed(ctx, req, &resp); });
  if (!st.ok()) return st;
  return resp.hold().id();
}

absl::Status GrpcNetwork::ReleaseHold(const std::string& hold_id) {
  beds::v1::ReleaseHoldRequest req;
  req.set_hold_id(hold_id);
  beds::v1::ReleaseHoldResponse resp;
  return beds_peer_->CallIdempotent(
      [&](grpc::ClientContext* ctx) { return beds_->ReleaseHold(ctx, req, &resp); });
}

absl::StatusOr<absl::Time> GrpcNetwork::ExtendHold(const std::string& request_id,
                                                   const std::string& hold_id,
                                                   absl::Time expire_time) {
  beds::v1::ExtendHoldRequest req;
  req.set_request_id(request_id);
  req.set_hold_id(hold_id);
  *req.mutable_expire_time() = ToProtoTime(expire_time);
  beds::v1::ExtendHoldResponse resp;
  SH_RETURN_IF_ERROR(beds_peer_->CallIdempotent(
      [&](grpc::ClientContext* ctx) { return beds_->ExtendHold(ctx, req, &resp); }));
  return FromProtoTime(resp.hold().expire_time());
}

absl::Status GrpcNetwork::ConfirmPlacement(const std::string& request_id,
                                           const std::string& hold_id) {
  beds::v1::ConfirmPlacementRequest req;
  req.set_request_id(request_id);
  req.set_hold_id(hold_id);
  beds::v1::ConfirmPlacementResponse resp;
  return beds_peer_->CallIdempotent(
      [&](grpc::ClientContext* ctx) { return beds_->ConfirmPlacement(ctx, req, &resp); });
}

absl::StatusOr<v1::Handoff> GrpcNetwork::HandoffFor(const Option& option) {
  auto org = Organization(option.provider_organization_id);
  if (!org.ok()) return org.status();
  const dir::Location* loc = org->locations().empty() ? nullptr : &org->locations(0);
  for (const auto& l : org->locations()) {
    if (!option.location_id.empty() && l.id() == option.location_id) loc = &l;
  }
  v1::Handoff h;
  h.set_provider_organization_id(org->id());
  h.set_provider_name(org->name());
  h.set_place(Place(option.name.empty() ? org->name() : option.name, loc));
  h.set_contact_phone(FirstPhone(*org));
  return h;
}

absl::StatusOr<v1::Handoff> GrpcNetwork::OnCallOffice(const std::string& county_fips) {
  // The county's own office first, else any office in the state: never no one.
  for (const std::string& county : {county_fips, std::string()}) {
    dir::ListOrganizationsRequest req;
    req.set_kind(dir::ORGANIZATION_KIND_CHILD_WELFARE_OFFICE);
    req.set_county_fips(county);
    req.set_page_size(1);
    dir::ListOrganizationsResponse resp;
    absl::Status st = directory_peer_->CallIdempotent(
        [&](grpc::ClientContext* ctx) { return directory_->ListOrganizations(ctx, req, &resp); });
    if (!st.ok()) return st;
    if (resp.organizations().empty()) continue;
    const dir::Organization& org = resp.organizations(0);
    v1::Handoff h;
    h.set_provider_organization_id(org.id());
    h.set_provider_name(org.name());
    h.set_place(Place(org.name(), org.locations().empty() ? nullptr : &org.locations(0)));
    h.set_contact_phone(FirstPhone(org));
    return h;
  }
  return absl::FailedPreconditionError(
      "the directory lists no child-welfare office to escalate to");
}

absl::StatusOr<std::vector<std::string>> GrpcNetwork::OrganizationCounties(
    const std::string& org_id) {
  auto org = Organization(org_id);
  if (!org.ok()) return org.status();
  std::vector<std::string> out;
  if (!org->county_fips().empty()) out.push_back(org->county_fips());
  for (const auto& l : org->locations()) {
    if (!l.county_fips().empty()) out.push_back(l.county_fips());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace safeharbor::referrals
