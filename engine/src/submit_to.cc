#include "ringline/submit_to.h"

#include "absl/strings/str_cat.h"

namespace ringline::detail {

bool CrossCall::PostRequest() {
  if (origin_) origin_index_ = origin_->index();
  // Set before the post: once posted, the target owns the call's target-side
  // fields and may already be running it.
  origin_state_ = OriginState::kWaiting;
  leg_ = Leg::kRequest;
  Message m(CallCarrier(this));
  absl::Status why;
  const int err = PeerRouting::Post(rt_, origin_, target_, m, /*reply=*/false, &why);
  if (err == 0) return true;
  // Never seen by the target: destroying `m` must not treat it as dropped.
  leg_ = Leg::kNone;
  origin_state_ = OriginState::kIdle;
  Fail(err, std::move(why));
  return false;
}

void CrossCall::AwaiterGone() {
  if (origin_state_ == OriginState::kWaiting) {
    // The remote task still runs; its reply frees the call.
    origin_state_ = OriginState::kAbandoned;
    return;
  }
  Delete();
}

void CrossCall::Reply() {
  if (thread_reply_) {
    ThreadReply* r = thread_reply_;
    // Notified under the lock: the caller may destroy `r` (and this call, on its
    // stack) as soon as it sees `done`.
    std::lock_guard<std::mutex> lock(r->mu);
    r->done = true;
    r->cv.notify_all();
    return;
  }
  leg_ = Leg::kReply;
  Message m(CallCarrier(this));
  absl::Status why;
  if (PeerRouting::Post(rt_, origin_, origin_index_, m, /*reply=*/true, &why) == 0) return;
  // The caller's worker has left the runtime: its tasks, and the awaiter, are
  // destroyed already. Nobody will read the outcome.
  leg_ = Leg::kNone;
  m = nullptr;
  Delete();
}

void CrossCall::Arrived() {
  switch (std::exchange(leg_, Leg::kNone)) {
    case Leg::kRequest:
      Start();
      break;
    case Leg::kReply:
      FinishOnOrigin();
      break;
    case Leg::kNone:
      break;
  }
}

void CrossCall::Dropped() {
  switch (std::exchange(leg_, Leg::kNone)) {
    case Leg::kRequest:
      // The target was destroyed with the request still queued.
      Fail(ECANCELED, absl::CancelledError(absl::StrCat("SubmitTo: worker ", target_,
                                                        " stopped before running the task")));
      Reply();
      break;
    case Leg::kReply:
      // The caller's worker was destroyed with the reply still queued (after its
      // tasks, so the awaiter is gone).
      Delete();
      break;
    case Leg::kNone:
      break;
  }
}

void CrossCall::FinishOnOrigin() {
  if (origin_state_ == OriginState::kAbandoned) {
    Delete();  // destroys the remote result here, on the caller's worker
    return;
  }
  origin_state_ = OriginState::kDone;
  if (waiter_) Worker::Current().internals().Schedule(waiter_);
}

}  // namespace ringline::detail
