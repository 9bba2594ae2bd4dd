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

#include <linux/time_types.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "ringline/buffer.h"
#include "ringline/internal/user_data.h"

namespace ringline {

class PromiseBase;
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

  UserData user_data() const { return UserData::Encode(tag, generation, index); }

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
  PromiseBase* waiter_ = nullptr;  // coroutine to schedule on the final completion
  CompletionHandler handler_ = nullptr;
  void* owner_ = nullptr;
  bool in_use_ = false;
  bool kernel_done_ = false;  // the final completion (no F_MORE) has arrived
  bool orphaned_ = false;     // nobody will consume the result
  uint32_t next_free_ = 0;
};

class Ring;
class ReadyQueue;

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
  bool Dispatch(uint64_t user_data, int32_t res, uint32_t flags, const uint64_t* big);

  uint32_t in_flight() const { return in_use_; }
  uint32_t capacity() const { return static_cast<uint32_t>(chunks_.size() * kChunk); }

  // Cancels every in-flight operation (shutdown).
  void CancelAll();

 private:
  static constexpr uint32_t kChunk = 256;
  static constexpr uint32_t kNoFree = UINT32_MAX;
  OpSlot& At(uint32_t i) { return chunks_[i / kChunk][i % kChunk]; }
  void Grow();
  void Release(OpSlot& slot);

  Ring& ring_;
  ReadyQueue& ready_;
  std::vector<std::unique_ptr<OpSlot[]>> chunks_;
  uint32_t free_head_ = kNoFree;
  uint32_t in_use_ = 0;
};

}  // namespace ringline
