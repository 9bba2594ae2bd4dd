#include "ringline/internal/op_slab.h"

#include <liburing.h>

#include <cassert>
#include <cstdlib>

#include "ringline/internal/promise_base.h"
#include "ringline/internal/ring.h"

namespace ringline {

OpSlab::OpSlab(Ring& ring, ReadyQueue& ready, uint32_t initial_slots) : ring_(ring), ready_(ready) {
  while (capacity() < initial_slots) Grow();
}

OpSlab::~OpSlab() = default;

void OpSlab::Grow() {
  const uint32_t base = capacity();
  // Index UINT32_MAX must stay unreachable (OpSlot::kFreeUserData, kNoFree).
  if (base > UINT32_MAX - 2 * kChunk) std::abort();
  auto chunk = std::make_unique<OpSlot[]>(kChunk);
  // Link the new slots in index order in front of the free list.
  for (uint32_t i = 0; i < kChunk; ++i) {
    chunk[i].index = base + i;
    chunk[i].next_free_ = (i + 1 < kChunk) ? base + i + 1 : free_head_;
  }
  free_head_ = base;
  chunks_.push_back(std::move(chunk));
  capacity_ = base + kChunk;
}

void OpSlab::AssertAllocatable(OpTag tag) {
  assert(OpTagOwner(tag) != nullptr && "operation tag not registered (RegisterOpTags)");
  assert(tag != OpTag::kNone && tag != OpTag::kCancel);
  (void)tag;
}

OpSlot& OpSlab::AllocateWithHandler(OpTag tag, CompletionHandler handler, void* owner) {
  OpSlot& s = Allocate(tag);
  s.handler_ = handler;
  s.owner_ = owner;
  return s;
}

void OpSlab::ReleaseHeld(OpSlot& s) {
  s.held[0].Reset();
  s.held[1].Reset();
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

void OpSlab::DispatchToOwner(OpSlot& s, int32_t res, uint32_t flags, const uint64_t* big) {
  const bool final = !(flags & IORING_CQE_F_MORE);
  if (s.orphaned_) {
    if (final) Release(s);
    return;
  }
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
}

void OpSlab::CancelAll() {
  for (uint32_t i = 0; i < capacity(); ++i) {
    OpSlot& s = At(i);
    if (s.in_use_ && !s.kernel_done_) Cancel(s);
  }
}

}  // namespace ringline
