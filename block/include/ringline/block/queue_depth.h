#pragma once
// Queue-depth accounting for block targets (docs/architecture.md "Block layer").
//
// QueueDepthLimiter is a FIFO semaphore whose waiters are coroutines: every
// target owns one with a configurable limit. A request that would exceed the
// limit waits, in arrival order, until a completion frees a place; it is never
// rejected for being one too many. A freed place is handed straight to the
// longest waiter, so a later request can never overtake an earlier one.
//
//   QueueDepthLimiter::Permit permit = co_await limiter.Acquire();
//   ... submit the operation and await it ...
//   // the place is freed when `permit` is destroyed
//
// TargetMetrics are the per-target counters and latency histograms per OpKind.
//
// Thread-safety: a limiter and its permits belong to one worker and are used on
// its thread only. Metrics (Counter/Histogram) may be read from any thread.
// Lifetime: the limiter must outlive its permits and its waiting awaiters, i.e.
// destroy the tasks that use a target before the target.

#include <array>
#include <cassert>
#include <chrono>
#include <cstdint>
#include <utility>

#include "ringline/block/target.h"
#include "ringline/metrics.h"
#include "ringline/wait_list.h"

namespace ringline::block {

// Gauges and counters of one limiter. Single writer (the worker), any reader.
struct QueueDepthMetrics {
  Gauge limit;            // the configured limit
  Gauge in_flight;        // places held now
  Gauge waiting;          // requests waiting for a place now
  Counter max_in_flight;  // high-water mark of in_flight
  Counter admitted;       // requests admitted (with or without waiting)
  Counter waited;         // requests that had to wait
  Histogram wait_ns;      // wait time of the requests that waited
};

class QueueDepthLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  // `limit` >= 1 (0 is treated as 1).
  explicit QueueDepthLimiter(uint32_t limit);
  QueueDepthLimiter(const QueueDepthLimiter&) = delete;
  QueueDepthLimiter& operator=(const QueueDepthLimiter&) = delete;
  // Every permit must have been released and no awaiter may be waiting.
  ~QueueDepthLimiter();

  // One admitted place. Move-only; releasing it (destruction or Release())
  // hands the place to the longest waiter, or frees it.
  class [[nodiscard]] Permit {
   public:
    Permit() = default;
    Permit(Permit&& o) noexcept
        : limiter_(std::exchange(o.limiter_, nullptr)), ticket_(o.ticket_) {}
    Permit& operator=(Permit&& o) noexcept {
      if (this != &o) {
        Release();
        limiter_ = std::exchange(o.limiter_, nullptr);
        ticket_ = o.ticket_;
      }
      return *this;
    }
    Permit(const Permit&) = delete;
    Permit& operator=(const Permit&) = delete;
    ~Permit() { Release(); }

    explicit operator bool() const { return limiter_ != nullptr; }
    // Admission sequence number (0, 1, 2, ... per limiter): FIFO order is
    // observable as tickets increasing in request order.
    uint64_t ticket() const { return ticket_; }
    void Release() {
      if (QueueDepthLimiter* l = std::exchange(limiter_, nullptr)) l->ReleasePlace();
    }

   private:
    friend class QueueDepthLimiter;
    Permit(QueueDepthLimiter* l, uint64_t ticket) : limiter_(l), ticket_(ticket) {}
    QueueDepthLimiter* limiter_ = nullptr;
    uint64_t ticket_ = 0;
  };

  // Awaitable returned by Acquire(). If it is destroyed while waiting (its task
  // was destroyed), it leaves the queue; if it was already granted a place that
  // its task never took, the place is released (and so passed on).
  class [[nodiscard]] AcquireAwaiter : public WaitNode {
   public:
    explicit AcquireAwaiter(QueueDepthLimiter* l) : WaitNode(&l->waiters_), limiter_(l) {}
    AcquireAwaiter(AcquireAwaiter&& o) noexcept = default;  // before awaiting only
    AcquireAwaiter& operator=(const AcquireAwaiter&) = delete;
    ~AcquireAwaiter();

    // Takes a free place, or notes the wait that await_suspend (WaitNode) parks.
    bool await_ready() noexcept {
      if (limiter_->TryTake(this)) [[likely]]
        return true;
      limiter_->NoteWaiting(this);
      return false;
    }
    Permit await_resume() noexcept {
      Resumed();
      assert(granted_ && "resumed without a place");
      granted_ = false;
      return Permit(limiter_, ticket_);
    }

   private:
    friend class QueueDepthLimiter;
    QueueDepthLimiter* limiter_;
    Clock::time_point since_{};
    uint64_t ticket_ = 0;
    bool granted_ = false;  // holds a place not yet turned into a Permit
  };

  // Waits (FIFO) for a place. Never fails.
  AcquireAwaiter Acquire() { return AcquireAwaiter(this); }
  // A place if one is free now and nobody is waiting, else an empty Permit.
  Permit TryAcquire();

  // Changes the limit. Raising it admits waiters at once; lowering it lets the
  // requests in flight finish (no new admission until in_flight < limit).
  void SetLimit(uint32_t limit);

  uint32_t limit() const { return limit_; }
  uint32_t in_flight() const { return in_flight_; }
  uint32_t waiting() const { return static_cast<uint32_t>(waiters_.size()); }
  const QueueDepthMetrics& metrics() const { return metrics_; }

 private:
  bool TryTake(AcquireAwaiter* a) noexcept {
    if (waiters_.empty() && in_flight_ < limit_) [[likely]] {
      a->ticket_ = next_ticket_++;
      a->granted_ = true;
      ++in_flight_;
      NoteAdmitted();
      return true;
    }
    return false;
  }
  void NoteAdmitted() {
    // Admission happens only below the limit (SetLimit may later lower it).
    assert(in_flight_ <= limit_ && "admitted above the queue-depth limit");
    metrics_.in_flight.Set(in_flight_);
    metrics_.admitted.Add();
    if (in_flight_ > max_in_flight_) {
      max_in_flight_ = in_flight_;
      metrics_.max_in_flight.Set(in_flight_);
    }
  }
  void ReleasePlace();
  void NoteWaiting(AcquireAwaiter* a);
  // Hands free places to waiters, in order, while the limit allows.
  void Grant();

  uint32_t limit_;
  uint32_t in_flight_ = 0;
  uint32_t max_in_flight_ = 0;
  uint64_t next_ticket_ = 0;
  WaitList waiters_;  // requests waiting for a place, FIFO
  QueueDepthMetrics metrics_;
};

// Per-target operation metrics: count, bytes, errors and a latency histogram
// (call to completion, including any wait for a queue-depth place) per OpKind.
// Single writer (the target's worker), any reader.
struct TargetMetrics {
  struct PerKind {
    Counter ops;
    Counter bytes;
    Counter errors;
    Histogram latency_ns;
  };
  std::array<PerKind, kOpKinds> kinds;

  PerKind& of(OpKind k) { return kinds[static_cast<int>(k)]; }
  const PerKind& of(OpKind k) const { return kinds[static_cast<int>(k)]; }

  // Records one finished operation; `bytes` counts only on success.
  void Record(OpKind k, bool ok, uint64_t bytes) {
    PerKind& m = of(k);
    m.ops.Add();
    if (ok)
      m.bytes.Add(bytes);
    else
      m.errors.Add();
  }
  void RecordLatency(OpKind k, QueueDepthLimiter::Clock::time_point start) {
    const auto d = QueueDepthLimiter::Clock::now() - start;
    of(k).latency_ns.Record(
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()));
  }
};

}  // namespace ringline::block
