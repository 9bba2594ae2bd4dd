#pragma once
// block::Target: a storage device on the engine, addressed in bytes.
//
// Every operation takes owned Buffers and hands them back in its result: the
// buffer belongs to the operation (kept in the engine's slot, see
// ringline/op_slab.h) until the kernel's final completion, so destroying the
// awaiting task never frees memory under the device. Each target has a
// queue-depth limit; a request beyond it waits in FIFO order until a completion
// frees a place (it is never rejected for being one too many).
// Thread-safety: a Target belongs to one worker and is used on its thread.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "ringline/buffer.h"
#include "ringline/result.h"
#include "ringline/task.h"

namespace ringline::block {

class QueueDepthLimiter;  // queue_depth.h
struct TargetMetrics;     // queue_depth.h

// What the device is and what it can do, discovered at open.
struct Geometry {
  uint64_t size_bytes = 0;
  uint32_t logical_block_size = 512;  // offsets and lengths must be multiples of this
  uint32_t physical_block_size = 512;
  uint32_t memory_alignment = 512;  // buffer addresses must be multiples of this (statx)
  uint32_t max_transfer_bytes = 0;  // larger requests are split; 0 = unlimited
  bool read_only = false;
  bool volatile_write_cache = true;  // flush is needed for durability
  bool supports_fua = true;
  bool supports_discard = false;
  bool supports_write_zeroes = false;
  bool discard_zeroes_data = false;  // reads after discard return zeroes
  bool rotational = false;
};

enum class OpKind : uint8_t { kRead, kWrite, kFlush, kDiscard, kWriteZeroes };
inline constexpr int kOpKinds = 5;
const char* OpKindName(OpKind kind);

// The result of one operation, a member of the engine's result family
// (ringline/result.h: error() is a positive errno): `res` is the byte count on
// success (0 for flush, discard and write-zeroes) or a negated errno; `status`
// carries the detailed reason on failure (the alignment that was required, the
// NVMe status name, ...). `buffer` is the buffer handed in.
struct BlockResult : IoStatus {
  Buffer buffer;
};

// One run of bytes with the same allocation state, as an extent query reports
// it. Flags are those of NBD's base:allocation context, because that is what
// every consumer of them speaks: a hole is unallocated (a write there may need
// space), zero means reads return zeroes.
inline constexpr uint32_t kExtentHole = 1;
inline constexpr uint32_t kExtentZero = 2;
struct Extent {
  uint64_t length = 0;
  uint32_t flags = 0;  // kExtentHole | kExtentZero, or 0 for data
};

// The result of an extent query (result family, ringline/result.h): `res` is 0
// or a negated errno, `status` the reason on failure. `extents` are contiguous
// from the queried offset; they cover at least one byte and at most the queried
// range (a target may stop early, e.g. after max_extents).
struct ExtentResult : IoStatus {
  std::vector<Extent> extents;
};

struct WriteOptions {
  bool fua = false;  // durable when the result arrives
};

class Target {
 public:
  virtual ~Target() = default;
  Target() = default;
  Target(const Target&) = delete;
  Target& operator=(const Target&) = delete;

  virtual const Geometry& geometry() const = 0;
  // A human-readable name (the path) for logs and metrics.
  virtual const std::string& name() const = 0;

  // Reads `length` bytes at `offset` into `buffer` (capacity >= length).
  virtual Task<BlockResult> Read(uint64_t offset, uint32_t length, Buffer buffer) = 0;
  // Writes buffer.size() bytes at `offset`.
  virtual Task<BlockResult> Write(uint64_t offset, Buffer buffer, WriteOptions options = {}) = 0;
  virtual Task<BlockResult> Flush() = 0;
  virtual Task<BlockResult> Discard(uint64_t offset, uint64_t length) = 0;
  virtual Task<BlockResult> WriteZeroes(uint64_t offset, uint64_t length,
                                        WriteOptions options = {}) = 0;

  // Reports the allocation state of [offset, offset + length) as at most
  // `max_extents` contiguous extents starting at `offset` (length > 0, the
  // range inside the device). The default says "all data" in one extent, which
  // is always true; targets that know their holes override it.
  virtual Task<ExtentResult> Extents(uint64_t offset, uint64_t length, uint32_t max_extents);

  // Per-operation metrics and the queue-depth limiter, owned by the target and
  // readable from any thread (see queue_depth.h); null when an implementation
  // keeps none.
  virtual const TargetMetrics* metrics() const { return nullptr; }
  virtual const QueueDepthLimiter* queue() const { return nullptr; }
};

}  // namespace ringline::block
