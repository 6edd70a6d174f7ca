// The method tables are data that tests read: every RPC of every SafeHarbor proto has an entry,
// and every role's certificate is refused (PERMISSION_DENIED) exactly where its entry says, for
// every RPC of the four services hosted for real (in process, over mTLS, on PostgreSQL).
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <set>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/clock.h"
#include "common/counties.h"
#include "common/proto_time.h"
#include "common/rpc_kit.h"
#include "common/sealer.h"
#include "common/service_spec.h"
#include "common/testing/harness.h"
#include "common/testing/hosted.h"
#include "services/beds/beds_service.h"
#include "services/directory/directory_service.h"
#include "services/fees/fee_service.h"
#include "services/referrals/referral_service.h"

namespace safeharbor {
namespace directory {
const std::vector<Migration>& Migrations();
}
namespace beds {
const std::vector<Migration>& Migrations();
}
namespace fees {
const std::vector<Migration>& Migrations();
}
namespace referrals {
const std::vector<Migration>& Migrations();
}
}  // namespace safeharbor

namespace safeharbor {
namespace {

using testing::Hosted;
using testing::TestServers;

// The directory's facts for the fee service: two courts, an agency, a county fiscal office.
class FixedRecipients final : public fees::RecipientSource {
 public:
  absl::StatusOr<std::vector<std::string>> LocalProviders(absl::string_view) const override {
    return std::vector<std::string>();
  }
  absl::StatusOr<fees::OrganizationFacts> Organization(absl::string_view id) const override {
    namespace d = directory::v1;
    static const auto* facts = new std::map<std::string, fees::OrganizationFacts, std::less<>>{
        {"scope-court-a", {d::ORGANIZATION_KIND_COURT, "53033"}},
        {"scope-court-b", {d::ORGANIZATION_KIND_COURT, "53053"}},
        {"scope-le", {d::ORGANIZATION_KIND_LAW_ENFORCEMENT_AGENCY, "53033"}},
        {"scope-fiscal-a", {d::ORGANIZATION_KIND_STATE_AGENCY, "53033"}}};
    auto it = facts->find(id);
    if (it == facts->end()) return absl::NotFoundError("not in the directory");
    return it->second;
  }
};

// The network of the matrix: the referrals of agency "scope-le-X" are offered to provider
// "scope-prov-X" alone (for the scoping pairs); everything else finds it down (the matrix's own
// empty requests never reach routing).
class ScopeNetwork final : public referrals::Network {
  absl::Status Down() const { return absl::UnavailableError("no network in this test"); }

 public:
  absl::StatusOr<std::vector<referrals::Option>> FindServices(const referrals::v1::Referral& r,
                                                              absl::Time) override {
    constexpr absl::string_view kAgency = "scope-le-";
    if (!absl::StartsWith(r.referrer_organization_id(), kAgency)) return Down();
    referrals::Option o;
    o.provider_organization_id =
        absl::StrCat("scope-prov-", r.referrer_organization_id().substr(kAgency.size()));
    o.service_id = absl::StrCat("svc-", o.provider_organization_id);
    o.location_id = "main";
    o.name = "Scope advocacy";
    o.category = directory::v1::SERVICE_CATEGORY_CSEC_ADVOCACY;
    o.county_fips = "53033";
    return std::vector<referrals::Option>{o};
  }
  absl::StatusOr<std::vector<referrals::Option>> FindBeds(const referrals::v1::Referral&) override {
    return Down();
  }
  absl::StatusOr<std::string> HoldBed(const std::string&, const referrals::v1::Candidate&,
                                      const std::string&, const std::string&,
                                      absl::Duration) override {
    return Down();
  }
  absl::Status ReleaseHold(const std::string&) override { return Down(); }
  absl::StatusOr<absl::Time> ExtendHold(const std::string&, const std::string&,
                                        absl::Time) override {
    return Down();
  }
  absl::Status ConfirmPlacement(const std::string&, const std::string&) override { return Down(); }
  absl::StatusOr<referrals::v1::Handoff> HandoffFor(const referrals::Option& o) override {
    referrals::v1::Handoff h;
    h.set_provider_organization_id(o.provider_organization_id);
    h.set_provider_name(o.name);
    h.set_place("Main office");
    h.set_contact_phone("+1 206-555-0100");
    return h;
  }
  absl::StatusOr<referrals::v1::Handoff> OnCallOffice(const std::string&) override {
    return Down();
  }
  absl::StatusOr<std::vector<std::string>> OrganizationCounties(const std::string&) override {
    return std::vector<std::string>();
  }
};

// One call of any method with an empty request, through gRPC's generic stub (unary or server
// streaming alike): the final status.
class RawCall final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  RawCall(grpc::GenericStub* stub, const std::string& path, absl::Duration timeout) {
    ctx_.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    grpc::Slice empty("");
    request_ = grpc::ByteBuffer(&empty, 1);
    stub->PrepareBidiStreamingCall(&ctx_, path, grpc::StubOptions(), this);
    StartWriteLast(&request_, grpc::WriteOptions());
    StartRead(&response_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (ok) StartRead(&response_);
  }
  void OnDone(const grpc::Status& s) override { done_.set_value(s); }
  grpc::Status Await() { return done_.get_future().get(); }

 private:
  grpc::ClientContext ctx_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  std::promise<grpc::Status> done_;
};

// Scoping pairs: every RPC that takes the id of an organization's object, called by one
// organization's certificate once with its own object and once with another organization's.
// An RPC scoped to its organization (or the object's parties) admits the first and refuses the
// second with PERMISSION_DENIED; a read open to every organization admits both.
struct ScopePair {
  std::string rpc;
  bool scoped;  // false: open to every organization by design
  std::function<grpc::Status()> own, other;
};

std::unique_ptr<grpc::ClientContext> Deadline() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return ctx;
}

template <typename Stub, typename Req, typename Resp>
grpc::Status Call(Stub* stub, grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                  const Req& req, Resp* resp = nullptr) {
  Resp ignored;
  return (stub->*method)(Deadline().get(), req, resp != nullptr ? resp : &ignored);
}

namespace dv1 = directory::v1;
namespace bv1 = beds::v1;
namespace fv1 = fees::v1;
namespace rv1 = referrals::v1;

dv1::Organization ScopeProvider(const std::string& id) {
  dv1::Organization o;
  o.set_id(id);
  o.set_kind(dv1::ORGANIZATION_KIND_SERVICE_PROVIDER);
  o.set_name(id);
  o.set_county_fips("53033");
  auto* l = o.add_locations();
  l->set_id("main");
  l->set_latitude(47.6);
  l->set_longitude(-122.3);
  l->set_county_fips("53033");
  return o;
}

dv1::Service ScopeService(const std::string& id, const std::string& org) {
  dv1::Service s;
  s.set_id(id);
  s.set_organization_id(org);
  s.set_name(id);
  s.set_category(dv1::SERVICE_CATEGORY_CSEC_ADVOCACY);
  s.set_minimum_age(12);
  s.set_maximum_age(17);
  s.mutable_schedule()->set_open_24_7(true);
  s.mutable_schedule()->set_time_zone("America/Los_Angeles");
  s.add_service_area_county_fips("53033");
  s.set_status(dv1::SERVICE_STATUS_ACTIVE);
  s.set_location_id("main");
  return s;
}

std::vector<ScopePair> DirectoryPairs(int port) {
  auto admin = dv1::DirectoryService::NewStub(
      TestServers::Get().Channel(port, "mt-directory", "directory_admin"));
  std::map<std::string, dv1::Organization> orgs;
  std::map<std::string, dv1::Service> services;
  for (const char* id : {"scope-prov-a", "scope-prov-b"}) {
    dv1::CreateOrganizationRequest req;
    req.set_request_id(id);
    *req.mutable_organization() = ScopeProvider(id);
    dv1::CreateOrganizationResponse resp;
    EXPECT_TRUE(
        Call(admin.get(), &dv1::DirectoryService::Stub::CreateOrganization, req, &resp).ok());
    orgs[id] = resp.organization();
    dv1::CreateServiceRequest sreq;
    sreq.set_request_id(id);
    *sreq.mutable_service() = ScopeService(absl::StrCat("svc-", id), id);
    dv1::CreateServiceResponse sresp;
    EXPECT_TRUE(Call(admin.get(), &dv1::DirectoryService::Stub::CreateService, sreq, &sresp).ok());
    services[id] = sresp.service();
  }
  std::shared_ptr<dv1::DirectoryService::Stub> p(
      dv1::DirectoryService::NewStub(TestServers::Get().Channel(port, "scope-prov-a", "provider")));
  using S = dv1::DirectoryService::Stub;
  auto update_org = [p, orgs](const std::string& id) {
    dv1::UpdateOrganizationRequest req;
    *req.mutable_organization() = orgs.at(id);
    req.mutable_organization()->set_description("edited");
    return Call(p.get(), &S::UpdateOrganization, req);
  };
  auto create_svc = [p](const std::string& org) {
    dv1::CreateServiceRequest req;
    req.set_request_id(absl::StrCat("new-", org));
    *req.mutable_service() = ScopeService(absl::StrCat("svc2-", org), org);
    return Call(p.get(), &S::CreateService, req);
  };
  auto update_svc = [p, services](const std::string& org) {
    dv1::UpdateServiceRequest req;
    *req.mutable_service() = services.at(org);
    req.mutable_service()->set_description("edited");
    return Call(p.get(), &S::UpdateService, req);
  };
  auto get_org = [p](const std::string& id) {
    dv1::GetOrganizationRequest req;
    req.set_id(id);
    return Call(p.get(), &S::GetOrganization, req);
  };
  auto get_svc = [p](const std::string& org) {
    dv1::GetServiceRequest req;
    req.set_id(absl::StrCat("svc-", org));
    return Call(p.get(), &S::GetService, req);
  };
  auto list_svc = [p](const std::string& org) {
    dv1::ListServicesRequest req;
    req.set_organization_id(org);
    return Call(p.get(), &S::ListServices, req);
  };
  std::vector<ScopePair> out;
  for (auto [rpc, scoped, f] :
       {std::tuple<std::string, bool, std::function<grpc::Status(const std::string&)>>{
            "UpdateOrganization", true, update_org},
        {"CreateService", true, create_svc},
        {"UpdateService", true, update_svc},
        {"GetOrganization", false, get_org},
        {"GetService", false, get_svc},
        {"ListServices", false, list_svc}}) {
    out.push_back({"directory." + rpc, scoped, [f] { return f("scope-prov-a"); },
                   [f] { return f("scope-prov-b"); }});
  }
  return out;
}

bv1::Facility ScopeFacility(const std::string& id, const std::string& org) {
  bv1::Facility f;
  f.set_id(id);
  f.set_organization_id(org);
  f.set_name(id);
  f.set_placement_type(bv1::PLACEMENT_TYPE_HOPE_CENTER);
  f.set_county_fips("53033");
  f.set_latitude(47.61);
  f.set_longitude(-122.33);
  f.set_minimum_age(12);
  f.set_maximum_age(17);
  auto* b = f.add_bed_types();
  b->set_bed_type(bv1::BED_TYPE_GENERAL);
  b->set_licensed_capacity(10);
  return f;
}

// Per organization: its facility (with a fresh census), two holds there, one placement.
struct BedsObjects {
  std::map<std::string, bv1::Facility> facility;
  std::map<std::string, std::vector<std::string>> holds;
  std::map<std::string, std::string> placement;
};

BedsObjects MakeBedsObjects(int port) {
  using S = bv1::BedsService::Stub;
  auto admin = bv1::BedsService::NewStub(
      TestServers::Get().Channel(port, "mt-directory", "directory_admin"));
  auto service = bv1::BedsService::NewStub(
      TestServers::Get().Channel(port, "safeharbor-referrals", "service"));
  BedsObjects o;
  for (const char* org : {"scope-prov-a", "scope-prov-b"}) {
    const std::string fid = absl::StrCat("fac-", org);
    bv1::CreateFacilityRequest create;
    create.set_request_id(fid);
    *create.mutable_facility() = ScopeFacility(fid, org);
    bv1::CreateFacilityResponse created;
    EXPECT_TRUE(Call(admin.get(), &S::CreateFacility, create, &created).ok());
    o.facility[org] = created.facility();
    auto owner = bv1::BedsService::NewStub(TestServers::Get().Channel(port, org, "provider"));
    bv1::ReportCensusRequest census;
    census.set_request_id(fid);
    census.set_facility_id(fid);
    *census.mutable_confirmed_time() = ToProtoTime(absl::Now());
    census.add_entries()->set_bed_type(bv1::BED_TYPE_GENERAL);
    EXPECT_TRUE(Call(owner.get(), &S::ReportCensus, census).ok());
    for (int i = 0; i < 3; ++i) {
      bv1::HoldBedRequest hold;
      hold.set_request_id(absl::StrCat(fid, "-", i));
      hold.set_facility_id(fid);
      hold.set_bed_type(bv1::BED_TYPE_GENERAL);
      hold.set_referral_id(absl::StrCat("ref-", fid, "-", i));
      bv1::HoldBedResponse held;
      EXPECT_TRUE(Call(service.get(), &S::HoldBed, hold, &held).ok());
      o.holds[org].push_back(held.hold().id());
    }
    bv1::ConfirmPlacementRequest confirm;
    confirm.set_request_id(absl::StrCat(fid, "-placed"));
    confirm.set_hold_id(o.holds[org].back());
    bv1::ConfirmPlacementResponse placed;
    EXPECT_TRUE(Call(service.get(), &S::ConfirmPlacement, confirm, &placed).ok());
    o.placement[org] = placed.placement().id();
  }
  return o;
}

std::vector<ScopePair> BedsPairs(int port) {
  using S = bv1::BedsService::Stub;
  const BedsObjects o = MakeBedsObjects(port);
  std::shared_ptr<S> p(
      bv1::BedsService::NewStub(TestServers::Get().Channel(port, "scope-prov-a", "provider")));
  std::vector<std::tuple<std::string, bool, std::function<grpc::Status(const std::string&)>>> rpcs;
  rpcs.emplace_back("UpdateFacility", true, [p, o](const std::string& org) {
    bv1::UpdateFacilityRequest req;
    *req.mutable_facility() = o.facility.at(org);
    req.mutable_facility()->set_name("edited");
    return Call(p.get(), &S::UpdateFacility, req);
  });
  rpcs.emplace_back("CreateFacility", true, [p](const std::string& org) {
    bv1::CreateFacilityRequest req;
    req.set_request_id(absl::StrCat("new-", org));
    *req.mutable_facility() = ScopeFacility(absl::StrCat("fac2-", org), org);
    return Call(p.get(), &S::CreateFacility, req);
  });
  rpcs.emplace_back("ReportCensus", true, [p, o](const std::string& org) {
    bv1::ReportCensusRequest req;
    req.set_request_id(absl::StrCat("census2-", org));
    req.set_facility_id(o.facility.at(org).id());
    *req.mutable_confirmed_time() = ToProtoTime(absl::Now());
    req.add_entries()->set_bed_type(bv1::BED_TYPE_GENERAL);
    return Call(p.get(), &S::ReportCensus, req);
  });
  rpcs.emplace_back("ReleaseHold", true, [p, o](const std::string& org) {
    bv1::ReleaseHoldRequest req;
    req.set_hold_id(o.holds.at(org)[0]);
    return Call(p.get(), &S::ReleaseHold, req);
  });
  rpcs.emplace_back("ConfirmPlacement", true, [p, o](const std::string& org) {
    bv1::ConfirmPlacementRequest req;
    req.set_request_id(absl::StrCat("confirm-", org));
    req.set_hold_id(o.holds.at(org)[1]);
    return Call(p.get(), &S::ConfirmPlacement, req);
  });
  rpcs.emplace_back("DischargePlacement", true, [p, o](const std::string& org) {
    bv1::DischargePlacementRequest req;
    req.set_placement_id(o.placement.at(org));
    return Call(p.get(), &S::DischargePlacement, req);
  });
  rpcs.emplace_back("GetFacility", false, [p, o](const std::string& org) {
    bv1::GetFacilityRequest req;
    req.set_id(o.facility.at(org).id());
    return Call(p.get(), &S::GetFacility, req);
  });
  std::vector<ScopePair> out;
  for (auto& [rpc, scoped, f] : rpcs) {
    out.push_back({"beds." + rpc, scoped, [f] { return f("scope-prov-a"); },
                   [f] { return f("scope-prov-b"); }});
  }
  return out;
}

fv1::Date Day(int y, int m, int d) {
  fv1::Date out;
  out.set_year(y);
  out.set_month(m);
  out.set_day(d);
  return out;
}

// Per court: an assessment with one payment.
struct FeeObjects {
  std::map<std::string, std::string> assessment, payment;
};

FeeObjects MakeFeeObjects(int port) {
  using S = fv1::FeeService::Stub;
  FeeObjects o;
  for (auto [court, county] : {std::pair{"scope-court-a", "53033"}, {"scope-court-b", "53053"}}) {
    auto clerk = fv1::FeeService::NewStub(TestServers::Get().Channel(port, court, "court_clerk"));
    fv1::RecordAssessmentRequest req;
    req.set_request_id(court);
    auto* a = req.mutable_assessment();
    a->set_case_number("26-1-1");
    a->set_jurisdiction_fips(county);
    a->set_statute(fv1::STATUTE_PATRONIZING);
    a->set_ordered_cents(150000);
    a->set_hosting_agency_organization_id("scope-le");
    *a->mutable_offense_date() = Day(2026, 3, 1);
    *a->mutable_assessed_date() = Day(2026, 4, 1);
    fv1::RecordAssessmentResponse assessed;
    grpc::Status st = Call(clerk.get(), &S::RecordAssessment, req, &assessed);
    EXPECT_TRUE(st.ok()) << st.error_message();
    o.assessment[court] = assessed.assessment().id();
    fv1::RecordPaymentRequest pay;
    pay.set_request_id(court);
    pay.set_assessment_id(o.assessment[court]);
    pay.set_amount_cents(1000);
    *pay.mutable_paid_date() = Day(2026, 5, 1);
    fv1::RecordPaymentResponse paid;
    EXPECT_TRUE(Call(clerk.get(), &S::RecordPayment, pay, &paid).ok());
    o.payment[court] = paid.payment().id();
  }
  return o;
}

std::vector<ScopePair> FeePairs(int port) {
  using S = fv1::FeeService::Stub;
  const FeeObjects o = MakeFeeObjects(port);
  std::shared_ptr<S> c(
      fv1::FeeService::NewStub(TestServers::Get().Channel(port, "scope-court-a", "court_clerk")));
  std::vector<std::tuple<std::string, bool, std::function<grpc::Status(const std::string&)>>> rpcs;
  rpcs.emplace_back("RecordAssessment", true, [c](const std::string& court) {
    fv1::RecordAssessmentRequest req;
    req.set_request_id(absl::StrCat("again-", court));
    auto* a = req.mutable_assessment();
    a->set_court_organization_id(court);
    a->set_case_number("26-1-2");
    a->set_jurisdiction_fips("53033");
    a->set_statute(fv1::STATUTE_PATRONIZING);
    a->set_ordered_cents(150000);
    *a->mutable_offense_date() = Day(2026, 3, 1);
    *a->mutable_assessed_date() = Day(2026, 4, 1);
    return Call(c.get(), &S::RecordAssessment, req);
  });
  rpcs.emplace_back("GetAssessment", true, [c, o](const std::string& court) {
    fv1::GetAssessmentRequest req;
    req.set_id(o.assessment.at(court));
    return Call(c.get(), &S::GetAssessment, req);
  });
  rpcs.emplace_back("RecordPayment", true, [c, o](const std::string& court) {
    fv1::RecordPaymentRequest req;
    req.set_request_id(absl::StrCat("pay2-", court));
    req.set_assessment_id(o.assessment.at(court));
    req.set_amount_cents(500);
    *req.mutable_paid_date() = Day(2026, 5, 2);
    return Call(c.get(), &S::RecordPayment, req);
  });
  rpcs.emplace_back("ReversePayment", true, [c, o](const std::string& court) {
    fv1::ReversePaymentRequest req;
    req.set_request_id(absl::StrCat("rev-", court));
    req.set_payment_id(o.payment.at(court));
    *req.mutable_reversed_date() = Day(2026, 5, 3);
    return Call(c.get(), &S::ReversePayment, req);
  });
  std::vector<ScopePair> out;
  for (auto& [rpc, scoped, f] : rpcs) {
    out.push_back({"fees." + rpc, scoped, [f] { return f("scope-court-a"); },
                   [f] { return f("scope-court-b"); }});
  }
  // A county's fiscal office, for its county's policy and another county's.
  std::shared_ptr<S> fiscal(
      fv1::FeeService::NewStub(TestServers::Get().Channel(port, "scope-fiscal-a", "fiscal")));
  auto adopt = [fiscal](const std::string& county) {
    fv1::AdoptDisbursementPolicyRequest req;
    req.set_request_id(absl::StrCat("policy-", county));
    auto* p = req.mutable_policy();
    p->set_fee_type("sex_buyer");
    p->set_jurisdiction_fips(county);
    const absl::CivilDay tomorrow = absl::ToCivilDay(absl::Now(), absl::UTCTimeZone()) + 1;
    *p->mutable_effective_from() =
        Day(static_cast<int>(tomorrow.year()), tomorrow.month(), tomorrow.day());
    for (auto [kind, bp] : {std::pair{fv1::RECIPIENT_KIND_LOCAL_PROVIDERS, 5000},
                            {fv1::RECIPIENT_KIND_HOSTING_AGENCY, 4800},
                            {fv1::RECIPIENT_KIND_COMMERCE, 200}}) {
      auto* share = p->add_shares();
      share->set_recipient_kind(kind);
      share->set_basis_points(bp);
    }
    return Call(fiscal.get(), &S::AdoptDisbursementPolicy, req);
  };
  out.push_back({"fees.AdoptDisbursementPolicy", true, [adopt] { return adopt("53033"); },
                 [adopt] { return adopt("53053"); }});
  return out;
}

rv1::CreateReferralRequest ScopeReferral(const std::string& rid) {
  rv1::CreateReferralRequest req;
  req.set_request_id(rid);
  req.mutable_referrer_contact()->set_name("Officer Lee");
  req.mutable_referrer_contact()->set_phone("+1 206-555-0142");
  auto* y = req.mutable_youth();
  y->set_youth_reference(rid);
  y->set_age(15);
  y->set_gender(dv1::GENDER_FEMALE);
  req.set_county_fips("53033");
  req.mutable_location()->set_latitude(47.6062);
  req.mutable_location()->set_longitude(-122.3321);
  req.mutable_needs()->add_service_categories(dv1::SERVICE_CATEGORY_CSEC_ADVOCACY);
  req.set_urgency(rv1::URGENCY_ROUTINE);
  return req;
}

// Per officer's agency: a referral it made (never routed here: the network is down).
std::vector<ScopePair> ReferralPairs(int port) {
  using S = rv1::ReferralService::Stub;
  std::map<std::string, std::string> referral;
  for (const char* org : {"scope-le-a", "scope-le-b"}) {
    auto officer =
        rv1::ReferralService::NewStub(TestServers::Get().Channel(port, org, "law_enforcement"));
    rv1::CreateReferralResponse created;
    grpc::Status st = Call(officer.get(), &S::CreateReferral, ScopeReferral(org), &created);
    EXPECT_TRUE(st.ok()) << st.error_message();
    referral[org] = created.referral().id();
  }
  std::shared_ptr<S> officer(rv1::ReferralService::NewStub(
      TestServers::Get().Channel(port, "scope-le-a", "law_enforcement")));
  auto get = [officer, referral](const std::string& org) {
    rv1::GetReferralRequest req;
    req.set_id(referral.at(org));
    return Call(officer.get(), &S::GetReferral, req);
  };
  auto cancel = [officer, referral](const std::string& org) {
    rv1::CancelReferralRequest req;
    req.set_id(referral.at(org));
    req.set_reason("reunited");
    return Call(officer.get(), &S::CancelReferral, req);
  };
  return {{"referrals.GetReferral", true, [get] { return get("scope-le-a"); },
           [get] { return get("scope-le-b"); }},
          {"referrals.CancelReferral", true, [cancel] { return cancel("scope-le-a"); },
           [cancel] { return cancel("scope-le-b"); }}};
}

// Provider "scope-prov-a" carries a referral offered to it through its lifecycle, and tries each
// step on the referral offered to "scope-prov-b"; a second referral offered to it is declined.
std::vector<ScopePair> ProviderPairs(int port, const std::function<void()>& route) {
  using S = rv1::ReferralService::Stub;
  std::map<std::string, std::string> id;  // "a", "a-decline", "a-wait", "b"
  for (const auto& [key, org] : std::vector<std::pair<std::string, std::string>>{
           {"a", "scope-le-a"},
           {"a-decline", "scope-le-a"},
           {"a-wait", "scope-le-a"},  // issue 14: WaitlistReferral
           {"b", "scope-le-b"}}) {
    auto officer =
        rv1::ReferralService::NewStub(TestServers::Get().Channel(port, org, "law_enforcement"));
    rv1::CreateReferralResponse created;
    grpc::Status st =
        Call(officer.get(), &S::CreateReferral, ScopeReferral("provider-" + key), &created);
    EXPECT_TRUE(st.ok()) << st.error_message();
    id[key] = created.referral().id();
  }
  route();  // offered: "a" and "a-decline" to scope-prov-a, "b" to scope-prov-b
  std::shared_ptr<S> prov(
      rv1::ReferralService::NewStub(TestServers::Get().Channel(port, "scope-prov-a", "provider")));
  auto step = [prov, id](const std::string& rpc, const std::string& key) -> grpc::Status {
    const std::string& rid = id.at(key);
    if (rpc == "AcceptReferral") {
      rv1::AcceptReferralRequest r;
      r.set_id(rid);
      r.set_request_id("accept-" + key);
      return Call(prov.get(), &S::AcceptReferral, r);
    }
    if (rpc == "DeclineReferral") {
      rv1::DeclineReferralRequest r;
      r.set_id(rid);
      r.set_reason("at capacity");
      r.set_reason_code(rv1::REASON_CODE_AT_CAPACITY);
      return Call(prov.get(), &S::DeclineReferral, r);
    }
    if (rpc == "WaitlistReferral") {  // issue 14
      rv1::WaitlistReferralRequest r;
      r.set_id(rid);
      *r.mutable_until() = ToProtoTime(absl::Now() + absl::Hours(2));
      return Call(prov.get(), &S::WaitlistReferral, r);
    }
    if (rpc == "ConfirmHandoff") {
      rv1::ConfirmHandoffRequest r;
      r.set_id(rid);
      return Call(prov.get(), &S::ConfirmHandoff, r);
    }
    if (rpc == "StartServices") {
      rv1::StartServicesRequest r;
      r.set_id(rid);
      return Call(prov.get(), &S::StartServices, r);
    }
    if (rpc == "GetReferralFhir") {
      rv1::GetReferralFhirRequest r;
      r.set_id(rid);
      return Call(prov.get(), &S::GetReferralFhir, r);
    }
    rv1::RecordOutcomeRequest r;
    r.set_id(rid);
    r.set_outcome(rv1::REFERRAL_STATUS_COMPLETED);
    return Call(prov.get(), &S::RecordOutcome, r);
  };
  std::vector<ScopePair> pairs;
  for (const char* rpc :
       {"AcceptReferral", "GetReferralFhir", "ConfirmHandoff", "StartServices", "RecordOutcome"}) {
    pairs.push_back({absl::StrCat("referrals.", rpc), true, [step, rpc] { return step(rpc, "a"); },
                     [step, rpc] { return step(rpc, "b"); }});
  }
  pairs.push_back({"referrals.DeclineReferral", true,
                   [step] { return step("DeclineReferral", "a-decline"); },
                   [step] { return step("DeclineReferral", "b"); }});
  pairs.push_back({"referrals.WaitlistReferral", true,
                   [step] { return step("WaitlistReferral", "a-wait"); },
                   [step] { return step("WaitlistReferral", "b"); }});
  return pairs;
}

// Webhooks (issue 15): each provider's own subscriptions; a call naming another organization is
// refused by the table's scope (PERMISSION_DENIED).
std::vector<ScopePair> WebhookPairs(int port) {
  using S = rv1::ReferralService::Stub;
  std::map<std::string, std::shared_ptr<S>> stub;
  std::map<std::string, std::string> rotate, remove;  // org -> subscription
  for (const char* org : {"scope-prov-a", "scope-prov-b"}) {
    stub[org] = rv1::ReferralService::NewStub(TestServers::Get().Channel(port, org, "provider"));
    for (auto* out : {&rotate, &remove}) {
      rv1::CreateWebhookSubscriptionRequest req;
      req.set_organization_id(org);
      req.set_url(absl::StrCat("https://hooks.example.org/", org));
      req.add_events(rv1::WEBHOOK_EVENT_TYPE_OFFER_MADE);
      rv1::CreateWebhookSubscriptionResponse made;
      grpc::Status st = Call(stub[org].get(), &S::CreateWebhookSubscription, req, &made);
      EXPECT_TRUE(st.ok()) << st.error_message();
      (*out)[org] = made.subscription().id();
    }
  }
  std::shared_ptr<S> p = stub["scope-prov-a"];
  std::vector<std::tuple<std::string, std::function<grpc::Status(const std::string&)>>> rpcs;
  rpcs.emplace_back("CreateWebhookSubscription", [p](const std::string& org) {
    rv1::CreateWebhookSubscriptionRequest req;
    req.set_organization_id(org);
    req.set_url("https://hooks.example.org/again");
    req.add_events(rv1::WEBHOOK_EVENT_TYPE_OFFER_LAPSING);
    return Call(p.get(), &S::CreateWebhookSubscription, req);
  });
  rpcs.emplace_back("ListWebhookSubscriptions", [p](const std::string& org) {
    rv1::ListWebhookSubscriptionsRequest req;
    req.set_organization_id(org);
    return Call(p.get(), &S::ListWebhookSubscriptions, req);
  });
  rpcs.emplace_back("RotateWebhookSecret", [p, rotate](const std::string& org) {
    rv1::RotateWebhookSecretRequest req;
    req.set_organization_id(org);
    req.set_subscription_id(rotate.at(org));
    return Call(p.get(), &S::RotateWebhookSecret, req);
  });
  rpcs.emplace_back("DeleteWebhookSubscription", [p, remove](const std::string& org) {
    rv1::DeleteWebhookSubscriptionRequest req;
    req.set_organization_id(org);
    req.set_subscription_id(remove.at(org));
    return Call(p.get(), &S::DeleteWebhookSubscription, req);
  });
  rpcs.emplace_back("ListWebhookDeadLetters", [p](const std::string& org) {
    rv1::ListWebhookDeadLettersRequest req;
    req.set_organization_id(org);
    return Call(p.get(), &S::ListWebhookDeadLetters, req);
  });
  rpcs.emplace_back("ReplayWebhookDeadLetters", [p](const std::string& org) {
    rv1::ReplayWebhookDeadLettersRequest req;
    req.set_organization_id(org);
    return Call(p.get(), &S::ReplayWebhookDeadLetters, req);
  });
  std::vector<ScopePair> out;
  for (auto& [rpc, f] : rpcs) {
    out.push_back({"referrals." + rpc, true, [f] { return f("scope-prov-a"); },
                   [f] { return f("scope-prov-b"); }});
  }
  return out;
}

class MethodTableTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    directory_.Connect("mtdir", directory::Migrations());
    directory_.service = std::make_unique<directory::DirectoryServiceImpl>(
        directory_.env.get(), directory_.pg.get(), nullptr, *directory_.registry,
        WashingtonCounties());
    directory_.Serve("directory");
    beds_.Connect("mtbeds", beds::Migrations());
    beds_.service = std::make_unique<beds::BedsServiceImpl>(
        beds_.env.get(), beds_.pg.get(), nullptr, *beds_.registry, WashingtonCounties(),
        SystemClock::Get(), nullptr);
    beds_.Serve("beds");
    fees_.Connect("mtfees", fees::Migrations());
    fees_.service = std::make_unique<fees::FeeServiceImpl>(
        fees_.env.get(), fees_.pg.get(), &recipients_, *fees_.registry, WashingtonCounties(),
        SystemClock::Get());
    fees_.Serve("fees");
    referrals_.Connect("mtref", referrals::Migrations());
    referrals_.service = std::make_unique<referrals::ReferralServiceImpl>(
        referrals_.env.get(), referrals_.pg.get(), nullptr, *referrals_.registry,
        WashingtonCounties(), SystemClock::Get(), &*sealer_, &network_);
    referrals_.service->StartBackground(/*timers=*/false);
    referrals_.Serve("referrals");
  }
  static void TearDownTestSuite() {
    referrals_.service->StopBackground();
    referrals_.Shutdown();
    fees_.Shutdown();
    beds_.Shutdown();
    directory_.Shutdown();
  }

  struct Served {
    const RpcService* service;
    int port;
  };
  static std::vector<Served> AllServed() {
    return {{directory_.service.get(), directory_.port()},
            {beds_.service.get(), beds_.port()},
            {fees_.service.get(), fees_.port()},
            {referrals_.service.get(), referrals_.port()}};
  }

  static inline Hosted<directory::DirectoryServiceImpl> directory_;
  static inline Hosted<beds::BedsServiceImpl> beds_;
  static inline Hosted<fees::FeeServiceImpl> fees_;
  static inline Hosted<referrals::ReferralServiceImpl> referrals_;
  static inline FixedRecipients recipients_;
  static inline ScopeNetwork network_;
  static inline absl::StatusOr<Sealer> sealer_ =
      Sealer::Create({{1, std::string(32, 'k')}}, 1, std::string(32, 'f'));
};

// Every proto file under protos/safeharbor: each service in it is served from a method table
// with one entry per RPC, and nothing else is served.
TEST_F(MethodTableTest, EveryRpcOfEveryProtoHasAnEntry) {
  std::map<std::string, const RpcService*> served;
  for (const Served& s : AllServed()) served[s.service->full_name()] = s.service;
  const auto root = std::filesystem::path(testing::SourceDir()) / "protos";
  std::set<std::string> in_protos;
  int rpcs = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root / "safeharbor")) {
    if (entry.path().extension() != ".proto") continue;
    const std::string rel = std::filesystem::relative(entry.path(), root).string();
    if (rel.rfind("safeharbor/testing/", 0) == 0) continue;  // the echo service of tests, bench
    const auto* file = google::protobuf::DescriptorPool::generated_pool()->FindFileByName(rel);
    ASSERT_NE(file, nullptr) << rel << " is not compiled into the services";
    for (int i = 0; i < file->service_count(); ++i) {
      const auto* svc = file->service(i);
      in_protos.insert(svc->full_name());
      ASSERT_TRUE(served.count(svc->full_name())) << svc->full_name() << " has no method table";
      const auto& table = served[svc->full_name()]->method_table();
      ASSERT_EQ(static_cast<int>(table.size()), svc->method_count()) << svc->full_name();
      for (int m = 0; m < svc->method_count(); ++m) {
        EXPECT_EQ(table[static_cast<size_t>(m)].name, svc->method(m)->name())
            << svc->full_name() << ": RPC without an entry";
        EXPECT_FALSE(table[static_cast<size_t>(m)].policy.roles.empty());
        ++rpcs;
      }
    }
  }
  for (const auto& [name, service] : served) {
    EXPECT_TRUE(in_protos.count(name)) << name << " is served but not in protos/";
  }
  // The one table of services names the same four.
  std::set<std::string> in_spec;
  for (const ServiceSpec& spec : ServiceSpecs()) in_spec.insert(spec.grpc_service);
  EXPECT_EQ(in_spec, in_protos);
  std::cout << "method tables: " << in_protos.size() << " services, " << rpcs
            << " RPCs, every one declared\n";
}

// Every RPC × every role: PERMISSION_DENIED exactly when the role is not in the entry.
TEST_F(MethodTableTest, RoleMatrixMatchesTheTables) {
  int pairs = 0, denied = 0;
  std::cout << absl::StrFormat("%-62s", "rpc");
  for (Role r : AllRoles()) std::cout << absl::StrFormat(" %-4.4s", RoleName(r));
  std::cout << "\n";
  for (const Served& s : AllServed()) {
    std::map<Role, std::unique_ptr<grpc::GenericStub>> stubs;
    for (Role r : AllRoles()) {
      const std::string role(RoleName(r));
      // Role "service" is trusted only under a known service's own identity.
      const std::string org = r == Role::kService
                                  ? "safeharbor-referrals"
                                  : absl::StrCat("matrix-org-", static_cast<int>(r));
      stubs[r] = std::make_unique<grpc::GenericStub>(TestServers::Get().Channel(s.port, org, role));
    }
    for (const MethodInfo& m : s.service->method_table()) {
      const std::string path = absl::StrCat("/", s.service->full_name(), "/", m.name);
      std::string row = absl::StrFormat("%-62s", absl::StrCat(s.service->full_name(), ".", m.name));
      for (Role r : AllRoles()) {
        RawCall call(stubs[r].get(), path,
                     m.server_streaming ? absl::Milliseconds(500) : absl::Seconds(10));
        const grpc::Status st = call.Await();
        const bool refused = st.error_code() == grpc::StatusCode::PERMISSION_DENIED;
        EXPECT_EQ(refused, !m.policy.roles.Has(r)) << path << " as " << RoleName(r) << ": "
                                                   << st.error_code() << " " << st.error_message();
        ++pairs;
        denied += refused ? 1 : 0;
        absl::StrAppend(&row, refused ? "  --  " : "  ok  ");
      }
      std::cout << row << "\n";
    }
  }
  std::cout << "role matrix: " << pairs << " RPC x role pairs called, " << denied
            << " refused with PERMISSION_DENIED, " << pairs - denied << " admitted\n";
}

// Issue 11: for every RPC that takes an id, the caller's own object and another organization's.
TEST_F(MethodTableTest, ScopingPairsAdmitOwnObjectsAndRefuseOthers) {
  std::vector<ScopePair> pairs;
  for (auto&& group : {DirectoryPairs(directory_.port()), BedsPairs(beds_.port()),
                       FeePairs(fees_.port()), ReferralPairs(referrals_.port()),
                       WebhookPairs(referrals_.port()), ProviderPairs(referrals_.port(), [] {
                         auto routed = referrals_.service->RunTimers();
                         EXPECT_TRUE(routed.ok()) << routed.status();
                       })}) {
    pairs.insert(pairs.end(), group.begin(), group.end());
  }
  int scoped = 0;
  for (const ScopePair& p : pairs) {
    const grpc::Status own = p.own(), other = p.other();
    EXPECT_TRUE(own.ok()) << p.rpc << " own object: " << own.error_code() << " "
                          << own.error_message();
    if (p.scoped) {
      EXPECT_EQ(other.error_code(), grpc::StatusCode::PERMISSION_DENIED)
          << p.rpc << " another organization's object: " << other.error_code() << " "
          << other.error_message();
    } else {
      EXPECT_TRUE(other.ok()) << p.rpc
                              << " (open to every organization): " << other.error_message();
    }
    scoped += p.scoped ? 1 : 0;
    std::cout << absl::StrFormat("%-36s own: %-18s other: %s\n", p.rpc,
                                 own.ok() ? "OK" : absl::StrCat(own.error_code()),
                                 other.ok() ? "OK"
                                 : other.error_code() == grpc::StatusCode::PERMISSION_DENIED
                                     ? "PERMISSION_DENIED"
                                     : absl::StrCat(other.error_code()));
  }
  std::cout << "scoping pairs: " << pairs.size() << " RPCs called with the caller's own object and "
            << "another organization's (" << scoped << " scoped, " << pairs.size() - scoped
            << " open to every organization)\n";
}

}  // namespace
}  // namespace safeharbor
