#include "ringline/buffer_pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cerrno>
#include <cstdlib>

#include "absl/strings/str_cat.h"
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
  const std::size_t rounded = (capacity + alignment - 1) / alignment * alignment;
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
  const std::size_t size = (o.buffer_size + kPage - 1) / kPage * kPage;
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
  if (WaitNode* n = waiters_.front()) {
    // Hand it straight to the longest waiter (FIFO); it stays lent.
    auto* a = static_cast<AcquireAwaiter*>(n);
    a->buffer_ = Make(i);
    waiters_.Wake(*a);
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

}  // namespace ringline
