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
// flight (docs/io_uring-rules.md R1). The finish callable turns the slot into the result
// (e.g. hands back a held Buffer). The operation resumes its coroutine only on
// the final completion (for zero-copy sends: after the notification).

#include <liburing.h>

#include <coroutine>
#include <cstdint>
#include <utility>

#include "ringline/internal/op_slab.h"
#include "ringline/internal/poll_ring.h"
#include "ringline/internal/promise_base.h"
#include "ringline/io_result.h"
#include "ringline/worker.h"

namespace ringline {

struct DefaultFinish {
  IoResult operator()(OpSlot& slot) const { return IoResult{slot.res, slot.flags}; }
};

// The submission entry an operation needs.
enum class SqeKind : uint8_t {
  kNormal,
  // A 128-byte entry whose command area (80 bytes) is cleared first, for
  // IORING_OP_URING_CMD (e.g. NVMe passthrough; liburing 2.3's prep helpers
  // do not clear it), on the worker's ring or, when the awaiter is built with
  // `polled`, on its IOPOLL ring (internal/poll_ring.h), which the caller has
  // created (Worker::internals().poll_ring()) before submitting.
  kCommand128,
};

// The kind of entry is a template argument so that the common path
// (kNormal) carries no per-operation test of it.
template <typename Prep, typename Finish = DefaultFinish, SqeKind kKind = SqeKind::kNormal>
class [[nodiscard]] OpAwaiter {
 public:
  explicit OpAwaiter(OpTag tag, Prep prep, Finish finish = {}, bool polled = false)
      : tag_(tag), polled_(polled), prep_(std::move(prep)), finish_(std::move(finish)) {}
  // Movable only before it is awaited (to wrap it in a Task).
  OpAwaiter(OpAwaiter&& o) noexcept
      : tag_(o.tag_),
        polled_(o.polled_),
        prep_(std::move(o.prep_)),
        finish_(std::move(o.finish_)) {}
  OpAwaiter(const OpAwaiter&) = delete;
  OpAwaiter& operator=(const OpAwaiter&) = delete;
  OpAwaiter& operator=(OpAwaiter&&) = delete;
  ~OpAwaiter() {
    if (slot_) OpSlab::Of(*slot_).Orphan(*slot_);
  }

  bool await_ready() const noexcept { return false; }
  template <EnginePromise P>
  void await_suspend(std::coroutine_handle<P> h) {
    internal::WorkerInternals w = Worker::Current().internals();
    OpSlab& slab = w.slab();
    OpSlot& slot = slab.Allocate(tag_);
    io_uring_sqe* sqe;
    if constexpr (kKind == SqeKind::kNormal) {
      sqe = w.ring().GetSqe();
    } else if (polled_) {
      sqe = (*w.poll_ring())->GetSqe128();
    } else {
      sqe = w.ring().GetSqe128();
    }
    prep_(sqe, slot);
    io_uring_sqe_set_data64(sqe, slot.user_data().raw());
    slab.SetWaiter(slot, &h.promise());
    // Only the slot: it knows its slab (OpSlab::Of), which outlives every task
    // of its worker.
    slot_ = &slot;
  }
  decltype(auto) await_resume() {
    OpSlot& slot = *slot_;
    auto result = finish_(slot);
    OpSlab::Of(slot).Consume(slot);
    // Cleared last, after the stores of Consume: the destructor, which runs
    // right after, then sees it null without reading it back.
    slot_ = nullptr;
    return result;
  }

 private:
  OpTag tag_;
  bool polled_;  // kCommand128: on the IOPOLL ring
  Prep prep_;
  Finish finish_;
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
// Submit() on a cleared 128-byte entry (SqeKind::kCommand128), on the worker's
// IOPOLL ring when `polled`.
template <typename Prep, typename Finish>
OpAwaiter<Prep, Finish, SqeKind::kCommand128> SubmitCommand128(OpTag tag, Prep prep, Finish finish,
                                                               bool polled = false) {
  return OpAwaiter<Prep, Finish, SqeKind::kCommand128>(tag, std::move(prep), std::move(finish),
                                                       polled);
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
