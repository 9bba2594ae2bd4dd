#include "ringline/wait_list.h"

#include "ringline/worker.h"

namespace ringline {

void WaitNode::Park(PromiseBase* p) {
  assert(state_ == State::kIdle && list_ != nullptr);
  promise_ = p;
  state_ = State::kQueued;
  list_->waiters_.push_back(*this);
}

void WaitNode::Leave() {
  switch (state_) {
    case State::kIdle:
    case State::kWoken:
      break;
    case State::kQueued:
      list_->waiters_.remove(*this);
      break;
    case State::kWokenByOne:
      // Our task was destroyed between the wake-up and its resumption: the
      // wake-up belongs to the next waiter.
      state_ = State::kIdle;
      list_->NotifyOne();
      break;
  }
  state_ = State::kIdle;
  promise_ = nullptr;
}

void WaitList::WakeAs(WaitNode& node, WaitNode::State state) {
  assert(node.state_ == WaitNode::State::kQueued && node.list_ == this);
  waiters_.remove(node);
  node.state_ = state;
  Worker::Current().internals().Schedule(node.promise_);
}

void WaitList::MoveTo(WaitNode& node, WaitList& other) {
  assert(node.state_ == WaitNode::State::kQueued && node.list_ == this);
  waiters_.remove(node);
  node.list_ = &other;
  other.waiters_.push_back(node);
}

bool WaitList::NotifyOne() {
  WaitNode* n = waiters_.front();
  if (n == nullptr) return false;
  WakeAs(*n, WaitNode::State::kWokenByOne);
  return true;
}

std::size_t WaitList::NotifyAll() {
  std::size_t n = 0;
  while (WaitNode* w = waiters_.front()) {
    WakeAs(*w, WaitNode::State::kWoken);
    ++n;
  }
  return n;
}

}  // namespace ringline
