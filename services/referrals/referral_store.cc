#include "services/referrals/referral_store.h"

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/stored_resource.h"

namespace safeharbor::referrals {

absl::Status ReferralStore::Insert(PgTx& tx, const v1::Referral& referral, const Caller& referrer,
                                   const Sealer& sealer, absl::Time now) {
  v1::Referral body;
  body.ParseFromString(StoredBody(referral));
  PgParam sealed(nullptr);
  if (body.youth().has_identifying()) {
    auto s = sealer.Seal(body.youth().identifying().SerializeAsString(), referral.id());
    if (!s.ok()) return s.status();
    sealed = PgParam::Bytea(*s);
    body.mutable_youth()->clear_identifying();
  }
  auto r = tx.Exec(
      "INSERT INTO referrals (id, referrer_org, referrer_role, county_fips, status, urgency, "
      "needs_placement, acceptance_deadline, body, identity_sealed, create_time, update_time) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
      {referral.id(), referrer.org_id, std::string(RoleName(referrer.role)), referral.county_fips(),
       int32_t{referral.status()}, int32_t{referral.urgency()},
       referral.needs().placement_tonight(),
       referral.has_acceptance_deadline() ? PgTime(FromProtoTime(referral.acceptance_deadline()))
                                          : PgParam(nullptr),
       PgParam::Bytea(body.SerializeAsString()), sealed, PgTime(now)});
  return r.status();
}

absl::StatusOr<v1::Referral> ReferralStore::Get(PgTx& tx, absl::string_view id, bool for_update) {
  auto r = tx.Exec(absl::StrCat("SELECT body, revision, create_time, update_time FROM referrals "
                                "WHERE id = $1",
                                for_update ? " FOR UPDATE" : ""),
                   {id});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return absl::NotFoundError(absl::StrCat("referral '", id, "' not found"));
  v1::Referral out;
  if (!out.ParseFromString(r->Bytea(0, "body"))) {
    return absl::InternalError("stored referral is unreadable");
  }
  *out.mutable_create_time() = ToProtoTime(r->Time(0, "create_time"));
  *out.mutable_update_time() = ToProtoTime(r->Time(0, "update_time"));
  out.set_etag(absl::StrCat(r->Int64(0, "revision")));
  auto history = tx.Exec(
      "SELECT from_status, to_status, actor_org, actor_role, at, reason FROM transitions "
      "WHERE referral_id = $1 ORDER BY id LIMIT 1000",
      {id});
  if (!history.ok()) return history.status();
  out.clear_history();
  for (int i = 0; i < history->rows(); ++i) {
    auto* t = out.add_history();
    t->set_from_status(static_cast<v1::ReferralStatus>(history->Int32(i, "from_status")));
    t->set_to_status(static_cast<v1::ReferralStatus>(history->Int32(i, "to_status")));
    t->set_actor_organization_id(history->String(i, "actor_org"));
    t->set_actor_role(history->String(i, "actor_role"));
    *t->mutable_time() = ToProtoTime(history->Time(i, "at"));
    t->set_reason(history->String(i, "reason"));
  }
  return out;
}

absl::StatusOr<v1::IdentifyingDetails> ReferralStore::OpenIdentity(PgTx& tx, absl::string_view id,
                                                                   const Sealer& sealer) {
  auto r = tx.Exec("SELECT identity_sealed FROM referrals WHERE id = $1", {id});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return absl::NotFoundError(absl::StrCat("referral '", id, "' not found"));
  v1::IdentifyingDetails out;
  if (r->IsNull(0, "identity_sealed")) return out;
  auto opened = sealer.Open(r->Bytea(0, "identity_sealed"), id);
  if (!opened.ok()) return opened.status();
  if (!out.ParseFromString(*opened)) return absl::DataLossError("identifying details unreadable");
  return out;
}

absl::Status ReferralStore::Update(PgTx& tx, v1::Referral* referral,
                                   const v1::Transition* transition, absl::Time now) {
  v1::Referral body;
  body.ParseFromString(StoredBody(*referral));
  body.clear_history();  // Kept in the transitions table.
  body.mutable_youth()->clear_identifying();
  auto r = tx.Exec(
      "UPDATE referrals SET status = $2, accepted_provider = NULLIF($3, ''), "
      "acceptance_deadline = $4, body = $5, revision = revision + 1, update_time = $6 "
      "WHERE id = $1 RETURNING revision",
      {referral->id(), int32_t{referral->status()}, referral->handoff().provider_organization_id(),
       referral->has_acceptance_deadline() ? PgTime(FromProtoTime(referral->acceptance_deadline()))
                                           : PgParam(nullptr),
       PgParam::Bytea(body.SerializeAsString()), PgTime(now)});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return absl::NotFoundError("referral vanished");
  referral->set_etag(absl::StrCat(r->Int64(0, "revision")));
  *referral->mutable_update_time() = ToProtoTime(now);
  if (transition == nullptr) return absl::OkStatus();
  *referral->add_history() = *transition;
  return tx
      .Exec(
          "INSERT INTO transitions (referral_id, from_status, to_status, actor_org, actor_role, "
          "at, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)",
          {referral->id(), int32_t{transition->from_status()}, int32_t{transition->to_status()},
           transition->actor_organization_id(), transition->actor_role(),
           PgTime(FromProtoTime(transition->time())), transition->reason()})
      .status();
}

absl::Status ReferralStore::Audit(PgTx& tx, const Caller& caller, absl::string_view action,
                                  absl::string_view referral_id, absl::string_view detail,
                                  absl::Time now) {
  return tx
      .Exec(
          "INSERT INTO audit_log (at, actor_org, actor_role, action, referral_id, detail) "
          "VALUES ($1, $2, $3, $4, $5, $6)",
          {PgTime(now), caller.org_id, std::string(RoleName(caller.role)), action, referral_id,
           detail})
      .status();
}

absl::StatusOr<std::vector<std::string>> ReferralStore::DueOffers(PgTx& tx, absl::Time now,
                                                                  int limit) {
  auto r = tx.Exec(
      "SELECT id FROM referrals WHERE status = 2 AND acceptance_deadline <= $1 "
      "ORDER BY acceptance_deadline LIMIT $2 FOR UPDATE SKIP LOCKED",
      {PgTime(now), int32_t{limit}});
  if (!r.ok()) return r.status();
  std::vector<std::string> out;
  for (int i = 0; i < r->rows(); ++i) out.push_back(r->String(i, "id"));
  return out;
}

}  // namespace safeharbor::referrals
