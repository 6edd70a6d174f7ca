// The method tables are data that tests read: every RPC of every SafeHarbor proto has an entry,
// and every role's certificate is refused (PERMISSION_DENIED) exactly where its entry says, for
// every RPC of the four services hosted for real (in process, over mTLS, on PostgreSQL).
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <iostream>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/clock.h"
#include "common/counties.h"
#include "common/rpc_kit.h"
#include "common/sealer.h"
#include "common/service_spec.h"
#include "common/testing/harness.h"
#include "common/testing/hosted.h"
#include "services/beds/beds_service.h"
#include "services/directory/directory_service.h"
#include "services/fees/fee_service.h"
#include "services/referrals/referral_service.h"

namespace safeharbor {
namespace directory {
const std::vector<Migration>& Migrations();
}
namespace beds {
const std::vector<Migration>& Migrations();
}
namespace fees {
const std::vector<Migration>& Migrations();
}
namespace referrals {
const std::vector<Migration>& Migrations();
}
}  // namespace safeharbor

namespace safeharbor {
namespace {

using testing::Hosted;
using testing::TestServers;

class NoRecipients final : public fees::RecipientSource {
 public:
  absl::StatusOr<std::vector<std::string>> LocalProviders(absl::string_view) const override {
    return std::vector<std::string>();
  }
};

// A network that is never reached: the matrix sends only empty requests.
class NoNetwork final : public referrals::Network {
  absl::Status Down() const { return absl::UnavailableError("no network in this test"); }

 public:
  absl::StatusOr<std::vector<referrals::Option>> FindServices(const referrals::v1::Referral&,
                                                              absl::Time) override {
    return Down();
  }
  absl::StatusOr<std::vector<referrals::Option>> FindBeds(const referrals::v1::Referral&) override {
    return Down();
  }
  absl::StatusOr<std::string> HoldBed(const std::string&, const referrals::v1::Candidate&,
                                      const std::string&, absl::Duration) override {
    return Down();
  }
  absl::Status ReleaseHold(const std::string&) override { return Down(); }
  absl::Status ConfirmPlacement(const std::string&, const std::string&) override { return Down(); }
  absl::StatusOr<referrals::v1::Handoff> HandoffFor(const referrals::Option&) override {
    return Down();
  }
  absl::StatusOr<referrals::v1::Handoff> OnCallOffice(const std::string&) override {
    return Down();
  }
  absl::StatusOr<std::vector<std::string>> OrganizationCounties(const std::string&) override {
    return std::vector<std::string>();
  }
};

// One call of any method with an empty request, through gRPC's generic stub (unary or server
// streaming alike): the final status.
class RawCall final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  RawCall(grpc::GenericStub* stub, const std::string& path, absl::Duration timeout) {
    ctx_.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    grpc::Slice empty("");
    request_ = grpc::ByteBuffer(&empty, 1);
    stub->PrepareBidiStreamingCall(&ctx_, path, grpc::StubOptions(), this);
    StartWriteLast(&request_, grpc::WriteOptions());
    StartRead(&response_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (ok) StartRead(&response_);
  }
  void OnDone(const grpc::Status& s) override { done_.set_value(s); }
  grpc::Status Await() { return done_.get_future().get(); }

 private:
  grpc::ClientContext ctx_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  std::promise<grpc::Status> done_;
};

class MethodTableTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    directory_.Connect("mtdir", directory::Migrations());
    directory_.service = std::make_unique<directory::DirectoryServiceImpl>(
        directory_.env.get(), directory_.pg.get(), nullptr, *directory_.registry,
        WashingtonCounties());
    directory_.Serve("directory");
    beds_.Connect("mtbeds", beds::Migrations());
    beds_.service = std::make_unique<beds::BedsServiceImpl>(
        beds_.env.get(), beds_.pg.get(), nullptr, *beds_.registry, WashingtonCounties(),
        SystemClock::Get(), nullptr);
    beds_.Serve("beds");
    fees_.Connect("mtfees", fees::Migrations());
    fees_.service = std::make_unique<fees::FeeServiceImpl>(
        fees_.env.get(), fees_.pg.get(), &recipients_, *fees_.registry, WashingtonCounties(),
        SystemClock::Get());
    fees_.Serve("fees");
    referrals_.Connect("mtref", referrals::Migrations());
    referrals_.service = std::make_unique<referrals::ReferralServiceImpl>(
        referrals_.env.get(), referrals_.pg.get(), nullptr, *referrals_.registry,
        WashingtonCounties(), SystemClock::Get(), &*sealer_, &network_);
    referrals_.service->StartBackground(/*timers=*/false);
    referrals_.Serve("referrals");
  }
  static void TearDownTestSuite() {
    referrals_.service->StopBackground();
    referrals_.Shutdown();
    fees_.Shutdown();
    beds_.Shutdown();
    directory_.Shutdown();
  }

  struct Served {
    const RpcService* service;
    int port;
  };
  static std::vector<Served> AllServed() {
    return {{directory_.service.get(), directory_.port()},
            {beds_.service.get(), beds_.port()},
            {fees_.service.get(), fees_.port()},
            {referrals_.service.get(), referrals_.port()}};
  }

  static inline Hosted<directory::DirectoryServiceImpl> directory_;
  static inline Hosted<beds::BedsServiceImpl> beds_;
  static inline Hosted<fees::FeeServiceImpl> fees_;
  static inline Hosted<referrals::ReferralServiceImpl> referrals_;
  static inline NoRecipients recipients_;
  static inline NoNetwork network_;
  static inline absl::StatusOr<Sealer> sealer_ = Sealer::Create({{1, std::string(32, 'k')}}, 1);
};

// Every proto file under protos/safeharbor: each service in it is served from a method table
// with one entry per RPC, and nothing else is served.
TEST_F(MethodTableTest, EveryRpcOfEveryProtoHasAnEntry) {
  std::map<std::string, const RpcService*> served;
  for (const Served& s : AllServed()) served[s.service->full_name()] = s.service;
  const auto root = std::filesystem::path(testing::SourceDir()) / "protos";
  std::set<std::string> in_protos;
  int rpcs = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root / "safeharbor")) {
    if (entry.path().extension() != ".proto") continue;
    const std::string rel = std::filesystem::relative(entry.path(), root).string();
    if (rel.rfind("safeharbor/testing/", 0) == 0) continue;  // the echo service of tests, bench
    const auto* file = google::protobuf::DescriptorPool::generated_pool()->FindFileByName(rel);
    ASSERT_NE(file, nullptr) << rel << " is not compiled into the services";
    for (int i = 0; i < file->service_count(); ++i) {
      const auto* svc = file->service(i);
      in_protos.insert(svc->full_name());
      ASSERT_TRUE(served.count(svc->full_name())) << svc->full_name() << " has no method table";
      const auto& table = served[svc->full_name()]->method_table();
      ASSERT_EQ(static_cast<int>(table.size()), svc->method_count()) << svc->full_name();
      for (int m = 0; m < svc->method_count(); ++m) {
        EXPECT_EQ(table[static_cast<size_t>(m)].name, svc->method(m)->name())
            << svc->full_name() << ": RPC without an entry";
        EXPECT_FALSE(table[static_cast<size_t>(m)].policy.roles.empty());
        ++rpcs;
      }
    }
  }
  for (const auto& [name, service] : served) {
    EXPECT_TRUE(in_protos.count(name)) << name << " is served but not in protos/";
  }
  // The one table of services names the same four.
  std::set<std::string> in_spec;
  for (const ServiceSpec& spec : ServiceSpecs()) in_spec.insert(spec.grpc_service);
  EXPECT_EQ(in_spec, in_protos);
  std::cout << "method tables: " << in_protos.size() << " services, " << rpcs
            << " RPCs, every one declared\n";
}

// Every RPC × every role: PERMISSION_DENIED exactly when the role is not in the entry.
TEST_F(MethodTableTest, RoleMatrixMatchesTheTables) {
  int pairs = 0, denied = 0;
  std::cout << absl::StrFormat("%-62s", "rpc");
  for (Role r : AllRoles()) std::cout << absl::StrFormat(" %-4.4s", RoleName(r));
  std::cout << "\n";
  for (const Served& s : AllServed()) {
    std::map<Role, std::unique_ptr<grpc::GenericStub>> stubs;
    for (Role r : AllRoles()) {
      const std::string role(RoleName(r));
      // Role "service" is trusted only under a known service's own identity.
      const std::string org = r == Role::kService
                                  ? "safeharbor-referrals"
                                  : absl::StrCat("matrix-org-", static_cast<int>(r));
      stubs[r] = std::make_unique<grpc::GenericStub>(TestServers::Get().Channel(s.port, org, role));
    }
    for (const MethodInfo& m : s.service->method_table()) {
      const std::string path = absl::StrCat("/", s.service->full_name(), "/", m.name);
      std::string row = absl::StrFormat("%-62s", absl::StrCat(s.service->full_name(), ".", m.name));
      for (Role r : AllRoles()) {
        RawCall call(stubs[r].get(), path,
                     m.server_streaming ? absl::Milliseconds(500) : absl::Seconds(10));
        const grpc::Status st = call.Await();
        const bool refused = st.error_code() == grpc::StatusCode::PERMISSION_DENIED;
        EXPECT_EQ(refused, !m.policy.roles.Has(r)) << path << " as " << RoleName(r) << ": "
                                                   << st.error_code() << " " << st.error_message();
        ++pairs;
        denied += refused ? 1 : 0;
        absl::StrAppend(&row, refused ? "  --  " : "  ok  ");
      }
      std::cout << row << "\n";
    }
  }
  std::cout << "role matrix: " << pairs << " RPC x role pairs called, " << denied
            << " refused with PERMISSION_DENIED, " << pairs - denied << " admitted\n";
}

}  // namespace
}  // namespace safeharbor
