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

  SAFEHARBOR_UNARY_RPC(RecordAssessment)
  SAFEHARBOR_UNARY_RPC(GetAssessment)
  SAFEHARBOR_UNARY_RPC(RecordPayment)
  SAFEHARBOR_UNARY_RPC(ReversePayment)
  SAFEHARBOR_UNARY_RPC(ListFeeSchedules)
  SAFEHARBOR_UNARY_RPC(ListDisbursementPolicies)
  SAFEHARBOR_UNARY_RPC(AdoptDisbursementPolicy)
  SAFEHARBOR_UNARY_RPC(GetDisbursementReport)
  SAFEHARBOR_UNARY_RPC(GetCollectionReport)
  SAFEHARBOR_UNARY_RPC(GetCommerceRemittance)
  SAFEHARBOR_UNARY_RPC(GetRecipientStatement)

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
