#pragma once
// DirectFile: a regular file or a block device opened O_DIRECT, as a Target.
//
//   auto file = DirectFile::Open(worker, "/var/lib/disk.img", {.queue_depth = 64});
//   Buffer buf = co_await pool.Acquire();
//   BlockResult r = co_await (*file)->Read(0, 4096, std::move(buf));
//
// The descriptor is installed in the worker's fixed file table. Reads and
// writes are READ_FIXED/WRITE_FIXED on registered buffers (BufferPool) and
// plain READ/WRITE on unregistered ones; FUA is RWF_DSYNC on the write; flush
// is IORING_OP_FSYNC with IORING_FSYNC_DATASYNC. Discard and write-zeroes are
// IORING_OP_FALLOCATE (PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE|KEEP_SIZE) on files and
// ZERO_RANGE (blkdev_issue_zeroout, as BLKZEROOUT) for write-zeroes on block
// devices; discard on a block device is BLKDISCARD, which has no async form,
// run on a helper thread (see direct_file.cc for why). On tmpfs, where the
// kernel would hand every read and write to an io-wq thread, reads and writes
// are copied on the worker's thread with preadv2/pwritev2 instead
// (DirectFileOptions::copy_memory_inline).
//
// Every request is validated before any kernel round trip: offsets and lengths
// must be multiples of geometry().logical_block_size, buffer addresses of
// geometry().memory_alignment, the range must lie within the target, and a
// read-only target refuses writes. Failures come back at once as -EINVAL (or
// -EPERM for a write to a read-only target) with a status whose message names
// the alignment or size required. Short transfers are continued; requests
// larger than max_transfer_bytes (when set) are split into consecutive chunks.
//
// Buffers: the buffer handed to Read/Write belongs to the operation until its
// last completion (it is kept in the engine's op slot, never in the coroutine
// frame) and comes back in BlockResult::buffer. If the awaiting task is
// destroyed, the kernel operation is cancelled and the buffer returns to its
// pool only after the kernel's final completion.
//
// Thread-safety: a DirectFile belongs to the worker it was opened on; every
// method must be called on that worker's thread. Lifetime: destroy the tasks
// that use it before it, and it before its worker.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "ringline/block/queue_depth.h"
#include "ringline/block/target.h"
#include "ringline/worker.h"

namespace ringline::block {

class BlockingHelper;

struct DirectFileOptions {
  // Open O_RDONLY; writes, discards and write-zeroes then fail with -EPERM.
  bool read_only = false;
  // Requests admitted to the kernel at once; more wait in FIFO order.
  uint32_t queue_depth = 128;
  // Requests larger than this many bytes are issued as consecutive chunks
  // (rounded down to the logical block size). 0: never split here — the
  // kernel splits O_DIRECT bios to the device's limits itself.
  uint32_t max_transfer_bytes = 0;
  // Record the per-kind latency histograms of metrics() (two clock reads per
  // operation). Load generators that time requests themselves turn this off.
  bool latency_histograms = true;
  // On tmpfs, copy reads and writes to and from the page cache on the worker's
  // thread (preadv2/pwritev2) instead of through the ring, where the kernel
  // hands every one to an io-wq thread. A tmpfs copy never waits for a device.
  bool copy_memory_inline = true;
  // Create a regular file of `create_size` bytes if `path` does not exist.
  bool create = false;
  uint64_t create_size = 0;
};

class DirectFile final : public Target {
 public:
  // Opens `path` on `worker`; must be called on the worker's thread.
  static absl::StatusOr<std::unique_ptr<DirectFile>> Open(Worker& worker, const std::string& path,
                                                          const DirectFileOptions& options = {});
  ~DirectFile() override;

  const Geometry& geometry() const override { return geometry_; }
  const std::string& name() const override { return path_; }

  Task<BlockResult> Read(uint64_t offset, uint32_t length, Buffer buffer) override;
  Task<BlockResult> Write(uint64_t offset, Buffer buffer, WriteOptions options = {}) override;
  Task<BlockResult> Flush() override;
  Task<BlockResult> Discard(uint64_t offset, uint64_t length) override;
  Task<BlockResult> WriteZeroes(uint64_t offset, uint64_t length,
                                WriteOptions options = {}) override;

  const TargetMetrics* metrics() const override { return &metrics_; }
  const QueueDepthLimiter* queue() const override { return &limiter_; }
  // The limiter itself (tests and owners that adjust the limit).
  QueueDepthLimiter& limiter() { return limiter_; }

  bool is_block_device() const { return block_device_; }
  // Index in the worker's fixed file table.
  int fixed_file() const { return fixed_file_; }

 private:
  DirectFile(Worker& worker, std::string path, int fd, int fixed_file, const Geometry& geometry,
             bool block_device, const DirectFileOptions& options);

  // One read or write on a memory-backed file, done on this thread: bytes or -errno.
  int32_t CopyInline(bool write, uint64_t offset, uint8_t* data, uint32_t len, int rw_flags);
  // Read and write share one coroutine (one frame per request).
  Task<BlockResult> Transfer(OpKind kind, uint64_t offset, uint32_t length, Buffer buffer,
                             int rw_flags);
  // Discard and write-zeroes.
  Task<BlockResult> Allocate(OpKind kind, uint64_t offset, uint64_t length, bool fua);
  // True when [offset, offset+length) is block-aligned and inside the target.
  bool RangeOk(uint64_t offset, uint64_t length) const {
    return ((offset | length) & (geometry_.logical_block_size - 1)) == 0 &&
           length <= geometry_.size_bytes && offset <= geometry_.size_bytes - length;
  }
  bool AddressOk(const uint8_t* p) const {
    return (reinterpret_cast<uintptr_t>(p) & (geometry_.memory_alignment - 1)) == 0;
  }
  // A request refused before the kernel saw it: counts the error and returns
  // an already-finished task carrying `res`, the explanation and the buffer.
  // Cold path.
  Task<BlockResult> Refuse(OpKind kind, int res, std::string message, Buffer buffer);
  // Explains why RangeOk/AddressOk refused the request (`address`: the buffer's,
  // or null when the request has none).
  Task<BlockResult> RefuseRequest(OpKind kind, uint64_t offset, uint64_t length,
                                  const uint8_t* address, Buffer buffer);

  Worker* worker_;
  std::string path_;
  int fd_;  // owned; closed in the destructor after the fixed slot is removed
  int fixed_file_;
  Geometry geometry_;
  bool block_device_;
  bool latency_;
  bool zero_range_supported_ = true;  // files: ZERO_RANGE, else PUNCH_HOLE
  uint32_t max_chunk_;
  bool memory_backed_ = false;  // tmpfs: reads and writes copied inline (see the constructor)
  QueueDepthLimiter limiter_;
  TargetMetrics metrics_;
  std::unique_ptr<BlockingHelper> helper_;  // started on the first block-device discard
};

}  // namespace ringline::block
