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
    assert(in_use_ && "user_data() of a free slot");
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
  int32_t res = 0;
  uint32_t flags = 0;
  uint64_t big[2] = {0, 0};

  OpTag tag = OpTag::kNone;
  uint32_t generation = 0;
  uint32_t index = 0;

 private:
  friend class OpSlab;
  // user_data() while in use, kFreeUserData while free: Dispatch() validates
  // a completion (in use, same generation, same tag) with this one comparison.
  // kFreeUserData names slot index UINT32_MAX, which no slab reaches, so no
  // completion routed to this slot carries it.
  static constexpr uint64_t kFreeUserData = UINT64_MAX;
  uint64_t live_user_data_ = kFreeUserData;
  PromiseBase* waiter_ = nullptr;  // coroutine to schedule on the final completion
  CompletionHandler handler_ = nullptr;
  void* owner_ = nullptr;
  bool in_use_ = false;
  bool kernel_done_ = false;  // the final completion (no F_MORE) has arrived
  bool orphaned_ = false;     // nobody will consume the result
  uint32_t next_free_ = 0;
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

  // True once the final completion has arrived and the result can be read.
  static bool Done(const OpSlot& slot) { return slot.kernel_done_; }

  // The awaiting side has taken the result: release the slot now.
  void Consume(OpSlot& slot);
  // The awaiting side is gone (coroutine destroyed). Releases now if the kernel
  // is done, else cancels the operation and releases on the final completion.
  void Orphan(OpSlot& slot);
  // Submits an async cancel for the slot's operation (the slot stays owned).
  void Cancel(const OpSlot& slot);

  // Routes one completion. Returns false for a stale or unknown user_data.
  // `big` (may be null) is the extra half of a 32-byte CQE.
  bool Dispatch(uint64_t user_data, int32_t res, uint32_t flags, const uint64_t* big);

  uint32_t in_flight() const { return in_use_; }
  uint32_t capacity() const { return capacity_; }

  // Cancels every in-flight operation (shutdown).
  void CancelAll();

 private:
  static constexpr uint32_t kChunk = 256;
  static constexpr uint32_t kNoFree = UINT32_MAX;
  OpSlot& At(uint32_t i) { return chunks_[i / kChunk][i % kChunk]; }  // i < capacity_
  void Grow();
  static void AssertAllocatable(OpTag tag);  // debug checks of Allocate()
  void Release(OpSlot& slot);
  static void ReleaseHeld(OpSlot& slot);  // returns held buffers to their pools
  // The cold half of Dispatch(): orphaned and handler-owned slots.
  void DispatchToOwner(OpSlot& slot, int32_t res, uint32_t flags, const uint64_t* big);

  Ring& ring_;
  ReadyQueue& ready_;
  std::vector<std::unique_ptr<OpSlot[]>> chunks_;
  uint32_t capacity_ = 0;  // chunks_.size() * kChunk
  uint32_t free_head_ = kNoFree;
  uint32_t in_use_ = 0;
};

// The per-operation paths are inline: every awaited operation runs Allocate,
// Dispatch and Consume once, and they are a large part of the engine's own
// cost per operation (BENCHMARKS.md, engine).

inline OpSlot& OpSlab::Allocate(OpTag tag) {
  AssertAllocatable(tag);
  if (free_head_ == kNoFree) [[unlikely]]
    Grow();
  OpSlot& s = At(free_head_);
  assert(!s.in_use_ && "a slot on the free list is in use");
  assert(s.generation <= UserData::kGenerationMask);
  free_head_ = s.next_free_;
  s.tag = tag;
  s.live_user_data_ = UserData::Encode(tag, s.generation, s.index).raw();
  s.res = 0;
  s.flags = 0;
  s.big[0] = s.big[1] = 0;
  // waiter_, handler_ and owner_ are null: a free slot never holds them.
  assert(!s.waiter_ && !s.handler_ && !s.owner_);
  s.in_use_ = true;
  s.kernel_done_ = false;
  s.orphaned_ = false;
  ++in_use_;
  return s;
}

inline void OpSlab::Release(OpSlot& s) {
  assert(s.in_use_ && "a slot released twice");
  assert(s.kernel_done_ && "a slot released while the kernel still owns it (rule R1)");
  assert(&At(s.index) == &s);
  // Buffers go back to their pools only now: the kernel is done with them.
  if (s.held[0] || s.held[1]) [[unlikely]]
    ReleaseHeld(s);
  s.live_user_data_ = OpSlot::kFreeUserData;
  s.in_use_ = false;
  s.waiter_ = nullptr;
  s.handler_ = nullptr;
  s.owner_ = nullptr;
  s.generation = (s.generation + 1) & UserData::kGenerationMask;
  s.next_free_ = free_head_;
  free_head_ = s.index;
  --in_use_;
}

inline void OpSlab::Consume(OpSlot& s) {
  assert(!s.orphaned_ && s.kernel_done_ && "a result consumed before its final completion");
  Release(s);
}

inline bool OpSlab::Dispatch(uint64_t raw, int32_t res, uint32_t flags, const uint64_t* big) {
  const uint32_t i = UserData(raw).index();
  if (i >= capacity_) [[unlikely]]
    return false;
  OpSlot& s = At(i);
  // In use, same generation and same tag, in one comparison.
  if (s.live_user_data_ != raw) [[unlikely]]
    return false;
  assert(s.in_use_ && s.generation == UserData(raw).generation() && s.tag == UserData(raw).tag());
  assert(!s.kernel_done_ && "a completion after the final one for the same generation");

  const bool final = !(flags & IORING_CQE_F_MORE);
  if (final) s.kernel_done_ = true;
  if (s.orphaned_ || s.handler_) {
    DispatchToOwner(s, res, flags, big);
    return true;
  }
  // An awaited operation. A zero-copy send completes twice: the send result
  // (with F_MORE) and then the notification (F_NOTIF) once the kernel no longer
  // reads the buffer; keep the send's result and wake on the notification.
  if (!(flags & IORING_CQE_F_NOTIF)) {
    s.res = res;
    s.flags = flags;
    if (big) {
      s.big[0] = big[0];
      s.big[1] = big[1];
    }
  }
  if (final && s.waiter_) ready_.Push(s.waiter_);
  return true;
}

}  // namespace ringline
