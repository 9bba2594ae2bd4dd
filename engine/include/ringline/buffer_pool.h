#pragma once
// BufferPool: a worker's page-aligned I/O buffers of one size, registered with
// its ring so block reads and writes use READ_FIXED/WRITE_FIXED (and NVMe
// passthrough IORING_URING_CMD_FIXED).
//
// Acquiring from an empty pool waits, in FIFO order, until a buffer comes back.
// When RLIMIT_MEMLOCK is too small for the registration, the pool falls back to
// unregistered memory and logs one warning per process naming the limit and how
// to raise it. The memory is one mmap, released when the pool is destroyed.
// Thread-safety: worker-local. Every Buffer must be returned (destroyed) before
// the pool is destroyed.

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "ringline/buffer.h"
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

  // Waits (FIFO) for a free buffer. A buffer handed to an awaiter whose task is
  // destroyed before it resumed goes back to the pool (and so to the next
  // waiter) through the awaiter's Buffer member.
  class [[nodiscard]] AcquireAwaiter : public WaitNode {
   public:
    explicit AcquireAwaiter(BufferPool* pool) : WaitNode(&pool->waiters_), pool_(pool) {}
    AcquireAwaiter(AcquireAwaiter&& o) noexcept = default;  // before awaiting only
    bool await_ready();
    Buffer await_resume() {
      Resumed();
      return std::move(buffer_);
    }

   private:
    friend class BufferPool;
    BufferPool* pool_;
    Buffer buffer_;
  };
  AcquireAwaiter Acquire() { return AcquireAwaiter(this); }

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
};

}  // namespace ringline
