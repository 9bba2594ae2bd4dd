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

// Builds the descriptors of one reply from extents that arrive in one or more
// batches (a backend asked again from where its last batch ended): extents
// clipped to the request, empty ones skipped, equal neighbours merged (also
// across batches), only the first run with `req_one`, at most out.size()
// descriptors. Unknown flag bits are dropped. Writes into `out` (caller-owned,
// at least one place; it must outlive the builder): no allocation.
class DescriptorBuilder {
 public:
  DescriptorBuilder(uint32_t length, bool req_one, std::span<BlockStatusDescriptor> out)
      : out_(out), left_(length), length_(length), req_one_(req_one), done_(length == 0) {}

  // Adds the extent that follows the ones added so far. False once no further
  // extent can change the reply: the request's length is covered, `out` is
  // full and a different status follows, or REQ_ONE's run has ended.
  bool Add(uint64_t length, uint32_t flags) {
    if (done_) return false;
    if (length == 0) return true;
    const auto run = static_cast<uint32_t>(std::min<uint64_t>(length, left_));
    flags &= kStateHole | kStateZero;
    if (n_ > 0 && out_[n_ - 1].flags == flags) {
      out_[n_ - 1].length += run;  // cannot overflow: the sum is <= length
    } else if ((req_one_ && n_ > 0) || n_ == out_.size()) {
      done_ = true;  // REQ_ONE: the first run is complete once a different status follows
      return false;
    } else {
      out_[n_++] = {run, flags};
    }
    left_ -= run;
    done_ = left_ == 0;
    return !done_;
  }
  // Bytes of the request the descriptors cover so far.
  uint64_t covered() const { return length_ - left_; }
  // The number of descriptors at the front of `out`. When no extent covered
  // anything, one descriptor of the whole length with status 0 ("data"),
  // which the spec says is always a safe answer.
  size_t Finish() {
    if (n_ == 0) out_[n_++] = {length_, 0};
    done_ = true;
    return n_;
  }

 private:
  std::span<BlockStatusDescriptor> out_;
  size_t n_ = 0;
  uint32_t left_;
  const uint32_t length_;
  const bool req_one_;
  bool done_;
};

// Writes the descriptors for a request of `length` bytes, from one list of
// extents, to the front of `out` (at least one place) and returns how many
// (DescriptorBuilder's rules). `Extent` is any type with `length` and `flags`
// (ExtentIn, block::Extent), so a backend's list is used without a copy.
template <typename Extent>
size_t ToDescriptors(std::span<const Extent> extents, uint32_t length, bool req_one,
                     std::span<BlockStatusDescriptor> out) {
  DescriptorBuilder builder(length, req_one, out);
  for (const Extent& e : extents) {
    if (!builder.Add(e.length, e.flags)) break;
  }
  return builder.Finish();
}
// The same into a vector, at most kMaxBlockStatusDescriptors (tests, fuzzer).
inline void ToDescriptors(std::span<const ExtentIn> extents, uint32_t length, bool req_one,
                          std::vector<BlockStatusDescriptor>& out) {
  out.resize(kMaxBlockStatusDescriptors);
  out.resize(ToDescriptors<ExtentIn>(extents, length, req_one, out));
}

}  // namespace blockserve::nbd
