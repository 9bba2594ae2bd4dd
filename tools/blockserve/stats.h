#pragma once
// blockserve's metrics: per worker, one writer each (the worker's thread), read
// lock-free by the metrics endpoint on any worker. Rendered in the Prometheus
// text exposition format.

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "ringline/metrics.h"

namespace blockserve {

// NBD commands we count separately.
enum class Cmd : uint8_t { kRead, kWrite, kFlush, kTrim, kWriteZeroes, kOther };
inline constexpr int kCmds = 6;
const char* CmdLabel(Cmd c);

struct ExportStats {
  std::array<ringline::Counter, kCmds> ops;
  std::array<ringline::Counter, kCmds> bytes;
  std::array<ringline::Counter, kCmds> errors;
  std::array<ringline::Histogram, kCmds> latency_ns;
  ringline::Counter in_flight;  // gauge: requests being served
};

struct WorkerStats {
  explicit WorkerStats(std::size_t exports) : per_export(exports) {
    for (auto& e : per_export) e = std::make_unique<ExportStats>();
  }
  std::vector<std::unique_ptr<ExportStats>> per_export;  // same order as the config
  ringline::Counter connections_total;
  ringline::Counter connections_active;  // gauge
  ringline::Counter handshakes_failed;
  ringline::Counter protocol_errors;
  ringline::Counter tls_connections;
  ringline::Counter connections_refused;  // over --max-connections: closed at once
  ringline::Counter handshake_timeouts;   // not in transmission within --handshake-timeout
};

// Prometheus text for every worker's stats plus the engine's counters.
std::string RenderPrometheus(const std::vector<std::string>& export_names,
                             const std::vector<const WorkerStats*>& workers,
                             const ringline::MetricsSnapshot& engine);

}  // namespace blockserve
