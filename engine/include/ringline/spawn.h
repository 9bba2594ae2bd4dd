#pragma once
// Spawn and JoinHandle: tasks that run on their own on the current worker.
//
// Spawn(task) schedules the task on the calling worker and returns a handle.
// Awaiting the handle yields the task's value (std::nullopt if the task was
// aborted); dropping the handle detaches the task, which then runs to completion
// on its own; Abort() destroys it (its operations are cancelled and their memory
// is released when the kernel is done). Tasks still running when the worker
// shuts down are destroyed the same way.
// Thread-safety: a JoinHandle is used only on the worker that spawned the task.

#include <coroutine>
#include <optional>
#include <utility>

#include "ringline/internal/promise_base.h"
#include "ringline/task.h"
#include "ringline/wait_list.h"

namespace ringline {

class Worker;
template <typename T>
class JoinHandle;

namespace detail {

class JoinHandleBase;

class RootPromiseBase : public PromiseBase {
 public:
  ~RootPromiseBase();
  std::suspend_always initial_suspend() const noexcept { return {}; }
  [[noreturn]] void unhandled_exception() const noexcept { std::terminate(); }

  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> h) noexcept;
    void await_resume() const noexcept {}
    RootPromiseBase* self;
  };
  FinalAwaiter final_suspend() noexcept { return {this}; }

  Worker* worker_ = nullptr;
  bool listed_ = false;  // in the worker's list of running tasks
  RootPromiseBase* next_root_ = nullptr;
  RootPromiseBase* prev_root_ = nullptr;
  JoinHandleBase* handle_ = nullptr;  // null once detached
  WaitList joiners_;                  // tasks awaiting the JoinHandle
  bool finished_ = false;
};

template <typename T>
class RootPromise;

template <typename T>
struct RootTask {
  using promise_type = RootPromise<T>;
  std::coroutine_handle<promise_type> h;
};

template <typename T>
class RootPromise : public RootPromiseBase {
 public:
  RootTask<T> get_return_object() noexcept {
    auto h = std::coroutine_handle<RootPromise>::from_promise(*this);
    self_ = h;
    return {h};
  }
  template <typename U>
  void return_value(U&& v) {
    result_.emplace(std::forward<U>(v));
  }
  std::optional<T> result_;
};

template <>
class RootPromise<void> : public RootPromiseBase {
 public:
  RootTask<void> get_return_object() noexcept {
    auto h = std::coroutine_handle<RootPromise>::from_promise(*this);
    self_ = h;
    return {h};
  }
  void return_void() { result_.emplace(); }
  std::optional<Unit> result_;
};

template <typename T>
RootTask<T> RunRoot(Task<T> task) {
  if constexpr (std::is_void_v<T>) {
    co_await std::move(task);
  } else {
    co_return co_await std::move(task);
  }
}

class JoinHandleBase {
 public:
  JoinHandleBase() = default;
  JoinHandleBase(const JoinHandleBase&) = delete;
  JoinHandleBase& operator=(const JoinHandleBase&) = delete;

  // The task finished or was aborted.
  bool done() const { return aborted_ || !root_ || root_->finished_; }
  bool aborted() const { return aborted_; }
  // Destroys the task if it is still running (not from inside the task itself).
  void Abort();
  // Lets the task run on its own; the handle becomes empty.
  void Detach();

 protected:
  friend class RootPromiseBase;
  void Attach(RootPromiseBase* root) {
    root_ = root;
    root_->handle_ = this;
  }
  void MoveFrom(JoinHandleBase& o) {
    root_ = std::exchange(o.root_, nullptr);
    aborted_ = std::exchange(o.aborted_, false);
    if (root_) root_->handle_ = this;
  }
  void Release();  // destroys a finished frame, detaches a running one

  RootPromiseBase* root_ = nullptr;
  bool aborted_ = false;
};

void AdoptRoot(RootPromiseBase* root);  // on Worker::Current()

}  // namespace detail

template <typename T>
class [[nodiscard]] JoinHandle : public detail::JoinHandleBase {
 public:
  using Value = NonVoid<T>;
  JoinHandle() = default;
  explicit JoinHandle(detail::RootPromise<T>* root) { Attach(root); }
  JoinHandle(JoinHandle&& o) noexcept { MoveFrom(o); }
  JoinHandle& operator=(JoinHandle&& o) noexcept {
    if (this != &o) {
      Release();
      MoveFrom(o);
    }
    return *this;
  }
  ~JoinHandle() { Release(); }

  // The result of a finished task (nullopt if aborted or already taken).
  std::optional<Value> TakeResult() {
    if (aborted_ || !root_ || !root_->finished_) return std::nullopt;
    auto* p = static_cast<detail::RootPromise<T>*>(root_);
    std::optional<Value> out;
    if (p->result_) {
      if constexpr (std::is_void_v<T>) {
        out.emplace();
      } else {
        out.emplace(std::move(*p->result_));
      }
    }
    p->result_.reset();
    return out;
  }

  // Waits for the task to finish or be aborted. Safe to destroy at any point.
  class [[nodiscard]] Awaiter : public WaitNode {
   public:
    explicit Awaiter(JoinHandle* h) : WaitNode(h->root_ ? &h->root_->joiners_ : nullptr), h_(h) {}
    bool await_ready() const noexcept { return h_->done(); }
    std::optional<Value> await_resume() {
      Resumed();
      return h_->TakeResult();
    }

   private:
    JoinHandle* h_;
  };
  Awaiter operator co_await() noexcept { return Awaiter(this); }
};

// Schedules `task` on the current worker.
template <typename T>
JoinHandle<T> Spawn(Task<T> task) {
  auto root = detail::RunRoot(std::move(task));
  auto* promise = &root.h.promise();
  detail::AdoptRoot(promise);
  return JoinHandle<T>(promise);
}

}  // namespace ringline
