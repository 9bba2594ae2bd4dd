#include "blockserve/request_memory.h"

namespace blockserve {

bool BufferBudget::TryCharge(uint64_t n) {
  uint64_t used = used_.load(std::memory_order_relaxed);
  do {
    if (n > limit_ || used > limit_ - n) return false;
  } while (!used_.compare_exchange_weak(used, used + n, std::memory_order_relaxed));
  return true;
}

void BudgetCharge::Reset() {
  if (!budget_) return;
  budget_->Release(n_);
  if (gauge_) gauge_->Dec(n_);
  budget_ = nullptr;
  n_ = 0;
}

ringline::Task<ringline::Buffer> AcquireRequestBuffer(RequestBufferSource source,
                                                      std::size_t length, BudgetCharge& charge) {
  if (ringline::Buffer b = source.pool->TryAcquire()) co_return b;
  // The pool is empty: allocate, page-rounded, if the budget allows (even
  // when earlier requests wait for the pool: they waited because the budget
  // was spent then, and a waiter is woken only by a pool buffer's return).
  const uint64_t bytes = (uint64_t{length} + 4095) / 4096 * 4096;
  if (source.budget && source.budget->TryCharge(bytes)) {
    ringline::Buffer b = ringline::Buffer::Allocate(bytes);
    if (b) {
      if (source.allocated) source.allocated->Inc(bytes);
      charge = BudgetCharge(source.budget, source.allocated, bytes);
      co_return b;
    }
    source.budget->Release(bytes);
  }
  if (source.waits) source.waits->Add();
  co_return co_await source.pool->Acquire();
}

}  // namespace blockserve
