#include "ringline/timer_queue.h"

#include "ringline/internal/promise_base.h"

namespace ringline {

bool TimerQueue::Less(std::size_t a, std::size_t b) const {
  const TimerNode* x = heap_[a];
  const TimerNode* y = heap_[b];
  if (x->deadline != y->deadline) return x->deadline < y->deadline;
  return x->seq_ < y->seq_;
}

void TimerQueue::Place(std::size_t i, TimerNode* n) {
  heap_[i] = n;
  n->heap_index_ = i;
}

void TimerQueue::SiftUp(std::size_t i) {
  while (i > 0) {
    const std::size_t parent = (i - 1) / 2;
    if (!Less(i, parent)) break;
    TimerNode* p = heap_[parent];
    Place(parent, heap_[i]);
    Place(i, p);
    i = parent;
  }
}

void TimerQueue::SiftDown(std::size_t i) {
  const std::size_t n = heap_.size();
  for (;;) {
    std::size_t best = i;
    const std::size_t l = 2 * i + 1, r = 2 * i + 2;
    if (l < n && Less(l, best)) best = l;
    if (r < n && Less(r, best)) best = r;
    if (best == i) return;
    TimerNode* b = heap_[best];
    Place(best, heap_[i]);
    Place(i, b);
    i = best;
  }
}

void TimerQueue::Insert(TimerNode* node) {
  node->seq_ = next_seq_++;
  heap_.push_back(node);
  node->heap_index_ = heap_.size() - 1;
  SiftUp(node->heap_index_);
}

void TimerQueue::Remove(TimerNode* node) {
  const std::size_t i = node->heap_index_;
  if (i == TimerNode::kNotQueued) return;
  node->heap_index_ = TimerNode::kNotQueued;
  TimerNode* last = heap_.back();
  heap_.pop_back();
  if (last == node) return;
  Place(i, last);
  SiftDown(i);
  SiftUp(last->heap_index_);
}

std::size_t TimerQueue::Expire(Clock::time_point now, ReadyQueue& ready) {
  std::size_t fired = 0;
  while (!heap_.empty() && heap_.front()->deadline <= now) {
    TimerNode* n = heap_.front();
    Remove(n);
    if (n->waiter) ready.Push(n->waiter);
    ++fired;
  }
  return fired;
}

std::optional<Clock::time_point> TimerQueue::NextDeadline() const {
  if (heap_.empty()) return std::nullopt;
  return heap_.front()->deadline;
}

}  // namespace ringline
