#pragma once
// INTERNAL to ringline: installed only because public templates need it; not
// part of the API and may change without notice. Applications include the
// headers in ringline/ (ringline/ringline.h).
//
// The base of every coroutine promise the engine schedules.
//
// A promise carries an intrusive hook into its worker's ready queue. A frame that
// is destroyed while scheduled unlinks itself, so the ready queue never holds a
// dangling handle (this is what makes destroying a suspended task safe).

#include <coroutine>
#include <cstddef>
#include <type_traits>

#include "ringline/frame_allocator.h"
#include "ringline/internal/intrusive_list.h"

namespace ringline {

class ReadyQueue;

class PromiseBase : public internal::ListHook {
 public:
  PromiseBase() = default;
  PromiseBase(const PromiseBase&) = delete;
  PromiseBase& operator=(const PromiseBase&) = delete;
  ~PromiseBase();

  // The coroutine this promise belongs to; set by the derived promise.
  std::coroutine_handle<> self() const { return self_; }
  bool scheduled() const { return linked(); }

  static void* operator new(std::size_t size) { return FrameAllocator::Allocate(size); }
  static void operator delete(void* p, std::size_t size) noexcept { FrameAllocator::Free(p, size); }

 protected:
  std::coroutine_handle<> self_;
};

// FIFO of promises ready to resume; owned by one worker, used only on its thread.
class ReadyQueue {
 public:
  ReadyQueue() = default;
  ReadyQueue(const ReadyQueue&) = delete;
  ReadyQueue& operator=(const ReadyQueue&) = delete;
  ~ReadyQueue();

  // Appends `p` unless it is already queued (a second wake-up is a no-op).
  void Push(PromiseBase* p) {
    if (!p->scheduled()) list_.push_back(*p);
  }
  // Removes and returns the first promise, or nullptr.
  PromiseBase* Pop() { return list_.pop_front(); }
  void Remove(PromiseBase* p) { list_.remove(*p); }
  bool empty() const { return list_.empty(); }
  std::size_t size() const { return list_.size(); }

 private:
  internal::IntrusiveList<PromiseBase> list_;
};

// Awaiters that park a coroutine and later schedule it need its PromiseBase.
template <typename P>
concept EnginePromise = std::is_base_of_v<PromiseBase, P>;

}  // namespace ringline
