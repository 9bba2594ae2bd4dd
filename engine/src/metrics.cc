#include "ringline/metrics.h"

#include <bit>

namespace ringline {

int Histogram::BucketOf(uint64_t v) {
  if (v < (1u << kSubBits)) return static_cast<int>(v);
  const int msb = 63 - std::countl_zero(v);
  const int sub = static_cast<int>((v >> (msb - kSubBits)) & ((1u << kSubBits) - 1));
  return ((msb - kSubBits + 1) << kSubBits) + sub;
}

uint64_t Histogram::BucketUpperBound(int b) {
  if (b < (1 << kSubBits)) return static_cast<uint64_t>(b);
  const int msb = (b >> kSubBits) + kSubBits - 1;
  const uint64_t sub = static_cast<uint64_t>(b & ((1 << kSubBits) - 1));
  const uint64_t base = (uint64_t{1} << msb) | (sub << (msb - kSubBits));
  return base + ((uint64_t{1} << (msb - kSubBits)) - 1);
}

void Histogram::Record(uint64_t v) {
  auto& c = counts_[BucketOf(v)];
  c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  count_.store(count_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  sum_.store(sum_.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot s;
  for (int i = 0; i < kBuckets; ++i) s.counts[i] = counts_[i].load(std::memory_order_relaxed);
  s.count = count_.load(std::memory_order_relaxed);
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

void Histogram::Snapshot::Merge(const Snapshot& o) {
  for (int i = 0; i < kBuckets; ++i) counts[i] += o.counts[i];
  count += o.count;
  sum += o.sum;
}

uint64_t Histogram::Snapshot::Quantile(double q) const {
  uint64_t total = 0;
  for (uint64_t c : counts) total += c;
  if (total == 0) return 0;
  uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(total));
  if (rank >= total) rank = total - 1;
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += counts[i];
    if (seen > rank) return BucketUpperBound(i);
  }
  return BucketUpperBound(kBuckets - 1);
}

std::vector<std::pair<std::string, uint64_t>> WorkerMetrics::Counters() const {
  return {
      {"loop_iterations", loop_iterations.Get()},
      {"submit_calls", submit_calls.Get()},
      {"sqes_submitted", sqes_submitted.Get()},
      {"cqes", cqes.Get()},
      {"stale_cqes", stale_cqes.Get()},
      {"tasks_polled", tasks_polled.Get()},
      {"tasks_spawned", tasks_spawned.Get()},
      {"timers_armed", timers_armed.Get()},
      {"timers_fired", timers_fired.Get()},
      {"messages", messages.Get()},
      {"backpressure", backpressure.Get()},
      {"wait_batches", wait_batches.Get()},
      {"wait_batches_unfilled", wait_batches_unfilled.Get()},
  };
}

std::vector<std::pair<std::string, uint64_t>> WorkerMetrics::Gauges() const {
  return {{"ops_in_flight", ops_in_flight.Get()}, {"workers_batching", workers_batching.Get()}};
}

uint64_t MetricsSnapshot::Total(const std::string& name) const {
  for (const auto* list : {&totals, &gauges}) {
    for (const auto& [k, v] : *list) {
      if (k == name) return v;
    }
  }
  return 0;
}

namespace {
// Adds `values` into `sums` (same names in the same order; empty = first).
void Accumulate(std::vector<std::pair<std::string, uint64_t>>& sums,
                const std::vector<std::pair<std::string, uint64_t>>& values) {
  if (sums.empty()) {
    sums = values;
    return;
  }
  for (std::size_t i = 0; i < values.size(); ++i) sums[i].second += values[i].second;
}
}  // namespace

MetricsSnapshot SnapshotOf(const std::vector<const WorkerMetrics*>& workers) {
  MetricsSnapshot snap;
  for (const WorkerMetrics* w : workers) {
    auto counters = w->Counters();
    Accumulate(snap.totals, counters);
    Accumulate(snap.gauges, w->Gauges());
    snap.per_worker.push_back(std::move(counters));
    snap.op_latency_ns.Merge(w->op_latency_ns.Read());
  }
  return snap;
}

}  // namespace ringline
