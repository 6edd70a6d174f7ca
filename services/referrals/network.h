// What the referral service asks of the rest of the network (the directory and the beds
// service). An interface so that routing can be tested against real in-process services or, for
// outage cases, against one that fails on demand. Every call is bounded by a deadline.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/counties.h"
#include "common/service_client.h"
#include "safeharbor/beds/v1/beds.grpc.pb.h"
#include "safeharbor/directory/v1/directory.grpc.pb.h"
#include "services/referrals/routing.h"

namespace safeharbor::referrals {

class Network {
 public:
  virtual ~Network() = default;
  // Non-residential options: directory services of the needed categories, eligible by age and
  // gender, open at `now` (or 24/7) and accepting referrals, within reach of the youth.
  virtual absl::StatusOr<std::vector<Option>> FindServices(const v1::Referral& r,
                                                           absl::Time now) = 0;
  // Placement options: routable facilities with a free bed, fresh census, of a type that fits.
  virtual absl::StatusOr<std::vector<Option>> FindBeds(const v1::Referral& r) = 0;
  // The hold id; FAILED_PRECONDITION when the bed is gone, RESOURCE_EXHAUSTED when the
  // referrer (`for_org`) has as many active holds as it may. Idempotent on request_id.
  virtual absl::StatusOr<std::string> HoldBed(const std::string& request_id,
                                              const v1::Candidate& candidate,
                                              const std::string& referral_id,
                                              const std::string& for_org, absl::Duration ttl) = 0;
  virtual absl::Status ReleaseHold(const std::string& hold_id) = 0;
  // Moves an active hold's expiry to `expire_time`; the expiry the beds service then reports.
  // FAILED_PRECONDITION / NOT_FOUND when the hold is gone. Idempotent on request_id.
  virtual absl::StatusOr<absl::Time> ExtendHold(const std::string& request_id,
                                                const std::string& hold_id,
                                                absl::Time expire_time) = 0;
  virtual absl::Status ConfirmPlacement(const std::string& request_id,
                                        const std::string& hold_id) = 0;
  // Where and whom to bring the youth to when `option` accepts.
  virtual absl::StatusOr<v1::Handoff> HandoffFor(const Option& option) = 0;
  // The county's on-call child-welfare office, as the place to bring the youth.
  virtual absl::StatusOr<v1::Handoff> OnCallOffice(const std::string& county_fips) = 0;
  // The counties an organization serves (its own and its locations'): a child-welfare office's
  // region.
  virtual absl::StatusOr<std::vector<std::string>> OrganizationCounties(
      const std::string& org_id) = 0;
  // The directory's record of an organization (cached as OrganizationCounties is); NOT_FOUND
  // when it no longer lists it. Webhooks ask it whether a subscriber may still hear. A network
  // that cannot say answers UNIMPLEMENTED, and webhooks then go nowhere (fail closed).
  virtual absl::StatusOr<directory::v1::Organization> DirectoryOrganization(
      const std::string& org_id) {
    (void)org_id;
    return absl::UnimplementedError("this network does not read organizations");
  }
};

struct GrpcNetworkOptions {
  // How far from the youth to look (a safety constraint may rule out the home county).
  int32_t search_radius_meters = 200'000;
  int32_t max_options = 50;
  absl::Duration organization_cache_ttl = absl::Minutes(5);
};

// The real network: directory-service and beds-service over mTLS with the service certificate.
class GrpcNetwork final : public Network {
 public:
  GrpcNetwork(std::unique_ptr<Peer> directory, std::unique_ptr<Peer> beds,
              const CountyTable& counties, GrpcNetworkOptions options = {});

  absl::StatusOr<std::vector<Option>> FindServices(const v1::Referral& r, absl::Time now) override;
  absl::StatusOr<std::vector<Option>> FindBeds(const v1::Referral& r) override;
  absl::StatusOr<std::string> HoldBed(const std::string& request_id, const v1::Candidate& candidate,
                                      const std::string& referral_id, const std::string& for_org,
                                      absl::Duration ttl) override;
  absl::Status ReleaseHold(const std::string& hold_id) override;
  absl::StatusOr<absl::Time> ExtendHold(const std::string& request_id, const std::string& hold_id,
                                        absl::Time expire_time) override;
  absl::Status ConfirmPlacement(const std::string& request_id, const std::string& hold_id) override;
  absl::StatusOr<v1::Handoff> HandoffFor(const Option& option) override;
  absl::StatusOr<v1::Handoff> OnCallOffice(const std::string& county_fips) override;
  absl::StatusOr<std::vector<std::string>> OrganizationCounties(const std::string& org_id) override;
  absl::StatusOr<directory::v1::Organization> DirectoryOrganization(
      const std::string& org_id) override {
    return Organization(org_id);
  }

 private:
  absl::StatusOr<directory::v1::Organization> Organization(const std::string& id);

  std::unique_ptr<Peer> directory_peer_;
  std::unique_ptr<Peer> beds_peer_;
  std::unique_ptr<directory::v1::DirectoryService::Stub> directory_;
  std::unique_ptr<beds::v1::BedsService::Stub> beds_;
  const CountyTable& counties_;
  const GrpcNetworkOptions options_;
  std::mutex mu_;
  std::map<std::string, std::pair<absl::Time, directory::v1::Organization>> orgs_
      ABSL_GUARDED_BY(mu_);
};

// Bed types that fit a youth of this gender, best first.
std::vector<beds::v1::BedType> BedTypesFor(directory::v1::Gender gender);

}  // namespace safeharbor::referrals
