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
// budget is spent too does a request wait: for a pool buffer (FIFO) or for
// room in the budget, whichever comes first; --io-timeout bounds how long
// stalled clients can keep either.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <utility>

#include "ringline/buffer.h"
#include "ringline/buffer_pool.h"
#include "ringline/metrics.h"
#include "ringline/task.h"
#include "ringline/worker.h"

namespace blockserve {

// --buffer-memory: bytes of request buffers allocated beyond the pools, all
// workers together, and the requests waiting for some of them to be freed.
// Thread-safety: TryCharge, Release, used and limit from any thread;
// WaitForRelease on a worker's thread. Outlives every worker and every task
// that waits on it.
class BufferBudget {
 public:
  explicit BufferBudget(uint64_t limit) : limit_(limit) {}
  ~BufferBudget();
  BufferBudget(const BufferBudget&) = delete;
  BufferBudget& operator=(const BufferBudget&) = delete;

  // Takes `n` bytes if that keeps the total within the limit.
  bool TryCharge(uint64_t n);
  // Gives `n` bytes back and wakes the tasks waiting for room on every worker
  // (WaitForRelease): on this worker at once, on another through a posted
  // message (one in flight per worker). Costs one atomic load more when
  // nobody waits.
  void Release(uint64_t n);
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  uint64_t limit() const { return limit_; }
  // Tasks waiting in WaitForRelease now, on every worker.
  uint32_t waiting() const { return waiting_.load(std::memory_order_relaxed); }

  // Completes once bytes are released after the call, or at once when `n`
  // bytes fit now; the caller then tries TryCharge again (another request may
  // have taken the room first). Waits on the calling worker's WaitList, so a
  // destroyed task simply leaves it. The first wait on a worker registers that
  // worker (one allocation, kept until the budget goes).
  ringline::Task<> WaitForRelease(uint64_t n);

 private:
  // The tasks of one worker waiting for room. `list` is the worker's; the
  // counters are read by releasing threads.
  struct WorkerWaiters;
  WorkerWaiters& WaitersOf(ringline::Worker& worker);
  // Wakes every waiting task on every worker (Release, when some wait).
  void WakeWaiters();

  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};
  // Tasks waiting in WaitForRelease on any worker: Release looks no further
  // while this is 0.
  std::atomic<uint32_t> waiting_{0};
  // Every worker that ever waited, newest first; entries are published once
  // and never removed until the budget goes, so releasing threads walk the
  // list without a lock. `register_mu_` serializes registrations only.
  std::atomic<WorkerWaiters*> workers_{nullptr};
  std::mutex register_mu_;
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
// else whichever comes first: the next buffer returned to the pool (FIFO), or
// room in the budget freed by a request on any worker (then it allocates, or
// waits again if another request took the room first). An empty Buffer only
// if the heap allocation failed and the pool is gone.
// `charge` must outlive the returned task.
ringline::Task<ringline::Buffer> AcquireRequestBuffer(RequestBufferSource source,
                                                      std::size_t length, BudgetCharge& charge);

}  // namespace blockserve
