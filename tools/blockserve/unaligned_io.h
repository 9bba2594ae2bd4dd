#pragma once
// Requests that are not aligned to the backend's block size, for clients that
// never asked for block-size constraints (NBD_OPT_EXPORT_NAME, the kernel's
// nbd-client, old clients): the spec lets them assume a minimum of 1, so the
// server aligns for them, as qemu-nbd does.
//
//  - Reads go through an aligned bounce buffer: the covering aligned range is
//    read and the requested bytes are moved to the front of the buffer.
//  - Writes are read-modify-writes: the payload is received at its place in a
//    buffer covering the aligned range (AlignedSpan::head), the partial edge
//    blocks are read into an edge buffer and merged around it, and the whole
//    range is written.
//  - Write-zeroes: the aligned middle is one device write-zeroes; each partial
//    edge block is read, zeroed in the requested part and written back.
//  - Trim: only the aligned middle is discarded. Trim is advisory (the spec:
//    a client MUST NOT assume anything about trimmed contents until it writes
//    them), so the partial edge blocks are left as they are.
//
// Every mutation is ordered through the export's WriteOrder (write_order.h).
// The export's last block may be shorter than the alignment (a file whose size
// is not a multiple of it): ranges are clipped to the export size, and the
// backend accepts a request that ends there.
//
// Buffers: payload and bounce buffers come from the worker's request pools
// (sized by the caller); edge blocks from the worker's edge pool, whose
// holders wait for nothing but the device, so waiting for an edge buffer while
// holding a payload buffer cannot deadlock. Every buffer is owned by the
// operation in flight (block::Target contract) and returned to its pool when
// the result's Buffer is dropped.
// Thread-safety: worker-local (the targets and pools are the worker's).

#include <cstdint>

#include "blockserve/write_order.h"
#include "ringline/block/target.h"
#include "ringline/buffer.h"
#include "ringline/buffer_pool.h"
#include "ringline/task.h"

namespace blockserve {

// The aligned range covering [offset, offset + length), clipped to the export.
struct AlignedSpan {
  uint64_t begin = 0;  // aligned down
  uint64_t end = 0;    // aligned up, or the export size if that is smaller
  uint32_t head = 0;   // offset - begin: where the request's bytes start
  uint64_t length() const { return end - begin; }
  // The request is already aligned (the backend takes it as it is).
  bool aligned(uint64_t offset, uint64_t request_length) const {
    return begin == offset && end == offset + request_length;
  }
};
// `alignment` is a power of two.
AlignedSpan AlignSpan(uint64_t offset, uint64_t length, uint32_t alignment, uint64_t export_size);

// What the slow paths work with.
struct UnalignedIo {
  ringline::block::Target& target;
  WriteOrder& order;
  ringline::BufferPool& edges;  // buffers of at least `alignment` bytes
  uint32_t alignment;
  uint64_t export_size;
};

// Reads [offset, offset + length) through `bounce` (capacity >= the aligned
// span's length). On success the bytes are at the front of the result's
// buffer and its size is `length`.
ringline::Task<ringline::block::BlockResult> ReadUnaligned(const UnalignedIo& io, uint64_t offset,
                                                           uint32_t length,
                                                           ringline::Buffer bounce);

// Writes `length` bytes at `offset` whose payload sits in `payload` at
// AlignSpan(...).head (capacity >= the span's length).
ringline::Task<ringline::block::BlockResult> WriteUnaligned(const UnalignedIo& io, uint64_t offset,
                                                            uint32_t length,
                                                            ringline::Buffer payload, bool fua);

ringline::Task<ringline::block::BlockResult> ZeroUnaligned(const UnalignedIo& io, uint64_t offset,
                                                           uint32_t length, bool fua);

ringline::Task<ringline::block::BlockResult> TrimUnaligned(const UnalignedIo& io, uint64_t offset,
                                                           uint32_t length);

}  // namespace blockserve
