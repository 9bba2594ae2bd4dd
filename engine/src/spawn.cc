#include "ringline/spawn.h"

#include "ringline/worker.h"

namespace ringline::detail {

RootPromiseBase::~RootPromiseBase() {
  if (listed_) worker_->ForgetRoot(this);
  if (handle_ && !finished_) {
    // Aborted: tell the handle and wake whoever awaits it.
    handle_->root_ = nullptr;
    handle_->aborted_ = true;
    if (join_waiter_ && worker_) worker_->Schedule(join_waiter_);  // resumes with nullopt
  } else if (handle_) {
    handle_->root_ = nullptr;
  }
}

std::coroutine_handle<> RootPromiseBase::FinalAwaiter::await_suspend(
    std::coroutine_handle<> h) noexcept {
  self->finished_ = true;
  if (self->listed_) self->worker_->ForgetRoot(self);
  if (!self->handle_) {
    h.destroy();  // detached: nobody will read the result
    return std::noop_coroutine();
  }
  if (PromiseBase* w = std::exchange(self->join_waiter_, nullptr)) return w->self();
  return std::noop_coroutine();
}

void JoinHandleBase::Abort() {
  if (root_ && !root_->finished_) root_->self().destroy();
}

void JoinHandleBase::Detach() {
  if (!root_) return;
  RootPromiseBase* r = std::exchange(root_, nullptr);
  r->handle_ = nullptr;
  if (r->finished_) r->self().destroy();
}

void JoinHandleBase::Release() { Detach(); }

void AdoptRoot(RootPromiseBase* root) { Worker::Current().AdoptRoot(root); }

}  // namespace ringline::detail
