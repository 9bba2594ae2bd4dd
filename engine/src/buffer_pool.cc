#include "ringline/buffer_pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cassert>
#include <cerrno>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "ringline/align.h"
#include "ringline/io_result.h"
#include "ringline/log.h"
#include "ringline/worker.h"

namespace ringline {
namespace {
constexpr std::size_t kPage = 4096;
std::atomic<bool> g_memlock_warned{false};
}  // namespace

Buffer Buffer::Allocate(std::size_t capacity, std::size_t alignment) {
  void* p = nullptr;
  const std::size_t rounded = AlignUp(capacity, alignment);
  if (posix_memalign(&p, alignment, rounded ? rounded : alignment) != 0) return Buffer();
  Buffer b;
  b.data_ = static_cast<uint8_t*>(p);
  b.capacity_ = static_cast<uint32_t>(capacity);
  return b;
}

void Buffer::Reset() noexcept {
  if (!data_) return;
  if (pool_)
    pool_->Return(data_);
  else
    std::free(data_);
  pool_ = nullptr;
  data_ = nullptr;
  capacity_ = size_ = 0;
  reg_index_ = -1;
}

BufferPool::BufferPool(Worker& worker, std::size_t buffer_size, uint32_t count)
    : worker_(&worker), buffer_size_(buffer_size), count_(count) {}

absl::StatusOr<std::unique_ptr<BufferPool>> BufferPool::Create(Worker& worker, const Options& o) {
  if (o.count == 0 || o.buffer_size == 0) {
    return absl::InvalidArgumentError("BufferPool: count and buffer_size must be positive");
  }
  const std::size_t size = AlignUp(o.buffer_size, kPage);
  if (size > (1u << 31)) {
    return absl::InvalidArgumentError(
        absl::StrCat("BufferPool: buffer_size ", o.buffer_size, " exceeds 2 GiB"));
  }
  std::unique_ptr<BufferPool> pool(new BufferPool(worker, size, o.count));
  pool->mapped_ = size * o.count;
  void* mem = mmap(
      nullptr, pool->mapped_, PROT_READ | PROT_WRITE,
      MAP_PRIVATE | MAP_ANONYMOUS | (o.populate || o.register_with_ring ? MAP_POPULATE : 0), -1, 0);
  if (mem == MAP_FAILED) {
    return ErrnoToStatus(-errno, absl::StrCat("mmap of ", pool->mapped_, " bytes of I/O buffers"));
  }
  pool->base_ = static_cast<uint8_t*>(mem);
  if (o.register_with_ring) {
    pool->per_registration_ =
        static_cast<uint32_t>(std::max<std::size_t>(1, o.max_registration_bytes / size));
    const uint32_t groups = (o.count + pool->per_registration_ - 1) / pool->per_registration_;
    absl::Status failed;
    for (uint32_t g = 0; g < groups && failed.ok(); ++g) {
      const uint32_t first = g * pool->per_registration_;
      const uint32_t n = std::min(pool->per_registration_, o.count - first);
      auto idx = worker.internals().ring().RegisterBuffer(pool->base_ + std::size_t{first} * size,
                                                          std::size_t{n} * size);
      if (idx.ok())
        pool->reg_indexes_.push_back(*idx);
      else
        failed = idx.status();
    }
    if (!failed.ok()) {
      for (int idx : pool->reg_indexes_) worker.internals().ring().UnregisterBuffer(idx);
      pool->reg_indexes_.clear();
      if (!g_memlock_warned.exchange(true)) {
        RL_LOG_WARN(
            "%s; using unregistered buffers (plain READ/WRITE instead of the _FIXED "
            "opcodes)",
            failed.message());
      }
    }
  }
  worker.internals().AttachPool(pool.get());
  pool->free_.reserve(o.count);
  pool->lent_.assign(o.count, false);
  for (uint32_t i = o.count; i-- > 0;) pool->free_.push_back(i);
  return pool;
}

BufferPool::~BufferPool() {
  assert(std::find(lent_.begin(), lent_.end(), true) == lent_.end() &&
         "BufferPool destroyed with buffers still lent out");
  if (worker_) {
    for (int idx : reg_indexes_) worker_->internals().ring().UnregisterBuffer(idx);
    worker_->internals().DetachPool(this);
  }
  if (base_) munmap(base_, mapped_);
}

Buffer BufferPool::Make(uint32_t i) {
  Buffer b;
  b.pool_ = this;
  b.data_ = base_ + std::size_t{i} * buffer_size_;
  b.capacity_ = static_cast<uint32_t>(buffer_size_);
  b.size_ = 0;
  b.reg_index_ = reg_indexes_.empty() ? -1 : reg_indexes_[i / per_registration_];
  return b;
}

Buffer BufferPool::TryAcquire() {
  if (free_.empty()) return Buffer();
  const uint32_t i = free_.back();
  free_.pop_back();
  assert(!lent_[i] && "a free buffer is also lent");
  lent_[i] = true;
  return Make(i);
}

void BufferPool::Return(uint8_t* data) {
  assert(data >= base_ && data < base_ + mapped_ && "Buffer returned to a pool it is not from");
  assert((data - base_) % buffer_size_ == 0 && "Buffer returned with a moved data pointer");
  const uint32_t i = static_cast<uint32_t>((data - base_) / buffer_size_);
  assert(lent_[i] && "Buffer returned twice");
  while (WaitNode* n = waiters_.front()) {
    auto* w = static_cast<Waiter*>(n);
    if (w->expired()) {
      // Its deadline passed and its task is already scheduled to see that:
      // park it where it can still leave, and serve the next one.
      waiters_.MoveTo(*w, expired_);
      continue;
    }
    // Hand it straight to the longest live waiter (FIFO); it stays lent.
    w->DisarmTimer();
    w->buffer_ = Make(i);
    waiters_.Wake(*w);
    return;
  }
  lent_[i] = false;
  free_.push_back(i);
}

bool BufferPool::AcquireAwaiter::await_ready() {
  // Never overtake waiters that are already queued.
  if (!pool_->waiters_.empty()) return false;
  buffer_ = pool_->TryAcquire();
  return static_cast<bool>(buffer_);
}

void BufferPool::Waiter::DisarmTimer() {
  if (timer_.queued()) Worker::Current().timers().Remove(&timer_);
}

bool BufferPool::TimedAcquireAwaiter::await_ready() {
  if (pool_ == nullptr) return true;  // completes at once (a buffer or an error)
  if (pool_->waiters_.empty()) {
    buffer_ = pool_->TryAcquire();
    if (buffer_) return true;
  }
  return deadline_ <= Clock::now();  // already late: time out without waiting
}

void BufferPool::TimedAcquireAwaiter::ArmTimer(PromiseBase* promise) {
  if (deadline_ == Clock::time_point::max()) return;
  timed_ = true;
  timer_.deadline = deadline_;
  timer_.waiter = promise;
  Worker::Current().timers().Insert(&timer_);
}

Result<Buffer> BufferPool::TimedAcquireAwaiter::await_resume() {
  // Resumed by the timer, we are still in `waiters_` or `expired_`: leave it.
  Leave();
  DisarmTimer();
  Resumed();
  if (buffer_) return Result<Buffer>(std::move(buffer_));
  if (error_ != 0) return Result<Buffer>::Error(error_, std::move(detail_));
  return Result<Buffer>::Error(
      ETIMEDOUT, absl::DeadlineExceededError(absl::StrCat(
                     "no ", pool_->buffer_size(), "-byte buffer was free before the deadline (",
                     pool_->count(), " in the pool, all in use)")));
}

// ---- SizeClassPool ------------------------------------------------------------

SizeClassPool::Options SizeClassPool::Options::PowersOfTwo(std::size_t min_size,
                                                           std::size_t max_size, uint32_t count) {
  Options o;
  std::size_t size = std::bit_ceil(std::max(min_size, kPage));
  const std::size_t top = std::bit_ceil(std::max(max_size, size));
  for (; size <= top; size *= 2) o.classes.push_back({.buffer_size = size, .count = count});
  return o;
}

absl::StatusOr<std::unique_ptr<SizeClassPool>> SizeClassPool::Create(Worker& worker,
                                                                     const Options& o) {
  if (o.classes.empty()) {
    return absl::InvalidArgumentError(
        "SizeClassPool: Options::classes is empty; give at least one");
  }
  std::vector<Class> classes = o.classes;
  for (Class& c : classes) c.buffer_size = AlignUp(c.buffer_size, kPage);
  std::sort(classes.begin(), classes.end(),
            [](const Class& a, const Class& b) { return a.buffer_size < b.buffer_size; });
  for (std::size_t k = 0; k < classes.size(); ++k) {
    if (classes[k].count == 0 || classes[k].buffer_size == 0) {
      return absl::InvalidArgumentError(absl::StrCat("SizeClassPool: class of ",
                                                     classes[k].buffer_size, " bytes has count ",
                                                     classes[k].count, "; both must be positive"));
    }
    if (k > 0 && classes[k].buffer_size == classes[k - 1].buffer_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("SizeClassPool: two classes are ", classes[k].buffer_size,
                       " bytes once rounded up to a page; merge them (add their counts)"));
    }
  }
  std::unique_ptr<SizeClassPool> set(new SizeClassPool());
  for (const Class& c : classes) {
    auto pool = BufferPool::Create(worker, {.buffer_size = c.buffer_size,
                                            .count = c.count,
                                            .register_with_ring = o.register_with_ring,
                                            .populate = o.populate,
                                            .max_registration_bytes = o.max_registration_bytes});
    if (!pool.ok()) {
      return absl::Status(pool.status().code(),
                          absl::StrCat("SizeClassPool class of ", c.buffer_size,
                                       " bytes: ", pool.status().message()));
    }
    set->pools_.push_back(std::move(*pool));
  }
  return set;
}

int SizeClassPool::ClassFor(std::size_t min_bytes) const {
  for (std::size_t k = 0; k < pools_.size(); ++k) {
    if (pools_[k]->buffer_size() >= min_bytes) return static_cast<int>(k);
  }
  return -1;
}

Buffer SizeClassPool::TryAcquire(std::size_t min_bytes) {
  const int first = ClassFor(min_bytes);
  if (first < 0) return Buffer();
  // A class's free list is non-empty only while nobody waits in it (a returned
  // buffer goes to a live waiter first), so taking from it overtakes nobody.
  for (std::size_t k = static_cast<std::size_t>(first); k < pools_.size(); ++k) {
    if (Buffer b = pools_[k]->TryAcquire()) return b;
  }
  return Buffer();
}

BufferPool::TimedAcquireAwaiter SizeClassPool::AcquireUntil(std::size_t min_bytes,
                                                            Clock::time_point deadline) {
  const int k = ClassFor(min_bytes);
  if (k < 0) {
    return BufferPool::TimedAcquireAwaiter(
        Buffer(), EMSGSIZE,
        absl::InvalidArgumentError(absl::StrCat("SizeClassPool: ", min_bytes,
                                                " bytes exceed the largest class (", largest(),
                                                " bytes); add a larger class")));
  }
  if (Buffer b = TryAcquire(min_bytes)) {
    return BufferPool::TimedAcquireAwaiter(std::move(b), 0, absl::OkStatus());
  }
  return pools_[static_cast<std::size_t>(k)]->AcquireUntil(deadline);
}

}  // namespace ringline
