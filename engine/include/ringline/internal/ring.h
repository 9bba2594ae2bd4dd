#pragma once
// INTERNAL to ringline: installed only because public templates need it; not
// part of the API and may change without notice. Applications include the
// headers in ringline/ (ringline/ringline.h).
//
// Ring: one io_uring instance, set up the way every worker needs it.
//
// SQE128|CQE32 (NVMe passthrough shares the ring), SINGLE_ISSUER and
// DEFER_TASKRUN (completions run on the worker thread, only when it asks), a CQ
// larger than the SQ, optional SQPOLL, a sparse fixed-file table and a sparse
// registered-buffer table. GetSqe() never fails: a full SQ is submitted first,
// and EINTR/EBUSY/EAGAIN from the kernel are treated as backpressure (completions
// are stashed to make room, then the submit is retried) — docs/io_uring-rules.md R7.
// Thread-safety: single issuer — every method must be called on the thread that
// created the ring (except ring_fd()).

#include <liburing.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ringline/internal/store_fence.h"

namespace ringline {

struct RingOptions {
  uint32_t sq_entries = 256;
  uint32_t cq_entries = 2048;  // must be larger than sq_entries
  bool sqpoll = false;
  uint32_t sqpoll_idle_ms = 1000;
  int sqpoll_cpu = -1;
  // Slots of the fixed-file table; the upper `direct_alloc_files` of them are
  // left to the kernel for direct descriptors (multishot accept with
  // IORING_FILE_INDEX_ALLOC), the rest are installed by InstallFixedFile().
  uint32_t fixed_files = 4096;
  uint32_t direct_alloc_files = 3072;
  // Sparse registered-buffer table entries (a BufferPool registers its memory
  // in pieces of at most BufferPool::Options::max_registration_bytes).
  uint32_t registered_buffers = 1024;
  // IORING_SETUP_IOPOLL: completions are polled from the device's poll
  // queues instead of arriving by interrupt. Such a ring takes only polled
  // storage commands (O_DIRECT, NVMe passthrough), never sockets or eventfd
  // reads: the worker keeps one beside its main ring (internal/poll_ring.h).
  bool iopoll = false;
};

// One completion copied out of the CQ (CQE32: `big` holds the extra 16 bytes).
struct Completion {
  uint64_t user_data;
  int32_t res;
  uint32_t flags;
  uint64_t big[2];
};

class Ring {
 public:
  static absl::StatusOr<std::unique_ptr<Ring>> Create(const RingOptions& options);
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring();

  // An SQE with its first 64 bytes cleared (all that liburing's prep helpers and
  // ordinary opcodes use). Never null.
  io_uring_sqe* GetSqe() { return Get(false); }
  // An SQE cleared including the 64-byte extension of SQE128, for commands that
  // fill the 80-byte command area (IORING_OP_URING_CMD, NVMe passthrough):
  // liburing 2.3's helpers do not clear it.
  io_uring_sqe* GetSqe128() { return Get(true); }

 private:
  io_uring_sqe* Get(bool whole) {
    // Room is checked against the SQ head as last read (sqe_limit_), not
    // the kernel's: the head only moves forward, so a stale limit is
    // conservative, and only the slow path reads the head again.
    io_uring_sqe* sqe =
        static_cast<int>(sqe_limit_ - ring_.sq.sqe_tail) > 0 ? Take() : GetSqeSlow();
    // Cleared after both paths meet: the caller's prep then overwrites the
    // clear's stores in straight-line code, where gcc merges the two (a liburing
    // prep helper writes every field but user_data).
    Clear(sqe, whole);
    return sqe;
  }
  // The next SQE, not cleared; the caller has checked that there is room.
  io_uring_sqe* Take() {
    io_uring_sq* sq = &ring_.sq;
    io_uring_sqe* sqe = &sq->sqes[(sq->sqe_tail & sq->ring_mask) << 1];  // SQE128: 2 slots
    ++sq->sqe_tail;
    return sqe;
  }

 public:
  // Submits queued SQEs and, in the same io_uring_enter, waits until at least
  // `wait_nr` completions are ready or `timeout_ns` (< 0: none) has passed.
  // Returns the number of SQEs submitted or a negated errno (-ETIME is normal).
  // Inline for the loop's common case (wait, no deadline, accepted); the
  // rest is out of line (SubmitAndWaitSlow, and SubmitAndWaitFailed for the
  // backpressure retries).
  int SubmitAndWait(unsigned wait_nr, int64_t timeout_ns) {
    if (wait_nr != 0 && timeout_ns < 0) [[likely]] {
      internal::FenceStores();
      ++submit_calls_;
      const int ret = io_uring_submit_and_wait(&ring_, wait_nr);
      if (ret >= 0) [[likely]] {
        sqes_submitted_ += static_cast<uint64_t>(ret);
        return ret;
      }
      return SubmitAndWaitFailed(ret, wait_nr, timeout_ns);
    }
    return SubmitAndWaitSlow(wait_nr, timeout_ns);
  }

  // Submits the queued SQEs now, in the middle of a loop iteration, and posts
  // the completions that arrived meanwhile to the CQ (IORING_ENTER_GETEVENTS
  // without waiting: with DEFER_TASKRUN they are otherwise posted only in the
  // loop's io_uring_enter), so the loop finds them without sleeping. For
  // callers that want an operation at the device before the iteration ends
  // (block::TargetOptions::submit_batch). Returns the number of SQEs submitted
  // or a negated errno; on backpressure (-EBUSY, -EAGAIN) or a signal (-EINTR)
  // the SQEs stay queued and the loop's SubmitAndWait deals with it
  // (docs/io_uring-rules.md R7).
  int SubmitNow();

  // Submits the queued SQEs without waiting (handling backpressure) and
  // returns how many completions the CQ holds now, those the submit posted
  // included: a wait that must see `n` new completions asks for this plus n.
  unsigned SubmitWithoutWait();
  // Completions copied out under backpressure, not yet dispatched.
  bool has_stash() const { return !stash_.empty(); }

  // Calls `on_completion(const Completion&)` for every completion ready now:
  // first those stashed under backpressure, then the CQ's in order. Each CQE
  // is consumed (the CQ head moved past it) before its callback runs, so a
  // callback may submit, even into backpressure that stashes what the kernel
  // posts meanwhile, and no completion is seen twice or lost: what arrives
  // during the callbacks is left for the next call. Returns how many ran.
  // The CQEs are read in place, never copied into a buffer first.
  template <typename F>
  std::size_t ForEachCompletion(F&& on_completion);

  // Fixed files: installs `fd` (the ring keeps its own reference; the caller may
  // close `fd`) and returns the slot index, or frees a slot.
  absl::StatusOr<int> InstallFixedFile(int fd);
  absl::Status RemoveFixedFile(int index);

  // Registers [addr, addr+len) as one fixed buffer; returns its index. Fails
  // with ResourceExhausted when RLIMIT_MEMLOCK is too small (callers fall back
  // to unregistered buffers).
  absl::StatusOr<int> RegisterBuffer(void* addr, std::size_t len);
  void UnregisterBuffer(int index);

  io_uring* raw() { return &ring_; }
  int ring_fd() const { return ring_.ring_fd; }
  const RingOptions& options() const { return options_; }
  unsigned sq_space() { return io_uring_sq_space_left(&ring_); }

  // Counters, read by the worker's metrics.
  uint64_t submit_calls() const { return submit_calls_; }
  uint64_t sqes_submitted() const { return sqes_submitted_; }
  uint64_t backpressure_events() const { return backpressure_events_; }

 private:
  explicit Ring(const RingOptions& options) : options_(options) {}
  // Get() when the SQ looked full: reads the head again and, if the SQ is
  // really full, submits first. Not cleared.
  io_uring_sqe* GetSqeSlow();
  // sqe_limit_ = the SQ head now + its size.
  void ReadSqHead();
  // Constant-size memsets: gcc emits plain stores (not `rep stos`) and, right
  // before a prep helper, drops those the helper's own stores make redundant.
  static void Clear(io_uring_sqe* sqe, bool whole) {
    std::memset(sqe, 0, sizeof(io_uring_sqe));
    // The extension separately: one 128-byte memset becomes `rep stos`.
    if (whole) std::memset(sqe + 1, 0, sizeof(io_uring_sqe));
  }
  int SubmitPending();  // submit without waiting, handling backpressure
  // One io_uring_enter of SubmitAndWait() (counted); the SQEs submitted or a
  // negated errno.
  int EnterOnce(unsigned wait_nr, int64_t timeout_ns);
  int SubmitAndWaitSlow(unsigned wait_nr, int64_t timeout_ns);
  // After a submit that returned `ret` < 0: under backpressure the completions
  // are stashed and the submit retried until it is not refused; returns the
  // final result.
  int SubmitAndWaitFailed(int ret, unsigned wait_nr, int64_t timeout_ns);
  void Stash();

  io_uring ring_{};
  // The SQ tail value at which the SQ is full, from the head as last read
  // (ReadSqHead): at most the real limit, since only the kernel moves the head
  // (SQPOLL: concurrently) and only forward. 0 until first read, which sends
  // the first Get() to the slow path.
  unsigned sqe_limit_ = 0;
  bool initialized_ = false;
  RingOptions options_;
  std::vector<Completion> stash_;
  std::vector<Completion> stash_running_;  // the stash being handed out
  std::vector<uint8_t> file_used_;
  uint32_t file_search_ = 0;
  std::vector<uint8_t> buf_used_;
  uint64_t submit_calls_ = 0;
  uint64_t sqes_submitted_ = 0;
  uint64_t backpressure_events_ = 0;
};

template <typename F>
std::size_t Ring::ForEachCompletion(F&& on_completion) {
  std::size_t n = 0;
  if (!stash_.empty()) [[unlikely]] {
    // Completions stashed by a callback's submit land in stash_ again and
    // wait for the next call. (Inline rather than behind a function pointer:
    // the callback's address must not escape, or its state cannot stay in
    // registers on the hot path below.)
    stash_running_.swap(stash_);
    for (const Completion& c : stash_running_) on_completion(c);
    n = stash_running_.size();
    stash_running_.clear();
    // A callback stashed again: the CQ now holds only newer completions,
    // which must wait behind the stash (a stream's receives stay in order).
    if (!stash_.empty()) return n;
  }
  io_uring_cq* cq = &ring_.cq;
  // Only what was posted before this call; the kernel moves the tail, we the head.
  const unsigned tail = io_uring_smp_load_acquire(cq->ktail);
  for (;;) {
    // Re-read: a callback's submit under backpressure may have stashed (and so
    // consumed) the rest.
    const unsigned head = *cq->khead;
    if (static_cast<int>(tail - head) <= 0) break;
    const io_uring_cqe* cqe = &cq->cqes[(head & cq->ring_mask) << 1];  // CQE32: 2 slots
    const Completion c{cqe->user_data, cqe->res, cqe->flags, {cqe->big_cqe[0], cqe->big_cqe[1]}};
    io_uring_smp_store_release(cq->khead, head + 1);
    on_completion(c);
    ++n;
  }
  return n;
}

}  // namespace ringline
