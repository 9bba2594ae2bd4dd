// Metrics: log-bucketed histograms and lock-free snapshots across threads.
#include "ringline/metrics.h"

#include <gtest/gtest.h>

#include <thread>

namespace ringline {
namespace {

TEST(HistogramTest, BucketsBoundValuesWithinAnEighth) {
  for (uint64_t v : {0ull, 1ull, 7ull, 8ull, 9ull, 100ull, 1000ull, 123456ull, 1ull << 40,
                     (1ull << 63) + 12345}) {
    const int b = Histogram::BucketOf(v);
    EXPECT_GE(Histogram::BucketUpperBound(b), v) << v;
    if (b > 0) {
      EXPECT_LT(Histogram::BucketUpperBound(b - 1), v) << v;
    }
    EXPECT_LE(Histogram::BucketUpperBound(b) - v, v / 8 + 1) << v;
  }
}

TEST(HistogramTest, Quantiles) {
  Histogram h;
  for (uint64_t i = 1; i <= 1000; ++i) h.Record(i * 1000);
  auto s = h.Read();
  EXPECT_EQ(s.count, 1000u);
  const uint64_t p50 = s.Quantile(0.5), p99 = s.Quantile(0.99);
  EXPECT_GE(p50, 500000u);
  EXPECT_LE(p50, 500000u * 9 / 8 + 1);
  EXPECT_GE(p99, 990000u);
  EXPECT_LE(p99, 990000u * 9 / 8 + 1);
  EXPECT_EQ(Histogram::Snapshot{}.Quantile(0.5), 0u);
}

TEST(MetricsTest, SnapshotFromAnotherThreadWhileWriting) {
  WorkerMetrics a, b;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; i < 1000000; ++i) {
      a.cqes.Add();
      a.op_latency_ns.Record(100);
    }
    b.cqes.Add(5);
    stop = true;
  });
  uint64_t last = 0;
  while (!stop) {
    auto s = SnapshotOf({&a, &b});
    EXPECT_GE(s.Total("cqes"), last) << "monotonic";
    last = s.Total("cqes");
  }
  writer.join();
  auto s = SnapshotOf({&a, &b});
  EXPECT_EQ(s.Total("cqes"), 1000005u);
  EXPECT_EQ(s.per_worker.size(), 2u);
  EXPECT_EQ(s.op_latency_ns.count, 1000000u);
}

// Levels are Gauges and are listed apart from the Counters, so an exporter
// never puts one in a counter family; the snapshot sums both.
TEST(MetricsTest, GaugesAreListedApartFromCounters) {
  WorkerMetrics a, b;
  a.ops_in_flight.Set(3);
  b.ops_in_flight.Set(4);
  a.cqes.Add(2);
  for (const auto& [name, v] : a.Counters()) {
    EXPECT_NE(name, "ops_in_flight");
    EXPECT_NE(name, "workers_batching");
  }
  ASSERT_EQ(a.Gauges().size(), 2u);
  EXPECT_EQ(a.Gauges()[0].first, "ops_in_flight");
  EXPECT_EQ(a.Gauges()[1].first, "workers_batching");
  auto s = SnapshotOf({&a, &b});
  EXPECT_EQ(s.Total("ops_in_flight"), 7u);
  EXPECT_EQ(s.Total("cqes"), 2u);
  ASSERT_EQ(s.gauges.size(), 2u);
  EXPECT_EQ(s.gauges[0].second, 7u);
  for (const auto& [name, v] : s.totals) EXPECT_NE(name, "ops_in_flight");
}

}  // namespace
}  // namespace ringline
