#pragma once
// blockserve's metrics: per worker, one writer each (the worker's thread), read
// lock-free by the metrics endpoint on any worker. Rendered in the Prometheus
// text exposition format.

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "blockserve/nbd/error.h"
#include "blockserve/nbd/request.h"
#include "ringline/metrics.h"

namespace blockserve {

class WriteOrder;  // write_order.h

// NBD commands we count separately.
enum class Cmd : uint8_t { kRead, kWrite, kFlush, kTrim, kWriteZeroes, kOther };
inline constexpr int kCmds = 6;
const char* CmdLabel(Cmd c);

// Requests the backend failed, counted by the NBD error they were answered
// with (the order of FailureErrors()).
inline constexpr int kFailureKinds = 8;
int FailureIndex(nbd::NbdError error);
nbd::NbdError FailureError(int index);

struct ExportStats {
  std::array<ringline::Counter, kCmds> ops;
  std::array<ringline::Counter, kCmds> bytes;
  std::array<ringline::Counter, kCmds> errors;
  std::array<ringline::Histogram, kCmds> latency_ns;
  ringline::Gauge in_flight;  // requests being served
  // Refused without touching the backend, by reason (nbd::Refusal).
  std::array<ringline::Counter, nbd::kRefusals> refused;
  // Failed by the backend, by the NBD error sent (FailureIndex).
  std::array<ringline::Counter, kFailureKinds> failed;
  // Requests not aligned to the backend, served by bounce buffer or
  // read-modify-write (unaligned_io.h).
  ringline::Counter unaligned;
  // Writes done straight from the receive buffer (Session::TryWriteNow).
  ringline::Counter written_in_place;
};

struct WorkerStats {
  explicit WorkerStats(std::size_t exports) : per_export(exports) {
    for (auto& e : per_export) e = std::make_unique<ExportStats>();
  }
  std::vector<std::unique_ptr<ExportStats>> per_export;  // same order as the config
  ringline::Counter connections_total;
  ringline::Gauge connections_active;
  ringline::Counter handshakes_failed;
  ringline::Counter protocol_errors;
  ringline::Counter tls_connections;
  ringline::Counter connections_refused;  // over --max-connections: closed at once
  ringline::Counter handshake_timeouts;   // not in transmission within --handshake-timeout
  // Fairness (session.h).
  ringline::Counter io_timeouts;      // closed: no progress on what the client owed (--io-timeout)
  ringline::Counter oversize_writes;  // closed: a WRITE longer than --max-request
  ringline::Counter admission_waits;  // requests that waited for their connection's budget
  ringline::Gauge buffer_memory_bytes;    // request buffers allocated beyond the pools, now
  ringline::Counter buffer_memory_waits;  // requests that waited: pool empty, budget spent
};

// A Prometheus label value with `\`, `"` and newlines escaped.
std::string EscapeLabelValue(const std::string& value);

// Prometheus text for every worker's stats plus the engine's counters.
// `orders`: each export's WriteOrder, in the same order as the names (or empty).
std::string RenderPrometheus(const std::vector<std::string>& export_names,
                             const std::vector<const WorkerStats*>& workers,
                             const ringline::MetricsSnapshot& engine,
                             const std::vector<const WriteOrder*>& orders = {});

}  // namespace blockserve
