#pragma once
// INTERNAL to ringline: installed only because public templates need it; not
// part of the API and may change without notice.
//
// PollRing: a worker's second ring, set up with IORING_SETUP_IOPOLL, for
// storage commands whose completions are polled from the device's poll queues
// (NVMe passthrough on a namespace with poll queues) instead of arriving by
// interrupt. It shares the worker's operation slab (completions are
// dispatched to the same slots, user_data rules unchanged: docs/io_uring-rules.md
// R3) but has its own fixed-file table and no registered buffers.
//
// The worker services it in every loop iteration while anything is in flight
// on it: the main ring is then submitted and reaped without blocking, and the
// poll ring is polled once, so neither the network (main ring) nor the polled
// storage waits for the other. With nothing in flight on the poll ring the
// worker blocks in the main ring as usual.
// Created on first use (Worker::internals().poll_ring()); lives until the
// worker goes. Thread-safety: worker thread only.

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "ringline/internal/ring.h"

namespace ringline {

class OpSlab;

class PollRing {
 public:
  // Fails when the kernel refuses an IOPOLL ring (the status names it).
  static absl::StatusOr<std::unique_ptr<PollRing>> Create(uint32_t sq_entries);
  PollRing(const PollRing&) = delete;
  PollRing& operator=(const PollRing&) = delete;

  // A cleared 128-byte SQE (see Ring::GetSqe128), counted in flight until its
  // completion is dispatched.
  io_uring_sqe* GetSqe128() {
    ++in_flight_;
    return ring_->GetSqe128();
  }
  // Installs `fd` in this ring's fixed-file table; the slot index.
  absl::StatusOr<int> InstallFixedFile(int fd) { return ring_->InstallFixedFile(fd); }
  absl::Status RemoveFixedFile(int index) { return ring_->RemoveFixedFile(index); }

  // Commands submitted or queued whose completion has not been dispatched.
  uint32_t in_flight() const { return in_flight_; }
  // Submits what is queued, polls the device once and dispatches every
  // completion to `slab`. Never blocks. Returns the completions dispatched.
  std::size_t Poll(OpSlab& slab);

 private:
  explicit PollRing(std::unique_ptr<Ring> ring) : ring_(std::move(ring)) {}
  std::unique_ptr<Ring> ring_;
  uint32_t in_flight_ = 0;
};

}  // namespace ringline
