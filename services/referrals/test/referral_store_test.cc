// The referral store against real PostgreSQL: sealed identity, history, audit, durable timers.
#include "services/referrals/referral_store.h"

#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/testing/event_race.h"
#include "common/testing/harness.h"

namespace safeharbor::referrals {
const std::vector<Migration>& Migrations();
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1795000000);

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& s = safeharbor::testing::TestServers::Get();
    auto pool = PgPool::Connect(s.PgOptionsFor(s.NewDatabase("ref")), nullptr);
    ASSERT_TRUE(pool.ok());
    pg_ = *std::move(pool);
    ASSERT_TRUE(pg_->Migrate(Migrations()).ok());
  }

  v1::Referral Make(const std::string& id, v1::ReferralStatus status, absl::Time deadline) {
    v1::Referral r;
    r.set_id(id);
    r.set_county_fips("53033");
    r.set_status(status);
    r.set_urgency(v1::URGENCY_URGENT);
    r.mutable_youth()->set_youth_reference("SPD-2026-0042");
    r.mutable_youth()->set_age(15);
    r.mutable_youth()->mutable_identifying()->set_name("Jane Doe");
    r.mutable_youth()->mutable_identifying()->set_contact("206-555-0199");
    r.mutable_needs()->set_placement_tonight(true);
    *r.mutable_acceptance_deadline() = ToProtoTime(deadline);
    return r;
  }

  absl::Status Insert(const v1::Referral& r) {
    return pg_->Transact(
        [&](PgTx& tx) { return ReferralStore::Insert(tx, r, officer_, sealer_, kNow); });
  }

  std::unique_ptr<PgPool> pg_;
  Sealer sealer_ = *Sealer::Create({{1, std::string(32, 'k')}}, 1, std::string(32, 'f'));
  Caller officer_{"seattle-pd", Role::kLawEnforcement, ""};
};

TEST_F(StoreTest, IdentifyingDetailsAreSealedAndOpenedOnlyOnRequest) {
  ASSERT_TRUE(Insert(Make("ref-1", v1::REFERRAL_STATUS_REQUESTED, kNow + absl::Minutes(15))).ok());
  auto raw = pg_->Query("SELECT body, identity_sealed FROM referrals WHERE id = 'ref-1'");
  ASSERT_TRUE(raw.ok());
  for (const char* col : {"body", "identity_sealed"}) {
    const std::string bytes = raw->Bytea(0, col);
    EXPECT_EQ(bytes.find("Jane"), std::string::npos) << col;
    EXPECT_EQ(bytes.find("555-0199"), std::string::npos) << col;
  }
  absl::Status st = pg_->Transact([&](PgTx& tx) -> absl::Status {
    auto r = ReferralStore::Get(tx, "ref-1", false);
    if (!r.ok()) return r.status();
    EXPECT_FALSE(r->youth().has_identifying());
    EXPECT_EQ(r->youth().youth_reference(), "SPD-2026-0042");
    auto id = ReferralStore::OpenIdentity(tx, "ref-1", sealer_);
    if (!id.ok()) return id.status();
    EXPECT_EQ(id->name(), "Jane Doe");
    return absl::OkStatus();
  });
  EXPECT_TRUE(st.ok()) << st;
}

TEST_F(StoreTest, TransitionsAndAuditAreRecordedAndAppendOnly) {
  ASSERT_TRUE(Insert(Make("ref-2", v1::REFERRAL_STATUS_REQUESTED, kNow)).ok());
  Caller provider{"prov-a", Role::kProvider, ""};
  absl::Status st = pg_->Transact([&](PgTx& tx) -> absl::Status {
    auto r = ReferralStore::Get(tx, "ref-2", true);
    if (!r.ok()) return r.status();
    v1::Transition t;
    t.set_from_status(r->status());
    t.set_to_status(v1::REFERRAL_STATUS_OFFERED);
    t.set_actor_organization_id("safeharbor-referrals");
    t.set_actor_role("service");
    *t.mutable_time() = ToProtoTime(kNow);
    r->set_status(v1::REFERRAL_STATUS_OFFERED);
    SH_RETURN_IF_ERROR(ReferralStore::Update(tx, &*r, &t, kNow));
    return ReferralStore::Audit(tx, provider, "read_identifying", "ref-2", "accepted provider",
                                kNow);
  });
  ASSERT_TRUE(st.ok()) << st;
  absl::Status read = pg_->Transact([&](PgTx& tx) -> absl::Status {
    auto r = ReferralStore::Get(tx, "ref-2", false);
    if (!r.ok()) return r.status();
    EXPECT_EQ(r->status(), v1::REFERRAL_STATUS_OFFERED);
    EXPECT_EQ(r->etag(), "2");
    EXPECT_EQ(r->history_size(), 1);
    // Updating never re-stores identifying details in the body.
    auto id = ReferralStore::OpenIdentity(tx, "ref-2", sealer_);
    EXPECT_TRUE(id.ok() && id->name() == "Jane Doe");
    return absl::OkStatus();
  });
  EXPECT_TRUE(read.ok()) << read;
  auto audit = pg_->Query("SELECT actor_org, action FROM audit_log WHERE referral_id = 'ref-2'");
  ASSERT_EQ(audit->rows(), 1);
  EXPECT_EQ(audit->String(0, "actor_org"), "prov-a");
  for (const char* sql : {"UPDATE audit_log SET actor_org = 'someone-else'",
                          "DELETE FROM audit_log", "UPDATE transitions SET reason = 'rewritten'",
                          "DELETE FROM transitions", "TRUNCATE audit_log"}) {
    EXPECT_EQ(pg_->Query(sql).status().code(), absl::StatusCode::kPermissionDenied) << sql;
  }
}

TEST_F(StoreTest, EachDueOfferIsClaimedByOneReplicaAtATime) {
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(
        Insert(Make(absl::StrCat("due-", i), v1::REFERRAL_STATUS_OFFERED, kNow - absl::Minutes(1)))
            .ok());
  }
  ASSERT_TRUE(Insert(Make("not-due", v1::REFERRAL_STATUS_OFFERED, kNow + absl::Minutes(5))).ok());
  std::promise<void> claimed, release;
  std::shared_future<void> gate = release.get_future().share();
  std::vector<std::string> first, second;
  std::thread replica_a([&] {
    (void)pg_->Transact([&](PgTx& tx) -> absl::Status {
      auto due = ReferralStore::DueOffers(tx, kNow, 3);
      if (due.ok()) first = *due;
      claimed.set_value();
      gate.wait();  // Still holding its claims.
      return absl::OkStatus();
    });
  });
  claimed.get_future().wait();
  ASSERT_TRUE(pg_->Transact([&](PgTx& tx) -> absl::Status {
                   auto due = ReferralStore::DueOffers(tx, kNow, 10);
                   if (due.ok()) second = *due;
                   return due.status();
                 })
                  .ok());
  release.set_value();
  replica_a.join();
  EXPECT_EQ(first.size(), 3u);
  ASSERT_EQ(second.size(), 1u);  // Only the one replica A did not claim; never "not-due".
  for (const auto& id : first) EXPECT_NE(id, second[0]);
  EXPECT_NE(second[0], "not-due");
}

// Issue 13: eight workers claiming at once (SKIP LOCKED) take every waiting referral exactly
// once, each with its stored body and revision; leased ones are not claimed again.
TEST_F(StoreTest, ConcurrentRoutingClaimsTakeEachWaitingReferralOnce) {
  constexpr int kWaiting = 200;
  for (int i = 0; i < kWaiting; ++i) {
    ASSERT_TRUE(Insert(Make(absl::StrCat("wait-", i), v1::REFERRAL_STATUS_REQUESTED, kNow)).ok());
  }
  std::mutex mu;
  std::vector<std::string> claimed;
  int bad_bodies = 0;
  std::vector<std::thread> workers;
  for (int w = 0; w < 8; ++w) {
    workers.emplace_back([&] {
      for (;;) {
        std::vector<ReferralStore::Claimed> got;
        absl::Status s = pg_->Transact([&](PgTx& tx) -> absl::Status {
          SH_ASSIGN_OR_RETURN(got, ReferralStore::ClaimForRouting(tx, kNow + absl::Seconds(1),
                                                                  absl::Seconds(30), 1));
          return absl::OkStatus();
        });
        if (!s.ok() || got.empty()) return;
        std::lock_guard<std::mutex> lock(mu);
        claimed.push_back(got[0].referral.id());
        bad_bodies += got[0].referral.etag() != "1" || got[0].pending_hold.has_value() ||
                      got[0].referral.youth().has_identifying();
      }
    });
  }
  for (auto& t : workers) t.join();
  std::set<std::string> distinct(claimed.begin(), claimed.end());
  std::printf("claims %zu, distinct %zu\n", claimed.size(), distinct.size());
  EXPECT_EQ(claimed.size(), static_cast<size_t>(kWaiting));
  EXPECT_EQ(distinct.size(), static_cast<size_t>(kWaiting));
  EXPECT_EQ(bad_bodies, 0);
  ASSERT_TRUE(pg_->Transact([&](PgTx& tx) -> absl::Status {
                   SH_ASSIGN_OR_RETURN(auto again,
                                       ReferralStore::ClaimForRouting(tx, kNow + absl::Seconds(2),
                                                                      absl::Seconds(30), 10));
                   EXPECT_TRUE(again.empty());  // All leased for 30 s.
                   return absl::OkStatus();
                 })
                  .ok());
}

// Issue 13: watch events without a global lock. Eight writers append at once, each holding its
// transaction open a random while after numbering its event (numbers commit out of order), one
// in seven rolling back; a reader resuming from every third sequence number it is given sees
// every committed event exactly once, in order, and no rolled-back one. Also printed: how many a
// reader without the horizon would have skipped.
TEST_F(StoreTest, ConcurrentAppendsNeverLetAResumingWatcherMissOrReorderAnEvent) {
  auto& servers = safeharbor::testing::TestServers::Get();
  PgOptions options = servers.PgOptionsFor(servers.NewDatabase("race"));
  options.pool_size = 16;
  auto pool = PgPool::Connect(options, nullptr);
  ASSERT_TRUE(pool.ok());
  PgPool& pg = **pool;
  ASSERT_TRUE(pg.Migrate(Migrations()).ok());
  ASSERT_TRUE(pg.Transact([&](PgTx& tx) {
                  return ReferralStore::Insert(tx,
                                               Make("ref-race", v1::REFERRAL_STATUS_OFFERED, kNow),
                                               officer_, sealer_, kNow);
                }).ok());
  using Rows = std::vector<std::pair<int64_t, std::string>>;
  safeharbor::testing::EventRace race;
  race.append = [](PgTx& tx, const std::string& tag) {
    v1::Referral view;
    view.set_id("ref-race");
    return ReferralStore::AppendEvent(tx, tag, view, kNow).status();
  };
  race.read = [](PgTx& tx, int64_t cursor, int limit) -> absl::StatusOr<Rows> {
    SH_ASSIGN_OR_RETURN(auto events, ReferralStore::EventsAfter(tx, cursor, limit));
    Rows out;
    for (const auto& e : events) out.emplace_back(e.seq, e.provider_org);
    return out;
  };
  race.last_seq = [](PgTx& tx) { return ReferralStore::LastEventSeq(tx); };
  race.table = "referral_events";
  race.tag_column = "provider_org";
  safeharbor::testing::ExpectNoEventMissed(pg, race);
}

}  // namespace
}  // namespace safeharbor::referrals
