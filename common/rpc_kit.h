// Every RPC declared once. A service's method table says, for each RPC of its proto: the handler,
// the roles and the organization scope that may call it, idempotency on request_id, transaction
// isolation, read-only or not. RpcService runs, for every entry:
//   identify → authorize (role) → per-organization quota → request size → validate (pure, on
//   the reactor thread) → organization scope
//   → hand-off to the bounded executor → handler (with a CallContext) → transaction with
//   idempotency (ctx.Transact) → after-commit work → invariant metrics and log.
// An RPC of the proto without an entry cannot be served: Seal() refuses to start the service.
#pragma once

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/rpc_service_method.h>
#include <grpcpp/impl/service_type.h>
#include <grpcpp/support/server_callback.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/clock.h"
#include "common/deadline.h"  // CurrentCallDeadline: what outgoing calls derive theirs from
#include "common/pg.h"
#include "common/prometheus_fwd.h"
#include "common/quota.h"
#include "common/rpc.h"
#include "common/status.h"

namespace safeharbor {

// A set of roles. "Every role" is written as RoleSet::Every(), never implied.
class RoleSet {
 public:
  RoleSet() = default;
  RoleSet(std::initializer_list<Role> roles);
  static RoleSet Every();
  bool Has(Role role) const { return (bits_ >> static_cast<int>(role)) & 1u; }
  bool empty() const { return bits_ == 0; }
  std::string ToString() const;  // "child_welfare, law_enforcement"

 private:
  uint32_t bits_ = 0;
};

// Every role, in declaration order (for tests that try each).
const std::vector<Role>& AllRoles();

enum class Scope {
  kAnyOrganization,  // any organization holding one of the roles
  kOwnOrganization,  // the organization the request names is the caller's (any_org roles excepted)
  kStored,           // decided by the handler on stored data (owner, the referral's parties,
                     // region): ctx.Authorize(decision) before any answer that is not an error
};

enum class Idempotency {
  kNone,
  kRecorded,  // request_id required; ctx.Transact runs the work once per id, a replay answers
              // the stored response (the same id with other content is refused)
  kByState,   // request_id required; a retry finds the state already changed and answers as the
              // first call did
};

// A request larger than its method's max_request_bytes is refused (INVALID_ARGUMENT) before
// validation. The server's gRPC receive limit is the largest of its table (a larger message is
// refused by gRPC itself, RESOURCE_EXHAUSTED).
inline constexpr size_t kDefaultMaxRequestBytes = 64 << 10;

struct MethodPolicy {
  RoleSet roles;
  Scope scope = Scope::kAnyOrganization;
  RoleSet any_org;  // kOwnOrganization: roles that may name any organization
  Idempotency idempotency = Idempotency::kNone;
  Isolation isolation = Isolation::kReadCommitted;
  bool read_only = false;
  size_t max_request_bytes = kDefaultMaxRequestBytes;
};

// One entry of a method table, without its types: what tests enumerate.
struct MethodInfo {
  std::string name;  // "HoldBed"
  bool server_streaming = false;
  MethodPolicy policy;
};

class RpcService;

// Handed to every handler: who calls, until when, the injected clock, and the method's
// transaction.
class CallContext {
 public:
  const Caller& caller() const { return caller_; }
  absl::Time deadline() const { return deadline_; }
  absl::Time Now() const { return clock_->Now(); }
  const MethodInfo& method() const { return *method_; }

  // Runs fn in a transaction with the method's isolation and read-only flag; for a kRecorded
  // method, once per request_id (a replay fills the response from the record instead, and
  // replayed() says so). Work queued with AfterCommit inside fn runs once, after the commit.
  // `before_record` (optional) runs in the same transaction before the idempotency record is
  // looked up, on a replay too: checks that must hold for the answer to be given again.
  absl::Status Transact(const std::function<absl::Status(PgTx&)>& fn,
                        const std::function<absl::Status(PgTx&)>& before_record = {});
  bool replayed() const { return replayed_; }
  // Inside Transact: runs after its commit (dropped when it rolls back or is retried). Outside:
  // runs at once.
  void AfterCommit(std::function<void()> fn);
  // Work the caller need not wait for (a fan-out to other replicas): runs on the call's worker
  // after its answer was handed to gRPC and its quota slot given back, whatever the answer. It
  // must capture what it needs by value (the request and response are gone by then). Where no
  // worker ran the handler (a fast path, a stream's start): runs at once.
  void AfterReply(std::function<void()> fn);
  // kRecorded: the request as it is to be remembered, when it differs from the one received
  // (identifying details replaced by keyed fingerprints). Must outlive the call to Transact.
  void SetIdempotencyRequest(const google::protobuf::Message* request) { idem_request_ = request; }

  // Scope::kStored: the handler's decision on stored data. Returns `decision`.
  absl::Status Authorize(absl::Status decision);

  // A server stream: the caller's organization's open-stream slot, taken by the kit before the
  // handler ran. Keep it for as long as the stream is open (the watch hub does); dropped, the
  // stream no longer counts against the organization's limit.
  QuotaSlot TakeStreamSlot() { return std::move(stream_slot_); }

 private:
  friend class RpcService;
  CallContext() = default;

  Caller caller_;
  absl::Time deadline_ = absl::InfiniteFuture();
  const Clock* clock_ = nullptr;
  const MethodInfo* method_ = nullptr;
  PgPool* pg_ = nullptr;
  std::string request_id_;
  const google::protobuf::Message* idem_request_ = nullptr;
  google::protobuf::Message* response_ = nullptr;
  bool replayed_ = false;
  bool authorized_ = false;
  bool in_tx_ = false;
  bool on_worker_ = false;  // in RpcService::Run: AfterReply work waits for the answer
  std::vector<std::function<void()>> after_commit_;
  std::vector<std::function<void()>> after_reply_;
  QuotaSlot call_slot_;    // unary calls: given back when the call's context is destroyed
  QuotaSlot stream_slot_;  // streams: until the handler takes it
};

struct KitDeps {
  RpcEnv* env = nullptr;
  PgPool* pg = nullptr;  // may be null for a service without a database (tests)
  const Clock* clock = nullptr;
  prometheus::Registry* registry = nullptr;  // may be null
};

// Optional typed parts of an entry.
template <typename Req, typename Resp = void>
struct Checks {
  // Pure validation of the request (no I/O): INVALID_ARGUMENT naming the field.
  std::function<absl::Status(const Req&)> validate;
  // Scope::kOwnOrganization: the organization the request acts for.
  std::function<std::string(const Req&)> organization;
  // Unary only, optional: answers an admitted call on the reactor thread, without the hand-off
  // to the executor, when it can without I/O or waiting (e.g. from an in-process cache known
  // fresh). Runs where the handler would, after every check of the entry (role, quota, size,
  // validation, scope). True: `resp` is the answer (OK, concluded as any call). False: `resp`
  // left empty, the call goes to the handler as usual.
  std::function<bool(CallContext&, const Req&, Resp*)> fast_path;
};

// A server stream that ends at once with `status`.
template <typename Resp>
class RefusedStream final : public grpc::ServerWriteReactor<Resp> {
 public:
  explicit RefusedStream(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};
template <typename Resp>
grpc::ServerWriteReactor<Resp>* Refuse(grpc::Status status) {
  return new RefusedStream<Resp>(std::move(status));
}

// A grpc::Service built from a method table. A service's logic class derives from it and
// declares each RPC once, in its constructor, then calls Seal().
class RpcService : public grpc::Service {
 public:
  // `full_name`: the proto service, e.g. "safeharbor.beds.v1.BedsService".
  RpcService(absl::string_view full_name, KitDeps deps);
  ~RpcService() override;

  const std::string& full_name() const { return full_name_; }
  const std::vector<MethodInfo>& method_table() const { return table_; }
  // The largest max_request_bytes of the table: the server's gRPC receive limit.
  size_t MaxRequestBytes() const;
  RpcEnv* env() const { return deps_.env; }

 protected:
  template <typename Req, typename Resp>
  using UnaryHandler = std::function<absl::Status(CallContext&, const Req&, Resp*)>;
  template <typename Req, typename Resp>
  using StreamHandler = std::function<grpc::ServerWriteReactor<Resp>*(CallContext&, const Req&)>;

  template <typename Req, typename Resp>
  void Unary(absl::string_view name, MethodPolicy policy, UnaryHandler<Req, Resp> handler,
             Checks<Req, Resp> checks = {});
  // The stream handler runs on the reactor thread and must not block; it is called only for
  // admitted calls (a refused one ends at once, never registered anywhere).
  template <typename Req, typename Resp>
  void ServerStream(absl::string_view name, MethodPolicy policy, StreamHandler<Req, Resp> handler,
                    Checks<Req> checks = {});

  // Every RPC of the proto must have been declared: aborts at start-up naming the first that
  // was not (a programming error the descriptor test also catches).
  void Seal();

 private:
  struct Declared {
    int index;
    const MethodInfo* info;
  };
  Declared Declare(absl::string_view name, MethodPolicy policy, bool streaming,
                   const google::protobuf::Descriptor* input);
  // Identify, role, request_id, validation and scope: the refusal, or the call's context.
  // Validation and the organization run only for a caller whose role the entry admits.
  absl::Status Admit(const grpc::CallbackServerContext& ctx, const MethodInfo& info,
                     const google::protobuf::Message& req,
                     const std::function<absl::Status()>& validate,
                     const std::function<std::string()>& organization, CallContext* call) const;
  // The caller's organization's slot (a call or a stream), or RESOURCE_EXHAUSTED (counted).
  absl::Status TakeQuota(const MethodInfo& info, CallContext* call) const;
  // The answer, after the kit's own checks; counts and logs what an operator needs.
  absl::Status Conclude(const CallContext& call, const MethodInfo& info, absl::Status status) const;
  template <typename Req, typename Resp>
  static absl::Status Validate(const Checks<Req, Resp>& checks, const Req& req) {
    return checks.validate ? checks.validate(req) : absl::OkStatus();
  }
  template <typename Req, typename Resp>
  static std::string OrganizationOf(const Checks<Req, Resp>& checks, const Req& req) {
    return checks.organization ? checks.organization(req) : std::string();
  }
  void Run(CallContext* call, const std::function<absl::Status(CallContext&)>& body,
           grpc::ServerUnaryReactor* reactor, grpc::CallbackServerContext* ctx) const;
  // An admitted call answered by its entry's fast path (true), or not (false: Run it).
  bool RunFast(CallContext* call, const std::function<bool(CallContext&)>& fast,
               grpc::ServerUnaryReactor* reactor) const;

  const std::string full_name_;
  const KitDeps deps_;
  const google::protobuf::ServiceDescriptor* descriptor_ = nullptr;
  std::deque<std::string> paths_;  // stable storage for the method paths gRPC keeps pointers to
  std::vector<MethodInfo> table_;
  std::vector<bool> declared_;
  prometheus::Family<prometheus::Counter>* violations_ = nullptr;
  prometheus::Family<prometheus::Counter>* refused_ = nullptr;
  prometheus::Family<prometheus::Counter>* quota_refused_ = nullptr;
  prometheus::Family<prometheus::Histogram>* round_trips_ = nullptr;  // per call, by method
  prometheus::Family<prometheus::Counter>* fast_answered_ = nullptr;
};

template <typename Req, typename Resp>
void RpcService::Unary(absl::string_view name, MethodPolicy policy, UnaryHandler<Req, Resp> handler,
                       Checks<Req, Resp> checks) {
  const Declared d = Declare(name, policy, false, Req::descriptor());
  const MethodInfo* info = d.info;
  MarkMethodCallback(
      d.index, new grpc::internal::CallbackUnaryHandler<Req, Resp>(
                   [this, info, handler = std::move(handler), checks](
                       grpc::CallbackServerContext* ctx, const Req* req,
                       Resp* resp) -> grpc::ServerUnaryReactor* {
                     auto* call = new CallContext();
                     call->response_ = resp;
                     absl::Status admitted = Admit(
                         *ctx, *info, *req, [&] { return Validate(checks, *req); },
                         [&] { return OrganizationOf(checks, *req); }, call);
                     grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
                     if (!admitted.ok()) {
                       reactor->Finish(ToGrpcStatus(Conclude(*call, *info, admitted)));
                       delete call;
                       return reactor;
                     }
                     if (checks.fast_path &&
                         RunFast(
                             call, [&](CallContext& c) { return checks.fast_path(c, *req, resp); },
                             reactor)) {
                       return reactor;
                     }
                     Run(
                         call,
                         [&handler, req, resp](CallContext& c) { return handler(c, *req, resp); },
                         reactor, ctx);
                     return reactor;
                   }));
}

template <typename Req, typename Resp>
void RpcService::ServerStream(absl::string_view name, MethodPolicy policy,
                              StreamHandler<Req, Resp> handler, Checks<Req> checks) {
  const Declared d = Declare(name, policy, true, Req::descriptor());
  const MethodInfo* info = d.info;
  MarkMethodCallback(
      d.index,
      new grpc::internal::CallbackServerStreamingHandler<Req, Resp>(
          [this, info, handler = std::move(handler), checks](
              grpc::CallbackServerContext* ctx, const Req* req) -> grpc::ServerWriteReactor<Resp>* {
            CallContext call;
            absl::Status admitted = Admit(
                *ctx, *info, *req, [&] { return Validate(checks, *req); },
                [&] { return OrganizationOf(checks, *req); }, &call);
            if (!admitted.ok()) {
              return Refuse<Resp>(ToGrpcStatus(Conclude(call, *info, admitted)));
            }
            return handler(call, *req);
          }));
}

}  // namespace safeharbor

namespace safeharbor {
// The gRPC receive limit for a server of `services`: the largest max_request_bytes of their
// method tables (`otherwise` when none is an RpcService).
int MaxReceiveBytes(const std::vector<grpc::Service*>& services, int otherwise);
}  // namespace safeharbor

// In the method table of an RpcService subclass whose protos are in namespace `v1`: declares
// RPC `Name`, served by the member `absl::Status Name(CallContext&, const v1::NameRequest&,
// v1::NameResponse*)`, with its MethodPolicy and optional Checks fields (.validate = …,
// .organization = …).
#define SAFEHARBOR_RPC(Name, policy, ...)                                      \
  this->Unary<v1::Name##Request, v1::Name##Response>(                          \
      #Name, policy,                                                           \
      [this](::safeharbor::CallContext& ctx, const v1::Name##Request& req,     \
             v1::Name##Response* resp) { return this->Name(ctx, req, resp); }, \
      {__VA_ARGS__})
// The same for a server-streaming RPC served by `grpc::ServerWriteReactor<v1::NameResponse>*
// Name(CallContext&, const v1::NameRequest&)`.
#define SAFEHARBOR_STREAM_RPC(Name, policy, ...)                             \
  this->ServerStream<v1::Name##Request, v1::Name##Response>(                 \
      #Name, policy,                                                         \
      [this](::safeharbor::CallContext& ctx, const v1::Name##Request& req) { \
        return this->Name(ctx, req);                                         \
      },                                                                     \
      {__VA_ARGS__})
