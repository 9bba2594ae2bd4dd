#pragma once
// Accumulator: the bytes a connection has received but the application has not
// consumed yet, kept contiguous so a parser sees one span.
//
// Appending compacts (moves the unconsumed bytes to the front) before it grows,
// so memory is bounded by the largest amount ever held, and an emptied
// accumulator gives back anything above kRetain. It enforces no cap itself: the
// connection decides (pause receiving, or close on overflow).
// Thread-safety: owned by one connection, used on its worker's thread.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace ringline::net::detail {

class Accumulator {
 public:
  static constexpr std::size_t kRetain = 64 * 1024;

  Accumulator() = default;
  Accumulator(const Accumulator&) = delete;
  Accumulator& operator=(const Accumulator&) = delete;

  std::size_t size() const { return tail_ - head_; }
  bool empty() const { return tail_ == head_; }
  std::size_t capacity() const { return capacity_; }
  std::span<const uint8_t> data() const { return {buf_.get() + head_, size()}; }

  void Append(const uint8_t* p, std::size_t n);
  void Consume(std::size_t n);
  // Copies up to `n` bytes to `dst`, consumes them and returns how many.
  std::size_t Take(uint8_t* dst, std::size_t n);
  void Clear();

 private:
  void Reserve(std::size_t extra);

  std::unique_ptr<uint8_t[]> buf_;
  std::size_t capacity_ = 0;
  std::size_t head_ = 0;
  std::size_t tail_ = 0;
};

}  // namespace ringline::net::detail
