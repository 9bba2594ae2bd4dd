#include "buffer_ring.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "ringline/internal/ring.h"
#include "ringline/io_result.h"

namespace ringline::net::detail {
namespace {
std::size_t PageRound(std::size_t n) { return (n + 4095) & ~std::size_t{4095}; }
}  // namespace

absl::StatusOr<std::unique_ptr<BufferRing>> BufferRing::Create(Ring& ring, uint16_t group,
                                                               uint32_t count, uint32_t size) {
  if (count == 0 || count > 32768 || (count & (count - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("buffer ring count ", count, " must be a power of two in [1, 32768]"));
  }
  if (size == 0) return absl::InvalidArgumentError("buffer ring buffer size must be positive");
  size = (size + 63) & ~63u;
  std::unique_ptr<BufferRing> br(new BufferRing(ring, group, count, size));

  br->br_bytes_ = PageRound(std::size_t{count} * sizeof(io_uring_buf));
  void* mem =
      mmap(nullptr, br->br_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return ErrnoToStatus(-errno, "mmap of a provided buffer ring");
  br->br_ = static_cast<io_uring_buf_ring*>(mem);

  br->buffers_bytes_ = PageRound(std::size_t{count} * size);
  mem = mmap(nullptr, br->buffers_bytes_, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (mem == MAP_FAILED) {
    return ErrnoToStatus(
        -errno, absl::StrCat("mmap of ", br->buffers_bytes_, " bytes of provided receive buffers"));
  }
  br->buffers_ = static_cast<uint8_t*>(mem);

  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(br->br_);
  reg.ring_entries = count;
  reg.bgid = group;
  int ret = io_uring_register_buf_ring(ring.raw(), &reg, 0);
  if (ret < 0) {
    return ErrnoToStatus(ret, absl::StrCat("io_uring_register_buf_ring(group ", group, ", ", count,
                                           " buffers; needs Linux 5.19)"));
  }
  br->registered_ = true;
  io_uring_buf_ring_init(br->br_);
  br->held_.resize(count);
  br->spare_.reserve(count);
  for (uint32_t i = count; i-- > 0;) br->spare_.push_back(static_cast<uint16_t>(i));
  br->window_ = std::min(count, kMinWindow);
  br->Offer();
  return br;
}

BufferRing::~BufferRing() {
  // Unregister first: from then on no receive can pick one of these buffers.
  if (registered_) io_uring_unregister_buf_ring(ring_.raw(), group_);
  if (buffers_) munmap(buffers_, buffers_bytes_);
  if (br_) munmap(br_, br_bytes_);
}

void BufferRing::Return(uint16_t bid) {
  assert(spare_.size() < count_ && "a buffer returned twice");
  spare_.push_back(bid);
  ++pending_;
}

uint32_t BufferRing::Publish() {
  pending_ = 0;
  if (available_ < window_ / 4 && window_ < count_) {
    window_ = std::min(count_, window_ * 2);
    epoch_publishes_ = 0;
    epoch_min_left_ = UINT32_MAX;
  } else {
    epoch_min_left_ = std::min(epoch_min_left_, available_);
    if (++epoch_publishes_ == kWindowEpoch) {
      // Halved only where the busiest iteration took at most a quarter: then
      // it takes at most half of the halved window, short of the regrowth.
      if (epoch_min_left_ >= window_ - window_ / 4 && window_ > kMinWindow) window_ /= 2;
      epoch_publishes_ = 0;
      epoch_min_left_ = UINT32_MAX;
    }
  }
  return Offer();
}

uint32_t BufferRing::Offer() {
  uint32_t n = 0;
  for (; available_ + n < window_ && !spare_.empty(); ++n) {
    const uint16_t bid = spare_.back();
    spare_.pop_back();
    io_uring_buf_ring_add(br_, Addr(bid), size_, bid, io_uring_buf_ring_mask(count_),
                          static_cast<int>(n));
  }
  if (n) {
    io_uring_buf_ring_advance(br_, static_cast<int>(n));
    available_ += n;
  }
  assert(available_ <= count_);
  return n;
}

}  // namespace ringline::net::detail
