#include "blockserve/block_status_query.h"

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
  if (req_one) {
    nbd::BlockStatusDescriptor d;
    nbd::ToDescriptors(extents, length, true, std::span(&d, 1));
    nbd::EncodeBlockStatusChunkInto(cookie, context_id, std::span(&d, 1), true, chunk.one);
    chunk.bytes = chunk.one;
    co_return r;
  }
  std::vector<nbd::BlockStatusDescriptor> descriptors(
      std::min<size_t>(nbd::kMaxBlockStatusDescriptors, std::max<size_t>(r.extents.size(), 1)));
  descriptors.resize(nbd::ToDescriptors(extents, length, false,
                                        std::span<nbd::BlockStatusDescriptor>(descriptors)));
  nbd::EncodeBlockStatusChunk(cookie, context_id, descriptors, true, chunk.many);
  chunk.bytes = chunk.many;
  co_return r;
}

}  // namespace blockserve
