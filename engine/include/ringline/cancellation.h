#pragma once
// Cancellation tokens.
//
// A CancellationSource is cancelled once; every task awaiting one of its tokens
// is then woken. Cancelling a piece of work means racing it against the token
// (WithCancellation), which destroys the loser — and destroying a task cancels
// its kernel operations (operation.h). Worker-local: a source and its tokens
// are used on one worker thread. Tokens keep the shared state alive.

#include <coroutine>
#include <memory>
#include <optional>

#include "ringline/internal/promise_base.h"
#include "ringline/task.h"

namespace ringline {

namespace detail {
struct CancelWaiter {
  PromiseBase* waiter = nullptr;
  CancelWaiter* next = nullptr;
  CancelWaiter* prev = nullptr;
};
struct CancelState {
  bool cancelled = false;
  CancelWaiter* head = nullptr;
};

class [[nodiscard]] CancelAwaiter : public CancelWaiter {
 public:
  explicit CancelAwaiter(std::shared_ptr<CancelState> s) : state_(std::move(s)) {}
  CancelAwaiter(CancelAwaiter&& o) noexcept : state_(std::move(o.state_)) {}
  CancelAwaiter(const CancelAwaiter&) = delete;
  bool await_ready() const noexcept { return state_ && state_->cancelled; }
  template <EnginePromise P>
  void await_suspend(std::coroutine_handle<P> h) {
    waiter = &h.promise();
    if (!state_) return;  // parked until destroyed
    next = state_->head;
    if (next) next->prev = this;
    state_->head = this;
  }
  void await_resume() const noexcept {}
  ~CancelAwaiter() {
    if (!waiter || !state_) return;
    if (prev)
      prev->next = next;
    else if (state_->head == this)
      state_->head = next;
    if (next) next->prev = prev;
  }

 private:
  std::shared_ptr<CancelState> state_;
};
}  // namespace detail

class CancellationToken {
 public:
  CancellationToken() = default;  // never cancelled
  explicit CancellationToken(std::shared_ptr<detail::CancelState> s) : state_(std::move(s)) {}

  bool cancelled() const { return state_ && state_->cancelled; }

  // Completes when the token is cancelled (at once if it already is; never for a
  // default-constructed token).
  detail::CancelAwaiter Cancelled() const { return detail::CancelAwaiter(state_); }

  Task<> Wait() const { co_await Cancelled(); }

 private:
  std::shared_ptr<detail::CancelState> state_;
};

class CancellationSource {
 public:
  CancellationSource() : state_(std::make_shared<detail::CancelState>()) {}
  CancellationSource(const CancellationSource&) = delete;
  CancellationSource& operator=(const CancellationSource&) = delete;

  CancellationToken token() const { return CancellationToken(state_); }
  bool cancelled() const { return state_->cancelled; }
  // Wakes every waiter (on the current worker). Idempotent.
  void Cancel();

 private:
  std::shared_ptr<detail::CancelState> state_;
};

}  // namespace ringline
