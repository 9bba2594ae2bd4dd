#include "blockserve/block_status_query.h"

#include "blockserve/nbd/block_status.h"

namespace blockserve {

ringline::Task<ringline::block::ExtentResult> QueryBlockStatus(ringline::block::Target& target,
                                                               uint64_t cookie, uint64_t offset,
                                                               uint32_t length, bool req_one,
                                                               uint32_t context_id,
                                                               std::vector<uint8_t>& chunk) {
  chunk.clear();
  ringline::block::ExtentResult r =
      co_await target.Extents(offset, length, req_one ? 1 : nbd::kMaxBlockStatusDescriptors);
  if (!r.ok()) co_return r;
  // block::kExtentHole/kExtentZero are base:allocation's bits by design.
  static_assert(ringline::block::kExtentHole == nbd::kStateHole &&
                ringline::block::kExtentZero == nbd::kStateZero);
  std::vector<nbd::BlockStatusDescriptor> descriptors;
  nbd::ToDescriptors(std::span<const ringline::block::Extent>(r.extents), length, req_one,
                     descriptors);
  nbd::EncodeBlockStatusChunk(cookie, context_id, descriptors, true, chunk);
  co_return r;
}

}  // namespace blockserve
