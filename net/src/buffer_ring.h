#pragma once
// BufferRing: a provided buffer ring (IORING_REGISTER_PBUF_RING) built from
// liburing 2.3's primitives (io_uring_setup_buf_ring is 2.4).
//
// Memory: the ring of buffer descriptors and the buffers themselves are two
// anonymous mappings owned by this object. The kernel picks a buffer only while
// it issues a receive, which with DEFER_TASKRUN happens inside this thread's
// io_uring_enter (and under the ring lock with SQPOLL), so unregistering the
// group first and unmapping afterwards never pulls memory from under a receive.
// Buffers handed back with Return() become visible to the kernel only at
// Publish(), so a whole loop iteration's worth is replenished with one
// store-release of the tail.
//
// Warm buffers: the kernel takes buffers in ring order, so a ring offering
// all `count` buffers cycles a receive through every one of them (8 MiB at
// 512 x 16 KiB), and the kernel's copy lands in memory long out of the CPU's
// caches: 0.42-0.72 us of a 4 KiB request against 0.21-0.24 us with 32 buffers
// (BENCHMARKS.md, "Warm receive buffers"). So only a window of the buffers is
// offered, refilled from the ones returned last (a LIFO of spare buffers);
// the window doubles (up to `count`) when an iteration leaves less than a
// quarter of it, which is also what an empty ring (ENOBUFS) does, and halves
// back after kWindowEpoch publishes in which no iteration took more than a
// quarter of it.
// Thread-safety: owned by one worker; used only on its thread.

#include <liburing.h>

#include <cassert>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"

namespace ringline {
class Ring;
}

namespace ringline::net::detail {

class BufferRing {
 public:
  // `count` must be a power of two in [1, 32768]; `size` is rounded up to 64.
  static absl::StatusOr<std::unique_ptr<BufferRing>> Create(Ring& ring, uint16_t group,
                                                            uint32_t count, uint32_t size);
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;
  ~BufferRing();

  uint16_t group() const { return group_; }
  uint32_t count() const { return count_; }
  uint32_t buffer_size() const { return size_; }
  uint8_t* Addr(uint16_t bid) const { return buffers_ + std::size_t{bid} * size_; }

  // A buffer a connection holds after its completion instead of copying it out
  // (net/src/receiver.h): its unread bytes and the next buffer the same
  // connection holds. Each buffer is held by at most one connection at a time,
  // so one entry per buffer makes every connection's FIFO of held buffers
  // without memory per connection. Valid from the buffer's completion until
  // it is returned.
  static constexpr uint16_t kNoBuffer = 0xFFFF;  // count is at most 32768
  struct Held {
    uint32_t off = 0;
    uint32_t len = 0;
    uint16_t next = kNoBuffer;
  };
  Held& held(uint16_t bid) { return held_[bid]; }

  // Gives buffer `bid` back (its bytes have been copied out).
  void Return(uint16_t bid);
  // Adapts the window to the iteration that just ran, then offers the kernel
  // spare buffers, the ones returned last first, until the window is full;
  // returns how many it offered.
  uint32_t Publish();
  // Buffers returned since the last Publish().
  uint32_t pending() const { return pending_; }
  // Buffers the kernel may currently pick.
  uint32_t available() const { return available_; }
  // How many buffers Publish() keeps offered (kMinWindow..count).
  uint32_t window() const { return window_; }
  void Taken() {
    assert(available_ > 0 && "a completion took a buffer the ring did not offer");
    --available_;
  }

  static constexpr uint32_t kMinWindow = 32;
  static constexpr uint32_t kWindowEpoch = 1024;

 private:
  BufferRing(Ring& ring, uint16_t group, uint32_t count, uint32_t size)
      : ring_(ring), group_(group), count_(count), size_(size) {}
  // Offers spare buffers, the one returned last first, until `window_` are
  // offered (or none is spare); one store-release of the tail. Returns how many.
  uint32_t Offer();

  Ring& ring_;
  uint16_t group_;
  uint32_t count_;
  uint32_t size_;
  io_uring_buf_ring* br_ = nullptr;
  std::size_t br_bytes_ = 0;
  uint8_t* buffers_ = nullptr;
  std::size_t buffers_bytes_ = 0;
  bool registered_ = false;
  uint32_t pending_ = 0;
  uint32_t available_ = 0;
  uint32_t window_ = 0;
  // Window bookkeeping: publishes in this epoch, and the fewest buffers an
  // iteration left offered in it.
  uint32_t epoch_publishes_ = 0;
  uint32_t epoch_min_left_ = UINT32_MAX;
  // Buffers neither offered nor held, the one returned last at the back.
  // Capacity `count`, reserved at creation: no allocation afterwards.
  std::vector<uint16_t> spare_;
  std::vector<Held> held_;
};

}  // namespace ringline::net::detail
