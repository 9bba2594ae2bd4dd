#include "ringline/cancellation.h"

#include "ringline/worker.h"

namespace ringline {

void CancellationSource::Cancel() {
  if (state_->cancelled) return;
  state_->cancelled = true;
  Worker* w = Worker::CurrentOrNull();
  detail::CancelWaiter* n = std::exchange(state_->head, nullptr);
  while (n) {
    detail::CancelWaiter* next = n->next;
    n->next = n->prev = nullptr;
    if (w) w->internals().Schedule(n->waiter);
    n = next;
  }
}

}  // namespace ringline
