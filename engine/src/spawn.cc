#include "ringline/spawn.h"

#include "ringline/worker.h"

namespace ringline::detail {

RootPromiseBase::~RootPromiseBase() {
  if (listed_) worker_->internals().ForgetRoot(this);
  if (handle_ && !finished_) {
    // Aborted: tell the handle; whoever awaits it resumes with nullopt.
    handle_->root_ = nullptr;
    handle_->aborted_ = true;
  } else if (handle_) {
    handle_->root_ = nullptr;
  }
  // Woken with NotifyAll, the awaiters no longer refer to joiners_ (which dies
  // with this frame).
  joiners_.NotifyAll();
}

std::coroutine_handle<> RootPromiseBase::FinalAwaiter::await_suspend(
    std::coroutine_handle<> h) noexcept {
  self->finished_ = true;
  if (self->listed_) self->worker_->internals().ForgetRoot(self);
  if (!self->handle_) {
    h.destroy();  // detached: nobody will read the result
    return std::noop_coroutine();
  }
  self->joiners_.NotifyAll();
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

void AdoptRoot(RootPromiseBase* root) { Worker::Current().internals().AdoptRoot(root); }

}  // namespace ringline::detail
