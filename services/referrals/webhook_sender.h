// The HTTP POST of one webhook delivery (libcurl, on a delivery worker's thread — never an RPC
// thread). Every call is bounded by its timeouts; redirects are not followed; certificates and
// host names are verified. Plain http is allowed only when the options say so and only to
// loopback (checked again here, not only when the subscription was made).
#pragma once

#include <sys/socket.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace safeharbor::referrals {

struct WebhookRequest {
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  absl::Duration timeout = absl::Seconds(10);
  absl::Duration connect_timeout = absl::Seconds(5);
};

class WebhookSender {
 public:
  virtual ~WebhookSender() = default;
  // The HTTP status of the answer, or UNAVAILABLE / DEADLINE_EXCEEDED (no answer) with a short
  // reason (never a response body).
  virtual absl::StatusOr<int> Post(const WebhookRequest& request) = 0;
};

class CurlWebhookSender final : public WebhookSender {
 public:
  // `ca_file`: a PEM bundle to verify endpoints against instead of the system's (tests; a
  // private network's CA). Empty: the system's trust store.
  // `allow_internal_addresses`: endpoints on internal addresses may be reached (IsInternalAddress;
  // loopback also when `allow_loopback_http`); otherwise such a connection is refused, UNAVAILABLE
  // "destination address not allowed".
  explicit CurlWebhookSender(bool allow_loopback_http, std::string ca_file = "",
                             bool allow_internal_addresses = false);
  absl::StatusOr<int> Post(const WebhookRequest& request) override;
  // Whether a connection to `address` is allowed (called for each address curl tries).
  bool AllowsConnectionTo(const struct sockaddr* address) const;

 private:
  const bool allow_loopback_http_;
  const std::string ca_file_;
  const bool allow_internal_addresses_;
};

}  // namespace safeharbor::referrals
