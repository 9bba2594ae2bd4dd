#pragma once
// UdpSocket: a bound datagram socket on the current worker.
//
// Receiving is one multishot RECVMSG on the socket's own provided buffer ring:
// each datagram lands in one buffer (header, peer address, payload) and is
// copied into a bounded queue at once, so the buffer goes back in the same loop
// iteration. recv_from() takes the oldest datagram or waits for one. Datagrams
// arriving while the queue is full, or larger than a buffer (truncated), are
// dropped and counted (NetMetrics::udp_dropped). send_to() copies the payload
// into memory owned by the send operation.
// Thread-safety: a UdpSocket belongs to the worker that bound it; use and
// destroy it on that worker's thread, before the worker is destroyed.

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "ringline/io_result.h"
#include "ringline/net/result.h"
#include "ringline/net/socket_address.h"
#include "ringline/task.h"

namespace ringline::net {

namespace detail {
class UdpState;
}

struct UdpOptions {
  // The socket's provided buffer ring: `buffer_count` (power of two) buffers of
  // `max_datagram` payload bytes each (plus room for the header and address).
  uint32_t buffer_count = 64;
  uint32_t max_datagram = 2048;
  uint32_t queue_limit = 1024;  // datagrams received but not yet taken
  bool reuse_port = false;      // SO_REUSEPORT: one socket per worker on one port
};

struct Datagram {
  std::vector<uint8_t> data;
  SocketAddress peer;
};

class UdpSocket {
 public:
  static absl::StatusOr<UdpSocket> Bind(const SocketAddress& address,
                                        const UdpOptions& options = {});
  UdpSocket() = default;
  UdpSocket(UdpSocket&& o) noexcept;
  UdpSocket& operator=(UdpSocket&& o) noexcept;
  UdpSocket(const UdpSocket&) = delete;
  UdpSocket& operator=(const UdpSocket&) = delete;
  ~UdpSocket();  // Close()

  // The next datagram; ECANCELED once closed. One task receives at a time (EBUSY).
  Task<Result<Datagram>> recv_from();
  // Sends one datagram (copied); bytes sent or -errno.
  Task<IoResult> send_to(std::span<const uint8_t> payload, const SocketAddress& to);
  const SocketAddress& local_address() const;
  void Close();
  bool valid() const { return s_ != nullptr; }

 private:
  explicit UdpSocket(detail::UdpState* s);
  detail::UdpState* s_ = nullptr;
};

}  // namespace ringline::net
