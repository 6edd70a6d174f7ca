#include "services/directory/directory_service.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/idempotency.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/paging.h"
#include "services/directory/directory_store.h"
#include "services/directory/hsds.h"
#include "services/directory/validation.h"

namespace safeharbor::directory {
DirectoryServiceImpl::DirectoryServiceImpl(RpcEnv* env, PgPool* pg, RedisClient* redis,
                                           prometheus::Registry& registry,
                                           const CountyTable& counties, DirectoryOptions options)
    : env_(env),
      pg_(pg),
      counties_(counties),
      options_(options),
      search_cache_(redis, registry, "directory_search", options.cache_namespace,
                    options.search_cache_ttl),
      writes_(prometheus::BuildCounter()
                  .Name("safeharbor_directory_writes_total")
                  .Help("Committed directory writes by resource and operation.")
                  .Register(registry)) {}

absl::Status DirectoryServiceImpl::CanWriteOrganization(const Caller& c,
                                                        absl::string_view org_id) const {
  if (c.role == Role::kDirectoryAdmin) return absl::OkStatus();
  if (c.role == Role::kProvider && c.org_id == org_id) return absl::OkStatus();
  if (c.role == Role::kProvider) {
    return absl::PermissionDeniedError("a provider may change only its own organization");
  }
  return absl::PermissionDeniedError(
      absl::StrCat("role '", RoleName(c.role),
                   "' may not change the directory; directory_admin or the "
                   "organization's own provider may"));
}

void DirectoryServiceImpl::CountWrite(absl::string_view resource, absl::string_view op) {
  writes_.Add({{"resource", std::string(resource)}, {"op", std::string(op)}}).Increment();
}

absl::Status DirectoryServiceImpl::CreateOrganization(const Caller& c,
                                                      const v1::CreateOrganizationRequest& req,
                                                      v1::CreateOrganizationResponse* resp) {
  if (auto st = RequireRole(c, {Role::kDirectoryAdmin}); !st.ok()) return st;
  if (auto st = ValidateRequestId(req.request_id()); !st.ok()) return st;
  if (auto st = ValidateOrganization(req.organization(), counties_, false); !st.ok()) return st;
  const std::string generated = NewId("org");
  absl::Status st = pg_->Transact([&](PgTx& tx) {
    resp->Clear();
    return RunIdempotent(tx, "CreateOrganization", c, req.request_id(), req, resp, [&] {
      *resp->mutable_organization() = req.organization();
      if (resp->organization().id().empty()) resp->mutable_organization()->set_id(generated);
      return DirectoryStore::InsertOrganization(tx, resp->mutable_organization());
    });
  });
  if (!st.ok()) return st;
  InvalidateSearchCache();
  CountWrite("organization", "create");
  log::Info("organization_created", {{"id", resp->organization().id()}, {"by", c.org_id}});
  return absl::OkStatus();
}

absl::Status DirectoryServiceImpl::GetOrganization(const Caller&,
                                                   const v1::GetOrganizationRequest& req,
                                                   v1::GetOrganizationResponse* resp) {
  if (auto st = ValidateId(req.id(), "id"); !st.ok()) return st;
  return pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        auto org = DirectoryStore::GetOrganization(tx, req.id());
        if (!org.ok()) return org.status();
        *resp->mutable_organization() = *std::move(org);
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, /*read_only=*/true);
}

absl::Status DirectoryServiceImpl::UpdateOrganization(const Caller& c,
                                                      const v1::UpdateOrganizationRequest& req,
                                                      v1::UpdateOrganizationResponse* resp) {
  if (auto st = ValidateOrganization(req.organization(), counties_, true); !st.ok()) return st;
  if (auto st = CanWriteOrganization(c, req.organization().id()); !st.ok()) return st;
  absl::Status st = pg_->Transact([&](PgTx& tx) -> absl::Status {
    *resp->mutable_organization() = req.organization();
    if (c.role == Role::kProvider) {
      auto current = DirectoryStore::GetOrganization(tx, req.organization().id());
      if (!current.ok()) return current.status();
      if (current->kind() != req.organization().kind()) {
        return absl::PermissionDeniedError("a provider may not change its organization's kind");
      }
    }
    return DirectoryStore::UpdateOrganization(tx, resp->mutable_organization());
  });
  if (!st.ok()) return st;
  InvalidateSearchCache();
  CountWrite("organization", "update");
  log::Info("organization_updated", {{"id", req.organization().id()}, {"by", c.org_id}});
  return absl::OkStatus();
}

absl::Status DirectoryServiceImpl::ListOrganizations(const Caller&,
                                                     const v1::ListOrganizationsRequest& req,
                                                     v1::ListOrganizationsResponse* resp) {
  auto size = ValidatePageSize(req.page_size(), 50, 500);
  if (!size.ok()) return size.status();
  if (!v1::OrganizationKind_IsValid(req.kind())) {
    return absl::InvalidArgumentError("kind is not valid");
  }
  if (!req.county_fips().empty() && counties_.Find(req.county_fips()) == nullptr) {
    return absl::InvalidArgumentError("county_fips must be a known county FIPS code");
  }
  const std::string fp = QueryFingerprint(req);
  std::string after;
  if (!req.page_token().empty()) {
    auto parts = DecodePageToken(req.page_token(), "orgs", fp, 1);
    if (!parts.ok()) return parts.status();
    after = (*parts)[0];
  }
  return pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        resp->Clear();
        auto orgs =
            DirectoryStore::ListOrganizations(tx, req.kind(), req.county_fips(), after, *size + 1);
        if (!orgs.ok()) return orgs.status();
        for (int i = 0; i < static_cast<int>(orgs->size()) && i < *size; ++i) {
          *resp->add_organizations() = std::move((*orgs)[static_cast<size_t>(i)]);
        }
        if (static_cast<int>(orgs->size()) > *size) {
          resp->set_next_page_token(
              EncodePageToken("orgs", fp, {resp->organizations().rbegin()->id()}));
        }
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true);
}

absl::Status DirectoryServiceImpl::CreateService(const Caller& c,
                                                 const v1::CreateServiceRequest& req,
                                                 v1::CreateServiceResponse* resp) {
  if (auto st = ValidateRequestId(req.request_id()); !st.ok()) return st;
  if (auto st = ValidateService(req.service(), counties_, false); !st.ok()) return st;
  if (auto st = CanWriteOrganization(c, req.service().organization_id()); !st.ok()) return st;
  const std::string generated = NewId("svc");
  absl::Status st = pg_->Transact([&](PgTx& tx) {
    resp->Clear();
    return RunIdempotent(tx, "CreateService", c, req.request_id(), req, resp, [&] {
      *resp->mutable_service() = req.service();
      if (resp->service().id().empty()) resp->mutable_service()->set_id(generated);
      return DirectoryStore::InsertService(tx, resp->mutable_service());
    });
  });
  if (!st.ok()) return st;
  InvalidateSearchCache();
  CountWrite("service", "create");
  log::Info("service_created", {{"id", resp->service().id()},
                                {"organization_id", req.service().organization_id()},
                                {"by", c.org_id}});
  return absl::OkStatus();
}

absl::Status DirectoryServiceImpl::GetService(const Caller&, const v1::GetServiceRequest& req,
                                              v1::GetServiceResponse* resp) {
  if (auto st = ValidateId(req.id(), "id"); !st.ok()) return st;
  return pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        auto s = DirectoryStore::GetService(tx, req.id());
        if (!s.ok()) return s.status();
        *resp->mutable_service() = *std::move(s);
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true);
}

absl::Status DirectoryServiceImpl::UpdateService(const Caller& c,
                                                 const v1::UpdateServiceRequest& req,
                                                 v1::UpdateServiceResponse* resp) {
  if (auto st = ValidateService(req.service(), counties_, true); !st.ok()) return st;
  if (auto st = CanWriteOrganization(c, req.service().organization_id()); !st.ok()) return st;
  absl::Status st = pg_->Transact([&](PgTx& tx) {
    *resp->mutable_service() = req.service();
    return DirectoryStore::UpdateService(tx, resp->mutable_service());
  });
  if (!st.ok()) return st;
  InvalidateSearchCache();
  CountWrite("service", "update");
  log::Info("service_updated", {{"id", req.service().id()}, {"by", c.org_id}});
  return absl::OkStatus();
}

absl::Status DirectoryServiceImpl::ListServices(const Caller&, const v1::ListServicesRequest& req,
                                                v1::ListServicesResponse* resp) {
  auto size = ValidatePageSize(req.page_size(), 50, 500);
  if (!size.ok()) return size.status();
  if (!req.organization_id().empty()) {
    if (auto st = ValidateId(req.organization_id(), "organization_id"); !st.ok()) return st;
  }
  const std::string fp = QueryFingerprint(req);
  std::string after;
  if (!req.page_token().empty()) {
    auto parts = DecodePageToken(req.page_token(), "services", fp, 1);
    if (!parts.ok()) return parts.status();
    after = (*parts)[0];
  }
  return pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        resp->Clear();
        auto services = DirectoryStore::ListServices(tx, req.organization_id(), after, *size + 1);
        if (!services.ok()) return services.status();
        for (int i = 0; i < static_cast<int>(services->size()) && i < *size; ++i) {
          *resp->add_services() = std::move((*services)[static_cast<size_t>(i)]);
        }
        if (static_cast<int>(services->size()) > *size) {
          resp->set_next_page_token(
              EncodePageToken("services", fp, {resp->services().rbegin()->id()}));
        }
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true);
}

absl::Status DirectoryServiceImpl::SearchServices(const Caller&,
                                                  const v1::SearchServicesRequest& req,
                                                  v1::SearchServicesResponse* resp) {
  if (auto st = ValidateSearch(req, counties_); !st.ok()) return st;
  const int size = *ValidatePageSize(req.page_size(), 20, 200);
  const std::string fp = QueryFingerprint(req);
  auto after = DecodeDistanceToken(req.page_token(), "search", fp);
  if (!after.ok()) return after.status();
  const auto [lat, lng] = SearchOrigin(req.has_near(), req.near().latitude(),
                                       req.near().longitude(), counties_, req.county_fips());
  SearchQuery q{&req, lat, lng, *after, size + 1};

  const std::string key = Sha256Hex(DeterministicBytes(req));
  VersionedCache::Lookup cached = search_cache_.Get(key);
  if (cached.value && resp->ParseFromString(*cached.value)) return absl::OkStatus();

  absl::Status st = pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        resp->Clear();
        auto matches = DirectoryStore::Search(tx, q);
        if (!matches.ok()) return matches.status();
        for (int i = 0; i < static_cast<int>(matches->size()) && i < size; ++i) {
          *resp->add_matches() = std::move((*matches)[static_cast<size_t>(i)]);
        }
        if (static_cast<int>(matches->size()) > size) {
          const auto& last = *resp->matches().rbegin();
          resp->set_next_page_token(
              EncodeDistanceToken("search", fp, last.distance_meters(), last.service().id()));
        }
        return absl::OkStatus();
      },
      Isolation::kReadCommitted, true);
  if (!st.ok()) return st;
  search_cache_.Store(cached.generation, key, resp->SerializeAsString());
  return absl::OkStatus();
}

absl::Status DirectoryServiceImpl::ImportHsds(const Caller& c, const v1::ImportHsdsRequest& req,
                                              v1::ImportHsdsResponse* resp) {
  if (auto st = RequireRole(c, {Role::kDirectoryAdmin}); !st.ok()) return st;
  if (auto st = ValidateRequestId(req.request_id()); !st.ok()) return st;
  if (req.hsds_json().size() > options_.max_hsds_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("hsds_json must be at most ", options_.max_hsds_bytes, " bytes"));
  }
  auto data = ParseHsds(req.hsds_json(), counties_);
  if (!data.ok()) return data.status();
  absl::Status st = pg_->Transact([&](PgTx& tx) {
    resp->Clear();
    return RunIdempotent(tx, "ImportHsds", c, req.request_id(), req, resp, [&]() -> absl::Status {
      for (auto& org : data->organizations) {
        if (auto s = DirectoryStore::UpsertOrganization(tx, &org); !s.ok()) return s;
        resp->set_locations_imported(resp->locations_imported() + org.locations_size());
      }
      for (auto& service : data->services) {
        if (auto s = DirectoryStore::UpsertService(tx, &service); !s.ok()) {
          return absl::Status(s.code(),
                              absl::StrCat("service '", service.id(), "': ", s.message()));
        }
      }
      resp->set_organizations_imported(static_cast<int32_t>(data->organizations.size()));
      resp->set_services_imported(static_cast<int32_t>(data->services.size()));
      return absl::OkStatus();
    });
  });
  if (!st.ok()) return st;
  InvalidateSearchCache();
  CountWrite("hsds", "import");
  log::Info("hsds_imported", {{"organizations", absl::StrCat(resp->organizations_imported())},
                              {"services", absl::StrCat(resp->services_imported())},
                              {"by", c.org_id}});
  return absl::OkStatus();
}

absl::Status DirectoryServiceImpl::ExportHsds(const Caller&, const v1::ExportHsdsRequest&,
                                              v1::ExportHsdsResponse* resp) {
  constexpr int kBatch = 500;
  constexpr size_t kMaxRecords = 200000;  // Bounds the export's memory.
  std::vector<v1::Organization> orgs;
  std::vector<v1::Service> services;
  absl::Status st = pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        orgs.clear();
        services.clear();
        for (std::string after;;) {
          auto batch = DirectoryStore::ListOrganizations(tx, v1::ORGANIZATION_KIND_UNSPECIFIED, "",
                                                         after, kBatch);
          if (!batch.ok()) return batch.status();
          for (auto& o : *batch) orgs.push_back(std::move(o));
          if (static_cast<int>(batch->size()) < kBatch) break;
          if (orgs.size() > kMaxRecords) return absl::ResourceExhaustedError("directory too large");
          after = orgs.back().id();
        }
        for (std::string after;;) {
          auto batch = DirectoryStore::ListServices(tx, "", after, kBatch);
          if (!batch.ok()) return batch.status();
          for (auto& s : *batch) services.push_back(std::move(s));
          if (static_cast<int>(batch->size()) < kBatch) break;
          if (services.size() > kMaxRecords) {
            return absl::ResourceExhaustedError("directory too large to export in one call");
          }
          after = services.back().id();
        }
        return absl::OkStatus();
      },
      Isolation::kRepeatableRead, true);
  if (!st.ok()) return st;
  resp->set_hsds_json(WriteHsds(orgs, services, counties_));
  resp->set_organizations_exported(static_cast<int32_t>(orgs.size()));
  resp->set_services_exported(static_cast<int32_t>(services.size()));
  return absl::OkStatus();
}

absl::Status DirectoryServiceImpl::ListCounties(const Caller&, const v1::ListCountiesRequest&,
                                                v1::ListCountiesResponse* resp) {
  for (const auto& c : counties_.all()) {
    auto* out = resp->add_counties();
    out->set_fips(c.fips);
    out->set_name(c.name);
    out->mutable_centroid()->set_latitude(c.latitude);
    out->mutable_centroid()->set_longitude(c.longitude);
  }
  return absl::OkStatus();
}

}  // namespace safeharbor::directory
