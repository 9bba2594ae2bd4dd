#include "accumulator.h"

#include <algorithm>
#include <cstring>

namespace ringline::net::detail {

void Accumulator::Reserve(std::size_t extra) {
  if (capacity_ - tail_ >= extra) return;
  const std::size_t live = size();
  if (capacity_ - live >= extra && head_ > 0) {
    // Enough room once the consumed prefix is dropped.
    std::memmove(buf_.get(), buf_.get() + head_, live);
    head_ = 0;
    tail_ = live;
    return;
  }
  std::size_t cap = std::max<std::size_t>(capacity_ * 2, 4096);
  while (cap < live + extra) cap *= 2;
  auto next = std::make_unique<uint8_t[]>(cap);
  if (live) std::memcpy(next.get(), buf_.get() + head_, live);
  buf_ = std::move(next);
  capacity_ = cap;
  head_ = 0;
  tail_ = live;
}

void Accumulator::Append(const uint8_t* p, std::size_t n) {
  if (n == 0) return;
  Reserve(n);
  std::memcpy(buf_.get() + tail_, p, n);
  tail_ += n;
}

void Accumulator::Consume(std::size_t n) {
  head_ += std::min(n, size());
  if (head_ == tail_) {
    head_ = tail_ = 0;
    if (capacity_ > kRetain) Clear();
  }
}

std::size_t Accumulator::Take(uint8_t* dst, std::size_t n) {
  n = std::min(n, size());
  if (n) std::memcpy(dst, buf_.get() + head_, n);
  Consume(n);
  return n;
}

void Accumulator::Clear() {
  buf_.reset();
  capacity_ = head_ = tail_ = 0;
}

}  // namespace ringline::net::detail
