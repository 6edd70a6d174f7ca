#include "common/testing/harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace safeharbor::testing {
namespace {

std::mutex g_mu;

std::string ShellQuote(const std::string& s) {
  return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", "'\\''"}}), "'");
}

std::string Servers() { return SourceDir() + "/scripts/lib/servers.sh"; }

void MustRun(const std::vector<std::string>& argv) {
  absl::Status st = Run(argv);
  if (!st.ok()) {
    std::fprintf(stderr, "test harness: %s\n", std::string(st.message()).c_str());
    std::abort();
  }
}

}  // namespace

std::string SourceDir() {
  const char* dir = std::getenv("SAFEHARBOR_SOURCE_DIR");
  if (dir != nullptr && *dir != '\0') return dir;
  return SAFEHARBOR_SOURCE_DIR_DEFAULT;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

absl::Status Run(const std::vector<std::string>& argv) {
  std::vector<std::string> quoted;
  for (const auto& a : argv) quoted.push_back(ShellQuote(a));
  const std::string cmd = absl::StrJoin(quoted, " ");
  int rc = std::system(cmd.c_str());
  if (rc != 0) return absl::InternalError(absl::StrCat("command failed (", rc, "): ", cmd));
  return absl::OkStatus();
}

TestServers& TestServers::Get() {
  static TestServers* servers = [] {
    auto* s = new TestServers();
    std::atexit([] { TestServers::Get().StopAll(); });
    return s;
  }();
  return *servers;
}

TestServers::TestServers() {
  char tmpl[] = "/tmp/safeharbor-test-XXXXXX";
  root_ = mkdtemp(tmpl);
  chmod(root_.c_str(), 0755);
  certs_dir_ = root_ + "/certs";
  pg_port_ = FreePort();
  redis_port_ = FreePort();
  MustRun({SourceDir() + "/scripts/gen-certs", certs_dir_});
  StartPostgres();
  StartRedis();
}

void TestServers::StartPostgres() {
  MustRun({Servers(), "pg-start", root_ + "/pg", std::to_string(pg_port_), "fast"});
}
void TestServers::StopPostgres() { MustRun({Servers(), "pg-stop", root_ + "/pg"}); }
void TestServers::FreezePostgres() { MustRun({Servers(), "pg-freeze", root_ + "/pg"}); }
void TestServers::ThawPostgres() { MustRun({Servers(), "pg-thaw", root_ + "/pg"}); }
void TestServers::StartRedis() {
  MustRun({Servers(), "redis-start", root_ + "/redis", std::to_string(redis_port_),
           std::string(kRedisPassword)});
}
void TestServers::StopRedis() { MustRun({Servers(), "redis-stop", root_ + "/redis"}); }

void TestServers::StopAll() {
  (void)Run({Servers(), "pg-thaw", root_ + "/pg"});  // a test that failed while it was frozen
  (void)Run({Servers(), "pg-stop", root_ + "/pg"});
  (void)Run({Servers(), "redis-stop", root_ + "/redis"});
  if (std::getenv("SAFEHARBOR_KEEP_TEST_DIRS") == nullptr) (void)Run({"rm", "-rf", root_});
}

std::string TestServers::NewDatabase(const std::string& prefix) {
  std::string name;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    name = absl::StrCat(prefix, "_", getpid(), "_", ++db_counter_);
  }
  MustRun({Servers(), "pg-createdb", std::to_string(pg_port_), name});
  return absl::StrCat("postgresql://postgres@127.0.0.1:", pg_port_, "/", name);
}

PgOptions TestServers::PgOptionsFor(const std::string& url) const {
  PgOptions o;
  o.conninfo = url;
  o.pool_size = 8;
  o.connect_timeout_s = 2;
  o.acquire_timeout = absl::Seconds(3);
  return o;
}

RedisOptions TestServers::redis_options() const {
  RedisOptions o;
  o.port = redis_port_;
  o.password = std::string(kRedisPassword);
  o.cache_key = std::string(kCacheKey);
  o.retry_after = absl::Milliseconds(100);
  return o;
}

TlsFiles TestServers::ServerTls(const std::string& service) const {
  return {certs_dir_ + "/ca.crt", certs_dir_ + "/" + service + ".crt",
          certs_dir_ + "/" + service + ".key"};
}

TlsFiles TestServers::ClientTls(const std::string& org, const std::string& role) {
  const std::string name = absl::StrCat("c-", org, "-", role);
  {
    std::lock_guard<std::mutex> lock(g_mu);
    MustRun({SourceDir() + "/scripts/gen-certs", certs_dir_, "client", name, org, role});
  }
  return {certs_dir_ + "/ca.crt", certs_dir_ + "/" + name + ".crt",
          certs_dir_ + "/" + name + ".key"};
}

std::shared_ptr<grpc::Channel> TestServers::Channel(int port, const std::string& org,
                                                    const std::string& role) {
  auto creds = MakeChannelCredentials(ClientTls(org, role));
  if (!creds.ok()) std::abort();
  return grpc::CreateCustomChannel(absl::StrCat("localhost:", port), *creds,
                                   DefaultChannelArguments());
}

std::shared_ptr<grpc::Channel> TestServers::ChannelWithoutClientCert(int port) {
  auto creds = MakeChannelCredentials({certs_dir_ + "/ca.crt", "", ""});
  if (!creds.ok()) std::abort();
  return grpc::CreateCustomChannel(absl::StrCat("localhost:", port), *creds,
                                   DefaultChannelArguments());
}

bool WaitForReady(const std::shared_ptr<grpc::Channel>& channel, int seconds) {
  return channel->WaitForConnected(std::chrono::system_clock::now() +
                                   std::chrono::seconds(seconds));
}

}  // namespace safeharbor::testing
