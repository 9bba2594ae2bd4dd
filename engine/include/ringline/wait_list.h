#pragma once
// WaitList: the engine's one way for a task to wait until another task (or a
// completion handler) of the same worker says so.
//
// A FIFO of suspended tasks. NotifyOne() wakes the longest waiter, NotifyAll()
// every waiter; a woken task resumes from the worker's ready queue, after the
// notifier has returned (Notify never runs a waiter inline). A notification
// with nobody waiting is not stored: wait on a condition in a loop,
//
//   while (free_slots_.empty()) co_await slot_freed_.Wait();
//   ...
//   free_slots_.push_back(slot);
//   slot_freed_.NotifyOne();
//
// Cancellation is safe at every point. A waiter whose task is destroyed while
// it waits leaves the list. A waiter that was handed a NotifyOne() wake-up and
// is destroyed before it resumed passes the wake-up on to the next waiter, so
// no wake-up is lost.
//
// Owners that hand something to the waiter they wake (a buffer, a queue-depth
// place) derive their awaiter from WaitNode, pick the waiter with front() and
// wake it with Wake(); the handed-over thing lives in the awaiter, whose
// destructor passes it on if the task never takes it (so Wake() itself passes
// nothing on).
//
// Thread-safety: worker-local; every call on the worker's thread.
// Lifetime: a list must outlive the awaiters queued on it (destroying a list
// with waiters is a bug and asserts in debug builds). A woken awaiter no longer
// refers to the list, except one woken by NotifyOne() until it resumes.

#include <cassert>
#include <coroutine>
#include <cstddef>
#include <cstdint>

#include "ringline/internal/intrusive_list.h"
#include "ringline/internal/promise_base.h"

namespace ringline {

class WaitList;

// A suspended task's place in a WaitList: the base of every awaiter that waits
// in one. It supplies await_suspend (park at the tail of the list); the derived
// awaiter supplies await_ready and an await_resume that calls Resumed().
// Movable only before it is awaited.
class WaitNode : public internal::ListHook {
 public:
  enum class State : uint8_t {
    kIdle,       // not waiting (not yet suspended, or resumed)
    kQueued,     // in the list
    kWoken,      // taken off the list by Wake() or NotifyAll(), not yet resumed
    kWokenByOne  // taken off by NotifyOne(), not yet resumed: passes it on if destroyed
  };

  WaitNode(const WaitNode&) = delete;
  WaitNode& operator=(const WaitNode&) = delete;

  template <EnginePromise P>
  void await_suspend(std::coroutine_handle<P> h) {
    Park(&h.promise());
  }

  State state() const { return state_; }
  bool queued() const { return state_ == State::kQueued; }

 protected:
  explicit WaitNode(WaitList* list) : list_(list) {}
  WaitNode(WaitNode&& o) noexcept : list_(o.list_) {
    assert(o.state_ == State::kIdle && "a WaitNode moved after it was awaited");
  }
  ~WaitNode() { Leave(); }

  // The list the next await_suspend parks in (only while idle).
  void set_list(WaitList* list) {
    assert(state_ == State::kIdle);
    list_ = list;
  }
  // From await_resume: the task runs again.
  void Resumed() { state_ = State::kIdle; }
  // Leaves the list now: unlinks a queued node, passes on a NotifyOne()
  // wake-up not yet taken. The destructor does this; a derived destructor that
  // must update its owner's counts after the unlink calls it first.
  void Leave();

 private:
  friend class WaitList;
  void Park(PromiseBase* p);

  WaitList* list_;
  PromiseBase* promise_ = nullptr;  // the suspended task, while queued or woken
  State state_ = State::kIdle;
};

class WaitList {
 public:
  WaitList() = default;
  WaitList(const WaitList&) = delete;
  WaitList& operator=(const WaitList&) = delete;
  ~WaitList() { assert(empty() && "WaitList destroyed with tasks waiting on it"); }

  bool empty() const { return waiters_.empty(); }
  std::size_t size() const { return waiters_.size(); }

  // Wakes the longest waiter; false when nobody waits.
  bool NotifyOne();
  // Wakes every waiter (in FIFO order); returns how many.
  std::size_t NotifyAll();

  // The longest waiter (null when none), for owners that hand it something.
  WaitNode* front() const { return waiters_.front(); }
  // Takes `node` (queued in this list) off the list and schedules its task.
  void Wake(WaitNode& node) { WakeAs(node, WaitNode::State::kWoken); }
  // Moves `node` (queued in this list) to the tail of `other`, still waiting:
  // for an owner whose waiter now waits for something else.
  void MoveTo(WaitNode& node, WaitList& other);

  // Awaiter of Wait(): always suspends; resumes when notified.
  class [[nodiscard]] Awaiter : public WaitNode {
   public:
    explicit Awaiter(WaitList* list) : WaitNode(list) {}
    Awaiter(Awaiter&& o) noexcept = default;
    bool await_ready() const noexcept { return false; }
    void await_resume() noexcept { Resumed(); }
  };
  Awaiter Wait() { return Awaiter(this); }

 private:
  friend class WaitNode;
  void WakeAs(WaitNode& node, WaitNode::State state);

  internal::IntrusiveList<WaitNode> waiters_;
};

}  // namespace ringline
