#pragma once
// Per-worker counters and log-bucketed latency histograms.
//
// Each metric has exactly one writer (its worker thread), which updates it with
// relaxed load+store — no locked instructions on the hot path. Any thread may
// read a consistent-enough snapshot at any time. A Counter only grows (export
// it as a Prometheus counter); a Gauge goes up and down (a level: connections
// open, requests in flight).

#include <array>
#include <atomic>
#include <cassert>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ringline {

class Counter {
 public:
  void Add(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void Set(uint64_t n) { v_.store(n, std::memory_order_relaxed); }
  uint64_t Get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// A level with one writer: Inc/Dec/Set, never below zero (asserted).
class Gauge {
 public:
  void Inc(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void Dec(uint64_t n = 1) {
    const uint64_t v = v_.load(std::memory_order_relaxed);
    assert(v >= n && "Gauge below zero");
    v_.store(v - n, std::memory_order_relaxed);
  }
  void Set(uint64_t n) { v_.store(n, std::memory_order_relaxed); }
  uint64_t Get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// Values (typically nanoseconds) in buckets of 1/8 of a power of two: relative
// error under 12.5% over the whole 64-bit range.
class Histogram {
 public:
  static constexpr int kSubBits = 3;
  static constexpr int kBuckets = 64 << kSubBits;

  struct Snapshot {
    std::array<uint64_t, kBuckets> counts{};
    uint64_t count = 0;
    uint64_t sum = 0;
    void Merge(const Snapshot& o);
    // Upper bound of the bucket holding the q-quantile (0 <= q <= 1); 0 if empty.
    uint64_t Quantile(double q) const;
    double Mean() const { return count ? static_cast<double>(sum) / count : 0.0; }
  };

  void Record(uint64_t value);
  Snapshot Read() const;

  static int BucketOf(uint64_t value);
  static uint64_t BucketUpperBound(int bucket);

 private:
  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_{0};
};

struct WorkerMetrics {
  Counter loop_iterations;
  Counter submit_calls;
  Counter sqes_submitted;
  Counter cqes;
  Counter stale_cqes;
  Counter tasks_polled;
  Counter tasks_spawned;
  Counter timers_armed;
  Counter timers_fired;
  Counter messages;
  Counter backpressure;
  Counter wait_batches;           // waits that asked for a batch (Config::wait_batch_max)
  Counter wait_batches_unfilled;  // of those, the ones a window or deadline ended
  Gauge ops_in_flight;
  Gauge workers_batching;   // 1 while the worker's waits ask for batches (summed: how many do)
  Histogram op_latency_ns;  // submit-to-completion of awaited operations

  // Name/value pairs of every Counter (only grows), in a stable order.
  std::vector<std::pair<std::string, uint64_t>> Counters() const;
  // Name/value pairs of every Gauge (a level), in a stable order. Exporters
  // keep the two apart (a Prometheus counter family must not hold a gauge).
  std::vector<std::pair<std::string, uint64_t>> Gauges() const;
};

// Totals across workers, taken from any thread.
struct MetricsSnapshot {
  std::vector<std::pair<std::string, uint64_t>> totals;                   // Counters(), summed
  std::vector<std::pair<std::string, uint64_t>> gauges;                   // Gauges(), summed
  std::vector<std::vector<std::pair<std::string, uint64_t>>> per_worker;  // Counters()
  Histogram::Snapshot op_latency_ns;
  // The sum of the counter or gauge `name`; 0 if there is none.
  uint64_t Total(const std::string& name) const;
};

MetricsSnapshot SnapshotOf(const std::vector<const WorkerMetrics*>& workers);

}  // namespace ringline
