#pragma once
// ServiceCoro: a coroutine owned by a subsystem (not a spawned task) that the
// worker resumes through its ready queue. The network layer uses one per worker
// to do end-of-batch work: Worker::Schedule(&coro.promise()) from completion
// handlers runs it once, after the dispatch of the current batch of completions
// and before the next io_uring_enter.
// Thread-safety: worker-local; the owner destroys the frame.

#include <coroutine>
#include <exception>
#include <utility>

#include "ringline/promise_base.h"

namespace ringline::net::detail {

class ServiceCoro {
 public:
  class promise_type : public PromiseBase {
   public:
    ServiceCoro get_return_object() {
      auto h = std::coroutine_handle<promise_type>::from_promise(*this);
      self_ = h;
      return ServiceCoro(h);
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    std::suspend_always final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    [[noreturn]] void unhandled_exception() const noexcept { std::terminate(); }
  };

  ServiceCoro() = default;
  explicit ServiceCoro(std::coroutine_handle<promise_type> h) : h_(h) {}
  ServiceCoro(ServiceCoro&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  ServiceCoro& operator=(ServiceCoro&& o) noexcept {
    if (this != &o) {
      if (h_) h_.destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  ServiceCoro(const ServiceCoro&) = delete;
  ServiceCoro& operator=(const ServiceCoro&) = delete;
  ~ServiceCoro() {
    if (h_) h_.destroy();  // unlinks itself from the ready queue if scheduled
  }

  promise_type& promise() { return h_.promise(); }
  void Start() { h_.resume(); }  // runs to its first suspension point

 private:
  std::coroutine_handle<promise_type> h_;
};

}  // namespace ringline::net::detail
