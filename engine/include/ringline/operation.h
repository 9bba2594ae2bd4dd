#pragma once
// Awaitable io_uring operations.
//
//   IoResult r = co_await Submit(OpTag::kNop, [](io_uring_sqe* sqe, OpSlot&) {
//     io_uring_prep_nop(sqe);
//   });
//
// The prep callable fills the SQE; anything the kernel reads or writes through a
// pointer must be placed in the slot (slot.storage, slot.held) — never in the
// coroutine frame — because the frame may be destroyed while the operation is in
// flight (DESIGN.md rule 1). The finish callable turns the slot into the result
// (e.g. hands back a held Buffer). The operation resumes its coroutine only on
// the final completion (for zero-copy sends: after the notification).

#include <liburing.h>

#include <coroutine>
#include <utility>

#include "ringline/io_result.h"
#include "ringline/op_slab.h"
#include "ringline/promise_base.h"
#include "ringline/worker.h"

namespace ringline {

struct DefaultFinish {
  IoResult operator()(OpSlot& slot) const { return IoResult{slot.res, slot.flags}; }
};

template <typename Prep, typename Finish = DefaultFinish>
class [[nodiscard]] OpAwaiter {
 public:
  OpAwaiter(OpTag tag, Prep prep, Finish finish = {})
      : tag_(tag), prep_(std::move(prep)), finish_(std::move(finish)) {}
  // Movable only before it is awaited (to wrap it in a Task).
  OpAwaiter(OpAwaiter&& o) noexcept
      : tag_(o.tag_), prep_(std::move(o.prep_)), finish_(std::move(o.finish_)) {}
  OpAwaiter(const OpAwaiter&) = delete;
  OpAwaiter& operator=(const OpAwaiter&) = delete;
  OpAwaiter& operator=(OpAwaiter&&) = delete;
  ~OpAwaiter() {
    if (slot_) worker_->slab().Orphan(*slot_);
  }

  bool await_ready() const noexcept { return false; }
  template <EnginePromise P>
  void await_suspend(std::coroutine_handle<P> h) {
    worker_ = &Worker::Current();
    OpSlot& slot = worker_->slab().Allocate(tag_);
    // Commands that use the SQE128 command area get the whole entry cleared.
    io_uring_sqe* sqe =
        tag_ == OpTag::kNvmeCmd ? worker_->ring().GetSqe128() : worker_->ring().GetSqe();
    prep_(sqe, slot);
    io_uring_sqe_set_data64(sqe, slot.user_data().raw());
    worker_->slab().SetWaiter(slot, &h.promise());
    slot_ = &slot;
  }
  decltype(auto) await_resume() {
    OpSlot* slot = std::exchange(slot_, nullptr);
    auto result = finish_(*slot);
    worker_->slab().Consume(*slot);
    return result;
  }

 private:
  OpTag tag_;
  Prep prep_;
  Finish finish_;
  Worker* worker_ = nullptr;
  OpSlot* slot_ = nullptr;
};

template <typename Prep>
OpAwaiter<Prep> Submit(OpTag tag, Prep prep) {
  return OpAwaiter<Prep>(tag, std::move(prep));
}
template <typename Prep, typename Finish>
OpAwaiter<Prep, Finish> Submit(OpTag tag, Prep prep, Finish finish) {
  return OpAwaiter<Prep, Finish>(tag, std::move(prep), std::move(finish));
}

// A no-op through the ring (benchmarks, tests, a cheap yield via the kernel).
inline auto Nop() {
  return Submit(OpTag::kNop, [](io_uring_sqe* sqe, OpSlot&) { io_uring_prep_nop(sqe); });
}

// A kernel timeout (IORING_OP_TIMEOUT): completes with -ETIME after `ns`.
// Mostly for tests of cancellation; sleeps use the worker's timer heap instead.
inline auto KernelTimeout(int64_t ns) {
  return Submit(OpTag::kTimeout, [ns](io_uring_sqe* sqe, OpSlot& slot) {
    slot.storage.ts.tv_sec = ns / 1'000'000'000;
    slot.storage.ts.tv_nsec = ns % 1'000'000'000;
    io_uring_prep_timeout(sqe, &slot.storage.ts, 0, 0);
  });
}

}  // namespace ringline
