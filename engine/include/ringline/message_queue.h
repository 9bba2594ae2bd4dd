#pragma once
// MessageQueue: the bounded queue through which other threads reach a worker.
//
// Producers (any thread) push a callable; the worker runs them in FIFO order on
// its own thread after its armed eventfd read completes. Not a hot path: a
// mutex guards the queue; the worker swaps the whole batch out under it.
// A message that is never run (its worker was destroyed first) is destroyed on
// the worker's thread when the queue is closed: what a message owns is released
// by its destructor either way.

#include <cstddef>
#include <deque>
#include <mutex>

#include "absl/functional/any_invocable.h"

namespace ringline {

using Message = absl::AnyInvocable<void() &&>;

class MessageQueue {
 public:
  explicit MessageQueue(std::size_t capacity) : capacity_(capacity) {}
  MessageQueue(const MessageQueue&) = delete;
  MessageQueue& operator=(const MessageQueue&) = delete;

  // False when the queue is full (the caller decides: retry, drop, or fail).
  bool TryPush(Message m) { return TryPush(m, /*bypass_capacity=*/false); }
  // Moves `m` in on success; on failure (full, or closed) leaves it with the
  // caller, so the caller decides what becomes of what it owns.
  // `bypass_capacity`: for replies, whose number is bounded by the requests
  // their receiver made (a reply must never be lost to a full queue).
  bool TryPush(Message& m, bool bypass_capacity) {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ || (!bypass_capacity && items_.size() >= capacity_)) return false;
    items_.push_back(std::move(m));
    return true;
  }
  // Moves every queued message into `out` (appending), in order.
  void Drain(std::deque<Message>& out) {
    std::lock_guard<std::mutex> lock(mu_);
    while (!items_.empty()) {
      out.push_back(std::move(items_.front()));
      items_.pop_front();
    }
  }
  // Refuses every later push and moves what is queued into `out`.
  void Close(std::deque<Message>& out) {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    while (!items_.empty()) {
      out.push_back(std::move(items_.front()));
      items_.pop_front();
    }
  }

 private:
  std::mutex mu_;
  std::deque<Message> items_;
  bool closed_ = false;
  const std::size_t capacity_;
};

}  // namespace ringline
