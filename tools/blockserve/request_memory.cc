#include "blockserve/request_memory.h"

#include <thread>
#include <variant>

#include "ringline/combinators.h"
#include "ringline/wait_list.h"

namespace blockserve {

struct BufferBudget::WorkerWaiters {
  WorkerWaiters(ringline::Worker* w, WorkerWaiters* n) : worker(w), next(n) {}
  ringline::Worker* const worker;
  WorkerWaiters* const next;  // the worker registered before this one
  // Worker-local: only `worker`'s thread touches the list.
  ringline::WaitList list;
  // Tasks in `list`, readable by releasing threads.
  std::atomic<uint32_t> waiting{0};
  // A wake-up message is on its way to `worker`: later releases need not
  // post another (the one message wakes every waiter it finds).
  std::atomic<bool> wake_posted{false};
};

BufferBudget::~BufferBudget() {
  for (WorkerWaiters* w = workers_.load(std::memory_order_acquire); w != nullptr;) {
    WorkerWaiters* next = w->next;
    delete w;
    w = next;
  }
}

bool BufferBudget::TryCharge(uint64_t n) {
  uint64_t used = used_.load(std::memory_order_relaxed);
  do {
    if (n > limit_ || used > limit_ - n) return false;
  } while (!used_.compare_exchange_weak(used, used + n, std::memory_order_relaxed));
  return true;
}

void BufferBudget::Release(uint64_t n) {
  // seq_cst with WaitForRelease's increment and re-check: either the waiter
  // sees the room, or this sees the waiter (no lost wake-up).
  used_.fetch_sub(n, std::memory_order_seq_cst);
  if (waiting_.load(std::memory_order_seq_cst) != 0) [[unlikely]]
    WakeWaiters();
}

BufferBudget::WorkerWaiters& BufferBudget::WaitersOf(ringline::Worker& worker) {
  auto find = [&]() -> WorkerWaiters* {
    for (WorkerWaiters* w = workers_.load(std::memory_order_acquire); w != nullptr; w = w->next) {
      if (w->worker == &worker) return w;
    }
    return nullptr;
  };
  if (WorkerWaiters* w = find()) return *w;
  std::lock_guard<std::mutex> lock(register_mu_);
  if (WorkerWaiters* w = find()) return *w;
  auto* w = new WorkerWaiters(&worker, workers_.load(std::memory_order_relaxed));
  workers_.store(w, std::memory_order_release);
  return *w;
}

void BufferBudget::WakeWaiters() {
  ringline::Worker* const here = ringline::Worker::CurrentOrNull();
  for (WorkerWaiters* w = workers_.load(std::memory_order_acquire); w != nullptr; w = w->next) {
    if (w->waiting.load(std::memory_order_seq_cst) == 0) continue;
    if (w->worker == here) {
      w->list.NotifyAll();
      continue;
    }
    // `w->worker` is alive while `waiting` > 0: a worker destroys its tasks
    // (which leave the count) before itself. As with WriteOrder's wake-ups, a
    // release racing the last moment of that worker's shutdown is not guarded.
    if (w->wake_posted.exchange(true, std::memory_order_acq_rel)) continue;
    auto wake = [w] {
      w->wake_posted.store(false, std::memory_order_release);
      w->list.NotifyAll();
    };
    // A full message queue is backpressure on that worker: try again while
    // anyone there still waits (a stopped worker's waiters are gone).
    while (!w->worker->Post(wake)) {
      if (w->waiting.load(std::memory_order_seq_cst) == 0) {
        w->wake_posted.store(false, std::memory_order_release);
        break;
      }
      std::this_thread::yield();
    }
  }
}

ringline::Task<> BufferBudget::WaitForRelease(uint64_t n) {
  WorkerWaiters& w = WaitersOf(ringline::Worker::Current());
  // Counted while this frame waits; the guard also runs if the task is
  // destroyed in the wait (WhenAny's loser), after the WaitList awaiter left.
  struct Counted {
    BufferBudget* budget;
    WorkerWaiters* w;
    Counted(BufferBudget* b, WorkerWaiters* ww) : budget(b), w(ww) {
      w->waiting.fetch_add(1, std::memory_order_seq_cst);
      budget->waiting_.fetch_add(1, std::memory_order_seq_cst);
    }
    ~Counted() {
      budget->waiting_.fetch_sub(1, std::memory_order_seq_cst);
      w->waiting.fetch_sub(1, std::memory_order_seq_cst);
    }
    Counted(const Counted&) = delete;
    Counted& operator=(const Counted&) = delete;
  } counted(this, &w);
  // Room freed between the caller's failed TryCharge and the count above was
  // not announced to this task: look once more before sleeping.
  const uint64_t used = used_.load(std::memory_order_seq_cst);
  if (n <= limit_ && used <= limit_ - n) co_return;
  co_await w.list.Wait();
}

void BudgetCharge::Reset() {
  if (!budget_) return;
  budget_->Release(n_);
  if (gauge_) gauge_->Dec(n_);
  budget_ = nullptr;
  n_ = 0;
}

namespace {

ringline::Task<ringline::Buffer> PoolBuffer(ringline::BufferPool* pool) {
  co_return co_await pool->Acquire();
}

}  // namespace

ringline::Task<ringline::Buffer> AcquireRequestBuffer(RequestBufferSource source,
                                                      std::size_t length, BudgetCharge& charge) {
  if (ringline::Buffer b = source.pool->TryAcquire()) co_return b;
  // The pool is empty: allocate, page-rounded, if the budget allows (even
  // when earlier requests wait: they wait for whichever of a pool buffer or
  // room in the budget comes first, and are woken by either).
  const uint64_t bytes = (uint64_t{length} + 4095) / 4096 * 4096;
  bool counted = false;  // a request that waits is counted once
  auto count_wait = [&] {
    if (!counted && source.waits) source.waits->Add();
    counted = true;
  };
  // Room in the budget helps only a request that fits in it at all.
  while (source.budget && bytes <= source.budget->limit()) {
    if (source.budget->TryCharge(bytes)) {
      ringline::Buffer b = ringline::Buffer::Allocate(bytes);
      if (!b) {
        source.budget->Release(bytes);
        break;  // the heap is exhausted: only the pool is left
      }
      if (source.allocated) source.allocated->Inc(bytes);
      charge = BudgetCharge(source.budget, source.allocated, bytes);
      co_return b;
    }
    count_wait();
    // The loser is destroyed: a pool buffer already handed to it goes back to
    // the pool (and its next waiter), a budget waiter leaves its list.
    auto first =
        co_await ringline::WhenAny(PoolBuffer(source.pool), source.budget->WaitForRelease(bytes));
    if (first.index() == 0) co_return std::move(std::get<0>(first));
    if (ringline::Buffer b = source.pool->TryAcquire()) co_return b;
  }
  count_wait();
  co_return co_await source.pool->Acquire();
}

}  // namespace blockserve
