#pragma once
// Options of the network layer: per worker (NetOptions), per connection
// (ConnectionOptions) and per listener (ListenOptions).

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"

namespace ringline {
class Worker;
}

namespace ringline::net {

// Per-worker resources. Set them with Configure() on the worker's thread before
// the first network object is created there; otherwise the defaults apply.
struct NetOptions {
  // Connections (accepted and outbound) a worker holds at once. When the table is
  // full a newly accepted connection is closed at once (a clean FIN, nothing
  // read or written) and counted in `refused`. The fixed-file table of the ring
  // (RingOptions::direct_alloc_files) is a second limit: when it is full the
  // newcomer is refused the same way.
  uint32_t max_connections = 4096;
  // The provided buffer ring all TCP connections of the worker receive into.
  // `recv_buffer_count` must be a power of two (at most 32768). A buffer is held
  // only from its completion until its bytes are copied out (the same loop
  // iteration), so the count bounds how much one loop iteration can receive, not
  // how many connections there are. The kernel is offered a window of them, at
  // least 32, refilled with the buffers returned last so that receives land in
  // memory still in the CPU's caches; it grows toward the count when iterations
  // take most of it and shrinks back when they stop.
  uint32_t recv_buffer_size = 16 * 1024;
  uint32_t recv_buffer_count = 512;
  // Small sends are copied into chunks of this size from a per-worker cache that
  // keeps at most `send_chunk_cache` free chunks (and as many free send-queue
  // items and zero-copy groups).
  uint32_t send_chunk_size = 16 * 1024;
  uint32_t send_chunk_cache = 1024;
  // First buffer group id the layer uses (TCP ring; UDP sockets take the next ones).
  uint16_t buffer_group_base = 0x4e00;

  absl::Status Validate() const;
};

// Must run on `worker`'s thread before any listener, connection or UDP socket is
// created there. FailedPrecondition if the worker already uses the network.
absl::Status Configure(Worker& worker, const NetOptions& options);

struct ConnectionOptions {
  // Largest message recv(parse) can assemble. Bytes that arrive while nobody
  // consumes them are held up to this cap (plus what the socket had already
  // buffered when the pause took effect), then receiving pauses and TCP flow
  // control pushes back on the peer. A parser that still needs more once the
  // cap is reached closes the connection (EMSGSIZE, logged, counted).
  std::size_t accumulator_cap = 1 << 20;
  // Bytes queued for sending (copied or zero-copy, not yet confirmed by the
  // kernel) above which send() waits (backpressure).
  std::size_t send_queue_limit = 4 << 20;
  // send(Buffer)/send_zc: payloads at least this large go out with SENDMSG_ZC
  // (the Buffers come back after the kernel's notification); smaller ones are
  // sent from the Buffers by a copying send (back when the send completes).
  // Neither copies in user space; only TLS does (counted as copy fallbacks).
  // MSG_ZEROCOPY generally pays off only from about 10 KB up (the kernel's
  // msg_zerocopy.rst): page pinning and a notification per operation.
  bool zero_copy = true;
  std::size_t zero_copy_threshold = 16 * 1024;
  // Peers on this host (loopback, or the connection's own address) get the
  // data copied by the kernel on delivery whatever the sender does, so they
  // get by-reference sends unless this is set (tests of the zero-copy path).
  bool zero_copy_local = false;
  // read_exact(Buffer&): when at least this many bytes remain after those
  // already received, the rest is received straight into the Buffer with a
  // plain RECV (no copy), and the connection then receives only what readers
  // ask for while such payloads keep coming; smaller remainders are copied
  // once, from the provided receive buffers. The default is the measured
  // crossover (BENCHMARKS.md, "Receiving write payloads: crossover"): below it
  // the extra receive operations cost more CPU than the copy.
  std::size_t direct_read_threshold = 32 * 1024;
  // Closes a connection with no bytes in or out for this long (0: never). One
  // kernel timer per connection; when it expires after activity it is re-armed
  // for the rest, so the close comes this long after the last byte (plus at most
  // one loop iteration), never up to twice as late.
  std::chrono::milliseconds idle_timeout{0};
  // How long a graceful close waits for queued bytes to leave before it aborts.
  std::chrono::milliseconds close_linger{5000};
  // TLS handshake deadline (accepted connections, StartTls, Connect).
  std::chrono::milliseconds handshake_timeout{10000};
};

// TCP keepalive for accepted connections. Set on the listening socket, whose
// SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT Linux copies into
// every socket it accepts (so no per-connection system call). A peer that stops
// answering is declared dead after idle + interval * probes; the pending
// receive then fails with ETIMEDOUT and the connection is released.
struct TcpKeepalive {
  bool enabled = false;
  std::chrono::seconds idle{60};      // quiet time before the first probe
  std::chrono::seconds interval{10};  // between unanswered probes
  int probes = 6;                     // unanswered probes before the peer is dead

  absl::Status Validate() const;
};

struct ListenOptions {
  int backlog = 1024;
  // TCP: false (the default) binds one listening socket per address and
  // process, without SO_REUSEPORT, and every worker of the process accepts on
  // it (Listener::Bind finds it in a per-process registry). The kernel then
  // refuses the address to any other process (EADDRINUSE), so two servers
  // cannot silently split one port's connections. True: every Bind() opens
  // its own SO_REUSEPORT socket, so other processes of the same user may bind
  // the port too and the kernel spreads connections across all of them (an
  // explicit choice, e.g. for a rolling restart). Unix: the path is always
  // bound once per process and every worker accepts on that one socket.
  bool share_port_across_processes = false;
  bool nodelay = true;  // TCP_NODELAY on accepted connections
  bool v6only = false;  // IPV6_V6ONLY for an IPv6 listener
  // Unix: remove a stale socket file at the path (one nobody listens on) first.
  bool unlink_stale = true;
  // TCP only; applied when the listening socket is opened or adopted.
  TcpKeepalive keepalive;
  // Connections accepted but not yet taken by Accept(); more wait in the
  // kernel's backlog (the accept is paused meanwhile).
  uint32_t accept_queue = 256;
  ConnectionOptions connection;
};

}  // namespace ringline::net
