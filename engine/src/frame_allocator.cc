#include "ringline/frame_allocator.h"

#include <cstdlib>
#include <new>

namespace ringline {
namespace {

// Under AddressSanitizer recycling would hide use-after-free: go to the heap.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kRecycle = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kRecycle = false;
#else
constexpr bool kRecycle = true;
#endif
#else
constexpr bool kRecycle = true;
#endif

constexpr std::size_t kGranule = 64;
constexpr std::size_t kClasses = 64;  // frames up to 4 KiB are recycled
constexpr std::size_t kMaxCached = 4096;

struct FreeBlock {
  FreeBlock* next;
};

struct Cache {
  FreeBlock* heads[kClasses] = {};
  std::size_t counts[kClasses] = {};
  ~Cache() {
    for (auto*& head : heads) {
      while (head) {
        FreeBlock* b = head;
        head = b->next;
        ::operator delete(b);
      }
    }
  }
};

thread_local Cache cache;

std::size_t ClassOf(std::size_t size) { return (size + kGranule - 1) / kGranule - 1; }

}  // namespace

void* FrameAllocator::Allocate(std::size_t size) {
  const std::size_t c = ClassOf(size);
  if (kRecycle && c < kClasses) {
    if (FreeBlock* b = cache.heads[c]) {
      cache.heads[c] = b->next;
      --cache.counts[c];
      return b;
    }
    return ::operator new((c + 1) * kGranule);
  }
  return ::operator new(size);
}

void FrameAllocator::Free(void* p, std::size_t size) noexcept {
  const std::size_t c = ClassOf(size);
  if (kRecycle && c < kClasses && cache.counts[c] < kMaxCached) {
    auto* b = static_cast<FreeBlock*>(p);
    b->next = cache.heads[c];
    cache.heads[c] = b;
    ++cache.counts[c];
    return;
  }
  ::operator delete(p);
}

}  // namespace ringline
