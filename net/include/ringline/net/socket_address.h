#pragma once
// SocketAddress: an IPv4, IPv6 or Unix-domain socket address held by value.
//
// Text forms accepted by Parse(): "127.0.0.1:8080", "[::1]:8080", "*:8080" or
// ":8080" (IPv4 any), "[::]:8080" (IPv6 any), "unix:/run/x.sock", "/run/x.sock"
// (a path with a slash), "unix:@name" or "@name" (Linux abstract namespace).
// Thread-safety: a plain value; copy it freely.

#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace ringline::net {

class SocketAddress {
 public:
  SocketAddress() = default;  // empty: family() == AF_UNSPEC

  static absl::StatusOr<SocketAddress> Parse(std::string_view text);
  static SocketAddress Loopback4(uint16_t port);
  static SocketAddress Loopback6(uint16_t port);
  static SocketAddress Any4(uint16_t port);
  static SocketAddress Any6(uint16_t port);
  // A filesystem path, or an abstract name when it starts with '@'. Paths longer
  // than sun_path are rejected by Parse(); here they are truncated.
  static SocketAddress Unix(std::string_view path);
  // Copies `len` bytes of a kernel-filled address (accept, recvmsg, getpeername).
  static SocketAddress FromSockaddr(const sockaddr* sa, socklen_t len);

  int family() const { return len_ ? storage_.ss_family : AF_UNSPEC; }
  bool empty() const { return len_ == 0; }
  bool is_unix() const { return family() == AF_UNIX; }
  bool is_ip() const { return family() == AF_INET || family() == AF_INET6; }
  // True when both are IP addresses of the same host (ports ignored).
  bool SameHost(const SocketAddress& other) const;
  // 127.0.0.0/8, ::1 or an IPv4-mapped 127.x address.
  bool is_loopback() const;
  // The port of an IP address (host order); 0 otherwise.
  uint16_t port() const;
  void set_port(uint16_t port);
  // The path (or "@name") of a Unix address; empty otherwise.
  std::string unix_path() const;

  const sockaddr* sockaddr_ptr() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t length() const { return len_; }

  // "127.0.0.1:80", "[::1]:80", "unix:/path", "unix:@name", "unix:(unnamed)" or "(none)".
  std::string ToString() const;

  friend bool operator==(const SocketAddress& a, const SocketAddress& b);

 private:
  sockaddr_storage storage_{};
  socklen_t len_ = 0;
};

}  // namespace ringline::net
