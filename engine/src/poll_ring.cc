#include "ringline/internal/poll_ring.h"

#include "ringline/internal/op_slab.h"
#include "ringline/internal/user_data.h"
#include "ringline/worker.h"

namespace ringline {

absl::StatusOr<std::unique_ptr<PollRing>> PollRing::Create(uint32_t sq_entries) {
  RingOptions o;
  o.iopoll = true;
  o.sq_entries = sq_entries;
  o.cq_entries = sq_entries * 2;
  // Only the descriptors of polled targets; no direct-descriptor range and
  // no registered buffers (those belong to the main ring).
  o.fixed_files = 16;
  o.direct_alloc_files = 0;
  o.registered_buffers = 0;
  auto ring = Ring::Create(o);
  if (!ring.ok()) return ring.status();
  return std::unique_ptr<PollRing>(new PollRing(std::move(*ring)));
}

std::size_t PollRing::Poll(OpSlab& slab) {
  // With IOPOLL, io_uring_enter(GETEVENTS) polls the device's queues once
  // when no completion is waiting yet; min_complete 0 keeps it from spinning.
  ring_->SubmitAndWait(0, -1);
  return ring_->ForEachCompletion([this, &slab](const Completion& c) {
    --in_flight_;
    slab.Dispatch(c.user_data, c.res, c.flags, c.big);
  });
}

}  // namespace ringline

// The worker's side (kept here so worker.cc has only the two calls).
namespace ringline {

absl::StatusOr<PollRing*> Worker::GetPollRing() {
  if (!poll_ring_) {
    auto p = PollRing::Create(config_.ring.sq_entries);
    if (!p.ok()) return p.status();
    poll_ring_ = std::move(*p);
  }
  return poll_ring_.get();
}

void Worker::PollPollRing() {
  if (poll_ring_ && poll_ring_->in_flight() > 0) {
    metrics_->cqes.Add(poll_ring_->Poll(*slab_));
  }
}

}  // namespace ringline
