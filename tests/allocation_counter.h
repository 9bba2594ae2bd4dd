#pragma once
// Counts the global allocations a thread makes while its `t_counting` is true,
// for the tests that prove a steady state allocates nothing. It replaces the
// global operator new/delete, so include it from exactly one file of a test
// binary. Other threads (peers, the kernel's helpers) are never counted.

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace {
std::atomic<uint64_t> g_allocations{0};
thread_local bool t_counting = false;
}  // namespace

// The replacements pair malloc with free; g++ cannot see that they replace
// the global operators and warns at every inlined new/delete pair.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  if (t_counting) g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop
