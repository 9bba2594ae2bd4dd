#pragma once
// Task<T>: the engine's coroutine type.
//
// Lazy (starts when awaited or spawned), move-only, and resumes its awaiter by
// symmetric transfer, so awaiting a chain of tasks costs no heap allocation and
// no scheduler round trip. Destroying a Task destroys its frame and, recursively,
// every task it is awaiting; operations in flight in those frames are orphaned
// to the engine (see op_slab.h) and cancelled, never left pointing at freed memory.
// Thread-safety: a Task belongs to one worker thread once started.
//
// Compiler notes (g++ 12; clang 14 is fine):
//  - `if (!co_await SomeTask())` can be miscompiled (the awaited task never
//    starts; seen in blockserve). Await into a variable first:
//      const bool ok = co_await SomeTask();
//      if (!ok) ...
//  - A temporary holding a std::string created inside a co_await expression
//    (`co_await G(Opts{.name = "x"})`) can be copied bitwise and later crash
//    (seen in the network layer). Build such arguments in a named variable.

#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "ringline/internal/promise_base.h"

namespace ringline {

template <typename T = void>
class Task;

namespace detail {

struct TaskFinalAwaiter {
  bool await_ready() const noexcept { return false; }
  template <typename P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
    auto c = h.promise().continuation_;
    return c ? c : std::noop_coroutine();
  }
  void await_resume() const noexcept {}
};

class TaskPromiseCommon : public PromiseBase {
 public:
  std::suspend_always initial_suspend() const noexcept { return {}; }
  TaskFinalAwaiter final_suspend() const noexcept { return {}; }
  // Errors are values in this engine; an escaping exception is a bug.
  [[noreturn]] void unhandled_exception() const noexcept { std::terminate(); }

  std::coroutine_handle<> continuation_;
};

template <typename T>
class TaskPromise : public TaskPromiseCommon {
 public:
  Task<T> get_return_object() noexcept;
  template <typename U>
  requires std::is_convertible_v<U&&, T>
  void return_value(U&& v) { value_.emplace(std::forward<U>(v)); }
  T take() { return std::move(*value_); }

 private:
  std::optional<T> value_;
};

template <>
class TaskPromise<void> : public TaskPromiseCommon {
 public:
  Task<void> get_return_object() noexcept;
  void return_void() const noexcept {}
  void take() const noexcept {}
};

}  // namespace detail

template <typename T>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::TaskPromise<T>;
  using Handle = std::coroutine_handle<promise_type>;
  using value_type = T;

  Task() = default;
  explicit Task(Handle h) noexcept : h_(h) {}
  Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Task& operator=(Task&& o) noexcept {
    if (this != &o) {
      Reset();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { Reset(); }

  bool valid() const { return static_cast<bool>(h_); }
  bool done() const { return h_ && h_.done(); }

  auto operator co_await() && noexcept {
    struct Awaiter {
      Handle h;
      bool await_ready() const noexcept { return !h || h.done(); }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
        h.promise().continuation_ = awaiting;
        return h;
      }
      T await_resume() { return h.promise().take(); }
    };
    return Awaiter{h_};
  }

  // Gives up ownership of the frame (used by spawn and the combinators).
  Handle Release() noexcept { return std::exchange(h_, {}); }

 private:
  void Reset() noexcept {
    if (h_) std::exchange(h_, {}).destroy();
  }
  Handle h_;
};

namespace detail {
template <typename T>
Task<T> TaskPromise<T>::get_return_object() noexcept {
  auto h = std::coroutine_handle<TaskPromise<T>>::from_promise(*this);
  self_ = h;
  return Task<T>(h);
}
inline Task<void> TaskPromise<void>::get_return_object() noexcept {
  auto h = std::coroutine_handle<TaskPromise<void>>::from_promise(*this);
  self_ = h;
  return Task<void>(h);
}
}  // namespace detail

// The value type a task yields, with void mapped to std::monostate so results of
// void tasks can be stored (combinators, join handles).
struct Unit {
  friend bool operator==(Unit, Unit) = default;
};
template <typename T>
using NonVoid = std::conditional_t<std::is_void_v<T>, Unit, T>;

}  // namespace ringline
