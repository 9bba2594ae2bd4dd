#pragma once
// TargetBase: what every block target shares, so that an implementation
// (DirectFile, NvmeNamespace) supplies only its geometry and its submission.
//
// The base owns:
//  - the descriptor (UniqueFd) and its slot in the worker's fixed file table,
//    removed from the table and closed in the destructor;
//  - validation, done before any kernel round trip and identical for every
//    target: the buffer must hold the length, offsets must be multiples of
//    geometry().logical_block_size, lengths too (except a request that ends
//    exactly at the end of the target, which may end mid-block), buffer
//    addresses multiples of geometry().memory_alignment, the range inside the
//    target; a read-only target refuses writes, discards and write-zeroes
//    (-EPERM); discard and write-zeroes are refused (-EOPNOTSUPP) where
//    geometry() says the target cannot do them;
//  - refusals and failures, with one errno-to-status mapping (ErrnoToStatus):
//    BlockResult::res is the negated errno, BlockResult::status its status
//    code with a message naming the request and, for refusals, the rule that
//    was broken (the alignment or size required);
//  - the queue-depth limiter (the implementation takes a place per kernel
//    operation, since only it knows how many it issues) and the per-kind
//    metrics (counted once per request, by Record()).
//
// Implementations override the Submit* methods, which are called only with
// requests that passed validation, and call Record() once per request.
//
// Thread-safety: a target belongs to the worker it was opened on; every
// method must be called on that worker's thread (metrics()/queue() counters
// may be read anywhere). Lifetime: destroy the tasks that use a target before
// it, and it before its worker.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ringline/align.h"
#include "ringline/block/queue_depth.h"
#include "ringline/block/target.h"
#include "ringline/unique_fd.h"
#include "ringline/worker.h"

namespace ringline::block {

class TargetBase : public Target {
 public:
  // Removes the descriptor from the worker's fixed file table and closes it.
  // Kernel operations of destroyed tasks may still be in flight: the kernel
  // holds its own reference to the file for them.
  ~TargetBase() override;

  const Geometry& geometry() const final { return geometry_; }
  const std::string& name() const final { return path_; }

  Task<BlockResult> Read(uint64_t offset, uint32_t length, Buffer buffer) final;
  Task<BlockResult> Write(uint64_t offset, Buffer buffer, WriteOptions options = {}) final;
  // Validated like Write (read-only, range of the total, addresses), plus the
  // header's size a multiple of memory_alignment.
  Task<GatherResult> WriteGather(uint64_t offset, Buffer header, Buffer payload,
                                 WriteOptions options = {}) final;
  // Validated like Write (read-only, range), then CopyNow().
  bool WriteNow(uint64_t offset, std::span<const uint8_t> data, WriteOptions options = {}) final;
  Task<BlockResult> Flush() final;
  Task<BlockResult> Discard(uint64_t offset, uint64_t length) final;
  Task<BlockResult> WriteZeroes(uint64_t offset, uint64_t length, WriteOptions options = {}) final;
  // Validated for range only (a prefetch moves no data to the caller); a
  // no-op success when geometry().supports_cache is false. Not counted in
  // metrics() (it is advisory and has no OpKind).
  Task<BlockResult> Cache(uint64_t offset, uint64_t length) final;

  const TargetMetrics* metrics() const final { return &metrics_; }
  const QueueDepthLimiter* queue() const final { return &limiter_; }
  // The limiter itself (tests and owners that adjust the limit).
  QueueDepthLimiter& limiter() { return limiter_; }
  // Index of the descriptor in the worker's fixed file table.
  int fixed_file() const { return fixed_file_; }

 protected:
  using Clock = QueueDepthLimiter::Clock;

  // Takes ownership of `fd`, which the caller has installed at `fixed_file`
  // in `worker`'s fixed file table (InstallFixed). `path` names the target in
  // messages and metrics.
  TargetBase(Worker& worker, std::string path, UniqueFd fd, int fixed_file,
             const Geometry& geometry, const TargetOptions& options);

  // OK when called on `worker`'s thread, where targets must be opened.
  static absl::Status CheckOnWorkerThread(const Worker& worker);
  // Installs `fd` in the worker's fixed file table: the index, or the error.
  static absl::StatusOr<int> InstallFixed(Worker& worker, int fd);
  // The split size for TargetOptions::max_transfer_bytes: `requested` rounded
  // down to `unit`, capped at `device_max` (0: no cap); 0 when `requested` is
  // 0. Fails naming the field when `requested` is below one unit.
  static absl::StatusOr<uint32_t> MaxTransferFor(uint32_t requested, uint32_t unit,
                                                 uint64_t device_max, const std::string& path);

  // Submission of validated requests. Each returns the request's result and
  // calls Record() once.
  virtual Task<BlockResult> SubmitRead(uint64_t offset, uint32_t length, Buffer buffer) = 0;
  virtual Task<BlockResult> SubmitWrite(uint64_t offset, Buffer buffer, bool fua) = 0;
  virtual Task<BlockResult> SubmitFlush() = 0;
  virtual Task<BlockResult> SubmitDiscard(uint64_t offset, uint64_t length) = 0;
  virtual Task<BlockResult> SubmitWriteZeroes(uint64_t offset, uint64_t length, bool fua) = 0;
  // A validated WriteNow(): true when `data` was written at `offset` without
  // waiting (the caller records it). The default cannot.
  virtual bool CopyNow(uint64_t /*offset*/, std::span<const uint8_t> /*data*/) { return false; }
  // Called only when geometry().supports_cache; the default does nothing.
  virtual Task<BlockResult> SubmitCache(uint64_t offset, uint64_t length);
  // A validated gathered write. The default, for targets that take one
  // contiguous buffer, is Target::WriteGather's join: the header copied in
  // front of the payload inside the payload's Buffer (EINVAL, not counted in
  // metrics(), when its capacity is too small), then Write() of that; the
  // payload Buffer comes back holding both. Implementations that write from
  // two buffers (DirectFile: IORING_OP_WRITEV) override it.
  virtual Task<GatherResult> SubmitWriteGather(uint64_t offset, Buffer header, Buffer payload,
                                               bool fua);

  // The start of a request's latency (no clock read without histograms).
  Clock::time_point StartTimer() const { return latency_ ? Clock::now() : Clock::time_point(); }
  // Counts one finished request of `bytes` (counted only on success) and its
  // latency since `start`.
  void Record(OpKind kind, bool ok, uint64_t bytes, Clock::time_point start) {
    metrics_.Record(kind, ok, bytes);
    if (latency_) metrics_.RecordLatency(kind, start);
  }
  // "read of 4096 bytes at offset 8192 on /path": the context of messages.
  std::string Describe(OpKind kind, uint64_t offset, uint64_t length) const;
  // A failed result: `res` (a negated errno) and its status, whose message
  // is `context` and the errno's name. The one mapping every target uses.
  static BlockResult Failure(int32_t res, absl::string_view context, Buffer buffer = {});

  Worker& worker() const { return *worker_; }
  int fd() const { return fd_.get(); }

 private:
  // True when [offset, offset+length) starts on a block, ends on one or at
  // the end of the target, and lies inside it.
  bool RangeOk(uint64_t offset, uint64_t length) const {
    const uint32_t block = geometry_.logical_block_size;
    return IsAligned(offset, block) && length <= geometry_.size_bytes &&
           offset <= geometry_.size_bytes - length &&
           (IsAligned(length, block) || offset + length == geometry_.size_bytes);
  }
  bool AddressOk(const uint8_t* p) const { return IsAligned(p, geometry_.memory_alignment); }
  // A request refused before the kernel saw it: counts the error and returns
  // an already-finished task with `res`, the explanation and the buffer.
  // Cold path.
  Task<BlockResult> Refuse(OpKind kind, int res, std::string message, Buffer buffer);
  // Explains why RangeOk/AddressOk refused the request (`address`: the
  // buffer's, or null when the request has none).
  Task<BlockResult> RefuseRequest(OpKind kind, uint64_t offset, uint64_t length,
                                  const uint8_t* address, Buffer buffer);
  // The read-only and supports_* checks of discard and write-zeroes.
  Task<BlockResult> RefuseUnsupported(OpKind kind);

  Worker* worker_;
  std::string path_;
  UniqueFd fd_;
  int fixed_file_;
  bool latency_;
  const Geometry geometry_;
  QueueDepthLimiter limiter_;
  TargetMetrics metrics_;
};

}  // namespace ringline::block
