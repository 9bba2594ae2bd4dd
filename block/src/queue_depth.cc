#include "ringline/block/queue_depth.h"

#include <cstdlib>

#include "ringline/log.h"
#include "ringline/worker.h"

namespace ringline::block {

QueueDepthLimiter::QueueDepthLimiter(uint32_t limit) : limit_(limit ? limit : 1) {
  metrics_.limit.Set(limit_);
}

QueueDepthLimiter::~QueueDepthLimiter() {
  if (in_flight_ != 0 || head_ != nullptr) {
    // A permit or a waiter would touch freed memory later: a lifetime bug in
    // the caller (tasks using a target must be destroyed before the target).
    RL_LOG_ERROR(
        "QueueDepthLimiter destroyed with %u places held and %u waiters: a block target was "
        "destroyed before the tasks using it (destroy or join them first); aborting rather "
        "than letting them touch freed memory",
        in_flight_, waiting_);
    std::abort();
  }
}

QueueDepthLimiter::Permit QueueDepthLimiter::TryAcquire() {
  if (head_ != nullptr || in_flight_ >= limit_) return Permit();
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
  --in_flight_;
  if (head_ != nullptr) [[unlikely]] {
    Grant();
    return;
  }
  metrics_.in_flight.Set(in_flight_);
}

void QueueDepthLimiter::Grant() {
  while (head_ != nullptr && in_flight_ < limit_) {
    AcquireAwaiter* a = head_;
    Unlink(a);
    a->ticket_ = next_ticket_++;
    a->granted_ = true;
    ++in_flight_;
    NoteAdmitted();
    const auto waited = Clock::now() - a->since_;
    metrics_.wait_ns.Record(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(waited).count()));
    Worker::Current().Schedule(a->waiter_);
  }
  metrics_.in_flight.Set(in_flight_);
}

void QueueDepthLimiter::Enqueue(AcquireAwaiter* a) {
  a->since_ = Clock::now();
  a->queued_ = true;
  a->next_ = nullptr;
  a->prev_ = tail_;
  if (tail_)
    tail_->next_ = a;
  else
    head_ = a;
  tail_ = a;
  ++waiting_;
  metrics_.waiting.Set(waiting_);
  metrics_.waited.Add();
}

void QueueDepthLimiter::Unlink(AcquireAwaiter* a) {
  if (!a->queued_) return;
  if (a->prev_)
    a->prev_->next_ = a->next_;
  else
    head_ = a->next_;
  if (a->next_)
    a->next_->prev_ = a->prev_;
  else
    tail_ = a->prev_;
  a->next_ = a->prev_ = nullptr;
  a->queued_ = false;
  --waiting_;
  metrics_.waiting.Set(waiting_);
}

QueueDepthLimiter::AcquireAwaiter::~AcquireAwaiter() {
  if (queued_) {
    // Destroyed while waiting: leave the queue; nobody is admitted in our place
    // because we held none.
    limiter_->Unlink(this);
  } else if (granted_) {
    // Granted a place (and scheduled) but destroyed before resuming: give the
    // place to the next waiter.
    granted_ = false;
    limiter_->ReleasePlace();
  }
}

}  // namespace ringline::block
