#include "services/directory/directory_service.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/idempotency.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/paging.h"
#include "common/status_macros.h"
#include "services/directory/directory_store.h"
#include "services/directory/facts.h"
#include "services/directory/hsds.h"
#include "services/directory/validation.h"

namespace safeharbor::directory {
namespace {

// HSDS import replaces organizations and services whole: the facts it changes are recorded as
// any directory_admin change is.
template <typename T>
absl::Status ImportRecorded(PgTx& tx, const Caller& by, absl::string_view resource,
                            const std::string& organization_id, T* item,
                            absl::StatusOr<T> (*get)(PgTx&, absl::string_view, bool),
                            absl::Status (*upsert)(PgTx&, T*),
                            std::vector<FactChange> (*facts)(const T*, const T&)) {
  auto current = get(tx, item->id(), /*for_update=*/true);
  if (!current.ok() && current.status().code() != absl::StatusCode::kNotFound) {
    return current.status();
  }
  const auto changes = facts(current.ok() ? &*current : nullptr, *item);
  SH_RETURN_IF_ERROR(upsert(tx, item));
  return FactLog::Record(tx, by, organization_id, resource, item->id(), changes);
}

absl::Status ImportOrganization(PgTx& tx, const Caller& by, v1::Organization* org) {
  return ImportRecorded(tx, by, "organization", org->id(), org, &DirectoryStore::GetOrganization,
                        &DirectoryStore::UpsertOrganization, &OrganizationFactChanges);
}

absl::Status ImportService(PgTx& tx, const Caller& by, v1::Service* service) {
  return ImportRecorded(tx, by, "service", service->organization_id(), service,
                        &DirectoryStore::GetService, &DirectoryStore::UpsertService,
                        &ServiceFactChanges);
}

// One page of the HSDS export: organizations after `after` (by id) with all their services.
struct ExportPage {
  std::vector<v1::Organization> organizations;
  std::vector<v1::Service> services;
  bool more = false;
};

absl::StatusOr<ExportPage> ReadExportPage(PgTx& tx, const std::string& after, int size) {
  constexpr int kBatch = 500;
  constexpr size_t kMaxServicesPerPage = 20000;  // bounds one page's memory
  ExportPage page;
  SH_ASSIGN_OR_RETURN(page.organizations,
                      DirectoryStore::ListOrganizations(tx, v1::ORGANIZATION_KIND_UNSPECIFIED, "",
                                                        after, size + 1));
  if (static_cast<int>(page.organizations.size()) > size) {
    page.organizations.pop_back();
    page.more = true;
  }
  for (const v1::Organization& o : page.organizations) {
    for (std::string from;;) {
      SH_ASSIGN_OR_RETURN(auto batch, DirectoryStore::ListServices(tx, o.id(), from, kBatch));
      for (auto& s : batch) page.services.push_back(std::move(s));
      if (page.services.size() > kMaxServicesPerPage) {
        return absl::ResourceExhaustedError(
            absl::StrCat("more than ", kMaxServicesPerPage,
                         " services in one export page: ask for a smaller "
                         "page_size"));
      }
      if (static_cast<int>(batch.size()) < kBatch) break;
      from = page.services.back().id();
    }
  }
  return page;
}

// The cache key of a search: the request's every field.
std::string SearchKey(const v1::SearchServicesRequest& req) {
  return Sha256Hex(DeterministicBytes(req));
}

}  // namespace

DirectoryServiceImpl::DirectoryServiceImpl(RpcEnv* env, PgPool* pg, RedisClient* redis,
                                           prometheus::Registry& registry,
                                           const CountyTable& counties, DirectoryOptions options)
    : RpcService("safeharbor.directory.v1.DirectoryService",
                 KitDeps{env, pg, SystemClock::Get(), &registry}),
      pg_(pg),
      counties_(counties),
      options_(options),
      search_cache_(redis, registry, "directory_search", options.cache_namespace,
                    options.search_cache_ttl, options.search_local_cache),
      writes_(prometheus::BuildCounter()
                  .Name("safeharbor_directory_writes_total")
                  .Help("Committed directory writes by resource and operation.")
                  .Register(registry)) {
  Methods();
}

// The directory's method table: every RPC, who may call it, and how.
void DirectoryServiceImpl::Methods() {
  const RoleSet writers = {Role::kDirectoryAdmin, Role::kProvider};
  const RoleSet admin = {Role::kDirectoryAdmin};
  const MethodPolicy read{.roles = RoleSet::Every(), .read_only = true};
  const MethodPolicy own_org{.roles = writers, .scope = Scope::kOwnOrganization, .any_org = admin};
  MethodPolicy own_org_create = own_org;
  own_org_create.idempotency = Idempotency::kRecorded;
  SAFEHARBOR_RPC(
      CreateOrganization, (MethodPolicy{.roles = admin, .idempotency = Idempotency::kRecorded}),
      .validate = [this](const auto& r) {
        return ValidateOrganization(r.organization(), counties_, false);
      });
  SAFEHARBOR_RPC(
      GetOrganization, read, .validate = [](const auto& r) { return ValidateId(r.id(), "id"); });
  SAFEHARBOR_RPC(
      UpdateOrganization, own_org,
      .validate =
          [this](const auto& r) { return ValidateOrganization(r.organization(), counties_, true); },
      .organization = [](const auto& r) { return r.organization().id(); });
  SAFEHARBOR_RPC(ListOrganizations, read);
  SAFEHARBOR_RPC(
      CreateService, own_org_create,
      .validate = [this](const auto& r) { return ValidateService(r.service(), counties_, false); },
      .organization = [](const auto& r) { return r.service().organization_id(); });
  SAFEHARBOR_RPC(
      GetService, read, .validate = [](const auto& r) { return ValidateId(r.id(), "id"); });
  SAFEHARBOR_RPC(
      UpdateService, own_org,
      .validate = [this](const auto& r) { return ValidateService(r.service(), counties_, true); },
      .organization = [](const auto& r) { return r.service().organization_id(); });
  SAFEHARBOR_RPC(ListServices, read);
  SAFEHARBOR_RPC(
      SearchServices, read,
      .validate = [this](const auto& r) { return ValidateSearch(r, counties_); },
      .fast_path = [this](CallContext&, const auto& r,
                          auto* resp) { return SearchServicesFresh(r, resp); });
  // The one large request: an HSDS document, plus room for its request_id.
  SAFEHARBOR_RPC(
      ImportHsds,
      (MethodPolicy{.roles = admin,
                    .idempotency = Idempotency::kRecorded,
                    .max_request_bytes = options_.max_hsds_bytes + 4096}),
      .validate = [this](const auto& r) -> absl::Status {
        if (r.hsds_json().size() > options_.max_hsds_bytes) {
          return absl::InvalidArgumentError(
              absl::StrCat("hsds_json must be at most ", options_.max_hsds_bytes, " bytes"));
        }
        if (!v1::HsdsImportMode_IsValid(r.mode())) {
          return absl::InvalidArgumentError("mode is not a known HsdsImportMode");
        }
        return absl::OkStatus();
      });
  SAFEHARBOR_RPC(ExportHsds, (MethodPolicy{.roles = {Role::kDirectoryAdmin, Role::kAuditor},
                                           .isolation = Isolation::kRepeatableRead,
                                           .read_only = true}));
  SAFEHARBOR_RPC(ListCounties, (MethodPolicy{.roles = RoleSet::Every()}));
  SAFEHARBOR_RPC(
      ListFactChanges,
      (MethodPolicy{.roles = {Role::kAuditor, Role::kDirectoryAdmin}, .read_only = true}),
      .validate = [](const auto& r) -> absl::Status {
        if (!r.organization_id().empty()) {
          SH_RETURN_IF_ERROR(ValidateId(r.organization_id(), "organization_id"));
        }
        return ValidatePageSize(r.page_size(), 100, 500).status();
      });
  Seal();
}

void DirectoryServiceImpl::Written(absl::string_view resource, absl::string_view op) {
  search_cache_.Invalidate();
  writes_.Add({{"resource", std::string(resource)}, {"op", std::string(op)}}).Increment();
}

absl::Status DirectoryServiceImpl::CreateOrganization(CallContext& ctx,
                                                      const v1::CreateOrganizationRequest& req,
                                                      v1::CreateOrganizationResponse* resp) {
  const std::string generated = NewId("org");
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) {
    *resp->mutable_organization() = req.organization();
    if (resp->organization().id().empty()) resp->mutable_organization()->set_id(generated);
    const v1::Organization& o = resp->organization();
    SH_RETURN_IF_ERROR(DirectoryStore::InsertOrganization(tx, resp->mutable_organization()));
    return FactLog::Record(tx, ctx.caller(), o.id(), "organization", o.id(),
                           OrganizationFactChanges(nullptr, o));
  }));
  Written("organization", "create");
  log::Info("organization_created",
            {{"id", resp->organization().id()}, {"by", ctx.caller().org_id}});
  return absl::OkStatus();
}

absl::Status DirectoryServiceImpl::GetOrganization(CallContext& ctx,
                                                   const v1::GetOrganizationRequest& req,
                                                   v1::GetOrganizationResponse* resp) {
  return ctx.Transact([&](PgTx& tx) -> absl::Status {
    SH_ASSIGN_OR_RETURN(*resp->mutable_organization(),
                        DirectoryStore::GetOrganization(tx, req.id()));
    return absl::OkStatus();
  });
}

absl::Status DirectoryServiceImpl::UpdateOrganization(CallContext& ctx,
                                                      const v1::UpdateOrganizationRequest& req,
                                                      v1::UpdateOrganizationResponse* resp) {
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) -> absl::Status {
    *resp->mutable_organization() = req.organization();
    SH_ASSIGN_OR_RETURN(const v1::Organization current,
                        DirectoryStore::GetOrganization(tx, req.organization().id(), true));
    const auto changes = OrganizationFactChanges(&current, req.organization());
    SH_RETURN_IF_ERROR(MayChangeFacts(ctx.caller(), changes));
    SH_RETURN_IF_ERROR(DirectoryStore::UpdateOrganization(tx, resp->mutable_organization()));
    return FactLog::Record(tx, ctx.caller(), current.id(), "organization", current.id(), changes);
  }));
  Written("organization", "update");
  log::Info("organization_updated", {{"id", req.organization().id()}, {"by", ctx.caller().org_id}});
  return absl::OkStatus();
}

absl::Status DirectoryServiceImpl::ListOrganizations(CallContext& ctx,
                                                     const v1::ListOrganizationsRequest& req,
                                                     v1::ListOrganizationsResponse* resp) {
  SH_ASSIGN_OR_RETURN(const int size, ValidatePageSize(req.page_size(), 50, 500));
  if (!v1::OrganizationKind_IsValid(req.kind())) {
    return absl::InvalidArgumentError("kind is not valid");
  }
  if (!req.county_fips().empty() && counties_.Find(req.county_fips()) == nullptr) {
    return absl::InvalidArgumentError("county_fips must be a known county FIPS code");
  }
  const std::string fp = QueryFingerprint(req);
  std::string after;
  if (!req.page_token().empty()) {
    SH_ASSIGN_OR_RETURN(auto parts, DecodePageToken(req.page_token(), "orgs", fp, 1));
    after = parts[0];
  }
  return ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    SH_ASSIGN_OR_RETURN(auto orgs, DirectoryStore::ListOrganizations(
                                       tx, req.kind(), req.county_fips(), after, size + 1));
    for (int i = 0; i < static_cast<int>(orgs.size()) && i < size; ++i) {
      *resp->add_organizations() = std::move(orgs[static_cast<size_t>(i)]);
    }
    if (static_cast<int>(orgs.size()) > size) {
      resp->set_next_page_token(
          EncodePageToken("orgs", fp, {resp->organizations().rbegin()->id()}));
    }
    return absl::OkStatus();
  });
}

absl::Status DirectoryServiceImpl::CreateService(CallContext& ctx,
                                                 const v1::CreateServiceRequest& req,
                                                 v1::CreateServiceResponse* resp) {
  const std::string generated = NewId("svc");
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) {
    *resp->mutable_service() = req.service();
    if (resp->service().id().empty()) resp->mutable_service()->set_id(generated);
    const v1::Service& s = resp->service();
    if (ctx.caller().role != Role::kDirectoryAdmin) {
      SH_ASSIGN_OR_RETURN(const v1::Organization org,
                          DirectoryStore::GetOrganization(tx, s.organization_id()));
      SH_RETURN_IF_ERROR(ProviderMayServe(org, s));
    }
    SH_RETURN_IF_ERROR(DirectoryStore::InsertService(tx, resp->mutable_service()));
    return FactLog::Record(tx, ctx.caller(), s.organization_id(), "service", s.id(),
                           ServiceFactChanges(nullptr, s));
  }));
  Written("service", "create");
  log::Info("service_created", {{"id", resp->service().id()},
                                {"organization_id", req.service().organization_id()},
                                {"by", ctx.caller().org_id}});
  return absl::OkStatus();
}

absl::Status DirectoryServiceImpl::GetService(CallContext& ctx, const v1::GetServiceRequest& req,
                                              v1::GetServiceResponse* resp) {
  return ctx.Transact([&](PgTx& tx) -> absl::Status {
    SH_ASSIGN_OR_RETURN(*resp->mutable_service(), DirectoryStore::GetService(tx, req.id()));
    return absl::OkStatus();
  });
}

absl::Status DirectoryServiceImpl::UpdateService(CallContext& ctx,
                                                 const v1::UpdateServiceRequest& req,
                                                 v1::UpdateServiceResponse* resp) {
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) -> absl::Status {
    *resp->mutable_service() = req.service();
    SH_ASSIGN_OR_RETURN(const v1::Service current,
                        DirectoryStore::GetService(tx, req.service().id(), true));
    const auto changes = ServiceFactChanges(&current, req.service());
    SH_RETURN_IF_ERROR(MayChangeFacts(ctx.caller(), changes));
    SH_RETURN_IF_ERROR(DirectoryStore::UpdateService(tx, resp->mutable_service()));
    return FactLog::Record(tx, ctx.caller(), current.organization_id(), "service", current.id(),
                           changes);
  }));
  Written("service", "update");
  log::Info("service_updated", {{"id", req.service().id()}, {"by", ctx.caller().org_id}});
  return absl::OkStatus();
}

absl::Status DirectoryServiceImpl::ListServices(CallContext& ctx,
                                                const v1::ListServicesRequest& req,
                                                v1::ListServicesResponse* resp) {
  SH_ASSIGN_OR_RETURN(const int size, ValidatePageSize(req.page_size(), 50, 500));
  if (!req.organization_id().empty()) {
    SH_RETURN_IF_ERROR(ValidateId(req.organization_id(), "organization_id"));
  }
  const std::string fp = QueryFingerprint(req);
  std::string after;
  if (!req.page_token().empty()) {
    SH_ASSIGN_OR_RETURN(auto parts, DecodePageToken(req.page_token(), "services", fp, 1));
    after = parts[0];
  }
  return ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    SH_ASSIGN_OR_RETURN(auto services,
                        DirectoryStore::ListServices(tx, req.organization_id(), after, size + 1));
    for (int i = 0; i < static_cast<int>(services.size()) && i < size; ++i) {
      *resp->add_services() = std::move(services[static_cast<size_t>(i)]);
    }
    if (static_cast<int>(services.size()) > size) {
      resp->set_next_page_token(EncodePageToken("services", fp, {resp->services().rbegin()->id()}));
    }
    return absl::OkStatus();
  });
}

absl::Status DirectoryServiceImpl::SearchServices(CallContext& ctx,
                                                  const v1::SearchServicesRequest& req,
                                                  v1::SearchServicesResponse* resp) {
  const int size = *ValidatePageSize(req.page_size(), 20, 200);
  const std::string fp = QueryFingerprint(req);
  SH_ASSIGN_OR_RETURN(auto after, DecodeDistanceToken(req.page_token(), "search", fp));
  const auto [lat, lng] = SearchOrigin(req.has_near(), req.near().latitude(),
                                       req.near().longitude(), counties_, req.county_fips());
  SearchQuery q{&req, lat, lng, after, size + 1};

  const std::string key = SearchKey(req);
  VersionedCache::Lookup cached = search_cache_.Get(key);
  if (cached.value && resp->ParseFromString(*cached.value)) return absl::OkStatus();

  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    SH_ASSIGN_OR_RETURN(auto matches, DirectoryStore::Search(tx, q));
    for (int i = 0; i < static_cast<int>(matches.size()) && i < size; ++i) {
      *resp->add_matches() = std::move(matches[static_cast<size_t>(i)]);
    }
    if (static_cast<int>(matches.size()) > size) {
      const auto& last = *resp->matches().rbegin();
      resp->set_next_page_token(
          EncodeDistanceToken("search", fp, last.distance_meters(), last.service().id()));
    }
    return absl::OkStatus();
  }));
  search_cache_.Store(cached, key, resp->SerializeAsString());
  return absl::OkStatus();
}

bool DirectoryServiceImpl::SearchServicesFresh(const v1::SearchServicesRequest& req,
                                               v1::SearchServicesResponse* resp) {
  const std::optional<std::string> cached = search_cache_.GetLocal(SearchKey(req));
  if (!cached.has_value()) return false;
  if (resp->ParseFromString(*cached)) return true;
  resp->Clear();
  return false;
}

absl::Status DirectoryServiceImpl::ImportHsds(CallContext& ctx, const v1::ImportHsdsRequest& req,
                                              v1::ImportHsdsResponse* resp) {
  HsdsRead read = ReadHsds(req.hsds_json(), counties_);
  // All or nothing unless asked otherwise: the first problem refuses the document.
  if (req.mode() == v1::HSDS_IMPORT_MODE_UNSPECIFIED) SH_RETURN_IF_ERROR(read.report.First());
  if (req.mode() == v1::HSDS_IMPORT_MODE_VALIDATE_ONLY) {
    ReportHsds(read, resp);
    resp->set_validated_only(true);
    log::Info("hsds_validated", {{"problems", absl::StrCat(read.report.problem_count())},
                                 {"by", ctx.caller().org_id}});
    return absl::OkStatus();
  }
  HsdsData& data = read.data;
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) -> absl::Status {
    for (auto& org : data.organizations) {
      SH_RETURN_IF_ERROR(ImportOrganization(tx, ctx.caller(), &org));
    }
    for (auto& service : data.services) {
      if (auto s = ImportService(tx, ctx.caller(), &service); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat("service '", service.id(), "': ", s.message()));
      }
    }
    ReportHsds(read, resp);  // inside: a retried transaction answers afresh
    return absl::OkStatus();
  }));
  Written("hsds", "import");
  log::Info("hsds_imported", {{"organizations", absl::StrCat(resp->organizations_imported())},
                              {"services", absl::StrCat(resp->services_imported())},
                              {"by", ctx.caller().org_id}});
  return absl::OkStatus();
}

void DirectoryServiceImpl::ReportHsds(const HsdsRead& read, v1::ImportHsdsResponse* resp) {
  resp->Clear();
  int32_t locations = 0;
  for (const auto& org : read.data.organizations) locations += org.locations_size();
  resp->set_organizations_imported(static_cast<int32_t>(read.data.organizations.size()));
  resp->set_services_imported(static_cast<int32_t>(read.data.services.size()));
  resp->set_locations_imported(locations);
  resp->set_organizations_skipped(read.organizations_skipped);
  resp->set_services_skipped(read.services_skipped);
  resp->set_locations_skipped(read.locations_skipped);
  read.report.Fill(resp);
}

absl::Status DirectoryServiceImpl::ExportHsds(CallContext& ctx, const v1::ExportHsdsRequest& req,
                                              v1::ExportHsdsResponse* resp) {
  SH_ASSIGN_OR_RETURN(const int size, ValidatePageSize(req.page_size(), 100, 500));
  const std::string fp = QueryFingerprint(req);
  std::string after;
  if (!req.page_token().empty()) {
    SH_ASSIGN_OR_RETURN(auto parts, DecodePageToken(req.page_token(), "hsds", fp, 1));
    after = parts[0];
  }
  ExportPage page;
  SH_RETURN_IF_ERROR(ctx.Transact([&](PgTx& tx) -> absl::Status {
    SH_ASSIGN_OR_RETURN(page, ReadExportPage(tx, after, size));
    return absl::OkStatus();
  }));
  resp->set_hsds_json(WriteHsds(page.organizations, page.services, counties_));
  resp->set_organizations_exported(static_cast<int32_t>(page.organizations.size()));
  resp->set_services_exported(static_cast<int32_t>(page.services.size()));
  if (page.more) {
    resp->set_next_page_token(EncodePageToken("hsds", fp, {page.organizations.back().id()}));
  }
  return absl::OkStatus();
}

absl::Status DirectoryServiceImpl::ListCounties(CallContext&, const v1::ListCountiesRequest&,
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

absl::Status DirectoryServiceImpl::ListFactChanges(CallContext& ctx,
                                                   const v1::ListFactChangesRequest& req,
                                                   v1::ListFactChangesResponse* resp) {
  const int size = *ValidatePageSize(req.page_size(), 100, 500);
  const std::string fp = QueryFingerprint(req);
  int64_t after = 0;
  if (!req.page_token().empty()) {
    SH_ASSIGN_OR_RETURN(auto parts, DecodePageToken(req.page_token(), "facts", fp, 1));
    if (!absl::SimpleAtoi(parts[0], &after)) {
      return absl::InvalidArgumentError("page_token is not valid");
    }
  }
  return ctx.Transact([&](PgTx& tx) -> absl::Status {
    resp->Clear();
    SH_ASSIGN_OR_RETURN(auto changes, FactLog::List(tx, req.organization_id(), after, size + 1));
    for (int i = 0; i < static_cast<int>(changes.size()) && i < size; ++i) {
      *resp->add_changes() = std::move(changes[static_cast<size_t>(i)]);
    }
    if (static_cast<int>(changes.size()) > size) {
      resp->set_next_page_token(
          EncodePageToken("facts", fp, {absl::StrCat(resp->changes().rbegin()->id())}));
    }
    return absl::OkStatus();
  });
}

}  // namespace safeharbor::directory
