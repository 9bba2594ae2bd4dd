#include "ringline/internal/promise_base.h"

namespace ringline {

PromiseBase::~PromiseBase() {
  // Destroyed while scheduled: leave the ready queue.
  if (linked()) internal::IntrusiveList<PromiseBase>::Unlink(*this);
}

ReadyQueue::~ReadyQueue() {
  while (Pop() != nullptr) {
  }
}

}  // namespace ringline
