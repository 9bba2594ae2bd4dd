#pragma once
// BlockingHelper: one lazily started thread that runs blocking system calls
// with no io_uring form (BLKDISCARD) off the worker thread (internal to
// DirectFile).
//
//   int res = co_await helper.Run(worker, [fd, range] { return ioctl(...) ? -errno : 0; });
//
// The call runs on the helper thread and must only use values it captured (no
// pointers into the awaiting coroutine's frame). Its result comes back to the
// worker through Worker::Post and resumes the awaiting task there. If that task
// is destroyed first, the call still runs to its end and its result is dropped.
// Thread-safety: Run() is called on the worker's thread. The destructor waits
// for queued calls to finish; the worker must outlive the helper.

#include <condition_variable>
#include <coroutine>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/functional/any_invocable.h"
#include "ringline/internal/promise_base.h"
#include "ringline/worker.h"

namespace ringline::block {

class BlockingHelper {
 public:
  BlockingHelper() = default;
  BlockingHelper(const BlockingHelper&) = delete;
  BlockingHelper& operator=(const BlockingHelper&) = delete;
  ~BlockingHelper();

  // Shared between the awaiter (worker thread) and the posted completion
  // (also run on the worker thread); the helper thread only moves it along.
  struct CallState {
    PromiseBase* waiter = nullptr;
    int result = 0;
    bool done = false;
    bool abandoned = false;
  };

  class [[nodiscard]] CallAwaiter {
   public:
    CallAwaiter(BlockingHelper* helper, Worker* worker, absl::AnyInvocable<int()> call)
        : helper_(helper), worker_(worker), call_(std::move(call)) {}
    CallAwaiter(CallAwaiter&&) = default;  // before awaiting only
    CallAwaiter(const CallAwaiter&) = delete;
    CallAwaiter& operator=(const CallAwaiter&) = delete;
    ~CallAwaiter() {
      if (state_ && !state_->done) state_->abandoned = true;
    }

    bool await_ready() const noexcept { return false; }
    template <EnginePromise P>
    void await_suspend(std::coroutine_handle<P> h) {
      state_ = std::make_shared<CallState>();
      state_->waiter = &h.promise();
      helper_->Enqueue(worker_, state_, std::move(call_));
    }
    int await_resume() const noexcept { return state_->result; }

   private:
    BlockingHelper* helper_;
    Worker* worker_;
    absl::AnyInvocable<int()> call_;
    std::shared_ptr<CallState> state_;
  };

  // Runs `call` on the helper thread; the awaiting task resumes on `worker`
  // with its result (by convention 0 or a negated errno).
  CallAwaiter Run(Worker& worker, absl::AnyInvocable<int()> call) {
    return CallAwaiter(this, &worker, std::move(call));
  }

 private:
  struct Job {
    Worker* worker;
    std::shared_ptr<CallState> state;
    absl::AnyInvocable<int()> call;
  };
  void Enqueue(Worker* worker, std::shared_ptr<CallState> state, absl::AnyInvocable<int()> call);
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;  // guarded by mu_
  bool stop_ = false;     // guarded by mu_
  std::thread thread_;    // started by the first Enqueue
};

}  // namespace ringline::block
