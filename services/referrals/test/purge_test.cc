// Issue 14 (mend14): a purge leaves nothing that may identify the youth in any table — not the
// sealed details only, but every copy of the free text typed about her (decline and waitlist
// text, the outcome's text, the cancellation's text) — and the audit row says "purged".
#include <algorithm>
#include <optional>

#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "services/referrals/test/referral_fixture.h"

namespace safeharbor::referrals {
namespace {

class PurgeTest : public ReferralTest {
 protected:
  // Every text-like column of every table of the referral database holding `needle`, as
  // "table.column" (bytea columns searched byte for byte: serialized bodies and event payloads).
  std::vector<std::string> ColumnsHolding(const std::string& needle) {
    auto columns = referrals_.pg->Query(
        "SELECT c.table_name AS t, c.column_name AS c, c.data_type AS type "
        "FROM information_schema.columns c JOIN information_schema.tables t "
        "ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
        "WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' AND "
        "c.data_type IN ('text', 'character varying', 'character', 'bytea', 'jsonb', 'json', "
        "'ARRAY') ORDER BY 1, 2");
    EXPECT_TRUE(columns.ok()) << columns.status();
    std::vector<std::string> found;
    for (int i = 0; columns.ok() && i < columns->rows(); ++i) {
      const std::string table = columns->String(i, "t");
      const std::string column = columns->String(i, "c");
      const std::string test = columns->String(i, "type") == "bytea"
                                   ? "position(convert_to($1, 'UTF8') in x.\"%s\") > 0"
                                   : "strpos(x.\"%s\"::text, $1) > 0";
      auto n =
          referrals_.pg->Query(absl::StrCat("SELECT count(*) AS n FROM \"", table, "\" x WHERE ",
                                            absl::StrReplaceAll(test, {{"%s", column}})),
                               {needle});
      EXPECT_TRUE(n.ok()) << table << "." << column << ": " << n.status();
      if (n.ok() && n->Int64(0, "n") > 0) found.push_back(absl::StrCat(table, ".", column));
    }
    return found;
  }

  // The stored body and every watch event of the referral, decoded: what ScrubPurged would
  // still remove from them (nothing, after a purge).
  int64_t DecodedCopiesWithText(const std::string& id) {
    auto rows = referrals_.pg->Query(
        "SELECT body AS b FROM referrals WHERE id = $1 UNION ALL "
        "SELECT payload FROM referral_events WHERE referral_id = $1",
        {id});
    EXPECT_TRUE(rows.ok()) << rows.status();
    int64_t with_text = 0;
    for (int i = 0; rows.ok() && i < rows->rows(); ++i) {
      v1::Referral r;
      EXPECT_TRUE(r.ParseFromString(rows->Bytea(i, "b")));
      with_text += ScrubPurged(&r) ? 1 : 0;
    }
    return with_text;
  }

  int64_t Audited(const std::string& id, const std::string& action, const std::string& detail) {
    auto r = referrals_.pg->Query(
        "SELECT count(*) AS n FROM audit_log WHERE referral_id = $1 AND action = $2 AND "
        "detail = $3",
        {id, action, detail});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->Int64(0, "n") : -1;
  }

  // The provider's answers, through the real API.
  grpc::Status Answer(const std::string& org, const std::string& id, v1::ReasonCode code,
                      const std::string& text, std::optional<absl::Time> waitlist_until = {}) {
    auto stub = Stub_(org, "provider");
    if (waitlist_until) {
      v1::WaitlistReferralRequest req;
      req.set_id(id);
      *req.mutable_until() = ToProtoTime(*waitlist_until);
      req.set_reason(text);
      v1::WaitlistReferralResponse resp;
      return stub->WaitlistReferral(Ctx().get(), req, &resp);
    }
    v1::DeclineReferralRequest req;
    req.set_id(id);
    req.set_reason_code(code);
    req.set_reason(text);
    v1::DeclineReferralResponse resp;
    return stub->DeclineReferral(Ctx().get(), req, &resp);
  }
};

TEST_F(PurgeTest, RevokingConsentLeavesNoTypedTextInAnyColumnAndTheAuditSaysPurged) {
  const std::string trace = "Tamsin-Okafor-7Q";  // a name a provider might type
  const std::string id = Create(Request(/*placement=*/false, "typed"));
  ASSERT_EQ(Timers(), 1);  // offered to prov-a, prov-b and prov-c
  ASSERT_TRUE(Answer("prov-b", id, v1::REASON_CODE_OTHER, "knows " + trace + "'s family").ok());
  ASSERT_TRUE(Answer("prov-c", id, v1::REASON_CODE_UNSPECIFIED, "bed for " + trace + " at 07:00",
                     clock_.Now() + absl::Hours(2))
                  .ok());
  ASSERT_TRUE(Accept("prov-a", id).ok());
  ASSERT_TRUE(Handoff("prov-a", id).ok());
  v1::RecordOutcomeRequest outcome;
  outcome.set_id(id);
  outcome.set_outcome(v1::REFERRAL_STATUS_COMPLETED);
  outcome.set_reason_code(v1::REASON_CODE_REFERRED_ELSEWHERE);
  outcome.set_reason(trace + " moved to her aunt in Yakima");
  v1::RecordOutcomeResponse recorded;
  ASSERT_TRUE(Stub_("prov-a", "provider")->RecordOutcome(Ctx().get(), outcome, &recorded).ok());
  // The probe finds the text where it is kept while the consent holds.
  const std::vector<std::string> before = ColumnsHolding(trace);
  for (const char* where : {"offers.decline_reason", "referrals.body", "referral_events.payload"}) {
    EXPECT_NE(std::find(before.begin(), before.end(), where), before.end()) << where;
  }
  EXPECT_GE(DecodedCopiesWithText(id), 2);
  std::printf("typed text before the purge in: %s\n", absl::StrJoin(before, ", ").c_str());

  v1::RevokeConsentRequest revoke;
  revoke.set_id(id);
  v1::RevokeConsentResponse revoked;
  ASSERT_TRUE(Stub_("prov-a", "provider")->RevokeConsent(Ctx().get(), revoke, &revoked).ok());
  EXPECT_EQ(ColumnsHolding(trace), std::vector<std::string>());
  EXPECT_EQ(ColumnsHolding("Jane Q"), std::vector<std::string>());  // the sealed details' name
  EXPECT_EQ(DecodedCopiesWithText(id), 0);
  EXPECT_EQ(Audited(id, "identity_purged", "consent_revoked"), 1);
  // Codes and times stay for the report: the decline's code, the waitlist answer, the outcome.
  const v1::Referral cw = AsChildWelfare(id);
  EXPECT_EQ(cw.outcome_code(), v1::REASON_CODE_REFERRED_ELSEWHERE);
  EXPECT_TRUE(cw.outcome_reason().empty());
  int coded = 0;
  for (const v1::Offer& o : cw.offers()) {
    EXPECT_TRUE(o.decline_reason().empty()) << o.provider_organization_id();
    coded += o.decline_code() == v1::REASON_CODE_OTHER || o.has_waitlisted_until() ? 1 : 0;
  }
  EXPECT_EQ(coded, 2);
}

TEST_F(PurgeTest, ACancelledReferralsTextIsPurgedAfterRetentionAndNeverWasInTheAppendOnlyLog) {
  const std::string trace = "Wren-Castellanos-3K";
  v1::CreateReferralRequest req = Request(/*placement=*/false, "cancelled");
  *req.mutable_youth()->mutable_consent()->mutable_expire_time() =
      ToProtoTime(clock_.Now() + absl::Hours(24 * 200));  // retention comes first
  const std::string id = Create(req);
  ASSERT_EQ(Timers(), 1);
  ASSERT_TRUE(Answer("prov-a", id, v1::REASON_CODE_SAFETY_CONCERN, trace + "'s trafficker").ok());
  const std::string said = "Ysolde-Marchetti-5P";  // the officer's words, apart from the provider's
  v1::CancelReferralRequest cancel;
  cancel.set_id(id);
  cancel.set_reason(said + " went home with her mother");
  v1::CancelReferralResponse cancelled;
  ASSERT_TRUE(officer_->CancelReferral(Ctx().get(), cancel, &cancelled).ok());
  // Child welfare reads the officer's text. It is in the body only: in no transition, no audit
  // row, no provider's watch event.
  EXPECT_EQ(AsChildWelfare(id).cancel_reason(), said + " went home with her mother");
  EXPECT_EQ(ColumnsHolding(said), std::vector<std::string>{"referrals.body"});
  const std::vector<std::string> before = ColumnsHolding(trace);
  std::printf("typed text before the purge in: %s\n", absl::StrJoin(before, ", ").c_str());
  EXPECT_NE(std::find(before.begin(), before.end(), "offers.decline_reason"), before.end());
  EXPECT_EQ(Audited(id, "cancel", "cancelled"), 1);

  auto& retention = referrals_.service->retention();
  clock_.Advance(absl::Hours(24 * 90) - absl::Minutes(1));
  EXPECT_EQ(*retention.RunOnce(), 0);
  EXPECT_FALSE(ColumnsHolding(trace).empty());
  clock_.Advance(absl::Minutes(2));
  EXPECT_EQ(*retention.RunOnce(), 1);
  EXPECT_EQ(ColumnsHolding(trace), std::vector<std::string>());
  EXPECT_EQ(ColumnsHolding(said), std::vector<std::string>());
  EXPECT_EQ(ColumnsHolding("Jane Q"), std::vector<std::string>());
  EXPECT_EQ(DecodedCopiesWithText(id), 0);
  EXPECT_EQ(Audited(id, "identity_purged", "retention_after_close"), 1);
  EXPECT_TRUE(AsChildWelfare(id).cancel_reason().empty());
  EXPECT_EQ(AsChildWelfare(id).status(), v1::REFERRAL_STATUS_CANCELLED);
}

// Rows written before migration 017 hold a cancellation's text in transitions and the audit log:
// the purge blanks that one column of that referral's rows; nothing else may change them.
TEST_F(PurgeTest, TheAppendOnlyLogYieldsOnlyTheTextColumnOfThePurgedReferral) {
  const std::string trace = "Odessa-Brightwater-9M";
  const std::string id = Create(Request(/*placement=*/false, "legacy"));
  const std::string other = Create(Request(/*placement=*/false, "bystander"));
  for (const std::string& r : {id, other}) {
    ASSERT_TRUE(referrals_.pg
                    ->Query("INSERT INTO transitions (referral_id, from_status, to_status, "
                            "actor_org, actor_role, at, reason) VALUES ($1, 1, 9, 'le-seattle', "
                            "'law_enforcement', now(), $2)",
                            {r, trace + " ran from the group home"})
                    .ok());
    ASSERT_TRUE(referrals_.pg
                    ->Query("INSERT INTO audit_log (at, actor_org, actor_role, action, "
                            "referral_id, detail) VALUES (now(), 'le-seattle', "
                            "'law_enforcement', 'cancel', $1, $2)",
                            {r, trace + " ran from the group home"})
                    .ok());
  }
  // Without the purge's mark, under another referral's, touching another column, or a delete:
  // refused as ever.
  const auto under_mark = [&](const std::string& mark, const std::string& sql) {
    return referrals_.pg->Transact([&](PgTx& tx) -> absl::Status {
      SH_RETURN_IF_ERROR(
          tx.Exec("SELECT set_config('safeharbor.purging_referral', $1, true)", {mark}).status());
      return tx.Exec(sql, {id}).status();
    });
  };
  for (const auto& [mark, sql] : std::vector<std::pair<std::string, std::string>>{
           {"", "UPDATE transitions SET reason = '' WHERE referral_id = $1"},
           {"", "UPDATE audit_log SET detail = '' WHERE referral_id = $1"},
           {other, "UPDATE transitions SET reason = '' WHERE referral_id = $1"},
           {id, "UPDATE transitions SET actor_org = 'x', reason = '' WHERE referral_id = $1"},
           {id, "UPDATE audit_log SET action = 'read', detail = '' WHERE referral_id = $1"},
           {id, "UPDATE transitions SET reason = 'changed' WHERE referral_id = $1"},
           {id, "DELETE FROM transitions WHERE referral_id = $1"},
           {id, "DELETE FROM audit_log WHERE referral_id = $1"}}) {
    EXPECT_FALSE(under_mark(mark, sql).ok()) << mark << ": " << sql;
  }
  v1::RevokeConsentRequest revoke;
  revoke.set_id(id);
  v1::RevokeConsentResponse revoked;
  ASSERT_TRUE(officer_->RevokeConsent(Ctx().get(), revoke, &revoked).ok());
  const std::vector<std::string> left = ColumnsHolding(trace);
  EXPECT_EQ(left, (std::vector<std::string>{"audit_log.detail", "transitions.reason"}));
  EXPECT_EQ(Count(referrals_.pg.get(),
                  absl::StrCat("SELECT count(*) AS n FROM transitions WHERE strpos(reason, '",
                               trace, "') > 0 AND referral_id = '", other, "'")),
            1);  // the bystander's rows are untouched
  EXPECT_EQ(Audited(id, "identity_purged", "consent_revoked"), 1);
  EXPECT_EQ(Count(referrals_.pg.get(), absl::StrCat("SELECT count(*) AS n FROM transitions "
                                                    "WHERE to_status = 9 AND referral_id = '",
                                                    id, "'")),
            1);  // blanked, not removed
}

}  // namespace
}  // namespace safeharbor::referrals
