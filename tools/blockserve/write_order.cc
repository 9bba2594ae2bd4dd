#include "blockserve/write_order.h"

#include <algorithm>
#include <thread>
#include <utility>

namespace blockserve {

using ringline::Task;
using ringline::Worker;

// One request waiting for (or granted) a range lock. Shared by the waiting
// task's awaiter and the wake-up message, whichever goes last frees it.
struct WriteOrder::Waiter {
  Waiter() = default;
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;
  // A grant that reached no one: its wake-up message was destroyed without
  // running, which happens when the waiter's worker is destroyed with the
  // message still queued (shutdown; the waiting task was destroyed first and
  // left the grant to the message). Release it, or the range would stay
  // locked for the workers still serving the export. The last reference goes
  // outside mu_ (the table's references are dropped while another is held),
  // and the shared_ptr's release/acquire makes `granted` visible here.
  ~Waiter() {
    if (granted && !delivered) order->Unlock(id, rmw);
  }

  WriteOrder* order = nullptr;
  uint64_t begin = 0;
  uint64_t end = 0;
  bool rmw = false;
  Worker* worker = nullptr;
  ringline::PromiseBase* promise = nullptr;  // set before anyone can grant it
  // Guarded by order->mu_.
  bool granted = false;
  uint64_t id = 0;
  // Touched only on `worker`'s thread (and by ~Waiter, the last owner).
  bool delivered = false;  // the grant was handed on: the wake-up ran, or granted at once
  bool abandoned = false;  // the waiting task was destroyed before it resumed
};

class WriteOrder::LockAwaiter {
 public:
  LockAwaiter(WriteOrder* order, std::shared_ptr<Waiter> w) : order_(order), w_(std::move(w)) {}
  LockAwaiter(const LockAwaiter&) = delete;
  LockAwaiter& operator=(const LockAwaiter&) = delete;
  ~LockAwaiter() {
    if (!suspended_ || resumed_) return;
    // Destroyed while waiting (the session went away).
    std::vector<std::shared_ptr<Waiter>> wake;
    bool unlock = false;
    {
      std::lock_guard<std::mutex> lock(order_->mu_);
      if (!w_->granted) {
        auto& q = order_->waiters_;
        q.erase(std::find(q.begin(), q.end(), w_));
        if (w_->rmw) order_->rmw_pending_.fetch_sub(1, std::memory_order_seq_cst);
        order_->GrantLocked(wake);  // those behind it may go now
      } else if (w_->delivered) {
        unlock = true;  // granted and woken, but never resumed
      } else {
        w_->abandoned = true;  // the wake-up message releases it
      }
    }
    Wake(wake);
    if (unlock) order_->Unlock(w_->id, w_->rmw);
  }

  bool await_ready() {
    std::vector<std::shared_ptr<Waiter>> wake;
    bool granted;
    {
      std::lock_guard<std::mutex> lock(order_->mu_);
      order_->waiters_.push_back(w_);
      order_->GrantLocked(wake);
      granted = w_->granted;
    }
    if (granted) w_->delivered = true;  // await_resume takes it, no message
    if (!granted) order_->waits_.fetch_add(1, std::memory_order_relaxed);
    // Granted at once: it goes on without a wake-up. (Granted later by another
    // thread, before await_suspend ran: that wake-up is a message to this
    // worker, which runs only after await_suspend.)
    std::erase(wake, w_);
    Wake(wake);
    return granted;
  }
  template <ringline::EnginePromise P>
  void await_suspend(std::coroutine_handle<P> h) {
    // The grant's message runs on this worker's thread, so it cannot run
    // before this store: the thread is busy here.
    w_->promise = &h.promise();
    suspended_ = true;
  }
  Guard await_resume() {
    resumed_ = true;
    Guard g;
    g.order_ = order_;
    g.kind_ = Guard::Kind::kLocked;
    g.lock_id_ = w_->id;
    g.rmw_ = w_->rmw;
    return g;
  }

 private:
  WriteOrder* order_;
  std::shared_ptr<Waiter> w_;
  bool suspended_ = false;
  bool resumed_ = false;
};

WriteOrder::WriteOrder(uint32_t workers)
    : workers_(std::max<uint32_t>(workers, 1)), counters_(new PaddedCounter[workers_]) {}

WriteOrder::~WriteOrder() = default;

WriteOrder::Guard::Guard(Guard&& o) noexcept { *this = std::move(o); }

WriteOrder::Guard& WriteOrder::Guard::operator=(Guard&& o) noexcept {
  if (this != &o) {
    Release();
    order_ = std::exchange(o.order_, nullptr);
    kind_ = std::exchange(o.kind_, Kind::kNone);
    worker_ = o.worker_;
    lock_id_ = o.lock_id_;
    rmw_ = o.rmw_;
  }
  return *this;
}

void WriteOrder::Guard::Release() {
  switch (std::exchange(kind_, Kind::kNone)) {
    case Kind::kFast:
      order_->FastDone(worker_);
      break;
    case Kind::kLocked:
      order_->Unlock(lock_id_, rmw_);
      break;
    case Kind::kNone:
      break;
  }
}

WriteOrder::Guard WriteOrder::TryAligned() {
  const uint32_t w = Worker::Current().index() % workers_;
  Counter(w).fetch_add(1, std::memory_order_seq_cst);
  Guard g;
  if (rmw_pending_.load(std::memory_order_seq_cst) != 0) {
    FastDone(w);  // an RMW is coming or running: take the lock instead
    return g;
  }
  g.order_ = this;
  g.kind_ = Guard::Kind::kFast;
  g.worker_ = w;
  return g;
}

Task<WriteOrder::Guard> WriteOrder::LockAligned(uint64_t begin, uint64_t end) {
  locked_aligned_.fetch_add(1, std::memory_order_relaxed);
  auto w = std::make_shared<Waiter>();
  w->order = this;
  w->begin = begin;
  w->end = end;
  w->worker = &Worker::Current();
  co_return co_await LockAwaiter(this, std::move(w));
}

Task<WriteOrder::Guard> WriteOrder::ReadModifyWrite(uint64_t begin, uint64_t end) {
  // Raised before the counters are looked at (see the header: Dekker).
  rmw_pending_.fetch_add(1, std::memory_order_seq_cst);
  rmw_total_.fetch_add(1, std::memory_order_relaxed);
  auto w = std::make_shared<Waiter>();
  w->order = this;
  w->begin = begin;
  w->end = end;
  w->rmw = true;
  w->worker = &Worker::Current();
  co_return co_await LockAwaiter(this, std::move(w));
}

bool WriteOrder::Drained() const {
  for (uint32_t i = 0; i < workers_; ++i) {
    if (counters_[i].value.load(std::memory_order_seq_cst) != 0) return false;
  }
  return true;
}

bool WriteOrder::Conflicts(uint64_t begin, uint64_t end, std::size_t waiters_before) const {
  for (const Held& h : held_) {
    if (h.begin < end && begin < h.end) return true;
  }
  for (std::size_t i = 0; i < waiters_before; ++i) {
    if (waiters_[i]->begin < end && begin < waiters_[i]->end) return true;
  }
  return false;
}

void WriteOrder::GrantLocked(std::vector<std::shared_ptr<Waiter>>& wake) {
  for (std::size_t i = 0; i < waiters_.size();) {
    Waiter& w = *waiters_[i];
    if (Conflicts(w.begin, w.end, i) || (w.rmw && !Drained())) {
      ++i;
      continue;
    }
    w.granted = true;
    w.id = next_id_++;
    held_.push_back(Held{w.id, w.begin, w.end});
    wake.push_back(waiters_[i]);
    waiters_.erase(waiters_.begin() + static_cast<std::ptrdiff_t>(i));
  }
}

void WriteOrder::Wake(std::vector<std::shared_ptr<Waiter>>& wake) {
  for (auto& w : wake) {
    auto deliver = [w] {
      w->delivered = true;
      if (w->abandoned) {
        w->order->Unlock(w->id, w->rmw);
      } else {
        Worker::Current().internals().Schedule(w->promise);
      }
    };
    if (w->worker == Worker::CurrentOrNull()) {
      deliver();
      continue;
    }
    // A full message queue is backpressure on the other worker: try again
    // (each attempt builds a fresh message; a refused one is destroyed).
    while (!w->worker->Post(deliver)) std::this_thread::yield();
  }
  wake.clear();
}

void WriteOrder::Unlock(uint64_t id, bool rmw) {
  std::vector<std::shared_ptr<Waiter>> wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    held_.erase(
        std::find_if(held_.begin(), held_.end(), [id](const Held& h) { return h.id == id; }));
    if (rmw) rmw_pending_.fetch_sub(1, std::memory_order_seq_cst);
    GrantLocked(wake);
  }
  Wake(wake);
}

void WriteOrder::FastDone(uint32_t worker) {
  const uint32_t before = Counter(worker).fetch_sub(1, std::memory_order_seq_cst);
  // The last aligned write of this worker: an RMW may be waiting for it.
  if (before != 1 || rmw_pending_.load(std::memory_order_seq_cst) == 0) return;
  std::vector<std::shared_ptr<Waiter>> wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    GrantLocked(wake);
  }
  Wake(wake);
}

std::size_t WriteOrder::held() const {
  std::lock_guard<std::mutex> lock(mu_);
  return held_.size();
}

std::size_t WriteOrder::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waiters_.size();
}

}  // namespace blockserve
