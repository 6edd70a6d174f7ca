// The fee service's RPC logic, apart from its wiring in main.cc.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "common/clock.h"
#include "common/counties.h"
#include "common/pg.h"
#include "common/rpc.h"
#include "safeharbor/fees/v1/fees.grpc.pb.h"
#include "services/fees/fee_store.h"
#include "services/fees/recipients.h"

namespace safeharbor::fees {

struct FeeOptions {
  // The Department of Commerce's directory id (receives 2% and the state account).
  std::string commerce_organization_id = "demo-state-commerce";
};

class FeeServiceImpl final : public v1::FeeService::CallbackService {
 public:
  // None owned; all must outlive this object.
  FeeServiceImpl(RpcEnv* env, PgPool* pg, const RecipientSource* recipients,
                 prometheus::Registry& registry, const CountyTable& counties, const Clock* clock,
                 FeeOptions options = {});

  // Recomputes the suspense gauge from the ledger (main runs it periodically).
  absl::Status RefreshGauges();

  absl::Status RecordAssessment(const Caller& c, const v1::RecordAssessmentRequest& req,
                                v1::RecordAssessmentResponse* resp);
  absl::Status GetAssessment(const Caller& c, const v1::GetAssessmentRequest& req,
                             v1::GetAssessmentResponse* resp);
  absl::Status RecordPayment(const Caller& c, const v1::RecordPaymentRequest& req,
                             v1::RecordPaymentResponse* resp);
  absl::Status ReversePayment(const Caller& c, const v1::ReversePaymentRequest& req,
                              v1::ReversePaymentResponse* resp);
  absl::Status ListFeeSchedules(const Caller& c, const v1::ListFeeSchedulesRequest& req,
                                v1::ListFeeSchedulesResponse* resp);
  absl::Status ListDisbursementPolicies(const Caller& c,
                                        const v1::ListDisbursementPoliciesRequest& req,
                                        v1::ListDisbursementPoliciesResponse* resp);
  absl::Status AdoptDisbursementPolicy(const Caller& c,
                                       const v1::AdoptDisbursementPolicyRequest& req,
                                       v1::AdoptDisbursementPolicyResponse* resp);
  absl::Status GetDisbursementReport(const Caller& c, const v1::GetDisbursementReportRequest& req,
                                     v1::GetDisbursementReportResponse* resp);
  absl::Status GetCollectionReport(const Caller& c, const v1::GetCollectionReportRequest& req,
                                   v1::GetCollectionReportResponse* resp);
  absl::Status GetCommerceRemittance(const Caller& c, const v1::GetCommerceRemittanceRequest& req,
                                     v1::GetCommerceRemittanceResponse* resp);
  absl::Status GetRecipientStatement(const Caller& c, const v1::GetRecipientStatementRequest& req,
                                     v1::GetRecipientStatementResponse* resp);

#define SAFEHARBOR_FEES_RPC(Name)                                                                \
  grpc::ServerUnaryReactor* Name(grpc::CallbackServerContext* ctx, const v1::Name##Request* req, \
                                 v1::Name##Response* resp) override {                            \
    return env_->Unary(ctx, req, resp,                                                           \
                       [this](const Caller& c, const v1::Name##Request& r,                       \
                              v1::Name##Response* out) { return this->Name(c, r, out); });       \
  }
  SAFEHARBOR_FEES_RPC(RecordAssessment)
  SAFEHARBOR_FEES_RPC(GetAssessment)
  SAFEHARBOR_FEES_RPC(RecordPayment)
  SAFEHARBOR_FEES_RPC(ReversePayment)
  SAFEHARBOR_FEES_RPC(ListFeeSchedules)
  SAFEHARBOR_FEES_RPC(ListDisbursementPolicies)
  SAFEHARBOR_FEES_RPC(AdoptDisbursementPolicy)
  SAFEHARBOR_FEES_RPC(GetDisbursementReport)
  SAFEHARBOR_FEES_RPC(GetCollectionReport)
  SAFEHARBOR_FEES_RPC(GetCommerceRemittance)
  SAFEHARBOR_FEES_RPC(GetRecipientStatement)
#undef SAFEHARBOR_FEES_RPC

 private:
  absl::Status ValidateAssessment(const v1::Assessment& a) const;

  RpcEnv* env_;
  PgPool* pg_;
  const RecipientSource* recipients_;
  const CountyTable& counties_;
  const Clock* clock_;
  const FeeOptions options_;
  prometheus::Family<prometheus::Counter>& assessed_;
  prometheus::Family<prometheus::Counter>& collected_;
  prometheus::Family<prometheus::Counter>& disbursed_;
  prometheus::Gauge& suspense_;
};

}  // namespace safeharbor::fees
