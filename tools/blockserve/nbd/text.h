#pragma once
// String helpers for protocol strings (export names, descriptions, error
// messages), which the spec bounds in bytes and requires to be UTF-8.
//
// Thread-safety: pure functions.

#include <cstddef>
#include <string_view>

namespace blockserve::nbd {

// The longest prefix of `s` of at most `max_bytes` bytes that does not split a
// UTF-8 sequence, so truncated text stays valid UTF-8 when `s` was.
inline std::string_view TruncateUtf8(std::string_view s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  size_t end = max_bytes;
  // Back off continuation bytes (10xxxxxx) so the cut lands on a lead byte.
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return s.substr(0, end);
}

}  // namespace blockserve::nbd
