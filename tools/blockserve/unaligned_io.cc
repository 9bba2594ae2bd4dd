#include "blockserve/unaligned_io.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "ringline/align.h"

namespace blockserve {

using ringline::Buffer;
using ringline::Task;
using ringline::block::BlockResult;

namespace {

// The blocks a zeroing or trim touches only in part, and the whole blocks
// between them.
struct Edges {
  uint64_t head_block = 0;  // block holding `offset`
  uint64_t tail_block = 0;  // block holding `end` (when end is not a boundary)
  bool head_partial = false;
  bool tail_partial = false;  // a distinct block from the head's
  uint64_t middle_begin = 0;
  uint64_t middle_end = 0;  // empty when middle_begin >= middle_end
};

Edges SplitEdges(const UnalignedIo& io, uint64_t offset, uint64_t end) {
  Edges e;
  const uint32_t a = io.alignment;
  e.head_block = ringline::AlignDown(offset, a);
  e.tail_block = ringline::AlignDown(end, a);
  e.head_partial = offset != e.head_block;
  // The end of the export is a boundary even mid-block.
  const bool end_partial = end != e.tail_block && end != io.export_size;
  e.middle_begin = e.head_partial ? e.head_block + a : offset;
  e.middle_end = end_partial ? e.tail_block : end;
  e.tail_partial = end_partial && !(e.head_partial && e.tail_block == e.head_block);
  return e;
}

uint64_t BlockEnd(const UnalignedIo& io, uint64_t block) {
  return std::min(block + io.alignment, io.export_size);
}

// Reads the block [block, block_end) and copies its bytes outside
// [keep_begin, keep_end) into `span_data`, which holds the range from
// `span_begin` on.
Task<BlockResult> MergeEdge(const UnalignedIo& io, uint64_t block, uint64_t block_end,
                            uint64_t keep_begin, uint64_t keep_end, uint8_t* span_data,
                            uint64_t span_begin) {
  Buffer edge = co_await io.edges.Acquire();
  BlockResult r =
      co_await io.target.Read(block, static_cast<uint32_t>(block_end - block), std::move(edge));
  if (!r.ok()) co_return r;
  const uint8_t* src = r.buffer.data();
  if (keep_begin > block) {
    const uint64_t n = std::min(keep_begin, block_end) - block;
    std::memcpy(span_data + (block - span_begin), src, n);
  }
  if (keep_end < block_end) {
    const uint64_t from = std::max(keep_end, block);
    std::memcpy(span_data + (from - span_begin), src + (from - block), block_end - from);
  }
  co_return r;
}

// Reads the block [block, block_end), zeroes [zero_begin, zero_end) in it and
// writes it back.
Task<BlockResult> ZeroEdge(const UnalignedIo& io, uint64_t block, uint64_t block_end,
                           uint64_t zero_begin, uint64_t zero_end, bool fua) {
  Buffer edge = co_await io.edges.Acquire();
  const auto n = static_cast<uint32_t>(block_end - block);
  BlockResult r = co_await io.target.Read(block, n, std::move(edge));
  if (!r.ok()) co_return r;
  std::memset(r.buffer.data() + (zero_begin - block), 0, zero_end - zero_begin);
  r.buffer.set_size(n);
  co_return co_await io.target.Write(block, std::move(r.buffer), {.fua = fua});
}

}  // namespace

AlignedSpan AlignSpan(uint64_t offset, uint64_t length, uint32_t alignment, uint64_t export_size) {
  AlignedSpan s;
  s.begin = ringline::AlignDown(offset, alignment);
  const uint64_t end = offset + length;
  s.end = std::min(ringline::AlignUp(end, alignment), std::max(export_size, end));
  s.head = static_cast<uint32_t>(offset - s.begin);
  return s;
}

Task<BlockResult> ReadUnaligned(const UnalignedIo& io, uint64_t offset, uint32_t length,
                                Buffer bounce) {
  const AlignedSpan span = AlignSpan(offset, length, io.alignment, io.export_size);
  BlockResult r =
      co_await io.target.Read(span.begin, static_cast<uint32_t>(span.length()), std::move(bounce));
  if (!r.ok()) co_return r;
  std::memmove(r.buffer.data(), r.buffer.data() + span.head, length);
  r.buffer.set_size(length);
  r.res = static_cast<int32_t>(length);
  co_return r;
}

Task<BlockResult> WriteUnaligned(const UnalignedIo& io, uint64_t offset, uint32_t length,
                                 Buffer payload, bool fua) {
  const AlignedSpan span = AlignSpan(offset, length, io.alignment, io.export_size);
  const uint64_t end = offset + length;
  WriteOrder::Guard guard = co_await io.order.ReadModifyWrite(span.begin, span.end);
  const uint64_t head_end = BlockEnd(io, span.begin);
  if (span.head > 0) {
    BlockResult r =
        co_await MergeEdge(io, span.begin, head_end, offset, end, payload.data(), span.begin);
    if (!r.ok()) co_return r;
  }
  const uint64_t tail = ringline::AlignDown(end, io.alignment);
  const bool tail_read_with_head = span.head > 0 && tail == span.begin;
  if (end < span.end && !tail_read_with_head) {
    BlockResult r = co_await MergeEdge(io, tail, span.end, offset, end, payload.data(), span.begin);
    if (!r.ok()) co_return r;
  }
  payload.set_size(span.length());
  BlockResult r = co_await io.target.Write(span.begin, std::move(payload), {.fua = fua});
  if (r.ok()) r.res = static_cast<int32_t>(length);
  co_return r;
}

Task<BlockResult> ZeroUnaligned(const UnalignedIo& io, uint64_t offset, uint32_t length, bool fua) {
  const uint64_t end = offset + length;
  const Edges e = SplitEdges(io, offset, end);
  const AlignedSpan span = AlignSpan(offset, length, io.alignment, io.export_size);
  WriteOrder::Guard guard = co_await io.order.ReadModifyWrite(span.begin, span.end);
  if (e.head_partial) {
    const uint64_t block_end = BlockEnd(io, e.head_block);
    BlockResult r =
        co_await ZeroEdge(io, e.head_block, block_end, offset, std::min(end, block_end), fua);
    if (!r.ok()) co_return r;
  }
  if (e.tail_partial) {
    BlockResult r = co_await ZeroEdge(io, e.tail_block, BlockEnd(io, e.tail_block),
                                      std::max(offset, e.tail_block), end, fua);
    if (!r.ok()) co_return r;
  }
  if (e.middle_begin < e.middle_end) {
    BlockResult r =
        co_await io.target.WriteZeroes(e.middle_begin, e.middle_end - e.middle_begin, {.fua = fua});
    if (!r.ok()) co_return r;
  }
  co_return BlockResult{};
}

Task<BlockResult> TrimUnaligned(const UnalignedIo& io, uint64_t offset, uint32_t length) {
  const Edges e = SplitEdges(io, offset, offset + length);
  if (e.middle_begin >= e.middle_end) co_return BlockResult{};  // advisory: nothing whole
  WriteOrder::Guard guard = io.order.TryAligned();
  if (!guard) guard = co_await io.order.LockAligned(e.middle_begin, e.middle_end);
  co_return co_await io.target.Discard(e.middle_begin, e.middle_end - e.middle_begin);
}

}  // namespace blockserve
