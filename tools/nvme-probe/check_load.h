// The measured I/O of `nvme-probe check`: random reads at a fixed queue depth
// for a fixed time, and a write / read-back verify pass.
//
// Same approach as bench/blockbench (job.cc): one coroutine "lane" per
// request slot, each owning one buffer of a registered BufferPool that it
// hands to the target with every request and gets back in the result, so the
// number of lanes is the queue depth. Kept here rather than shared with
// blockbench because check needs only these two fixed patterns, not fio's job
// model, and blockbench is tuned separately.
//
// Thread-safety: everything runs on the worker that owns the target and the
// pool; the functions must be awaited on that worker's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "absl/status/status.h"
#include "ringline/block/target.h"
#include "ringline/buffer_pool.h"
#include "ringline/metrics.h"
#include "ringline/task.h"

namespace ringline::nvme_probe {

// Where the I/O goes: blocks of `io_size` bytes in [offset, offset + bytes).
// `offset` and `io_size` are multiples of the target's logical block size.
struct Region {
  uint64_t offset = 0;
  uint64_t bytes = 0;
  uint32_t io_size = 4096;
  uint64_t blocks() const { return bytes / io_size; }
};

// Called about ten times a second while a run is going, with the fraction
// done (of the time or of the blocks) and the requests completed so far.
using ProgressFn = std::function<void(double fraction, uint64_t ios)>;

struct LoadResult {
  uint64_t ios = 0;
  double seconds = 0;
  Histogram::Snapshot latency_ns;  // from the call to the result, per request
  absl::Status status;             // the first failed request; OK otherwise
  double iops() const { return seconds > 0 ? static_cast<double>(ios) / seconds : 0.0; }
};

// Random reads of region.io_size bytes, `queue_depth` in flight, for
// `seconds`. The pool must have at least `queue_depth` free buffers of at
// least io_size bytes. Stops at the first failed request.
Task<LoadResult> RandomReads(block::Target& target, BufferPool& pool, Region region,
                             uint32_t queue_depth, double seconds, uint64_t seed,
                             ProgressFn progress);

// The verify pattern: byte x of the device (x = absolute byte offset) is
// (seed + x * 131) % 251. It is the pattern of the QEMU harness's `pattern`
// expectations (tests/nvme/README.md), so a guest test can have the host
// check what reached the image. Blocks at different offsets differ unless
// their distance is a multiple of 251 blocks, which no power-of-two
// addressing bug (a truncated or shifted offset) produces.
uint8_t PatternByte(uint8_t seed, uint64_t offset);

struct Mismatch {
  uint64_t offset = 0;  // device byte offset of the first differing byte
  uint8_t expected = 0;
  uint8_t found = 0;
};

struct VerifyResult {
  uint8_t seed = 0;
  uint64_t blocks = 0;  // distinct blocks written and read back
  LoadResult writes;
  absl::Status flush;  // the flush between writing and reading back
  LoadResult reads;
  uint64_t mismatched_blocks = 0;
  std::optional<Mismatch> first_mismatch;
  bool ok() const {
    return writes.status.ok() && flush.ok() && reads.status.ok() && mismatched_blocks == 0;
  }
};

// Writes the pattern to min(region.blocks(), max_blocks) distinct blocks of
// the region chosen at random (all of them when the region is that small),
// `queue_depth` in flight, flushes, reads every one back and compares.
// Overwrites those blocks: the caller has made sure that is wanted.
Task<VerifyResult> WriteVerify(block::Target& target, BufferPool& pool, Region region,
                               uint32_t queue_depth, uint64_t max_blocks, uint8_t seed,
                               uint64_t shuffle_seed, ProgressFn progress);

}  // namespace ringline::nvme_probe
