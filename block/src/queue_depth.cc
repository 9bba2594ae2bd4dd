#include "ringline/block/queue_depth.h"

#include <cassert>
#include <cstdlib>

#include "op_tags.h"
#include "ringline/log.h"
#include "ringline/worker.h"

namespace ringline::block {

QueueDepthLimiter::QueueDepthLimiter(uint32_t limit) : limit_(limit ? limit : 1) {
  // Every block target owns a limiter: its operations' tags are known from here on.
  RegisterBlockOpTags();
  metrics_.limit.Set(limit_);
}

QueueDepthLimiter::~QueueDepthLimiter() {
  if (in_flight_ != 0 || !waiters_.empty()) {
    // A permit or a waiter would touch freed memory later: a lifetime bug in
    // the caller (tasks using a target must be destroyed before the target).
    RL_LOG_ERROR(
        "QueueDepthLimiter destroyed with %u places held and %u waiters: a block target was "
        "destroyed before the tasks using it (destroy or join them first); aborting rather "
        "than letting them touch freed memory",
        in_flight_, waiting());
    std::abort();
  }
}

QueueDepthLimiter::Permit QueueDepthLimiter::TryAcquire() {
  if (!waiters_.empty() || in_flight_ >= limit_) return Permit();
  ++in_flight_;
  NoteAdmitted();
  return Permit(this, next_ticket_++);
}

void QueueDepthLimiter::SetLimit(uint32_t limit) {
  limit_ = limit ? limit : 1;
  metrics_.limit.Set(limit_);
  Grant();
}

void QueueDepthLimiter::ReleasePlace() {
  assert(in_flight_ > 0 && "a place released twice");
  --in_flight_;
  if (!waiters_.empty()) [[unlikely]] {
    Grant();
    return;
  }
  metrics_.in_flight.Set(in_flight_);
}

void QueueDepthLimiter::Grant() {
  while (!waiters_.empty() && in_flight_ < limit_) {
    auto* a = static_cast<AcquireAwaiter*>(waiters_.front());
    assert(!a->granted_);
    a->ticket_ = next_ticket_++;
    a->granted_ = true;
    ++in_flight_;
    NoteAdmitted();
    const auto waited = Clock::now() - a->since_;
    metrics_.wait_ns.Record(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(waited).count()));
    waiters_.Wake(*a);
  }
  metrics_.in_flight.Set(in_flight_);
  metrics_.waiting.Set(waiting());
}

void QueueDepthLimiter::NoteWaiting(AcquireAwaiter* a) {
  a->since_ = Clock::now();
  metrics_.waiting.Set(waiting() + 1);  // parked by await_suspend right after this
  metrics_.waited.Add();
}

QueueDepthLimiter::AcquireAwaiter::~AcquireAwaiter() {
  if (queued()) {
    // Destroyed while waiting: leave the queue; nobody is admitted in our place
    // because we held none.
    Leave();
    limiter_->metrics_.waiting.Set(limiter_->waiting());
  } else if (granted_) {
    // Granted a place (and scheduled) but destroyed before resuming: give the
    // place to the next waiter.
    granted_ = false;
    limiter_->ReleasePlace();
  }
}

}  // namespace ringline::block
