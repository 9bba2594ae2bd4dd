#include "blockserve/block_status_query.h"

#include <algorithm>
#include <array>

#include "blockserve/nbd/block_status.h"

namespace blockserve {

// block::kExtentHole/kExtentZero are base:allocation's bits by design.
static_assert(ringline::block::kExtentHole == nbd::kStateHole &&
              ringline::block::kExtentZero == nbd::kStateZero);

ringline::Task<ringline::block::ExtentResult> QueryBlockStatus(ringline::block::Target& target,
                                                               uint64_t cookie, uint64_t offset,
                                                               uint32_t length, bool req_one,
                                                               uint32_t context_id,
                                                               BlockStatusChunk& chunk) {
  chunk.bytes = {};
  // Both arrays live in this frame (about 3 KiB, inside the frame allocator's
  // recycled sizes): no allocation per request. The extents come in batches
  // of kExtentBatch, each asked from where the last one ended, until the
  // descriptors are full, the request is covered, or a target reports fewer
  // than it had room for (it has said all it will).
  std::array<nbd::BlockStatusDescriptor, nbd::kMaxBlockStatusDescriptors> descriptors;
  std::array<ringline::block::Extent, kExtentBatch> extents;
  nbd::DescriptorBuilder builder(
      length, req_one,
      std::span<nbd::BlockStatusDescriptor>(descriptors).first(req_one ? 1 : descriptors.size()));
  // Extents examined per request: as many as descriptors fit (one with
  // REQ_ONE), so a file target does at most that many SEEK_DATA/SEEK_HOLE
  // pairs, whatever the batching.
  uint32_t budget = req_one ? 1 : nbd::kMaxBlockStatusDescriptors;
  const uint64_t end = offset + length;
  ringline::block::ExtentResult r;
  for (uint64_t pos = offset; budget > 0 && pos < end;) {
    const std::span<ringline::block::Extent> batch =
        std::span<ringline::block::Extent>(extents).first(std::min<uint32_t>(budget, kExtentBatch));
    r = co_await target.Extents(pos, end - pos, batch);
    if (!r.ok()) break;
    budget -= static_cast<uint32_t>(batch.size());
    bool more = true;
    for (uint32_t i = 0; more && i < r.count && i < batch.size(); ++i) {
      more = builder.Add(batch[i].length, batch[i].flags);
      pos += batch[i].length;
    }
    if (!more || r.count < batch.size()) break;
  }
  if (!r.ok()) {
    if (builder.covered() == 0) co_return r;
    // Report what was found; the client's next request meets the error again.
    r = ringline::block::ExtentResult{};
  }
  const size_t n = builder.Finish();
  r.count = static_cast<uint32_t>(n);
  const size_t size = nbd::kBlockStatusHeaderSize + nbd::kBlockStatusDescriptorSize * n;
  const std::span<uint8_t> out = std::span<uint8_t>(chunk.storage).first(size);
  nbd::EncodeBlockStatusChunkInto(cookie, context_id,
                                  std::span<const nbd::BlockStatusDescriptor>(descriptors).first(n),
                                  true, out);
  chunk.bytes = out;
  co_return r;
}

}  // namespace blockserve
