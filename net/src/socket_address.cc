#include "ringline/net/socket_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace ringline::net {
namespace {

bool ParsePort(std::string_view s, uint16_t* port) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v > 65535 || s.empty()) return false;
  *port = static_cast<uint16_t>(v);
  return true;
}

absl::Status Bad(std::string_view text, const char* why) {
  return absl::InvalidArgumentError(
      absl::StrCat("bad socket address \"", std::string(text), "\": ", why));
}

}  // namespace

SocketAddress SocketAddress::Loopback4(uint16_t port) {
  SocketAddress a;
  auto* sin = reinterpret_cast<sockaddr_in*>(&a.storage_);
  sin->sin_family = AF_INET;
  sin->sin_port = htons(port);
  sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.len_ = sizeof(sockaddr_in);
  return a;
}

SocketAddress SocketAddress::Any4(uint16_t port) {
  SocketAddress a = Loopback4(port);
  reinterpret_cast<sockaddr_in*>(&a.storage_)->sin_addr.s_addr = htonl(INADDR_ANY);
  return a;
}

SocketAddress SocketAddress::Loopback6(uint16_t port) {
  SocketAddress a;
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  sin6->sin6_addr = in6addr_loopback;
  a.len_ = sizeof(sockaddr_in6);
  return a;
}

SocketAddress SocketAddress::Any6(uint16_t port) {
  SocketAddress a = Loopback6(port);
  reinterpret_cast<sockaddr_in6*>(&a.storage_)->sin6_addr = in6addr_any;
  return a;
}

SocketAddress SocketAddress::Unix(std::string_view path) {
  SocketAddress a;
  auto* sun = reinterpret_cast<sockaddr_un*>(&a.storage_);
  sun->sun_family = AF_UNIX;
  const std::size_t n = std::min(path.size(), sizeof(sun->sun_path) - 1);
  std::memcpy(sun->sun_path, path.data(), n);
  if (n > 0 && path[0] == '@') {
    sun->sun_path[0] = '\0';  // abstract namespace: no terminator, length counts
    a.len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n);
  } else {
    a.len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n + 1);
  }
  return a;
}

SocketAddress SocketAddress::FromSockaddr(const sockaddr* sa, socklen_t len) {
  SocketAddress a;
  if (!sa || len == 0) return a;
  len = std::min<socklen_t>(len, sizeof(sockaddr_storage));
  std::memcpy(&a.storage_, sa, len);
  a.len_ = len;
  return a;
}

absl::StatusOr<SocketAddress> SocketAddress::Parse(std::string_view text) {
  std::string_view t = text;
  if (t.substr(0, 5) == "unix:") {
    t.remove_prefix(5);
    if (t.empty()) return Bad(text, "empty Unix socket path");
    if (t.size() >= sizeof(sockaddr_un::sun_path)) return Bad(text, "Unix socket path too long");
    return Unix(t);
  }
  if (!t.empty() && (t[0] == '/' || t[0] == '@' || t.substr(0, 2) == "./")) {
    if (t.size() >= sizeof(sockaddr_un::sun_path)) return Bad(text, "Unix socket path too long");
    return Unix(t);
  }
  std::string_view host;
  std::string_view port;
  if (!t.empty() && t[0] == '[') {
    const std::size_t close = t.find(']');
    if (close == std::string_view::npos || close + 1 >= t.size() || t[close + 1] != ':') {
      return Bad(text, "expected [IPv6]:port");
    }
    host = t.substr(1, close - 1);
    port = t.substr(close + 2);
    uint16_t p;
    if (!ParsePort(port, &p)) return Bad(text, "bad port");
    SocketAddress a = Any6(p);
    const std::string h(host);
    if (inet_pton(AF_INET6, h.c_str(), &reinterpret_cast<sockaddr_in6*>(&a.storage_)->sin6_addr) !=
        1) {
      return Bad(text, "bad IPv6 address");
    }
    return a;
  }
  const std::size_t colon = t.rfind(':');
  if (colon == std::string_view::npos) return Bad(text, "expected host:port");
  host = t.substr(0, colon);
  port = t.substr(colon + 1);
  uint16_t p;
  if (!ParsePort(port, &p)) return Bad(text, "bad port");
  SocketAddress a = Any4(p);
  if (host.empty() || host == "*") return a;
  if (host == "localhost") return Loopback4(p);
  const std::string h(host);
  if (inet_pton(AF_INET, h.c_str(), &reinterpret_cast<sockaddr_in*>(&a.storage_)->sin_addr) != 1) {
    return Bad(text, "bad IPv4 address (host names are not resolved)");
  }
  return a;
}

bool SocketAddress::is_loopback() const {
  if (family() == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&storage_);
    return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
  }
  if (family() == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(&a) || (IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127);
  }
  return false;
}

bool SocketAddress::SameHost(const SocketAddress& other) const {
  if (family() != other.family()) return false;
  if (family() == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr.s_addr ==
           reinterpret_cast<const sockaddr_in*>(&other.storage_)->sin_addr.s_addr;
  }
  if (family() == AF_INET6) {
    return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr,
                       &reinterpret_cast<const sockaddr_in6*>(&other.storage_)->sin6_addr,
                       sizeof(in6_addr)) == 0;
  }
  return false;
}

uint16_t SocketAddress::port() const {
  switch (family()) {
    case AF_INET:
      return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
    case AF_INET6:
      return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
    default:
      return 0;
  }
}

void SocketAddress::set_port(uint16_t port) {
  if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&storage_)->sin_port = htons(port);
  if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&storage_)->sin6_port = htons(port);
}

std::string SocketAddress::unix_path() const {
  if (family() != AF_UNIX) return "";
  const auto* sun = reinterpret_cast<const sockaddr_un*>(&storage_);
  const std::size_t n =
      len_ > offsetof(sockaddr_un, sun_path) ? len_ - offsetof(sockaddr_un, sun_path) : 0;
  if (n == 0) return "";
  if (sun->sun_path[0] == '\0') return "@" + std::string(sun->sun_path + 1, n - 1);
  return std::string(sun->sun_path, strnlen(sun->sun_path, n));
}

std::string SocketAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  switch (family()) {
    case AF_INET:
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buf,
                sizeof buf);
      return absl::StrCat(buf, ":", port());
    case AF_INET6:
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, buf,
                sizeof buf);
      return absl::StrCat("[", buf, "]:", port());
    case AF_UNIX: {
      std::string p = unix_path();
      return p.empty() ? "unix:(unnamed)" : "unix:" + p;
    }
    default:
      return "(none)";
  }
}

bool operator==(const SocketAddress& a, const SocketAddress& b) {
  return a.len_ == b.len_ && std::memcmp(&a.storage_, &b.storage_, a.len_) == 0;
}

}  // namespace ringline::net
