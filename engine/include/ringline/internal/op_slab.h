#pragma once
// INTERNAL to ringline: installed only because public templates need it; not
// part of the API and may change without notice. Applications include the
// headers in ringline/ (ringline/ringline.h).
//
// OpSlab: engine-owned state for every in-flight io_uring operation.
//
// Each SQE's user_data names a slot (tag, index, generation; user_data.h). The
// slot, not the coroutine frame, holds everything the kernel may touch: small
// argument structs (timespec, msghdr, iovecs, sockaddr) in `storage` and owned
// Buffers in `held`. Slots live in fixed-size chunks, so their addresses never
// move while the kernel holds pointers into them.
//
// Lifecycle (docs/io_uring-rules.md R1 and R3):
//   Allocate -> in flight -> completions (F_MORE keeps it in flight) -> final CQE.
//   If the awaiting coroutine is destroyed first, the slot is orphaned: an
//   async-cancel is submitted and the slot (with its buffers) is released only
//   when the final completion arrives. A completion for a released or reused
//   slot fails the generation check and is dropped.
// Thread-safety: owned by one worker; used only on its thread.

#include <liburing.h>
#include <linux/time_types.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cassert>
#include <cstdint>
#include <memory>
#include <vector>

#include "ringline/buffer.h"
#include "ringline/internal/promise_base.h"
#include "ringline/internal/user_data.h"

namespace ringline {

class OpSlot;
class OpSlab;

// A completion routed to a slot's handler instead of a waiting coroutine
// (multishot operations and other long-lived owners).
using CompletionHandler = void (*)(void* owner, OpSlot& slot, int32_t res, uint32_t flags);

class OpSlot {
 public:
  static constexpr int kMaxIov = 4;

  OpSlot() = default;
  OpSlot(const OpSlot&) = delete;
  OpSlot& operator=(const OpSlot&) = delete;

  // The user_data of the slot's current operation (tag, generation, index).
  UserData user_data() const {
    assert(state_ != State::kFree && "user_data() of a free slot");
    return UserData(live_user_data_);
  }

  // Argument memory the kernel reads or writes until the final completion.
  union Storage {
    Storage() {}
    __kernel_timespec ts;
    uint64_t eventfd_value;
    struct {
      msghdr msg;
      iovec iov[kMaxIov];
      sockaddr_storage addr;
    } msg;
    struct {
      sockaddr_storage addr;
      socklen_t addr_len;
    } sock;
    uint8_t bytes[256];
  } storage;
  // Buffers the operation owns until its final completion.
  Buffer held[2];

  // Result of the latest completion (for zero-copy sends: of the send, not of the
  // notification). `big` is the extra half of a 32-byte CQE (NVMe result dwords).
  // Written by every completion that carries a result before the owner sees
  // it; not reset on allocation (nothing reads them before a completion).
  int32_t res = 0;
  uint32_t flags = 0;
  uint64_t big[2] = {0, 0};

  OpTag tag = OpTag::kNone;
  uint32_t index = 0;
  // Bumped at every release, so a completion of an earlier operation on this
  // slot is recognised as stale (docs/io_uring-rules.md R3).
  uint32_t generation() const { return UserData(untagged_user_data_).generation(); }

 private:
  friend class OpSlab;
  // Where the slot is in its lifecycle (op_slab.h, top). The slab is its only
  // driver.
  enum class State : uint8_t {
    kFree,      // on the free list
    kInFlight,  // the kernel owns it: the final completion has not arrived
    kDone,      // the final completion arrived; the owner has not released it yet
    kOrphaned,  // in flight, and no one will consume the result: released at
                // the final completion
  };
  // user_data() while in use, kFreeUserData while free: Dispatch() validates
  // a completion (in use, same generation, same tag) with this one comparison.
  // kFreeUserData names slot index UINT32_MAX, which no slab reaches, so no
  // completion routed to this slot carries it.
  static constexpr uint64_t kFreeUserData = UINT64_MAX;
  uint64_t live_user_data_ = kFreeUserData;
  // The user_data of the slot's next operation without its tag (generation and
  // index): Allocate() only adds the tag.
  uint64_t untagged_user_data_ = 0;
  PromiseBase* waiter_ = nullptr;  // coroutine to wake on the final completion
  CompletionHandler handler_ = nullptr;
  void* owner_ = nullptr;
  OpSlot* next_free_ = nullptr;  // while free
  OpSlab* slab_ = nullptr;       // the slab the slot belongs to (set once)
  State state_ = State::kFree;
};

class Ring;

class OpSlab {
 public:
  // `ring` and `ready` must outlive the slab.
  OpSlab(Ring& ring, ReadyQueue& ready, uint32_t initial_slots);
  OpSlab(const OpSlab&) = delete;
  OpSlab& operator=(const OpSlab&) = delete;
  ~OpSlab();

  // A fresh slot for one operation; its result goes to `waiter` (set later via
  // SetWaiter) or to `handler`. Never fails: the slab grows by a chunk.
  OpSlot& Allocate(OpTag tag);
  OpSlot& AllocateWithHandler(OpTag tag, CompletionHandler handler, void* owner);
  void SetWaiter(OpSlot& slot, PromiseBase* waiter) { slot.waiter_ = waiter; }
  // The slab `slot` belongs to (so an awaiter need keep only its slot).
  static OpSlab& Of(const OpSlot& slot) { return *slot.slab_; }

  // True once the final completion has arrived and the result can be read.
  static bool Done(const OpSlot& slot) { return slot.state_ == OpSlot::State::kDone; }

  // The awaiting side has taken the result: release the slot now.
  void Consume(OpSlot& slot);
  // The awaiting side is gone (coroutine destroyed). Releases now if the kernel
  // is done, else cancels the operation and releases on the final completion.
  void Orphan(OpSlot& slot);
  // Submits an async cancel for the slot's operation (the slot stays owned).
  void Cancel(const OpSlot& slot);

  // Routes one completion. Returns false for a stale or unknown user_data
  // (counted in stale_completions()); an async-cancel's own completion
  // (OpTag::kCancel) names no slot and is dropped. `big` (may be null) is the
  // extra half of a 32-byte CQE. On the final completion of an awaited
  // operation its waiter is put on the ready queue.
  bool Dispatch(uint64_t user_data, int32_t res, uint32_t flags, const uint64_t* big);
  // Dispatch() for the worker loop, which resumes the waiter itself: on the
  // final completion of an awaited operation whose waiter is not already on the
  // ready queue, the waiter is returned instead of queued (the caller must
  // resume it, after which the slot may already be released or reused).
  // Otherwise returns null.
  // `big0` and `big1` are the extra half of the 32-byte CQE, by value.
  PromiseBase* DispatchTakingWaiter(uint64_t user_data, int32_t res, uint32_t flags, uint64_t big0,
                                    uint64_t big1);

  uint32_t in_flight() const { return in_use_; }
  uint32_t capacity() const { return capacity_; }
  // Completions dispatched so far whose user_data named no live operation
  // (stale, R3), not counting async-cancel completions, which name none.
  uint64_t stale_completions() const { return stale_; }

  // Cancels every in-flight operation (shutdown).
  void CancelAll();

 private:
  static constexpr uint32_t kChunk = 256;
  using State = OpSlot::State;
  void Grow();
  static void AssertAllocatable(OpTag tag);  // debug checks of Allocate()
  void Release(OpSlot& slot);
  static void ReleaseHeld(OpSlot& slot);  // returns held buffers to their pools
  // The cold half of Dispatch(): orphaned and handler-owned slots.
  // `big`: the extra half of the 32-byte CQE (two words).
  void DispatchToOwner(OpSlot& slot, int32_t res, uint32_t flags, const uint64_t big[2]);
  // Dispatch() and DispatchTakingWaiter(): one path, the waiter queued or
  // returned. `big` by value so that a completion read from the CQ stays in
  // registers.
  template <bool kTakeWaiter>
  PromiseBase* Route(uint64_t raw, int32_t res, uint32_t flags, uint64_t big0, uint64_t big1);
  // The cold half of Route(): a user_data that names no live slot.
  void NoLiveSlot(uint64_t raw);
  // The handler of an orphaned slot: the result is dropped, and the slot is
  // released at the final completion like any handler-owned slot.
  static void DropCompletion(void* owner, OpSlot& slot, int32_t res, uint32_t flags);

  Ring& ring_;
  ReadyQueue& ready_;
  // The slots, in chunks whose addresses never move (the kernel holds pointers
  // into them), and a flat index -> slot table for routing completions.
  std::vector<std::unique_ptr<OpSlot[]>> chunks_;
  std::vector<OpSlot*> by_index_;
  uint32_t capacity_ = 0;  // by_index_.size()
  OpSlot* free_head_ = nullptr;
  uint32_t in_use_ = 0;
  uint64_t stale_ = 0;
};

// The per-operation paths are inline: every awaited operation runs Allocate,
// Dispatch and Consume once, and they are a large part of the engine's own
// cost per operation (BENCHMARKS.md, engine).

inline OpSlot& OpSlab::Allocate(OpTag tag) {
#ifndef NDEBUG
  AssertAllocatable(tag);
#endif
  if (free_head_ == nullptr) [[unlikely]]
    Grow();
  OpSlot& s = *free_head_;
  assert(s.state_ == State::kFree && "a slot on the free list is in use");
  assert(UserData(s.untagged_user_data_).tag() == OpTag::kNone &&
         UserData(s.untagged_user_data_).index() == s.index);
  free_head_ = s.next_free_;
  s.tag = tag;
  s.live_user_data_ = s.untagged_user_data_ | UserData::Encode(tag, 0, 0).raw();
  // waiter_, handler_ and owner_ are null: a free slot never holds them.
  assert(!s.waiter_ && !s.handler_ && !s.owner_);
  s.state_ = State::kInFlight;
  ++in_use_;
  return s;
}

inline void OpSlab::Release(OpSlot& s) {
  assert(s.state_ == State::kDone && "a slot released while the kernel still owns it (rule R1)");
  assert(by_index_[s.index] == &s);
  // handler_ and owner_ are null here (awaited operations never set them;
  // the handler paths clear them first): not stored again.
  assert(!s.handler_ && !s.owner_);
  // Buffers go back to their pools only now: the kernel is done with them.
  // One test for both (an empty Buffer's data is null).
  if ((reinterpret_cast<uintptr_t>(s.held[0].data()) |
       reinterpret_cast<uintptr_t>(s.held[1].data())) != 0) [[unlikely]]
    ReleaseHeld(s);
  s.live_user_data_ = OpSlot::kFreeUserData;
  s.state_ = State::kFree;
  s.waiter_ = nullptr;
  // Next generation, same index, no tag: the generation is the top field, so
  // the addition wraps within its 24 bits and leaves the rest alone.
  s.untagged_user_data_ += UserData::Encode(OpTag::kNone, 1, 0).raw();
  s.next_free_ = free_head_;
  free_head_ = &s;
  --in_use_;
}

inline void OpSlab::Consume(OpSlot& s) {
  assert(s.state_ == State::kDone && "a result consumed before its final completion");
  Release(s);
}

template <bool kTakeWaiter>
inline PromiseBase* OpSlab::Route(uint64_t raw, int32_t res, uint32_t flags, uint64_t big0,
                                  uint64_t big1) {
  const uint32_t i = UserData(raw).index();
  // In use, same generation and same tag, in one comparison (an async-cancel's
  // user_data never matches: kCancel is never allocated).
  if (i >= capacity_ || by_index_[i]->live_user_data_ != raw) [[unlikely]] {
    NoLiveSlot(raw);
    return nullptr;
  }
  OpSlot& s = *by_index_[i];
  assert(s.state_ != State::kFree && s.generation() == UserData(raw).generation() &&
         s.tag == UserData(raw).tag());
  assert(s.state_ != State::kDone && "a completion after the final one for the same generation");

  // Handler-owned and orphaned slots (an orphaned slot's handler is
  // DropCompletion): one test.
  if (s.handler_) [[unlikely]] {
    const uint64_t big[2] = {big0, big1};
    DispatchToOwner(s, res, flags, big);
    return nullptr;
  }
  // An awaited operation: mostly one final completion with the result. A
  // zero-copy send completes twice: the send result (with F_MORE) and then the
  // notification (F_NOTIF) once the kernel no longer reads the buffer; keep
  // the send's result and wake on the notification.
  const auto keep_result = [&] {
    s.res = res;
    s.flags = flags;
    s.big[0] = big0;
    s.big[1] = big1;
  };
  if ((flags & (IORING_CQE_F_MORE | IORING_CQE_F_NOTIF)) == 0) [[likely]] {
    keep_result();
  } else {
    if (!(flags & IORING_CQE_F_NOTIF)) keep_result();
    if (flags & IORING_CQE_F_MORE) return nullptr;
  }
  s.state_ = State::kDone;
  PromiseBase* w = s.waiter_;
  if (!w) return nullptr;
  if constexpr (kTakeWaiter) {
    // A waiter already queued (woken by something else too) runs from the
    // queue, as with Dispatch(): never resumed twice.
    if (!w->scheduled()) [[likely]]
      return w;
  } else {
    ready_.Push(w);
  }
  return nullptr;
}

inline bool OpSlab::Dispatch(uint64_t raw, int32_t res, uint32_t flags, const uint64_t* big) {
  const uint64_t stale_before = stale_;
  Route<false>(raw, res, flags, big ? big[0] : 0, big ? big[1] : 0);
  return stale_ == stale_before;
}

inline PromiseBase* OpSlab::DispatchTakingWaiter(uint64_t raw, int32_t res, uint32_t flags,
                                                 uint64_t big0, uint64_t big1) {
  return Route<true>(raw, res, flags, big0, big1);
}

}  // namespace ringline
