#include "blockserve/block_status_query.h"

#include <array>

#include "blockserve/nbd/block_status.h"

namespace blockserve {

ringline::Task<ringline::block::ExtentResult> QueryBlockStatus(ringline::block::Target& target,
                                                               uint64_t cookie, uint64_t offset,
                                                               uint32_t length, bool req_one,
                                                               uint32_t context_id,
                                                               BlockStatusChunk& chunk) {
  chunk.bytes = {};
  ringline::block::ExtentResult r =
      co_await target.Extents(offset, length, req_one ? 1 : nbd::kMaxBlockStatusDescriptors);
  if (!r.ok()) co_return r;
  // block::kExtentHole/kExtentZero are base:allocation's bits by design.
  static_assert(ringline::block::kExtentHole == nbd::kStateHole &&
                ringline::block::kExtentZero == nbd::kStateZero);
  const std::span<const ringline::block::Extent> extents(r.extents);
  // At most kMaxBlockStatusDescriptors (one with REQ_ONE): bounded by the
  // request, in this frame, no allocation.
  std::array<nbd::BlockStatusDescriptor, nbd::kMaxBlockStatusDescriptors> descriptors;
  const size_t n = nbd::ToDescriptors(
      extents, length, req_one,
      std::span<nbd::BlockStatusDescriptor>(descriptors).first(req_one ? 1 : descriptors.size()));
  const size_t size = nbd::kBlockStatusHeaderSize + nbd::kBlockStatusDescriptorSize * n;
  const std::span<uint8_t> out = std::span<uint8_t>(chunk.storage).first(size);
  nbd::EncodeBlockStatusChunkInto(cookie, context_id,
                                  std::span<const nbd::BlockStatusDescriptor>(descriptors).first(n),
                                  true, out);
  chunk.bytes = out;
  co_return r;
}

}  // namespace blockserve
