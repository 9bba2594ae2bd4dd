#pragma once
// NBD_CMD_BLOCK_STATUS for the base:allocation context: turning the extents a
// backend reports into the descriptors of an NBD_REPLY_TYPE_BLOCK_STATUS chunk.
//
// Spec (doc/proto.md, NBD_CMD_BLOCK_STATUS): descriptors are consecutive from
// the request's offset, their lengths sum to at most the request's length, at
// least one is sent, and with NBD_CMD_FLAG_REQ_ONE exactly one; consecutive
// descriptors SHOULD differ in status, so equal neighbours are merged here.
// Status bits of base:allocation: NBD_STATE_HOLE (1), NBD_STATE_ZERO (2).
//
// Thread-safety: pure functions over caller-owned data.

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "blockserve/nbd/reply.h"

namespace blockserve::nbd {

inline constexpr uint32_t kStateHole = 1;
inline constexpr uint32_t kStateZero = 2;
// Descriptors sent in one reply without REQ_ONE: enough for a client to map
// fast, small enough that one query costs a bounded number of seeks.
inline constexpr uint32_t kMaxBlockStatusDescriptors = 256;

// One extent as a backend reports it (length in bytes, base:allocation flags).
struct ExtentIn {
  uint64_t length = 0;
  uint32_t flags = 0;
};

// Writes the descriptors for a request of `length` bytes to the front of
// `out` (at least one place) and returns how many: extents clipped to the
// request, empty ones skipped, equal neighbours merged, only the first with
// `req_one`, at most out.size(). Unknown flag bits are dropped. When the
// extents cover nothing, one descriptor of the whole length with status 0
// ("data"), which the spec says is always a safe answer. `Extent` is any type
// with `length` and `flags` (ExtentIn, block::Extent), so a backend's list is
// used without a copy.
template <typename Extent>
size_t ToDescriptors(std::span<const Extent> extents, uint32_t length, bool req_one,
                     std::span<BlockStatusDescriptor> out) {
  size_t n = 0;
  uint64_t left = length;
  for (const Extent& e : extents) {
    if (left == 0) break;
    if (e.length == 0) continue;
    const auto run = static_cast<uint32_t>(std::min<uint64_t>(e.length, left));
    const uint32_t flags = e.flags & (kStateHole | kStateZero);
    left -= run;
    if (n > 0 && out[n - 1].flags == flags) {
      out[n - 1].length += run;  // cannot overflow: the sum is <= length
      continue;
    }
    // REQ_ONE: the first run is complete once a different status follows.
    if ((req_one && n > 0) || n == out.size()) break;
    out[n++] = {run, flags};
  }
  if (n == 0) out[n++] = {length, 0};
  return n;
}
// The same into a vector, at most kMaxBlockStatusDescriptors (tests, fuzzer).
inline void ToDescriptors(std::span<const ExtentIn> extents, uint32_t length, bool req_one,
                          std::vector<BlockStatusDescriptor>& out) {
  out.resize(kMaxBlockStatusDescriptors);
  out.resize(ToDescriptors<ExtentIn>(extents, length, req_one, out));
}

}  // namespace blockserve::nbd
