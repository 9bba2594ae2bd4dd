#include "ringline/net/net_metrics.h"

#include <map>
#include <mutex>
#include <vector>

#include "metrics_registry.h"

namespace ringline::net {

std::vector<std::pair<std::string, uint64_t>> NetMetrics::Counters() const {
  return {
      {"net_accepted", accepted.Get()},
      {"net_refused", refused.Get()},
      {"net_closed", closed.Get()},
      {"net_connects", connects.Get()},
      {"net_connect_failures", connect_failures.Get()},
      {"net_bytes_in", bytes_in.Get()},
      {"net_bytes_out", bytes_out.Get()},
      {"net_recv_enobufs", recv_enobufs.Get()},
      {"net_recv_rearms", recv_rearms.Get()},
      {"net_send_copies", send_copies.Get()},
      {"net_zc_sends", zc_sends.Get()},
      {"net_zc_copied", zc_copied.Get()},
      {"net_copy_fallbacks", copy_fallbacks.Get()},
      {"net_partial_sends", partial_sends.Get()},
      {"net_send_waits", send_waits.Get()},
      {"net_direct_reads", direct_reads.Get()},
      {"net_read_copied_bytes", read_copied_bytes.Get()},
      {"net_read_recopied_bytes", read_recopied_bytes.Get()},
      {"net_bounded_recvs", bounded_recvs.Get()},
      {"net_accumulator_overflows", accumulator_overflows.Get()},
      {"net_idle_timeouts", idle_timeouts.Get()},
      {"net_tls_handshakes", tls_handshakes.Get()},
      {"net_tls_failures", tls_failures.Get()},
      {"net_udp_datagrams_in", udp_datagrams_in.Get()},
      {"net_udp_datagrams_out", udp_datagrams_out.Get()},
      {"net_udp_dropped", udp_dropped.Get()},
  };
}

std::vector<std::pair<std::string, uint64_t>> NetMetrics::Gauges() const {
  return {{"net_active", active.Get()}};
}

namespace {
struct Registry {
  std::mutex mu;
  std::vector<std::shared_ptr<NetMetrics>> live;
  std::map<std::string, uint64_t> retired;
};
Registry& Reg() {
  static Registry* r = new Registry();  // never destroyed: workers may outlive main's statics
  return *r;
}
}  // namespace

namespace detail {
void RegisterMetrics(std::shared_ptr<NetMetrics> m) {
  std::lock_guard<std::mutex> lock(Reg().mu);
  Reg().live.push_back(std::move(m));
}
void RetireMetrics(const std::shared_ptr<NetMetrics>& m) {
  std::lock_guard<std::mutex> lock(Reg().mu);
  for (const auto& [name, v] : m->Counters()) Reg().retired[name] += v;
  std::erase(Reg().live, m);
}
}  // namespace detail

std::vector<std::pair<std::string, uint64_t>> NetMetricsTotals() {
  std::lock_guard<std::mutex> lock(Reg().mu);
  std::vector<std::pair<std::string, uint64_t>> out = NetMetrics().Counters();
  for (auto& [name, v] : out) {
    auto it = Reg().retired.find(name);
    v = it == Reg().retired.end() ? 0 : it->second;
  }
  for (const auto& m : Reg().live) {
    auto c = m->Counters();
    for (std::size_t i = 0; i < c.size(); ++i) out[i].second += c[i].second;
  }
  return out;
}

std::vector<std::pair<std::string, uint64_t>> NetGaugeTotals() {
  std::lock_guard<std::mutex> lock(Reg().mu);
  std::vector<std::pair<std::string, uint64_t>> out = NetMetrics().Gauges();
  for (auto& [name, v] : out) v = 0;
  for (const auto& m : Reg().live) {
    auto g = m->Gauges();
    for (std::size_t i = 0; i < g.size(); ++i) out[i].second += g[i].second;
  }
  return out;
}

uint64_t NetMetricTotal(const std::string& name) {
  for (const auto& list : {NetMetricsTotals(), NetGaugeTotals()}) {
    for (const auto& [n, v] : list) {
      if (n == name) return v;
    }
  }
  return 0;
}

}  // namespace ringline::net
