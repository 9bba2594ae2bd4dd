#include "buffer_ring.h"

#include <sys/mman.h>

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
  const int mask = io_uring_buf_ring_mask(count);
  for (uint32_t i = 0; i < count; ++i) {
    io_uring_buf_ring_add(br->br_, br->Addr(static_cast<uint16_t>(i)), size,
                          static_cast<uint16_t>(i), mask, static_cast<int>(i));
  }
  io_uring_buf_ring_advance(br->br_, static_cast<int>(count));
  br->available_ = count;
  br->held_.resize(count);
  return br;
}

BufferRing::~BufferRing() {
  // Unregister first: from then on no receive can pick one of these buffers.
  if (registered_) io_uring_unregister_buf_ring(ring_.raw(), group_);
  if (buffers_) munmap(buffers_, buffers_bytes_);
  if (br_) munmap(br_, br_bytes_);
}

void BufferRing::Return(uint16_t bid) {
  io_uring_buf_ring_add(br_, Addr(bid), size_, bid, io_uring_buf_ring_mask(count_),
                        static_cast<int>(pending_));
  ++pending_;
}

uint32_t BufferRing::Publish() {
  const uint32_t n = pending_;
  if (n) {
    io_uring_buf_ring_advance(br_, static_cast<int>(n));
    available_ += n;
    pending_ = 0;
  }
  return n;
}

}  // namespace ringline::net::detail
