#pragma once
// Network metrics: one set per worker, written only by that worker's thread,
// readable from any thread (relaxed atomics, see ringline/metrics.h).

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ringline/metrics.h"

namespace ringline::net {

struct NetMetrics {
  Counter accepted;          // connections accepted and installed
  Counter refused;           // accepted then closed at once: table full
  Counter closed;            // connections whose close completed
  Gauge active;              // connections open now (accepted + outbound)
  Counter connects;          // outbound connections established
  Counter connect_failures;  // refused, unreachable, timed out
  Counter bytes_in;          // TCP payload bytes received (ciphertext for TLS)
  Counter bytes_out;         // TCP payload bytes sent (ciphertext for TLS)
  Counter recv_enobufs;      // multishot recv ended because its buffer ring was empty
  Counter recv_rearms;       // multishot recv armed again after it ended
  Counter send_copies;       // copying send operations submitted
  Counter zc_sends;          // SEND_ZC/SENDMSG_ZC operations submitted
  Counter zc_copied;         // zero-copy sends the kernel reported it copied
  Counter copy_fallbacks;    // payloads asked to go zero-copy that were copied
  Counter partial_sends;     // short sends continued (docs/io_uring-rules.md R5)
  Counter send_waits;        // sends that waited for queue space (backpressure)
  Counter direct_reads;  // read_exact payloads (or their rest) received straight into the buffer
  Counter read_copied_bytes;      // bytes reads copied once, from a receive buffer to the caller
  Counter read_recopied_bytes;    // bytes reads copied out of the accumulator (a second copy)
  Counter bounded_recvs;          // single receives sized by the waiting reader (paced)
  Counter accumulator_overflows;  // connections closed for exceeding the accumulator cap
  Counter idle_timeouts;          // connections closed for being idle
  Counter tls_handshakes;         // completed TLS handshakes
  Counter tls_failures;           // failed TLS handshakes
  Counter udp_datagrams_in;
  Counter udp_datagrams_out;
  Counter udp_dropped;  // datagrams dropped: receive queue full or truncated

  // Name/value pairs of every Counter, then of every Gauge, in a stable order.
  std::vector<std::pair<std::string, uint64_t>> Counters() const;
  std::vector<std::pair<std::string, uint64_t>> Gauges() const;
};

// Counter sums over every worker that has used the network, live or gone.
// Thread-safe.
std::vector<std::pair<std::string, uint64_t>> NetMetricsTotals();
// Gauge sums over the live workers (a gone worker's levels are gone with it).
// Thread-safe.
std::vector<std::pair<std::string, uint64_t>> NetGaugeTotals();
// The total of the counter or gauge `name`; 0 if there is none. Thread-safe.
uint64_t NetMetricTotal(const std::string& name);

}  // namespace ringline::net
