#pragma once
// Request buffers beyond the per-worker pools: the server-wide budget they are
// charged against, and the one way a request gets its buffer.
//
// Each worker keeps pools of buffers (worker_context.h): registered 256 KiB
// buffers and a few unregistered ones up to --max-request. They are the
// steady-state cache: a request takes one and gives it back, with no
// allocation. They are not a wall: when a pool is empty (clients stalled
// mid-request hold its buffers, or simply many clients are busy), a request's
// buffer is allocated on the heap instead, charged against --buffer-memory (one
// budget for all workers), and freed when the request is done. Only when that
// budget is spent too does a request wait, in FIFO order, for a pool buffer;
// --io-timeout bounds how long stalled clients can keep them.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "ringline/buffer.h"
#include "ringline/buffer_pool.h"
#include "ringline/metrics.h"
#include "ringline/task.h"

namespace blockserve {

// --buffer-memory: bytes of request buffers allocated beyond the pools, all
// workers together. Thread-safety: any thread (one atomic). Outlives every
// worker.
class BufferBudget {
 public:
  explicit BufferBudget(uint64_t limit) : limit_(limit) {}
  BufferBudget(const BufferBudget&) = delete;
  BufferBudget& operator=(const BufferBudget&) = delete;

  // Takes `n` bytes if that keeps the total within the limit.
  bool TryCharge(uint64_t n);
  void Release(uint64_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  uint64_t limit() const { return limit_; }

 private:
  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};
};

// Bytes charged to the budget for one allocated buffer; released when
// destroyed. Held next to the Buffer by the request that uses it (the Buffer
// itself travels through block and send operations and comes back). Empty
// when the buffer came from a pool. Move-only; worker-local (the gauge is the
// worker's).
class BudgetCharge {
 public:
  BudgetCharge() = default;
  BudgetCharge(BufferBudget* budget, ringline::Gauge* gauge, uint64_t n)
      : budget_(budget), gauge_(gauge), n_(n) {}
  BudgetCharge(BudgetCharge&& o) noexcept
      : budget_(std::exchange(o.budget_, nullptr)), gauge_(o.gauge_), n_(std::exchange(o.n_, 0)) {}
  BudgetCharge& operator=(BudgetCharge&& o) noexcept {
    if (this != &o) {
      Reset();
      budget_ = std::exchange(o.budget_, nullptr);
      gauge_ = o.gauge_;
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  BudgetCharge(const BudgetCharge&) = delete;
  BudgetCharge& operator=(const BudgetCharge&) = delete;
  ~BudgetCharge() { Reset(); }

  uint64_t bytes() const { return n_; }
  void Reset();

 private:
  BufferBudget* budget_ = nullptr;
  ringline::Gauge* gauge_ = nullptr;
  uint64_t n_ = 0;
};

// Where a worker's request buffers come from. Worker-local; the pools and the
// budget outlive it.
struct RequestBufferSource {
  ringline::BufferPool* pool = nullptr;  // the pool for this size
  BufferBudget* budget = nullptr;        // null: the pool only
  ringline::Gauge* allocated = nullptr;  // bytes allocated now (this worker)
  ringline::Counter* waits = nullptr;    // requests that waited for the pool
};

// A buffer of at least `length` bytes: the pool's if one is free (no
// allocation: the steady state), else a page-aligned heap buffer charged to
// the budget (`charge` then holds the charge: keep it as long as the buffer),
// else the next buffer returned to the pool (FIFO). An empty Buffer only if
// the heap allocation failed and the pool is gone.
// `charge` must outlive the returned task.
ringline::Task<ringline::Buffer> AcquireRequestBuffer(RequestBufferSource source,
                                                      std::size_t length, BudgetCharge& charge);

}  // namespace blockserve
