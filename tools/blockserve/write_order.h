#pragma once
// WriteOrder: keeps the writes of one export that must not overlap in flight
// apart, across every connection and every worker serving the export.
//
// Why. A request that is not aligned to the backend's block size is served by
// read-modify-write (unaligned_io.h): read the edge blocks, merge the client's
// bytes, write whole blocks. Any other write to such a block that lands
// between that read and that write is lost, overwritten with the stale copy.
// Two clients writing different bytes of one block (the kernel's 512-byte
// requests on a 4 KiB device) must both land, so:
//
//  - A read-modify-write takes an exclusive lock on its block-aligned range.
//    Locks live in one mutex-protected table per export, shared by the
//    export's workers (each worker has its own Target on the same path). A
//    request that conflicts with a held lock, or with an earlier waiter (FIFO,
//    so no one starves), waits; when its turn comes the releasing thread grants
//    it and posts a message to the waiter's worker (Worker::Post), which
//    resumes it there. The mutex is held only to edit the table, never across
//    I/O or a wake-up.
//
//  - Aligned writes (WRITE, TRIM, WRITE_ZEROES) pay nothing while no
//    read-modify-write is pending: each worker counts its aligned writes in
//    flight in a cache line of its own (one uncontended atomic add and sub per
//    write, no mutex, no shared cache line written). A read-modify-write
//    first raises `rmw_pending_`, then is granted only once every worker's
//    count is zero, i.e. the aligned writes that were already in flight have
//    finished. While rmw_pending_ is raised, new aligned writes take the range
//    lock like a read-modify-write does, and so are ordered with them; when
//    the last read-modify-write is done they return to the free path. The
//    writer's "count, then check the flag" and the RMW's "raise the flag, then
//    check the counts" are sequentially consistent, so at least one side sees
//    the other (Dekker): either the write takes the lock, or the RMW waits for
//    the write.
//
//  - Reads take nothing. A read overlapping a write in flight may return old
//    or new data per block, which the NBD spec allows (the client orders its
//    own overlapping requests); a read never writes, so it cannot lose data.
//
// A grant whose wake-up message never runs (the waiter's worker is destroyed
// with it queued, at shutdown) is released when the message is destroyed, so
// the other workers' writes to that range go on.
//
// Lifetime: owned by the server (one per export, created before the workers
// and destroyed after them). Thread-safety: every method may be called from
// any worker thread; a Guard is released on the thread that acquired it.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "ringline/internal/promise_base.h"
#include "ringline/task.h"
#include "ringline/worker.h"

namespace blockserve {

class WriteOrder {
 public:
  // `workers`: how many workers serve the export (their Worker::index() is
  // below it).
  explicit WriteOrder(uint32_t workers);
  WriteOrder(const WriteOrder&) = delete;
  WriteOrder& operator=(const WriteOrder&) = delete;
  ~WriteOrder();

  // What a Guard holds. Move-only; releases on destruction.
  class Guard {
   public:
    Guard() = default;
    Guard(Guard&& o) noexcept;
    Guard& operator=(Guard&& o) noexcept;
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    ~Guard() { Release(); }
    void Release();
    explicit operator bool() const { return kind_ != Kind::kNone; }

   private:
    friend class WriteOrder;
    enum class Kind : uint8_t { kNone, kFast, kLocked };
    WriteOrder* order_ = nullptr;
    Kind kind_ = Kind::kNone;
    uint32_t worker_ = 0;   // kFast: the counter to decrement
    uint64_t lock_id_ = 0;  // kLocked: the table entry
    bool rmw_ = false;      // kLocked: lowered rmw_pending_ on release
  };

  // Before an aligned write: while no read-modify-write is pending, a Guard
  // that costs one atomic add (and a sub on release); else an empty Guard, and
  // the caller waits for LockAligned. Split so the free path is no coroutine.
  Guard TryAligned();
  // The aligned write's slow path: waits for the range lock on [begin, end).
  ringline::Task<Guard> LockAligned(uint64_t begin, uint64_t end);
  // Before a read-modify-write of the block-aligned range [begin, end): waits
  // for the aligned writes already in flight and for overlapping locks.
  ringline::Task<Guard> ReadModifyWrite(uint64_t begin, uint64_t end);

  // For tests and metrics: locks held, requests waiting.
  std::size_t held() const;
  std::size_t waiting() const;
  // Counters since start, readable from any thread: read-modify-writes,
  // aligned writes that took the lock (an RMW was pending), and requests of
  // either kind that had to wait.
  uint64_t read_modify_writes() const { return rmw_total_.load(std::memory_order_relaxed); }
  uint64_t locked_aligned_writes() const { return locked_aligned_.load(std::memory_order_relaxed); }
  uint64_t waits() const { return waits_.load(std::memory_order_relaxed); }

 private:
  struct Waiter;
  struct Held {
    uint64_t id;
    uint64_t begin;
    uint64_t end;
  };
  class LockAwaiter;

  std::atomic<uint32_t>& Counter(uint32_t worker) { return counters_[worker].value; }
  bool Drained() const;
  bool Conflicts(uint64_t begin, uint64_t end, std::size_t waiters_before) const;
  // Grants every waiter that can go now (mu_ held); returns them to wake.
  void GrantLocked(std::vector<std::shared_ptr<Waiter>>& wake);
  static void Wake(std::vector<std::shared_ptr<Waiter>>& wake);
  void Unlock(uint64_t id, bool rmw);
  void FastDone(uint32_t worker);

  struct alignas(64) PaddedCounter {
    std::atomic<uint32_t> value{0};
  };
  const uint32_t workers_;
  std::unique_ptr<PaddedCounter[]> counters_;
  std::atomic<uint32_t> rmw_pending_{0};
  std::atomic<uint64_t> rmw_total_{0};
  std::atomic<uint64_t> locked_aligned_{0};
  std::atomic<uint64_t> waits_{0};

  mutable std::mutex mu_;
  uint64_t next_id_ = 1;                          // guarded by mu_
  std::vector<Held> held_;                        // guarded by mu_
  std::vector<std::shared_ptr<Waiter>> waiters_;  // guarded by mu_, FIFO
};

}  // namespace blockserve
