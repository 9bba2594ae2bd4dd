#pragma once
// Buffer: an owned, page-aligned block of memory that I/O operations take by
// value and hand back in their result.
//
// Ownership: a Buffer handed to an operation belongs to that operation until its
// last completion arrives (for zero-copy sends, until the notification); the
// engine keeps it in the operation's slot, so destroying the awaiting coroutine
// never frees memory the kernel may still touch. Destroying a Buffer returns it to
// its pool (or frees it when it came from Buffer::Allocate).
// Thread-safety: a Buffer from a pool must be destroyed on the pool's worker thread.

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "absl/status/status.h"

namespace ringline {

class BufferPool;
class Worker;

class Buffer {
 public:
  Buffer() = default;
  Buffer(Buffer&& o) noexcept { MoveFrom(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      Reset();
      MoveFrom(o);
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { Reset(); }

  // A heap buffer aligned to `alignment` (a power of two, default a page), not
  // registered with any ring. Returns an empty Buffer if memory is exhausted.
  static Buffer Allocate(std::size_t capacity, std::size_t alignment = 4096);

  explicit operator bool() const { return data_ != nullptr; }
  uint8_t* data() const { return data_; }
  std::size_t capacity() const { return capacity_; }
  // Bytes of valid data, set by the producer (a read result, the caller before a write).
  std::size_t size() const { return size_; }
  void set_size(std::size_t n) { size_ = static_cast<uint32_t>(n); }
  std::span<uint8_t> span() const { return {data_, size_}; }
  std::span<uint8_t> whole() const { return {data_, capacity_}; }
  // Index of the ring registration covering this memory, or -1 when unregistered
  // (then I/O uses the plain, non-fixed opcodes).
  int registered_index() const { return reg_index_; }
  bool registered() const { return reg_index_ >= 0; }
  // The worker whose ring holds this buffer's registration: null when the
  // buffer is not registered, or that worker is gone. A registration index means
  // something only on that worker's ring: on another ring the same index names
  // other memory, or none (the kernel's EFAULT).
  const Worker* registered_on() const;
  // True if an operation submitted on `w` may use the fixed (registered) form.
  bool fixed_on(const Worker& w) const { return registered() && registered_on() == &w; }
  // For an operation submitted on worker `w`: OK, or, for a buffer registered
  // with another worker's ring, an error naming both workers (the block layer
  // fails such a request with EXDEV at submission; pool buffers also must go
  // back to their own worker, see the thread-safety note above).
  absl::Status CheckUsableOn(const Worker& w) const;

  // Returns the memory to its owner now.
  void Reset() noexcept;

 private:
  friend class BufferPool;
  void MoveFrom(Buffer& o) noexcept {
    pool_ = std::exchange(o.pool_, nullptr);
    data_ = std::exchange(o.data_, nullptr);
    capacity_ = std::exchange(o.capacity_, 0);
    size_ = std::exchange(o.size_, 0);
    reg_index_ = std::exchange(o.reg_index_, -1);
  }

  BufferPool* pool_ = nullptr;  // null: heap memory from Allocate()
  uint8_t* data_ = nullptr;
  uint32_t capacity_ = 0;
  uint32_t size_ = 0;
  int32_t reg_index_ = -1;
};

}  // namespace ringline
