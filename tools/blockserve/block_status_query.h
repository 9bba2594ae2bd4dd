#pragma once
// NBD_CMD_BLOCK_STATUS against a backend: asks block::Target::Extents and
// encodes the NBD_REPLY_TYPE_BLOCK_STATUS chunk for base:allocation.
//
// One Extents call per request; with NBD_CMD_FLAG_REQ_ONE (qemu's one extent
// per request) it asks for a single extent, so a file target does one
// SEEK_DATA/SEEK_HOLE pair at most. The descriptors and the chunk live in
// bounded storage (the query's frame and the caller's BlockStatusChunk); the
// extent list is the target's (block::ExtentResult).
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

// Fills `chunk` with the reply chunk (flag DONE) for the request `cookie`
// covering [offset, offset + length) (validated: inside the export, length >
// 0). On a backend error returns its result and leaves `chunk.bytes` empty.
ringline::Task<ringline::block::ExtentResult> QueryBlockStatus(ringline::block::Target& target,
                                                               uint64_t cookie, uint64_t offset,
                                                               uint32_t length, bool req_one,
                                                               uint32_t context_id,
                                                               BlockStatusChunk& chunk);

}  // namespace blockserve
