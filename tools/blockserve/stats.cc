#include "blockserve/stats.h"

#include <unordered_map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "blockserve/write_order.h"
#include "ringline/net/net_metrics.h"

namespace blockserve {

const char* CmdLabel(Cmd c) {
  switch (c) {
    case Cmd::kRead:
      return "read";
    case Cmd::kWrite:
      return "write";
    case Cmd::kFlush:
      return "flush";
    case Cmd::kTrim:
      return "trim";
    case Cmd::kWriteZeroes:
      return "write_zeroes";
    case Cmd::kOther:
      return "other";
  }
  return "other";
}

namespace {

constexpr nbd::NbdError kFailureErrors[kFailureKinds] = {
    nbd::NbdError::kIo,     nbd::NbdError::kPerm,    nbd::NbdError::kNoMem,
    nbd::NbdError::kInval,  nbd::NbdError::kNoSpc,   nbd::NbdError::kOverflow,
    nbd::NbdError::kNotSup, nbd::NbdError::kShutdown};

}  // namespace

std::string EscapeLabelValue(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

int FailureIndex(nbd::NbdError error) {
  for (int i = 0; i < kFailureKinds; ++i) {
    if (kFailureErrors[i] == error) return i;
  }
  return 0;  // anything else is counted as EIO, as it is answered
}

nbd::NbdError FailureError(int index) { return kFailureErrors[index]; }

// The text format wants every family's lines in one group after its HELP and
// TYPE; the rendering below walks exports and commands and so interleaves the
// families of one loop. Regroups the lines, families in the order of their
// first HELP/TYPE line (which always precedes the family's samples).
std::string GroupByFamily(absl::string_view text) {
  std::vector<std::string> order;
  std::unordered_map<std::string, std::string> lines;
  std::unordered_map<std::string, std::string> types;
  auto family_of = [&](absl::string_view name) -> std::string {
    if (types.contains(std::string(name))) return std::string(name);
    for (absl::string_view suffix : {"_bucket", "_sum", "_count"}) {
      if (!absl::EndsWith(name, suffix)) continue;
      std::string base(name.substr(0, name.size() - suffix.size()));
      auto it = types.find(base);
      if (it != types.end() && it->second == "histogram") return base;
    }
    return std::string(name);
  };
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::string family;
    if (absl::StartsWith(line, "# ")) {
      std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(' ', 3));
      if (parts.size() < 3) continue;
      family = std::string(parts[2]);
      if (parts[1] == "TYPE" && parts.size() == 4) types[family] = std::string(parts[3]);
    } else {
      family = family_of(line.substr(0, line.find_first_of("{ ")));
    }
    auto [it, inserted] = lines.try_emplace(family);
    if (inserted) order.push_back(family);
    absl::StrAppend(&it->second, line, "\n");
  }
  std::string out;
  out.reserve(text.size());
  for (const std::string& family : order) out += lines[family];
  return out;
}

std::string RenderPrometheus(const std::vector<std::string>& names,
                             const std::vector<const WorkerStats*>& workers,
                             const ringline::MetricsSnapshot& engine,
                             const std::vector<const WriteOrder*>& orders) {
  std::string out;
  auto header = [&](const char* name, const char* type, const char* help) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  };
  auto sum = [&](auto get) {
    uint64_t v = 0;
    for (const WorkerStats* w : workers) v += get(*w);
    return v;
  };

  header("blockserve_connections_total", "counter", "NBD connections accepted.");
  absl::StrAppend(&out, "blockserve_connections_total ",
                  sum([](const WorkerStats& w) { return w.connections_total.Get(); }), "\n");
  header("blockserve_connections_active", "gauge", "NBD connections open now.");
  absl::StrAppend(&out, "blockserve_connections_active ",
                  sum([](const WorkerStats& w) { return w.connections_active.Get(); }), "\n");
  header("blockserve_handshakes_failed_total", "counter",
         "Handshakes that ended without transmission.");
  absl::StrAppend(&out, "blockserve_handshakes_failed_total ",
                  sum([](const WorkerStats& w) { return w.handshakes_failed.Get(); }), "\n");
  header("blockserve_connections_refused_total", "counter",
         "Connections closed at once: --max-connections were open.");
  absl::StrAppend(&out, "blockserve_connections_refused_total ",
                  sum([](const WorkerStats& w) { return w.connections_refused.Get(); }), "\n");
  header("blockserve_handshake_timeouts_total", "counter",
         "Connections dropped for not entering transmission within --handshake-timeout.");
  absl::StrAppend(&out, "blockserve_handshake_timeouts_total ",
                  sum([](const WorkerStats& w) { return w.handshake_timeouts.Get(); }), "\n");
  header("blockserve_io_timeouts_total", "counter",
         "Connections closed for --io-timeout: a write payload stopped arriving or replies "
         "stopped being read.");
  absl::StrAppend(&out, "blockserve_io_timeouts_total ",
                  sum([](const WorkerStats& w) { return w.io_timeouts.Get(); }), "\n");
  header("blockserve_oversize_writes_total", "counter",
         "Connections closed for a WRITE longer than --max-request.");
  absl::StrAppend(&out, "blockserve_oversize_writes_total ",
                  sum([](const WorkerStats& w) { return w.oversize_writes.Get(); }), "\n");
  header("blockserve_admission_waits_total", "counter",
         "Requests not read until their connection was back under --max-in-flight or "
         "--max-in-flight-bytes.");
  absl::StrAppend(&out, "blockserve_admission_waits_total ",
                  sum([](const WorkerStats& w) { return w.admission_waits.Get(); }), "\n");
  header("blockserve_buffer_memory_bytes", "gauge",
         "Request buffer bytes allocated beyond the per-worker pools (--buffer-memory).");
  absl::StrAppend(&out, "blockserve_buffer_memory_bytes ",
                  sum([](const WorkerStats& w) { return w.buffer_memory_bytes.Get(); }), "\n");
  header("blockserve_buffer_memory_waits_total", "counter",
         "Requests that waited for a buffer: the pool was empty and --buffer-memory spent.");
  absl::StrAppend(&out, "blockserve_buffer_memory_waits_total ",
                  sum([](const WorkerStats& w) { return w.buffer_memory_waits.Get(); }), "\n");
  header("blockserve_protocol_errors_total", "counter", "Connections closed for a protocol error.");
  absl::StrAppend(&out, "blockserve_protocol_errors_total ",
                  sum([](const WorkerStats& w) { return w.protocol_errors.Get(); }), "\n");

  header("blockserve_requests_total", "counter", "NBD requests served, by export and command.");
  header("blockserve_request_bytes_total", "counter", "Payload bytes, by export and command.");
  header("blockserve_request_errors_total", "counter", "Requests answered with an error.");
  header("blockserve_requests_in_flight", "gauge", "Requests being served (queue depth).");
  header("blockserve_request_duration_seconds", "histogram", "Request latency.");
  for (std::size_t e = 0; e < names.size(); ++e) {
    const std::string ex = EscapeLabelValue(names[e]);
    uint64_t in_flight = 0;
    for (const WorkerStats* w : workers) in_flight += w->per_export[e]->in_flight.Get();
    absl::StrAppend(&out, "blockserve_requests_in_flight{export=\"", ex, "\"} ", in_flight, "\n");
    for (int c = 0; c < kCmds; ++c) {
      const char* cmd = CmdLabel(static_cast<Cmd>(c));
      uint64_t ops = 0, bytes = 0, errors = 0;
      ringline::Histogram::Snapshot h;
      for (const WorkerStats* w : workers) {
        const ExportStats& s = *w->per_export[e];
        ops += s.ops[c].Get();
        bytes += s.bytes[c].Get();
        errors += s.errors[c].Get();
        h.Merge(s.latency_ns[c].Read());
      }
      const std::string labels = absl::StrCat("export=\"", ex, "\",command=\"", cmd, "\"");
      absl::StrAppend(&out, "blockserve_requests_total{", labels, "} ", ops, "\n");
      absl::StrAppend(&out, "blockserve_request_bytes_total{", labels, "} ", bytes, "\n");
      absl::StrAppend(&out, "blockserve_request_errors_total{", labels, "} ", errors, "\n");
      // Cumulative buckets at powers of two from 1 µs to ~34 s.
      uint64_t cumulative = 0;
      int b = 0;
      for (uint64_t le = 1000; le <= (uint64_t{1} << 35); le *= 2) {
        while (b < ringline::Histogram::kBuckets &&
               ringline::Histogram::BucketUpperBound(b) <= le) {
          cumulative += h.counts[b++];
        }
        absl::StrAppend(&out, "blockserve_request_duration_seconds_bucket{", labels, ",le=\"",
                        absl::StrFormat("%g", static_cast<double>(le) / 1e9), "\"} ", cumulative,
                        "\n");
      }
      absl::StrAppend(&out, "blockserve_request_duration_seconds_bucket{", labels, ",le=\"+Inf\"} ",
                      h.count, "\n");
      absl::StrAppend(&out, "blockserve_request_duration_seconds_sum{", labels, "} ",
                      absl::StrFormat("%.9f", static_cast<double>(h.sum) / 1e9), "\n");
      absl::StrAppend(&out, "blockserve_request_duration_seconds_count{", labels, "} ", h.count,
                      "\n");
    }
  }
  header("blockserve_requests_refused_total", "counter",
         "Requests refused without touching the backend, by export and reason.");
  header("blockserve_requests_failed_total", "counter",
         "Requests the backend failed, by export and the NBD error sent.");
  header("blockserve_requests_unaligned_total", "counter",
         "Requests not aligned to the backend, served by bounce buffer or read-modify-write.");
  header("blockserve_writes_in_place_total", "counter",
         "Writes copied to a memory-backed export straight from the receive buffer.");
  for (std::size_t e = 0; e < names.size(); ++e) {
    const std::string ex = EscapeLabelValue(names[e]);
    for (int r = 1; r < nbd::kRefusals; ++r) {
      const uint64_t n =
          sum([&](const WorkerStats& w) { return w.per_export[e]->refused[r].Get(); });
      absl::StrAppend(&out, "blockserve_requests_refused_total{export=\"", ex, "\",reason=\"",
                      nbd::RefusalLabel(static_cast<nbd::Refusal>(r)), "\"} ", n, "\n");
    }
    for (int f = 0; f < kFailureKinds; ++f) {
      const uint64_t n =
          sum([&](const WorkerStats& w) { return w.per_export[e]->failed[f].Get(); });
      absl::StrAppend(&out, "blockserve_requests_failed_total{export=\"", ex, "\",error=\"",
                      nbd::NbdErrorName(FailureError(f)), "\"} ", n, "\n");
    }
    absl::StrAppend(&out, "blockserve_requests_unaligned_total{export=\"", ex, "\"} ",
                    sum([&](const WorkerStats& w) { return w.per_export[e]->unaligned.Get(); }),
                    "\n");
    absl::StrAppend(
        &out, "blockserve_writes_in_place_total{export=\"", ex, "\"} ",
        sum([&](const WorkerStats& w) { return w.per_export[e]->written_in_place.Get(); }), "\n");
  }
  if (orders.size() == names.size()) {
    header("blockserve_read_modify_writes_total", "counter",
           "Unaligned writes and zeroes done by read-modify-write, by export.");
    header("blockserve_aligned_writes_ordered_total", "counter",
           "Aligned writes that took the range lock because a read-modify-write was pending.");
    header("blockserve_write_order_waits_total", "counter",
           "Writes that waited for an overlapping write or read-modify-write.");
    for (std::size_t e = 0; e < names.size(); ++e) {
      const std::string labels = absl::StrCat("{export=\"", EscapeLabelValue(names[e]), "\"} ");
      absl::StrAppend(&out, "blockserve_read_modify_writes_total", labels,
                      orders[e]->read_modify_writes(), "\n");
      absl::StrAppend(&out, "blockserve_aligned_writes_ordered_total", labels,
                      orders[e]->locked_aligned_writes(), "\n");
      absl::StrAppend(&out, "blockserve_write_order_waits_total", labels, orders[e]->waits(), "\n");
    }
  }
  // The engine's and the network layer's own metrics (bytes, send operations,
  // zero-copy, direct receives, refusals, TLS), summed over workers, one
  // family per type: levels (operations in flight, connections open) are
  // gauges and never appear in a counter family.
  auto family = [&](const char* metric, const char* type, const char* help,
                    const std::vector<std::pair<std::string, uint64_t>>& values) {
    header(metric, type, help);
    for (const auto& [name, value] : values) {
      absl::StrAppend(&out, metric, "{name=\"", name, "\"} ", value, "\n");
    }
  };
  family("ringline_engine_counter", "counter", "Engine counters summed over workers.",
         engine.totals);
  family("ringline_engine_gauge", "gauge", "Engine levels summed over workers.", engine.gauges);
  family("ringline_net_counter", "counter", "Network layer counters summed over workers.",
         ringline::net::NetMetricsTotals());
  family("ringline_net_gauge", "gauge", "Network layer levels summed over workers.",
         ringline::net::NetGaugeTotals());
  return GroupByFamily(out);
}

}  // namespace blockserve
