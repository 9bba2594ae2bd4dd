#pragma once
// WhenAll, WhenAny, Timeout, WithCancellation.
//
// Children run concurrently on the current worker. WhenAny resumes on the first
// child to finish and destroys the others: their frames go, and with them any
// kernel operation they were awaiting is cancelled (its memory is released when
// the kernel is done). Results of void tasks are Unit.

#include <array>
#include <coroutine>
#include <cstddef>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "ringline/cancellation.h"
#include "ringline/internal/promise_base.h"
#include "ringline/sleep.h"
#include "ringline/task.h"
#include "ringline/worker.h"

namespace ringline {
namespace detail {

class ChildGroup;

class ChildPromise : public PromiseBase {
 public:
  struct Handle;
  Handle get_return_object() noexcept;
  std::suspend_always initial_suspend() const noexcept { return {}; }
  struct Final {
    bool await_ready() const noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<ChildPromise> h) noexcept;
    void await_resume() const noexcept {}
  };
  Final final_suspend() const noexcept { return {}; }
  void return_void() const noexcept {}
  [[noreturn]] void unhandled_exception() const noexcept { std::terminate(); }

  ChildGroup* group = nullptr;
  std::size_t index = 0;
};

// Owns a child frame; destroying it destroys the child wherever it is suspended.
struct ChildPromise::Handle {
  using promise_type = ChildPromise;
  std::coroutine_handle<ChildPromise> h;
  Handle() = default;
  explicit Handle(std::coroutine_handle<ChildPromise> c) : h(c) {}
  Handle(Handle&& o) noexcept : h(std::exchange(o.h, {})) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      if (h) h.destroy();
      h = std::exchange(o.h, {});
    }
    return *this;
  }
  ~Handle() {
    if (h) h.destroy();
  }
};
using ChildTask = ChildPromise::Handle;

inline ChildTask ChildPromise::get_return_object() noexcept {
  auto h = std::coroutine_handle<ChildPromise>::from_promise(*this);
  self_ = h;
  return ChildTask(h);
}

class ChildGroup {
 public:
  enum class Mode { kAll, kAny };
  ChildGroup(Mode mode, std::size_t n) : mode_(mode), remaining_(n) {}

  // Called from a child's final suspend: what to resume next.
  std::coroutine_handle<> ChildDone(std::size_t index) {
    if (mode_ == Mode::kAny) {
      if (winner_ != kNone) return std::noop_coroutine();
      winner_ = index;
      return parent_->self();
    }
    return --remaining_ == 0 ? parent_->self() : std::noop_coroutine();
  }

  // Starts every child (scheduled, not run inline) and suspends the parent.
  template <typename Children>
  class RunAwaiter {
   public:
    RunAwaiter(ChildGroup* g, Children& c) : g_(g), c_(c) {}
    bool await_ready() const noexcept { return g_->remaining_ == 0; }
    template <EnginePromise P>
    void await_suspend(std::coroutine_handle<P> h) {
      g_->parent_ = &h.promise();
      Worker& w = Worker::Current();
      for (std::size_t i = 0; i < c_.size(); ++i) {
        c_[i].h.promise().group = g_;
        c_[i].h.promise().index = i;
        w.internals().Schedule(&c_[i].h.promise());
      }
    }
    void await_resume() const noexcept {}

   private:
    ChildGroup* g_;
    Children& c_;
  };
  template <typename Children>
  RunAwaiter<Children> Run(Children& children) {
    return RunAwaiter<Children>(this, children);
  }
  std::size_t winner() const { return winner_; }

 private:
  static constexpr std::size_t kNone = SIZE_MAX;
  Mode mode_;
  std::size_t remaining_;
  std::size_t winner_ = kNone;
  PromiseBase* parent_ = nullptr;
};

inline std::coroutine_handle<> ChildPromise::Final::await_suspend(
    std::coroutine_handle<ChildPromise> h) noexcept {
  return h.promise().group->ChildDone(h.promise().index);
}

template <typename T>
ChildTask RunChild(Task<T> task, std::optional<NonVoid<T>>* out) {
  if constexpr (std::is_void_v<T>) {
    co_await std::move(task);
    out->emplace();
  } else {
    out->emplace(co_await std::move(task));
  }
}

// The result type of co_await on an awaitable of type A.
template <typename A>
using AwaitResult = decltype(std::declval<A>().await_resume());

}  // namespace detail

// Runs every task concurrently; resumes when all are done, with their results.
template <typename... Ts>
Task<std::tuple<NonVoid<Ts>...>> WhenAll(Task<Ts>... tasks) {
  std::tuple<std::optional<NonVoid<Ts>>...> results;
  detail::ChildGroup group(detail::ChildGroup::Mode::kAll, sizeof...(Ts));
  auto children = std::apply(
      [&](auto&... slot) {
        return std::array<detail::ChildTask, sizeof...(Ts)>{
            detail::RunChild(std::move(tasks), &slot)...};
      },
      results);
  co_await group.Run(children);
  co_return std::apply([](auto&... r) { return std::tuple<NonVoid<Ts>...>(std::move(*r)...); },
                       results);
}

template <typename T>
Task<std::vector<NonVoid<T>>> WhenAll(std::vector<Task<T>> tasks) {
  std::vector<std::optional<NonVoid<T>>> results(tasks.size());
  detail::ChildGroup group(detail::ChildGroup::Mode::kAll, tasks.size());
  std::vector<detail::ChildTask> children;
  children.reserve(tasks.size());
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    children.push_back(detail::RunChild(std::move(tasks[i]), &results[i]));
  }
  co_await group.Run(children);
  std::vector<NonVoid<T>> out;
  out.reserve(results.size());
  for (auto& r : results) out.push_back(std::move(*r));
  co_return out;
}

// Runs every task concurrently; resumes with the first result (its index is the
// variant's index()) and destroys the others, cancelling their operations.
template <typename... Ts>
Task<std::variant<NonVoid<Ts>...>> WhenAny(Task<Ts>... tasks) {
  std::tuple<std::optional<NonVoid<Ts>>...> results;
  detail::ChildGroup group(detail::ChildGroup::Mode::kAny, sizeof...(Ts));
  auto children = std::apply(
      [&](auto&... slot) {
        return std::array<detail::ChildTask, sizeof...(Ts)>{
            detail::RunChild(std::move(tasks), &slot)...};
      },
      results);
  co_await group.Run(children);
  const std::size_t winner = group.winner();
  for (auto& c : children) c = detail::ChildTask();  // cancel the losers now
  std::optional<std::variant<NonVoid<Ts>...>> out;
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    ((I == winner ? (out.emplace(std::in_place_index<I>, std::move(*std::get<I>(results))), 0) : 0),
     ...);
  }
  (std::index_sequence_for<Ts...>{});
  co_return std::move(*out);
}

template <typename T>
Task<std::pair<std::size_t, NonVoid<T>>> WhenAny(std::vector<Task<T>> tasks) {
  std::vector<std::optional<NonVoid<T>>> results(tasks.size());
  detail::ChildGroup group(detail::ChildGroup::Mode::kAny, tasks.size());
  std::vector<detail::ChildTask> children;
  children.reserve(tasks.size());
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    children.push_back(detail::RunChild(std::move(tasks[i]), &results[i]));
  }
  co_await group.Run(children);
  const std::size_t winner = group.winner();
  children.clear();
  co_return std::pair<std::size_t, NonVoid<T>>(winner, std::move(*results[winner]));
}

// Wraps any awaitable (an operation, a sleep, a join handle) in a Task.
template <typename A>
Task<detail::AwaitResult<A>> AsTask(A awaitable) {
  co_return co_await std::move(awaitable);
}
template <typename T>
Task<T> AsTask(Task<T> task) {
  return task;
}

// The task's result, or std::nullopt if `d` passes first (the task is then
// destroyed and its operations cancelled).
template <typename T, typename Rep, typename Period>
Task<std::optional<NonVoid<T>>> Timeout(std::chrono::duration<Rep, Period> d, Task<T> task) {
  auto r =
      co_await WhenAny(std::move(task), SleepTask(std::chrono::duration_cast<Clock::duration>(d)));
  if (r.index() == 0) co_return std::move(std::get<0>(r));
  co_return std::nullopt;
}
template <typename A, typename Rep, typename Period>
requires(!requires { typename A::promise_type; }) auto Timeout(std::chrono::duration<Rep, Period> d,
                                                               A awaitable) {
  return Timeout(d, AsTask(std::move(awaitable)));
}

// The task's result, or std::nullopt if `token` is cancelled first.
template <typename T>
Task<std::optional<NonVoid<T>>> WithCancellation(CancellationToken token, Task<T> task) {
  auto r = co_await WhenAny(std::move(task), token.Wait());
  if (r.index() == 0) co_return std::move(std::get<0>(r));
  co_return std::nullopt;
}

}  // namespace ringline
