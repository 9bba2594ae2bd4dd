#pragma once
// Alignment arithmetic for offsets, lengths and addresses, and padding a
// buffer out to an alignment with zeroes.
//
// Every `alignment` here is a power of two (asserted in debug builds): block
// sizes, DIO memory alignment and pages all are, and the mask forms below are
// only right for powers of two.
// Thread-safety: pure functions, except PadToAlignment, which writes the
// buffer it is given (the caller's, on the caller's thread).

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

#include "ringline/buffer.h"

namespace ringline {

template <typename T>
constexpr bool IsPowerOfTwo(T v) {
  static_assert(std::is_unsigned_v<T>);
  return v != 0 && (v & (v - 1)) == 0;
}

// `v` rounded down to a multiple of `alignment`.
template <typename T, typename A>
constexpr T AlignDown(T v, A alignment) {
  static_assert(std::is_unsigned_v<T> && std::is_unsigned_v<A>);
  assert(IsPowerOfTwo(alignment));
  return v & ~(static_cast<T>(alignment) - 1);
}

// `v` rounded up to a multiple of `alignment` (the caller keeps v small enough
// not to wrap: v + alignment - 1 must fit in T).
template <typename T, typename A>
constexpr T AlignUp(T v, A alignment) {
  static_assert(std::is_unsigned_v<T> && std::is_unsigned_v<A>);
  assert(IsPowerOfTwo(alignment));
  return AlignDown(static_cast<T>(v + (static_cast<T>(alignment) - 1)), alignment);
}

template <typename T, typename A>
requires std::is_unsigned_v<T>
constexpr bool IsAligned(T v, A alignment) {
  static_assert(std::is_unsigned_v<A>);
  assert(IsPowerOfTwo(alignment));
  return (v & (static_cast<T>(alignment) - 1)) == 0;
}

// For addresses (DIO memory alignment).
template <typename A>
inline bool IsAligned(const void* p, A alignment) {
  return IsAligned(reinterpret_cast<uintptr_t>(p), alignment);
}

// Pads the first `size` bytes of `storage` out to a multiple of `alignment`
// by zeroing the bytes [size, AlignUp(size, alignment)), so no stale memory
// reaches a device or the wire. Returns the padded size, or 0 when `storage` is
// too small for it (nothing is written then).
inline std::size_t PadToAlignment(std::span<uint8_t> storage, std::size_t size,
                                  std::size_t alignment) {
  const std::size_t padded = AlignUp(size, alignment);
  if (size > storage.size() || padded > storage.size()) return 0;
  std::memset(storage.data() + size, 0, padded - size);
  return padded;
}

// The same on a Buffer: zeroes its tail from size() to the next multiple of
// `alignment` and sets size() to that. False (Buffer untouched) when the
// capacity is too small.
inline bool PadToAlignment(Buffer& buffer, std::size_t alignment) {
  const std::size_t padded = PadToAlignment(buffer.whole(), buffer.size(), alignment);
  if (padded == 0 && buffer.size() != 0) return false;
  buffer.set_size(padded);
  return true;
}

}  // namespace ringline
