#include "common/rpc_kit.h"

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/idempotency.h"
#include "common/invariant.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace safeharbor {
namespace {

absl::Time FromChronoDeadline(std::chrono::system_clock::time_point tp) {
  if (tp == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(tp);
}

std::string RequestIdOf(const google::protobuf::Message& req) {
  const auto* field = req.GetDescriptor()->FindFieldByName("request_id");
  return req.GetReflection()->GetString(req, field);
}

}  // namespace

RoleSet::RoleSet(std::initializer_list<Role> roles) {
  for (Role r : roles) bits_ |= 1u << static_cast<int>(r);
}

RoleSet RoleSet::Every() {
  RoleSet all;
  for (Role r : AllRoles()) all.bits_ |= 1u << static_cast<int>(r);
  return all;
}

std::string RoleSet::ToString() const {
  std::vector<std::string> names;
  for (Role r : AllRoles()) {
    if (Has(r)) names.emplace_back(RoleName(r));
  }
  return absl::StrJoin(names, ", ");
}

const std::vector<Role>& AllRoles() {
  static const std::vector<Role> roles = {
      Role::kLawEnforcement, Role::kChildWelfare,   Role::kProvider, Role::kCourtClerk,
      Role::kFiscal,         Role::kDirectoryAdmin, Role::kAuditor,  Role::kService};
  return roles;
}

// A kRecorded call's record costs no round trip of its own: its claim goes out with the
// handler's first statements and its response with the commit (IdempotencyRecord). On a replay
// the claim fails the transaction, so the handler stops at its first wait and nothing of it
// commits; the answer is then read from the record.
absl::Status CallContext::Transact(const std::function<absl::Status(PgTx&)>& fn,
                                   const std::function<absl::Status(PgTx&)>& before_record) {
  SH_RELEASE_ASSERT(pg_ != nullptr && !in_tx_, method_->name);
  const MethodPolicy& p = method_->policy;
  std::optional<IdempotencyRecord> record;
  if (p.idempotency == Idempotency::kRecorded) {
    record.emplace(method_->name, caller_, request_id_, *idem_request_);
  }
  size_t checked_callbacks = 0;  // AfterCommit work of before_record: kept on a replay
  in_tx_ = true;
  replayed_ = false;
  absl::Status st = pg_->Transact(
      [&](PgTx& tx) -> absl::Status {
        after_commit_.clear();
        if (before_record) SH_RETURN_IF_ERROR(before_record(tx));
        checked_callbacks = after_commit_.size();
        if (record) {
          response_->Clear();
          record->Claim(tx);
        }
        SH_RETURN_IF_ERROR(fn(tx));
        // Never commit a change whose scope nobody decided.
        if (!authorized_) {
          return InvariantViolation("rpc.scope_decided",
                                    absl::StrCat(method_->name, " never decided scope"));
        }
        if (record) record->Record(tx, *response_);
        return absl::OkStatus();
      },
      p.isolation, p.read_only);
  in_tx_ = false;
  if (!st.ok() && record && record->Replayed()) {
    replayed_ = true;
    after_commit_.resize(checked_callbacks);
    response_->Clear();
    st = record->Answer(*pg_, response_);
  }
  std::vector<std::function<void()>> after;
  after.swap(after_commit_);
  if (!st.ok()) return st;
  for (auto& f : after) f();
  return st;
}

void CallContext::AfterCommit(std::function<void()> fn) {
  if (in_tx_) {
    after_commit_.push_back(std::move(fn));
  } else {
    fn();
  }
}

void CallContext::AfterReply(std::function<void()> fn) {
  if (on_worker_) {
    after_reply_.push_back(std::move(fn));
  } else {
    fn();
  }
}

absl::Status CallContext::Authorize(absl::Status decision) {
  authorized_ = true;
  return decision;
}

RpcService::RpcService(absl::string_view full_name, KitDeps deps)
    : full_name_(full_name), deps_(deps) {
  descriptor_ = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(full_name_);
  SH_RELEASE_ASSERT(descriptor_ != nullptr, full_name_);
  SH_RELEASE_ASSERT(deps_.env != nullptr && deps_.clock != nullptr, full_name_);
  const int n = descriptor_->method_count();
  for (int i = 0; i < n; ++i) {
    const auto* m = descriptor_->method(i);
    paths_.push_back(absl::StrCat("/", full_name_, "/", m->name()));
    const auto type = m->server_streaming() ? grpc::internal::RpcMethod::SERVER_STREAMING
                                            : grpc::internal::RpcMethod::NORMAL_RPC;
    AddMethod(new grpc::internal::RpcServiceMethod(paths_.back().c_str(), type, nullptr));
  }
  table_.resize(static_cast<size_t>(n));
  declared_.resize(static_cast<size_t>(n), false);
  if (deps_.registry == nullptr) return;
  violations_ = &prometheus::BuildCounter()
                     .Name("safeharbor_invariant_violations_total")
                     .Help(
                         "Calls refused with INTERNAL because an invariant that guards money "
                         "or beds would have been broken, by invariant.")
                     .Register(*deps_.registry);
  refused_ = &prometheus::BuildCounter()
                  .Name("safeharbor_rpc_refused_total")
                  .Help("Calls refused by the method table's policy, by method and reason.")
                  .Register(*deps_.registry);
  quota_refused_ = &prometheus::BuildCounter()
                        .Name("safeharbor_quota_refused_total")
                        .Help(
                            "Calls and streams refused with RESOURCE_EXHAUSTED by a "
                            "per-organization limit, by limit and caller role.")
                        .Register(*deps_.registry);
  round_trips_ = &prometheus::BuildHistogram()
                      .Name("safeharbor_rpc_postgres_round_trips")
                      .Help(
                          "Round trips to PostgreSQL per call that reached its handler, by "
                          "method (statements sent together count once).")
                      .Register(*deps_.registry);
  fast_answered_ = &prometheus::BuildCounter()
                        .Name("safeharbor_rpc_fast_path_total")
                        .Help(
                            "Calls answered on the reactor thread by their method's fast path "
                            "(no executor hand-off), by method.")
                        .Register(*deps_.registry);
}

RpcService::~RpcService() = default;

RpcService::Declared RpcService::Declare(absl::string_view name, MethodPolicy policy,
                                         bool streaming,
                                         const google::protobuf::Descriptor* input) {
  const auto* m = descriptor_->FindMethodByName(std::string(name));
  SH_RELEASE_ASSERT(m != nullptr, absl::StrCat(full_name_, " has no RPC ", name));
  const auto idx = static_cast<size_t>(m->index());
  SH_RELEASE_ASSERT(!declared_[idx], absl::StrCat(name, " declared twice"));
  SH_RELEASE_ASSERT(m->server_streaming() == streaming && !m->client_streaming(), name);
  SH_RELEASE_ASSERT(m->input_type() == input, absl::StrCat(name, ": wrong request type"));
  SH_RELEASE_ASSERT(!policy.roles.empty(), absl::StrCat(name, ": no role may call it"));
  if (policy.idempotency != Idempotency::kNone) {
    const auto* f = input->FindFieldByName("request_id");
    SH_RELEASE_ASSERT(f != nullptr && f->type() == google::protobuf::FieldDescriptor::TYPE_STRING,
                      absl::StrCat(name, ": idempotent without a request_id"));
  }
  declared_[idx] = true;
  table_[idx] = MethodInfo{std::string(name), streaming, policy};
  if (refused_ != nullptr) {
    refused_->Add({{"grpc_method", std::string(name)}, {"reason", "permission_denied"}});
  }
  return Declared{m->index(), &table_[idx]};
}

void RpcService::Seal() {
  for (size_t i = 0; i < declared_.size(); ++i) {
    SH_RELEASE_ASSERT(declared_[i], absl::StrCat(full_name_, "/",
                                                 descriptor_->method(static_cast<int>(i))->name(),
                                                 " has no entry in the method table"));
  }
}

absl::Status RpcService::Admit(const grpc::CallbackServerContext& ctx, const MethodInfo& info,
                               const google::protobuf::Message& req,
                               const std::function<absl::Status()>& validate,
                               const std::function<std::string()>& organization,
                               CallContext* call) const {
  SH_ASSIGN_OR_RETURN(call->caller_, deps_.env->Identify(ctx));
  call->method_ = &info;
  call->clock_ = deps_.clock;
  call->pg_ = deps_.pg;
  call->deadline_ = FromChronoDeadline(ctx.deadline());
  const MethodPolicy& p = info.policy;
  const Caller& c = call->caller_;
  if (!p.roles.Has(c.role)) {
    return absl::PermissionDeniedError(absl::StrCat("role '", RoleName(c.role), "' may not call ",
                                                    info.name, " (it is for: ", p.roles.ToString(),
                                                    ")"));
  }
  SH_RETURN_IF_ERROR(TakeQuota(info, call));
  if (const size_t size = req.ByteSizeLong(); size > p.max_request_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("request is ", size, " bytes; ", info.name,
                                                   " accepts at most ", p.max_request_bytes));
  }
  if (p.idempotency != Idempotency::kNone) {
    call->request_id_ = RequestIdOf(req);
    call->idem_request_ = &req;
    SH_RETURN_IF_ERROR(ValidateRequestId(call->request_id_));
  }
  SH_RETURN_IF_ERROR(validate());
  if (p.scope == Scope::kOwnOrganization && !p.any_org.Has(c.role) && organization() != c.org_id) {
    return absl::PermissionDeniedError(
        absl::StrCat("a ", RoleName(c.role), " acts only for its own organization in ", info.name));
  }
  call->authorized_ = p.scope != Scope::kStored;
  return absl::OkStatus();
}

absl::Status RpcService::TakeQuota(const MethodInfo& info, CallContext* call) const {
  OrgQuotas& quotas = deps_.env->quotas();
  const std::string& org = call->caller_.org_id;
  const std::optional<QuotaLimit> refused =
      info.server_streaming ? quotas.OpenStream(org) : quotas.BeginCall(org);
  if (refused.has_value()) {
    if (quota_refused_ != nullptr) {
      quota_refused_
          ->Add({{"limit", std::string(QuotaLimitName(*refused))},
                 {"caller_role", std::string(RoleName(call->caller_.role))}})
          .Increment();
    }
    return quotas.Refusal(*refused);
  }
  QuotaSlot slot(&quotas, org,
                 info.server_streaming ? QuotaSlot::Kind::kStream : QuotaSlot::Kind::kCall);
  (info.server_streaming ? call->stream_slot_ : call->call_slot_) = std::move(slot);
  return absl::OkStatus();
}

size_t RpcService::MaxRequestBytes() const {
  size_t max = 0;
  for (const MethodInfo& m : table_) max = std::max(max, m.policy.max_request_bytes);
  return max;
}

int MaxReceiveBytes(const std::vector<grpc::Service*>& services, int otherwise) {
  size_t max = 0;
  for (grpc::Service* s : services) {
    if (const auto* kit = dynamic_cast<const RpcService*>(s); kit != nullptr) {
      max = std::max(max, kit->MaxRequestBytes());
    }
  }
  return max == 0 ? otherwise : static_cast<int>(max);
}

absl::Status RpcService::Conclude(const CallContext& call, const MethodInfo& info,
                                  absl::Status st) const {
  if (st.ok() && !call.authorized_ && !call.replayed_) {  // a replay: the caller's own record
    st = InvariantViolation("rpc.scope_decided", absl::StrCat(info.name, " never decided scope"));
  }
  const std::string invariant = ViolatedInvariant(st);
  if (!invariant.empty() && violations_ != nullptr) {
    violations_->Add({{"invariant", invariant}}).Increment();
  }
  if (st.code() == absl::StatusCode::kPermissionDenied) {
    if (refused_ != nullptr) {
      refused_->Add({{"grpc_method", info.name}, {"reason", "permission_denied"}}).Increment();
    }
    log::Warn("rpc_denied", {{"method", info.name},
                             {"caller_org", call.caller_.org_id},
                             {"caller_role", RoleName(call.caller_.role)},
                             {"error", st.message()}});
  } else if (st.code() == absl::StatusCode::kInternal && invariant.empty()) {
    log::Error("rpc_internal_error", {{"method", info.name}, {"error", st.message()}});
  }
  return st;
}

bool RpcService::RunFast(CallContext* call, const std::function<bool(CallContext&)>& fast,
                         grpc::ServerUnaryReactor* reactor) const {
  if (!fast(*call)) return false;
  if (fast_answered_ != nullptr) {
    fast_answered_->Add({{"grpc_method", call->method_->name}}).Increment();
  }
  reactor->Finish(ToGrpcStatus(Conclude(*call, *call->method_, absl::OkStatus())));
  delete call;
  return true;
}

void RpcService::Run(CallContext* call, const std::function<absl::Status(CallContext&)>& body,
                     grpc::ServerUnaryReactor* reactor, grpc::CallbackServerContext* ctx) const {
  const bool queued = deps_.env->executor().TrySubmit([this, call, body, reactor, ctx] {
    std::unique_ptr<CallContext> owned(call);
    if (ctx->IsCancelled()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled"));
      return;
    }
    std::vector<std::function<void()>> after_reply;
    {
      DeadlineScope scope(call->deadline_);
      PgRoundTripScope trips;
      call->on_worker_ = true;
      absl::Status st = body(*call);
      if (round_trips_ != nullptr) {
        static const auto* buckets =
            new prometheus::Histogram::BucketBoundaries{0, 1, 2, 3, 4, 6, 8, 12, 16, 32};
        round_trips_->Add({{"grpc_method", call->method_->name}}, *buckets)
            .Observe(static_cast<double>(trips.count()));
      }
      after_reply.swap(call->after_reply_);
      reactor->Finish(ToGrpcStatus(Conclude(*call, *call->method_, std::move(st))));
    }
    owned.reset();  // the call's quota slot given back before the work after the answer
    for (auto& f : after_reply) f();
  });
  if (!queued) {
    delete call;
    reactor->Finish(RpcEnv::BusyStatus());
  }
}

}  // namespace safeharbor
