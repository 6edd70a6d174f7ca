#include "services/referrals/webhooks.h"

#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/paging.h"
#include "common/proto_time.h"
#include "services/referrals/views.h"

namespace safeharbor::referrals {
namespace {

// A JSON string literal (the values are ids and names of this service, but escaped all the same).
std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      absl::StrAppend(&out, "\\", std::string(1, ch));
    } else if (c < 0x20) {
      absl::StrAppendFormat(&out, "\\u%04x", c);
    } else {
      out.push_back(ch);
    }
  }
  out.push_back('"');
  return out;
}

// An offer's reminder: `warning` before the deadline, but never before half its window.
absl::Time ReminderDue(absl::Time from, absl::Time deadline, absl::Duration warning) {
  return std::max(deadline - warning, from + (deadline - from) / 2);
}

bool IsLoopbackHost(absl::string_view host) {
  if (host == "localhost" || host == "[::1]") return true;
  if (!absl::StartsWith(host, "127.")) return false;
  return std::all_of(host.begin(), host.end(),
                     [](char c) { return absl::ascii_isdigit(c) || c == '.'; });
}

}  // namespace

std::string WebhookEventId(const std::vector<std::string>& parts) {
  return absl::StrCat("evt_", Sha256Hex(absl::StrJoin(parts, "|")).substr(0, 32));
}

std::vector<WebhookEvent> DeriveProviderEvents(const v1::Referral& view, absl::string_view provider,
                                               absl::Time now, const WebhookOptions& options) {
  std::vector<WebhookEvent> out;
  for (const v1::Offer& o : view.offers()) {
    if (o.provider_organization_id() != provider || o.state() != v1::OFFER_STATE_PENDING) continue;
    const absl::Time offered = FromProtoTime(o.offered_time());
    const absl::Time respond_by = FromProtoTime(o.respond_by());
    const std::vector<std::string> key = {view.id(), std::string(provider), o.service_id(),
                                          absl::FormatTime(offered)};
    WebhookEvent made;
    made.type = v1::WEBHOOK_EVENT_TYPE_OFFER_MADE;
    made.event_id = WebhookEventId({"offer_made", key[0], key[1], key[2], key[3]});
    made.referral_id = view.id();
    made.deadline = respond_by;
    made.occurred = offered;
    made.due = now;
    out.push_back(made);
    WebhookEvent lapsing = made;
    lapsing.type = v1::WEBHOOK_EVENT_TYPE_OFFER_LAPSING;
    lapsing.event_id = WebhookEventId({"offer_lapsing", key[0], key[1], key[2], key[3]});
    lapsing.due = ReminderDue(offered, respond_by, options.lapse_warning);
    lapsing.occurred = lapsing.due;
    lapsing.guard = std::string(kGuardOfferPending);
    out.push_back(lapsing);
  }
  if (view.status() == v1::REFERRAL_STATUS_ACCEPTED && AcceptedBy(view, provider)) {
    const absl::Time accepted = FromProtoTime(view.accepted_time());
    const absl::Time deadline = view.has_handoff_deadline() ? FromProtoTime(view.handoff_deadline())
                                                            : accepted + options.handoff_window;
    WebhookEvent handoff;
    handoff.type = v1::WEBHOOK_EVENT_TYPE_HANDOFF_DEADLINE;
    handoff.event_id = WebhookEventId(
        {"handoff_deadline", view.id(), std::string(provider), absl::FormatTime(accepted)});
    handoff.referral_id = view.id();
    handoff.deadline = deadline;
    handoff.due = ReminderDue(accepted, deadline, options.handoff_warning);
    handoff.occurred = handoff.due;
    handoff.guard = std::string(kGuardAwaitingHandoff);
    out.push_back(handoff);
  }
  return out;
}

WebhookEvent EscalationEvent(absl::string_view referral_id, int64_t transition_id,
                             absl::Time occurred, absl::Time now) {
  WebhookEvent e;
  e.type = v1::WEBHOOK_EVENT_TYPE_ESCALATION_RECEIVED;
  e.event_id = WebhookEventId(
      {"escalation_received", std::string(referral_id), absl::StrCat(transition_id)});
  e.referral_id = std::string(referral_id);
  e.occurred = occurred;
  e.due = now;
  return e;
}

WebhookEvent AdvocateResponseMissedEvent(absl::string_view referral_id, absl::Time due,
                                         absl::Time now) {
  WebhookEvent e;
  e.type = v1::WEBHOOK_EVENT_TYPE_ADVOCATE_RESPONSE_MISSED;
  e.event_id =
      WebhookEventId({"advocate_response_missed", std::string(referral_id), absl::FormatTime(due)});
  e.referral_id = std::string(referral_id);
  e.deadline = due;
  e.occurred = now;
  e.due = now;
  return e;
}

WebhookEvent StatutoryTimerEvent(absl::string_view referral_id, absl::string_view timer,
                                 absl::Time due, absl::Time now) {
  WebhookEvent e;
  e.type = v1::WEBHOOK_EVENT_TYPE_STATUTORY_TIMER_DUE;
  e.event_id = WebhookEventId(
      {"statutory_timer_due", std::string(referral_id), std::string(timer), absl::FormatTime(due)});
  e.referral_id = std::string(referral_id);
  e.deadline = due;
  e.occurred = now;
  e.due = now;
  return e;
}

std::string WebhookEventName(v1::WebhookEventType type) {
  return absl::AsciiStrToLower(
      absl::StripPrefix(v1::WebhookEventType_Name(type), "WEBHOOK_EVENT_TYPE_"));
}

std::string WebhookPayload(const WebhookEvent& event, absl::string_view organization_id) {
  return absl::StrCat(
      "{\"event_id\":", JsonString(event.event_id),
      ",\"event_type\":", JsonString(WebhookEventName(event.type)),
      ",\"organization_id\":", JsonString(organization_id),
      ",\"referral_id\":", JsonString(event.referral_id), ",\"deadline\":",
      event.deadline.has_value() ? JsonString(Rfc3339Millis(*event.deadline)) : std::string("null"),
      ",\"occurred_at\":", JsonString(Rfc3339Millis(event.occurred)), "}");
}

std::string WebhookSignature(absl::string_view secret, int64_t timestamp, absl::string_view body) {
  const std::string message = absl::StrCat(timestamp, ".", body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &len);
  return absl::StrCat(
      "v1=", absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(mac), len)));
}

std::string NewWebhookSecret() {
  unsigned char bytes[32];
  RAND_bytes(bytes, sizeof bytes);
  return absl::StrCat("whsec_", absl::WebSafeBase64Escape(absl::string_view(
                                    reinterpret_cast<const char*>(bytes), sizeof bytes)));
}

absl::Duration WebhookBackoff(int attempts, absl::Duration base, absl::Duration max) {
  absl::Duration d = base;
  for (int i = 1; i < attempts && d < max; ++i) d *= 2;
  return std::min(d, max);
}

absl::Status CheckWebhookUrl(absl::string_view url, bool allow_loopback_http) {
  if (url.empty() || url.size() > 2048) {
    return absl::InvalidArgumentError("url: required, at most 2048 characters");
  }
  absl::string_view rest = url;
  const bool https = absl::ConsumePrefix(&rest, "https://");
  const bool http = !https && absl::ConsumePrefix(&rest, "http://");
  if (!https && !http) return absl::InvalidArgumentError("url: must be https://");
  if (absl::StrContains(url, "#") || std::any_of(url.begin(), url.end(), [](char c) {
        return absl::ascii_isspace(c) || absl::ascii_iscntrl(c);
      })) {
    return absl::InvalidArgumentError("url: no fragment, spaces or control characters");
  }
  absl::string_view authority = rest.substr(0, rest.find('/'));
  if (absl::StrContains(authority, "@")) {
    return absl::InvalidArgumentError("url: no credentials in the URL");
  }
  absl::string_view host = authority;
  if (absl::StartsWith(host, "[")) {
    host = host.substr(0, host.find(']') + 1);
  } else {
    host = host.substr(0, host.find(':'));
  }
  if (host.empty()) return absl::InvalidArgumentError("url: no host");
  if (http && !(allow_loopback_http && IsLoopbackHost(host))) {
    return absl::InvalidArgumentError(
        "url: must be https:// (plain http only to loopback, in development)");
  }
  return absl::OkStatus();
}

namespace {

// The IPv4 address (host order) an address stands for: itself, or an IPv4-mapped IPv6 one.
std::optional<uint32_t> Ipv4Of(const struct sockaddr* a) {
  if (a->sa_family == AF_INET) {
    return ntohl(reinterpret_cast<const sockaddr_in*>(a)->sin_addr.s_addr);
  }
  if (a->sa_family != AF_INET6) return std::nullopt;
  const auto& b = reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr.s6_addr;
  static constexpr std::array<uint8_t, 12> kMapped = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(b, kMapped.data(), kMapped.size()) != 0) return std::nullopt;
  return (uint32_t{b[12]} << 24) | (uint32_t{b[13]} << 16) | (uint32_t{b[14]} << 8) | b[15];
}

bool InNet(uint32_t ip, uint32_t net, int bits) {
  return bits == 0 || (ip >> (32 - bits)) == (net >> (32 - bits));
}

}  // namespace

bool IsLoopbackAddress(const struct sockaddr* a) {
  if (const auto v4 = Ipv4Of(a)) return InNet(*v4, 0x7f000000, 8);
  if (a->sa_family != AF_INET6) return false;
  return IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr);
}

bool IsInternalAddress(const struct sockaddr* a) {
  if (const auto v4 = Ipv4Of(a)) {
    const uint32_t ip = *v4;
    return InNet(ip, 0x00000000, 8) || InNet(ip, 0x0a000000, 8) || InNet(ip, 0x64400000, 10) ||
           InNet(ip, 0x7f000000, 8) || InNet(ip, 0xa9fe0000, 16) || InNet(ip, 0xac100000, 12) ||
           InNet(ip, 0xc0000000, 24) || InNet(ip, 0xc0000200, 24) || InNet(ip, 0xc0a80000, 16) ||
           InNet(ip, 0xc6120000, 15) || InNet(ip, 0xc6336400, 24) || InNet(ip, 0xcb007100, 24) ||
           InNet(ip, 0xe0000000, 4) || InNet(ip, 0xf0000000, 4);
  }
  if (a->sa_family != AF_INET6) return true;  // not an internet address: never connected to
  // Only global unicast (2000::/3) is outside, less the ranges that carry an IPv4 address a
  // gateway would reach for us (6to4 2002::/16, Teredo 2001::/32) and documentation
  // (2001:db8::/32). NAT64 (64:ff9b::/96), IPv4-compatible, unique-local, link-local, loopback and
  // multicast addresses all fall outside 2000::/3.
  const uint8_t* b = reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr.s6_addr;
  if ((b[0] & 0xe0) != 0x20) return true;
  if (b[0] == 0x20 && b[1] == 0x02) return true;
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x00 && b[3] == 0x00) return true;
  return b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8;
}

absl::Status ValidateWebhookEvents(const google::protobuf::RepeatedField<int>& events) {
  if (events.empty()) return absl::InvalidArgumentError("events: at least one");
  for (const int e : events) {
    if (e == v1::WEBHOOK_EVENT_TYPE_UNSPECIFIED || !v1::WebhookEventType_IsValid(e)) {
      return absl::InvalidArgumentError("events: not a known event type");
    }
  }
  return absl::OkStatus();
}

}  // namespace safeharbor::referrals
