#pragma once
// Recycling allocator for coroutine frames and small per-task state.
//
// Frames are carved from the global heap once and then recycled through
// thread-local free lists per 64-byte size class, so spawning and awaiting tasks
// allocates nothing in steady state. A block freed on another thread joins that
// thread's list (blocks are independent heap allocations, so this is safe).
// Thread-safety: every function may be called from any thread.

#include <cstddef>

namespace ringline {

class FrameAllocator {
 public:
  static void* Allocate(std::size_t size);
  static void Free(void* p, std::size_t size) noexcept;
};

}  // namespace ringline
