#include "ringline/internal/op_slab.h"

#include <liburing.h>

#include <cassert>

#include "ringline/internal/promise_base.h"
#include "ringline/internal/ring.h"

namespace ringline {

OpSlab::OpSlab(Ring& ring, ReadyQueue& ready, uint32_t initial_slots) : ring_(ring), ready_(ready) {
  while (capacity() < initial_slots) Grow();
}

OpSlab::~OpSlab() = default;

void OpSlab::Grow() {
  const uint32_t base = capacity();
  auto chunk = std::make_unique<OpSlot[]>(kChunk);
  // Link the new slots in index order in front of the free list.
  for (uint32_t i = 0; i < kChunk; ++i) {
    chunk[i].index = base + i;
    chunk[i].next_free_ = (i + 1 < kChunk) ? base + i + 1 : free_head_;
  }
  free_head_ = base;
  chunks_.push_back(std::move(chunk));
}

OpSlot& OpSlab::Allocate(OpTag tag) {
  assert(OpTagOwner(tag) != nullptr && "operation tag not registered (RegisterOpTags)");
  assert(tag != OpTag::kNone && tag != OpTag::kCancel);
  if (free_head_ == kNoFree) Grow();
  OpSlot& s = At(free_head_);
  assert(!s.in_use_ && "a slot on the free list is in use");
  assert(s.generation <= UserData::kGenerationMask);
  free_head_ = s.next_free_;
  s.tag = tag;
  s.res = 0;
  s.flags = 0;
  s.big[0] = s.big[1] = 0;
  s.waiter_ = nullptr;
  s.handler_ = nullptr;
  s.owner_ = nullptr;
  s.in_use_ = true;
  s.kernel_done_ = false;
  s.orphaned_ = false;
  ++in_use_;
  return s;
}

OpSlot& OpSlab::AllocateWithHandler(OpTag tag, CompletionHandler handler, void* owner) {
  OpSlot& s = Allocate(tag);
  s.handler_ = handler;
  s.owner_ = owner;
  return s;
}

void OpSlab::Release(OpSlot& s) {
  assert(s.in_use_ && "a slot released twice");
  assert(s.kernel_done_ && "a slot released while the kernel still owns it (rule R1)");
  assert(&At(s.index) == &s);
  // Buffers go back to their pools only now: the kernel is done with them.
  s.held[0].Reset();
  s.held[1].Reset();
  s.in_use_ = false;
  s.waiter_ = nullptr;
  s.handler_ = nullptr;
  s.owner_ = nullptr;
  s.generation = (s.generation + 1) & UserData::kGenerationMask;
  s.next_free_ = free_head_;
  free_head_ = s.index;
  --in_use_;
}

void OpSlab::Consume(OpSlot& s) {
  assert(!s.orphaned_ && s.kernel_done_ && "a result consumed before its final completion");
  Release(s);
}

void OpSlab::Cancel(const OpSlot& s) {
  io_uring_sqe* sqe = ring_.GetSqe();
  io_uring_prep_cancel64(sqe, s.user_data().raw(), 0);
  io_uring_sqe_set_data64(sqe, UserData::Encode(OpTag::kCancel, 0, 0).raw());
}

void OpSlab::Orphan(OpSlot& s) {
  s.waiter_ = nullptr;
  s.handler_ = nullptr;
  s.owner_ = nullptr;
  if (s.kernel_done_) {
    Release(s);
    return;
  }
  s.orphaned_ = true;
  Cancel(s);
}

bool OpSlab::Dispatch(uint64_t raw, int32_t res, uint32_t flags, const uint64_t* big) {
  const UserData ud(raw);
  const uint32_t i = ud.index();
  if (i >= capacity()) return false;
  OpSlot& s = At(i);
  if (!s.in_use_ || s.generation != ud.generation() || s.tag != ud.tag()) return false;
  assert(!s.kernel_done_ && "a completion after the final one for the same generation");

  const bool final = !(flags & IORING_CQE_F_MORE);
  if (final) s.kernel_done_ = true;

  if (s.orphaned_) {
    if (final) Release(s);
    return true;
  }
  if (s.handler_) {
    // Multishot and other owner-managed operations: the owner sees every CQE.
    // On the final one the slot is released after the handler has run.
    s.res = res;
    s.flags = flags;
    if (big) {
      s.big[0] = big[0];
      s.big[1] = big[1];
    }
    s.handler_(s.owner_, s, res, flags);
    if (final && s.in_use_ && s.kernel_done_ && !s.orphaned_ && s.handler_) Release(s);
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

void OpSlab::CancelAll() {
  for (uint32_t i = 0; i < capacity(); ++i) {
    OpSlot& s = At(i);
    if (s.in_use_ && !s.kernel_done_) Cancel(s);
  }
}

}  // namespace ringline
