#pragma once
// Non-temporal (streaming) stores and the ring. Such stores are weakly
// ordered: until a store fence, the data may sit in the core's write-combining
// buffers, unseen by another core that sees a later ordinary store. Code that
// makes them on a worker thread (block::MappedFile's streaming copies) defers
// the fence to the worker's ring, which fences right before it next enters
// the kernel: nothing the kernel does after (a send of the reply that says the
// data is written) can be seen before the data, and one fence covers every
// copy of the iteration instead of one after each (at a fixed 60k 4 KiB NBD
// writes a second: 121.2k -> 123.5k IOPS per server CPU-s, BENCHMARKS.md
// session 10; the store buffer still drains after each copy). Thread-safety:
// per thread.

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace ringline::internal {

// Set after non-temporal stores not fenced yet; cleared by FenceStores().
inline thread_local bool t_unfenced_stores = false;

// After non-temporal stores, on a worker's thread (Worker::CurrentOrNull()).
inline void DeferStoreFence() { t_unfenced_stores = true; }

// Ring, before each io_uring_enter: fences what DeferStoreFence() noted.
inline void FenceStores() {
#if defined(__SSE2__)
  if (t_unfenced_stores) {
    _mm_sfence();
    t_unfenced_stores = false;
  }
#endif
}

}  // namespace ringline::internal
