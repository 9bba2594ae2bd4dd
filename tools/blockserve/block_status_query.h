#pragma once
// NBD_CMD_BLOCK_STATUS against a backend: asks block::Target::Extents and
// encodes the NBD_REPLY_TYPE_BLOCK_STATUS chunk for base:allocation.
//
// The extents are asked in batches of kExtentBatch into an array in the
// query's frame (block::Target::Extents fills caller storage), each batch from
// where the last ended, until the reply's kMaxBlockStatusDescriptors
// descriptors are full or the request is covered; at most that many extents
// are examined per request. With NBD_CMD_FLAG_REQ_ONE (qemu's one extent per
// request) it asks for a single extent, so a file target does one
// SEEK_DATA/SEEK_HOLE pair at most. The extents, the descriptors and the chunk
// live in bounded storage (the query's frame and the caller's
// BlockStatusChunk): a query allocates nothing.
// Thread-safety: worker-local (the target is the worker's).

#include <array>
#include <cstdint>
#include <span>

#include "blockserve/nbd/block_status.h"
#include "blockserve/nbd/reply.h"
#include "ringline/block/target.h"
#include "ringline/task.h"

namespace blockserve {

// The encoded reply chunk, in storage bounded by the largest reply
// (kMaxBlockStatusDescriptors descriptors, about 2 KiB): no allocation per
// request, whatever the request asks. `bytes` views the encoded part. Keep it
// where it is while `bytes` is used (a coroutine local is fine); not copyable,
// as `bytes` points into it.
struct BlockStatusChunk {
  BlockStatusChunk() = default;
  BlockStatusChunk(const BlockStatusChunk&) = delete;
  BlockStatusChunk& operator=(const BlockStatusChunk&) = delete;
  static constexpr size_t kCapacity =
      nbd::kBlockStatusHeaderSize +
      nbd::kBlockStatusDescriptorSize * nbd::kMaxBlockStatusDescriptors;
  std::array<uint8_t, kCapacity> storage;
  std::span<const uint8_t> bytes;
};

// Extents asked of the target at once: 1 KiB of the query's frame.
inline constexpr uint32_t kExtentBatch = 64;

// Fills `chunk` with the reply chunk (flag DONE) for the request `cookie`
// covering [offset, offset + length) (validated: inside the export, length >
// 0). Returns the number of descriptors in `count`. On a backend error before
// any extent was reported returns its result and leaves `chunk.bytes` empty;
// an error after some extents answers with those (the client's next request
// meets it again).
ringline::Task<ringline::block::ExtentResult> QueryBlockStatus(ringline::block::Target& target,
                                                               uint64_t cookie, uint64_t offset,
                                                               uint32_t length, bool req_one,
                                                               uint32_t context_id,
                                                               BlockStatusChunk& chunk);

}  // namespace blockserve
