#include "services/referrals/webhook_sender.h"

#include <curl/curl.h>

#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "services/referrals/webhooks.h"

namespace safeharbor::referrals {
namespace {

// The answer's body is read and dropped, at most this much (the status is what counts).
constexpr size_t kMaxResponseBytes = 64 << 10;

size_t Discard(char*, size_t size, size_t n, void* seen) {
  size_t* total = static_cast<size_t*>(seen);
  *total += size * n;
  return *total > kMaxResponseBytes ? 0 : size * n;  // 0 aborts the transfer
}

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct SList {
  curl_slist* list = nullptr;
  ~SList() { curl_slist_free_all(list); }
};

// Per transfer: the sender's policy, and whether it refused an address.
struct Guard {
  const CurlWebhookSender* sender;
  bool refused = false;
};

curl_socket_t OpenSocket(void* clientp, curlsocktype purpose, struct curl_sockaddr* address) {
  auto* guard = static_cast<Guard*>(clientp);
  if (purpose != CURLSOCKTYPE_IPCXN || !guard->sender->AllowsConnectionTo(&address->addr)) {
    guard->refused = true;
    return CURL_SOCKET_BAD;
  }
  return socket(address->family, address->socktype, address->protocol);
}

}  // namespace

CurlWebhookSender::CurlWebhookSender(bool allow_loopback_http, std::string ca_file,
                                     bool allow_internal_addresses)
    : allow_loopback_http_(allow_loopback_http),
      ca_file_(std::move(ca_file)),
      allow_internal_addresses_(allow_internal_addresses) {
  GlobalInit();
}

bool CurlWebhookSender::AllowsConnectionTo(const struct sockaddr* address) const {
  if (allow_internal_addresses_ || !IsInternalAddress(address)) return true;
  return allow_loopback_http_ && IsLoopbackAddress(address);
}

absl::StatusOr<int> CurlWebhookSender::Post(const WebhookRequest& req) {
  if (auto s = CheckWebhookUrl(req.url, allow_loopback_http_); !s.ok()) {
    return absl::FailedPreconditionError("url not allowed");
  }
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), &curl_easy_cleanup);
  if (curl == nullptr) return absl::UnavailableError("curl init failed");
  CURL* h = curl.get();
  SList headers;
  headers.list = curl_slist_append(headers.list, "Content-Type: application/json");
  headers.list = curl_slist_append(headers.list, "Expect:");
  for (const auto& [name, value] : req.headers) {
    headers.list = curl_slist_append(headers.list, absl::StrCat(name, ": ", value).c_str());
  }
  size_t seen = 0;
  curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, allow_loopback_http_ ? "https,http" : "https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  // Never a proxy from the environment (https_proxy, ALL_PROXY): the address guard below must see
  // the endpoint's own address.
  curl_easy_setopt(h, CURLOPT_PROXY, "");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!ca_file_.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, ca_file_.c_str());
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(req.timeout)));
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(req.connect_timeout)));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.list);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body.data());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(req.body.size()));
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &Discard);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &seen);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "safeharbor-webhooks/1");
  Guard guard{this};
  curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, &OpenSocket);
  curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &guard);
  const CURLcode rc = curl_easy_perform(h);
  if (guard.refused && rc != CURLE_OK) {
    return absl::UnavailableError("destination address not allowed");
  }
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  if (rc == CURLE_WRITE_ERROR && status > 0) return static_cast<int>(status);  // body too long
  if (rc == CURLE_OPERATION_TIMEDOUT) return absl::DeadlineExceededError("timeout");
  if (rc != CURLE_OK) return absl::UnavailableError(curl_easy_strerror(rc));
  return static_cast<int>(status);
}

}  // namespace safeharbor::referrals
