#pragma once
// LatencyHistogram: a log-linear histogram of nanoseconds with 64 sub-buckets
// per power of two (relative error under 1.6%, finer than the engine's
// metrics histogram so percentiles compare with fio's). One per job, written by
// its worker only; merged after the run.

#include <array>
#include <bit>
#include <cstdint>

namespace ringline::blockbench {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 6;
  static constexpr int kSub = 1 << kSubBits;
  static constexpr int kBuckets = (64 - kSubBits + 1) * kSub;

  void Record(uint64_t v) {
    ++counts_[BucketOf(v)];
    ++count_;
    sum_ += v;
    if (v < min_) min_ = v;
    if (v > max_) max_ = v;
  }
  void Merge(const LatencyHistogram& o) {
    for (int i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    count_ += o.count_;
    sum_ += o.sum_;
    if (o.min_ < min_) min_ = o.min_;
    if (o.max_ > max_) max_ = o.max_;
  }

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double mean() const {
    return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0;
  }

  // The value at quantile q (0..1): the middle of the bucket holding it,
  // clamped to the observed min and max.
  uint64_t Quantile(double q) const {
    if (count_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(count_));
    if (rank >= count_) rank = count_ - 1;
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen > rank) {
        const uint64_t lo = LowerBound(i), hi = LowerBound(i + 1);
        uint64_t mid = lo + (hi - lo) / 2;
        if (mid < min()) mid = min();
        if (mid > max_) mid = max_;
        return mid;
      }
    }
    return max_;
  }

  static int BucketOf(uint64_t v) {
    if (v < kSub) return static_cast<int>(v);
    const int msb = 63 - std::countl_zero(v);
    const int sub = static_cast<int>((v >> (msb - kSubBits)) & (kSub - 1));
    return (msb - kSubBits + 1) * kSub + sub;
  }
  static uint64_t LowerBound(int b) {
    if (b < kSub) return static_cast<uint64_t>(b);
    const int msb = b / kSub + kSubBits - 1;
    if (msb >= 64) return UINT64_MAX;
    const uint64_t sub = static_cast<uint64_t>(b % kSub);
    return (uint64_t{1} << msb) | (sub << (msb - kSubBits));
  }

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
};

}  // namespace ringline::blockbench
