#pragma once
// BufferPool: a worker's page-aligned I/O buffers of one size, registered with
// its ring so block reads and writes use READ_FIXED/WRITE_FIXED (and NVMe
// passthrough IORING_URING_CMD_FIXED). SizeClassPool (below): several
// BufferPools of different sizes behind one Acquire(min_bytes).
//
// Acquiring from an empty pool waits, in FIFO order, until a buffer comes back;
// AcquireUntil/AcquireFor give up at a deadline with ETIMEDOUT. No acquire
// allocates: waiters live in the awaiting coroutine's frame.
// When RLIMIT_MEMLOCK is too small for the registration, the pool falls back to
// unregistered memory and logs one warning per process naming the limit and how
// to raise it. The memory is one mmap, released when the pool is destroyed.
// Thread-safety: worker-local. Every Buffer must be returned (destroyed) before
// the pool is destroyed.

#include <sys/uio.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "ringline/buffer.h"
#include "ringline/internal/promise_base.h"
#include "ringline/result.h"
#include "ringline/timer_queue.h"
#include "ringline/wait_list.h"

namespace ringline {

class Worker;

class BufferPool {
 public:
  struct Options {
    std::size_t buffer_size = 128 * 1024;  // rounded up to a page
    uint32_t count = 64;
    bool register_with_ring = true;
    // Fault every page in at creation (no page fault on the I/O path). An
    // unregistered pool may leave it off: its memory becomes resident only as
    // buffers are first used (registration pins, so registered pools always
    // populate).
    bool populate = true;
    // Largest single registration. Linux 6.1 fails an NVMe passthrough command
    // with IORING_URING_CMD_FIXED when the registration it points into spans
    // more pages than the device's max_segments (127 in QEMU), so buffers are
    // registered in groups no larger than this; a buffer larger than it gets a
    // registration of its own.
    std::size_t max_registration_bytes = 127 * 4096;
  };

  // Creates a pool on `worker` (the calling thread must be its thread).
  static absl::StatusOr<std::unique_ptr<BufferPool>> Create(Worker& worker, const Options& options);
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  ~BufferPool();

  // A buffer if one is free now, else an empty Buffer.
  Buffer TryAcquire();

  // The part every acquire awaiter shares: its place in the wait list, the
  // buffer handed to it, and (for a timed acquire) its timer. A buffer handed
  // to an awaiter whose task is destroyed before it resumed goes back to the
  // pool (and so to the next waiter) through the `buffer_` member.
  class Waiter : public WaitNode {
   protected:
    explicit Waiter(BufferPool* pool) : WaitNode(pool ? &pool->waiters_ : nullptr), pool_(pool) {}
    Waiter(Waiter&& o) noexcept  // before awaiting only
        : WaitNode(std::move(o)), pool_(o.pool_), buffer_(std::move(o.buffer_)) {}
    ~Waiter() { DisarmTimer(); }
    void DisarmTimer();
    // A timed waiter whose deadline has passed (its task is scheduled).
    bool expired() const { return timed_ && !timer_.queued(); }

    friend class BufferPool;
    BufferPool* pool_;  // null: an awaiter that completes at once (an error)
    Buffer buffer_;
    TimerNode timer_;  // armed only by a timed acquire, while it waits
    bool timed_ = false;
  };

  // Waits (FIFO) for a free buffer.
  class [[nodiscard]] AcquireAwaiter : public Waiter {
   public:
    explicit AcquireAwaiter(BufferPool* pool) : Waiter(pool) {}
    AcquireAwaiter(AcquireAwaiter&& o) noexcept = default;  // before awaiting only
    bool await_ready();
    Buffer await_resume() {
      Resumed();
      return std::move(buffer_);
    }
  };
  AcquireAwaiter Acquire() { return AcquireAwaiter(this); }

  // Waits (FIFO) for a free buffer until `deadline`; the result is the buffer,
  // or ETIMEDOUT (with a detail naming the pool's buffer size) when none was
  // handed over in time. A deadline of Clock::time_point::max() never expires.
  // Waiters whose deadline passed are skipped by the buffers that come back, so
  // an expired waiter never holds a buffer back from the next live one.
  class [[nodiscard]] TimedAcquireAwaiter : public Waiter {
   public:
    TimedAcquireAwaiter(BufferPool* pool, Clock::time_point deadline)
        : Waiter(pool), deadline_(deadline) {}
    // Completes at once with `buffer` (may be empty with `error` set).
    TimedAcquireAwaiter(Buffer buffer, int error, absl::Status detail)
        : Waiter(nullptr), error_(error), detail_(std::move(detail)) {
      buffer_ = std::move(buffer);
    }
    TimedAcquireAwaiter(TimedAcquireAwaiter&& o) noexcept
        : Waiter(std::move(o)),
          deadline_(o.deadline_),
          error_(o.error_),
          detail_(std::move(o.detail_)) {}
    bool await_ready();
    template <EnginePromise P>
    void await_suspend(std::coroutine_handle<P> h) {
      WaitNode::await_suspend(h);
      ArmTimer(&h.promise());
    }
    Result<Buffer> await_resume();

   private:
    void ArmTimer(PromiseBase* promise);
    Clock::time_point deadline_ = Clock::time_point::max();
    int error_ = 0;
    absl::Status detail_;
  };
  TimedAcquireAwaiter AcquireUntil(Clock::time_point deadline) {
    return TimedAcquireAwaiter(this, deadline);
  }
  template <typename Rep, typename Period>
  TimedAcquireAwaiter AcquireFor(std::chrono::duration<Rep, Period> d) {
    return AcquireUntil(Clock::now() + std::chrono::duration_cast<Clock::duration>(d));
  }

  std::size_t buffer_size() const { return buffer_size_; }
  uint32_t count() const { return count_; }
  uint32_t available() const { return static_cast<uint32_t>(free_.size()); }
  uint32_t waiting() const { return static_cast<uint32_t>(waiters_.size()); }
  bool registered() const { return !reg_indexes_.empty(); }

  // Called by the worker as it is destroyed: forget the ring registrations.
  void OnWorkerGone() {
    worker_ = nullptr;
    reg_indexes_.clear();
  }

 private:
  friend class Buffer;
  BufferPool(Worker& worker, std::size_t buffer_size, uint32_t count);
  Buffer Make(uint32_t i);
  void Return(uint8_t* data);

  Worker* worker_;  // null once the worker is gone
  std::size_t buffer_size_;
  uint32_t count_;
  uint8_t* base_ = nullptr;
  std::size_t mapped_ = 0;
  uint32_t per_registration_ = 1;  // buffers covered by one registration
  std::vector<int> reg_indexes_;   // ring registration of each group; empty: none
  std::vector<uint32_t> free_;
  std::vector<bool> lent_;  // per buffer: out of the pool (checks every Return)
  WaitList waiters_;        // tasks waiting for a buffer, FIFO
  // Timed waiters whose timer fired but whose task has not run yet: moved off
  // `waiters_` so returned buffers skip them; each leaves when it resumes (or
  // is destroyed).
  WaitList expired_;
};

// SizeClassPool: BufferPools of several sizes (the classes), one Acquire.
//
// Acquire(min_bytes) hands out a buffer of the smallest class whose size is at
// least min_bytes. When that class has no free buffer (and nobody waits in
// it), a free buffer of the next larger class is taken instead; when none is
// free anywhere the task waits in the smallest fitting class's FIFO. A request
// larger than the largest class fails at once with EMSGSIZE naming the largest
// class. AcquireUntil/AcquireFor give up at a deadline with ETIMEDOUT.
// Buffers go back to their own class when destroyed.
//
// Thread-safety: worker-local, like BufferPool. Lifetime: every Buffer must be
// returned before the SizeClassPool is destroyed.
class SizeClassPool {
 public:
  struct Class {
    std::size_t buffer_size = 0;  // rounded up to a page
    uint32_t count = 0;
  };
  struct Options {
    std::vector<Class> classes;  // any order; sizes (after rounding) distinct
    bool register_with_ring = true;
    bool populate = true;
    std::size_t max_registration_bytes = 127 * 4096;
    // Powers of two from `min_size` to `max_size` (both rounded up to a power
    // of two, min at least a page), `count` buffers each.
    static Options PowersOfTwo(std::size_t min_size, std::size_t max_size, uint32_t count);
  };

  // Creates every class's pool on `worker` (the calling thread must be its
  // thread). Fails naming the offending class when a class is empty, two
  // classes round to one size, or a pool cannot be created.
  static absl::StatusOr<std::unique_ptr<SizeClassPool>> Create(Worker& worker,
                                                               const Options& options);
  SizeClassPool(const SizeClassPool&) = delete;
  SizeClassPool& operator=(const SizeClassPool&) = delete;

  // Waits without a deadline; the result is a Buffer of capacity >= min_bytes,
  // or EMSGSIZE when no class is that large.
  BufferPool::TimedAcquireAwaiter Acquire(std::size_t min_bytes) {
    return AcquireUntil(min_bytes, Clock::time_point::max());
  }
  BufferPool::TimedAcquireAwaiter AcquireUntil(std::size_t min_bytes, Clock::time_point deadline);
  template <typename Rep, typename Period>
  BufferPool::TimedAcquireAwaiter AcquireFor(std::size_t min_bytes,
                                             std::chrono::duration<Rep, Period> d) {
    return AcquireUntil(min_bytes, Clock::now() + std::chrono::duration_cast<Clock::duration>(d));
  }
  // A free buffer of capacity >= min_bytes now (by the same class choice),
  // else an empty Buffer.
  Buffer TryAcquire(std::size_t min_bytes);

  // The class Acquire(min_bytes) waits in, or -1 when min_bytes exceeds every class.
  int ClassFor(std::size_t min_bytes) const;
  std::size_t class_count() const { return pools_.size(); }
  BufferPool& pool(std::size_t class_index) { return *pools_[class_index]; }
  std::size_t largest() const { return pools_.back()->buffer_size(); }

 private:
  SizeClassPool() = default;
  std::vector<std::unique_ptr<BufferPool>> pools_;  // ascending buffer_size
};

}  // namespace ringline
