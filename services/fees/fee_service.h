// The fee service's RPC logic, apart from its wiring in main.cc.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <map>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "common/clock.h"
#include "common/counties.h"
#include "common/pg.h"
#include "common/rpc_kit.h"
#include "safeharbor/fees/v1/fees.grpc.pb.h"
#include "services/fees/fee_store.h"
#include "services/fees/recipients.h"

namespace safeharbor::fees {

struct FeeOptions {
  // The Department of Commerce's directory id (receives 2% and the state account).
  std::string commerce_organization_id = "demo-state-commerce";
  // The state's fiscal office: its fiscal callers adopt policies for any jurisdiction (others
  // only for their organization's county in the directory). Empty: the Commerce organization.
  std::string state_fiscal_organization_id;
};

class FeeServiceImpl final : public RpcService {
 public:
  // None owned; all must outlive this object.
  FeeServiceImpl(RpcEnv* env, PgPool* pg, const RecipientSource* recipients,
                 prometheus::Registry& registry, const CountyTable& counties, const Clock* clock,
                 FeeOptions options = {});

  // Recomputes the suspense gauge from the ledger (main runs it periodically).
  absl::Status RefreshGauges();

 private:
  void Methods();
  absl::Status RecordAssessment(CallContext& ctx, const v1::RecordAssessmentRequest& req,
                                v1::RecordAssessmentResponse* resp);
  absl::Status GetAssessment(CallContext& ctx, const v1::GetAssessmentRequest& req,
                             v1::GetAssessmentResponse* resp);
  absl::Status RecordPayment(CallContext& ctx, const v1::RecordPaymentRequest& req,
                             v1::RecordPaymentResponse* resp);
  absl::Status ReversePayment(CallContext& ctx, const v1::ReversePaymentRequest& req,
                              v1::ReversePaymentResponse* resp);
  absl::Status ListFeeSchedules(CallContext& ctx, const v1::ListFeeSchedulesRequest& req,
                                v1::ListFeeSchedulesResponse* resp);
  absl::Status ListDisbursementPolicies(CallContext& ctx,
                                        const v1::ListDisbursementPoliciesRequest& req,
                                        v1::ListDisbursementPoliciesResponse* resp);
  absl::Status AdoptDisbursementPolicy(CallContext& ctx,
                                       const v1::AdoptDisbursementPolicyRequest& req,
                                       v1::AdoptDisbursementPolicyResponse* resp);
  absl::Status GetDisbursementReport(CallContext& ctx, const v1::GetDisbursementReportRequest& req,
                                     v1::GetDisbursementReportResponse* resp);
  absl::Status GetCollectionReport(CallContext& ctx, const v1::GetCollectionReportRequest& req,
                                   v1::GetCollectionReportResponse* resp);
  absl::Status GetCommerceRemittance(CallContext& ctx, const v1::GetCommerceRemittanceRequest& req,
                                     v1::GetCommerceRemittanceResponse* resp);
  absl::Status GetRecipientStatement(CallContext& ctx, const v1::GetRecipientStatementRequest& req,
                                     v1::GetRecipientStatementResponse* resp);

  absl::Status ValidateAssessment(const v1::Assessment& a) const;
  absl::Status ValidatePayment(const v1::RecordPaymentRequest& req) const;
  absl::Status ValidatePolicyRequest(const v1::AdoptDisbursementPolicyRequest& req) const;
  // The directory's facts: the clerk's court serves the assessment's jurisdiction
  // (PERMISSION_DENIED), the hosting agency is law enforcement (FAILED_PRECONDITION).
  absl::Status CheckCourt(const v1::Assessment& a) const;
  absl::Status CheckHostingAgency(const v1::Assessment& a) const;
  // A fiscal caller's own jurisdiction, or the state's fiscal office for any.
  absl::Status CheckFiscalJurisdiction(const Caller& c, absl::string_view jurisdiction) const;
  // The payment's ledger transaction, under the assessment's row lock.
  absl::Status Pay(CallContext& ctx, PgTx& tx, const v1::RecordPaymentRequest& req,
                   const std::vector<std::string>& providers, const std::string& payment_id,
                   v1::RecordPaymentResponse* resp);
  absl::Status Reverse(CallContext& ctx, PgTx& tx, const v1::ReversePaymentRequest& req,
                       v1::ReversePaymentResponse* resp);
  void CountPayment(const v1::Payment& p);
  // The assessment's jurisdiction (NOT_FOUND when there is none), read in a transaction of its
  // own the first time. Assessments never change (the table is append-only), so it is kept:
  // later payments on the assessment skip that round trip. At most kMaxJurisdictions kept.
  absl::StatusOr<std::string> JurisdictionOf(const std::string& assessment_id);
  static constexpr size_t kMaxJurisdictions = 100000;

  PgPool* pg_;
  const RecipientSource* recipients_;
  const CountyTable& counties_;
  const Clock* clock_;
  const FeeOptions options_;
  prometheus::Family<prometheus::Counter>& assessed_;
  prometheus::Family<prometheus::Counter>& collected_;
  prometheus::Family<prometheus::Counter>& disbursed_;
  prometheus::Gauge& suspense_;
  std::mutex jurisdictions_mu_;
  std::map<std::string, std::string> jurisdictions_ ABSL_GUARDED_BY(jurisdictions_mu_);
};

}  // namespace safeharbor::fees
