#include "ringline/promise_base.h"

namespace ringline {

PromiseBase::~PromiseBase() {
  if (queue_) queue_->Remove(this);
}

ReadyQueue::~ReadyQueue() {
  while (Pop() != nullptr) {
  }
}

void ReadyQueue::Push(PromiseBase* p) {
  if (p->queue_) return;
  p->queue_ = this;
  p->next_ = nullptr;
  p->prev_ = tail_;
  if (tail_)
    tail_->next_ = p;
  else
    head_ = p;
  tail_ = p;
  ++size_;
}

PromiseBase* ReadyQueue::Pop() {
  PromiseBase* p = head_;
  if (p) Remove(p);
  return p;
}

void ReadyQueue::Remove(PromiseBase* p) {
  if (p->prev_)
    p->prev_->next_ = p->next_;
  else
    head_ = p->next_;
  if (p->next_)
    p->next_->prev_ = p->prev_;
  else
    tail_ = p->prev_;
  p->next_ = p->prev_ = nullptr;
  p->queue_ = nullptr;
  --size_;
}

}  // namespace ringline
