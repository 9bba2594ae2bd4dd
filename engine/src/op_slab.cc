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
  // Index UINT32_MAX must stay unreachable (OpSlot::kFreeUserData).
  if (base > UINT32_MAX - 2 * kChunk) std::abort();
  auto chunk = std::make_unique<OpSlot[]>(kChunk);
  // Link the new slots in index order in front of the free list.
  for (uint32_t i = 0; i < kChunk; ++i) {
    chunk[i].index = base + i;
    chunk[i].slab_ = this;
    chunk[i].untagged_user_data_ = UserData::Encode(OpTag::kNone, 0, base + i).raw();
    chunk[i].next_free_ = (i + 1 < kChunk) ? &chunk[i + 1] : free_head_;
    by_index_.push_back(&chunk[i]);
  }
  free_head_ = &chunk[0];
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
  assert(s.state_ != State::kFree && "a free slot orphaned");
  s.waiter_ = nullptr;
  s.owner_ = nullptr;
  if (s.state_ == State::kDone) {
    s.handler_ = nullptr;
    Release(s);
    return;
  }
  // Its remaining completions go to DropCompletion; the final one releases it.
  s.handler_ = &DropCompletion;
  s.state_ = State::kOrphaned;
  Cancel(s);
}

void OpSlab::DropCompletion(void*, OpSlot&, int32_t, uint32_t) {}

void OpSlab::DispatchToOwner(OpSlot& s, int32_t res, uint32_t flags, const uint64_t big[2]) {
  const bool final = !(flags & IORING_CQE_F_MORE);
  if (final) s.state_ = State::kDone;
  // Multishot and other owner-managed operations: the owner sees every CQE.
  // On the final one the slot is released after the handler has run.
  // (Orphaned slots come here too, with DropCompletion as their handler.)
  s.res = res;
  s.flags = flags;
  s.big[0] = big[0];
  s.big[1] = big[1];
  s.handler_(s.owner_, s, res, flags);
  // Released after the handler, unless the handler released it (Orphan) or
  // the slot was reused meanwhile (then it is in flight again).
  if (final && s.state_ == State::kDone && s.handler_) {
    s.handler_ = nullptr;
    s.owner_ = nullptr;
    Release(s);
  }
}

void OpSlab::NoLiveSlot(uint64_t raw) {
  if (UserData(raw).tag() != OpTag::kCancel) ++stale_;
}

void OpSlab::CancelAll() {
  for (OpSlot* s : by_index_) {
    if (s->state_ == State::kInFlight || s->state_ == State::kOrphaned) Cancel(*s);
  }
}

}  // namespace ringline
