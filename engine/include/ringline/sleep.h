#pragma once
// Sleep and SleepUntil: suspend the current task on the worker's timer heap.
// A sleep whose task is destroyed removes itself from the heap.

#include <chrono>
#include <coroutine>

#include "ringline/internal/promise_base.h"
#include "ringline/task.h"
#include "ringline/timer_queue.h"
#include "ringline/worker.h"

namespace ringline {

class [[nodiscard]] SleepAwaiter : public TimerNode {
 public:
  explicit SleepAwaiter(Clock::time_point deadline) { this->deadline = deadline; }
  SleepAwaiter(SleepAwaiter&& o) noexcept : TimerNode() { deadline = o.deadline; }
  ~SleepAwaiter() {
    if (queued()) worker_->timers().Remove(this);
  }

  bool await_ready() const noexcept { return false; }
  template <EnginePromise P>
  void await_suspend(std::coroutine_handle<P> h) {
    worker_ = &Worker::Current();
    waiter = &h.promise();
    worker_->timers().Insert(this);
    worker_->metrics().timers_armed.Add();
  }
  void await_resume() const noexcept {}

 private:
  Worker* worker_ = nullptr;
};

inline SleepAwaiter SleepUntil(Clock::time_point deadline) { return SleepAwaiter(deadline); }

template <typename Rep, typename Period>
SleepAwaiter Sleep(std::chrono::duration<Rep, Period> d) {
  return SleepAwaiter(Clock::now() + std::chrono::duration_cast<Clock::duration>(d));
}

// The same as a Task (for the combinators).
inline Task<> SleepTask(Clock::duration d) { co_await Sleep(d); }

}  // namespace ringline
