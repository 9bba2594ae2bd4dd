#pragma once
// DirectFile: a regular file or a block device, opened O_DIRECT or buffered
// (TargetOptions::cache), as a Target.
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
// are copied on the worker's thread with pread/pwrite (pwritev2 for FUA)
// instead (TargetOptions::copy_memory_inline), or with memcpy through a shared
// mapping of the file where its pages are known allocated
// (TargetOptions::map_memory_files). Where reads and writes
// complete on the worker's CPU (tmpfs, buffered files),
// TargetOptions::max_offloaded_copies hands up to that many at once to io-wq
// (IOSQE_ASYNC) so that other CPUs copy in parallel with the worker. Reads and
// writes that go to a device are submitted as they are issued, not with the
// loop iteration (TargetOptions::submit_batch).
//
// Cache modes (TargetOptions::cache): kDirect opens O_DIRECT and fails where
// the filesystem refuses it; kWriteback goes through the page cache; kAuto
// (the default) is O_DIRECT where the filesystem takes it (open succeeds and
// statx does not deny a DIO alignment), else the page cache with one warning
// naming the reason. Both modes have the same durability: FUA is RWF_DSYNC on
// the write (with the page cache, the written range is written back and the
// device cache flushed before the result), flush is fdatasync. Buffered
// files have no alignment constraints (logical block size and memory
// alignment 1); buffered block devices take any buffer address but keep
// whole sectors, which their discard and write-zeroes need.
//
// Size: every byte of a file is served, also a tail shorter than a block
// (geometry().size_bytes is exact; a request that ends at the end of the file
// may end mid-block). With O_DIRECT, the bytes past the last whole block go
// through a second, buffered descriptor, so the file never grows to a whole
// block (see direct_file.cc for why that is coherent).
//
// Validation, refusals, queue depth and metrics are TargetBase's (see
// target_base.h). Short transfers are continued; requests larger than
// max_transfer_bytes (when set) are split into consecutive chunks.
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
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "ringline/block/target_base.h"
#include "ringline/worker.h"

struct iovec;  // <sys/uio.h>

namespace ringline::block {

class BlockingHelper;
class MappedFile;

class DirectFile final : public TargetBase {
 public:
  // Opens `path` on `worker`; must be called on the worker's thread.
  static absl::StatusOr<std::unique_ptr<DirectFile>> Open(Worker& worker, const std::string& path,
                                                          const TargetOptions& options = {});
  // Waits for a discard still running on the helper thread and removes the
  // tail descriptor (if any) from the fixed file table.
  ~DirectFile() override;

  // Regular files: holes from SEEK_DATA/SEEK_HOLE (kExtentHole |
  // kExtentZero), at most out.size() of them, written into `out` (the
  // caller's; nothing is allocated), each costing one or two lseek calls on
  // the worker's thread. Block devices: data (Target's default).
  Task<ExtentResult> Extents(uint64_t offset, uint64_t length, std::span<Extent> out) override;

  bool is_block_device() const { return block_device_; }
  // How the file is served: kDirect (O_DIRECT) or kWriteback (the page
  // cache), which TargetOptions::cache = kAuto resolves to at open.
  CacheMode cache_mode() const { return direct_ ? CacheMode::kDirect : CacheMode::kWriteback; }
  // TargetOptions::max_offloaded_copies as it applies to this file: 0 where
  // its I/O does not complete on the worker's CPU (O_DIRECT on a device).
  uint32_t max_offloaded_copies() const { return max_offloaded_; }
  // Reads and writes handed to io-wq so far (TargetOptions::max_offloaded_copies),
  // and how many are there now. Worker thread only.
  uint64_t offloaded_requests() const {
    return offload_places_ ? offload_places_->metrics().admitted.Get() : 0;
  }
  uint32_t offloaded_in_flight() const {
    return offload_places_ ? offload_places_->in_flight() : 0;
  }
  // How many io-wq threads this worker's ring may run for offloaded requests
  // (set at open when max_offloaded_copies() > 0: one per CPU of the process
  // besides one for the worker, at least one); 0 without offload.
  uint32_t offload_threads() const { return offload_threads_; }
  // Whether reads and writes are copied through a mapping of the file
  // (TargetOptions::map_memory_files on tmpfs), and how many so far were
  // (the rest of the inline copies went through pread/pwrite). Worker thread
  // only.
  bool memory_mapped() const { return mapped_ != nullptr; }
  // Mapped, and no copies are offloaded (TargetOptions::max_offloaded_copies,
  // which WriteNow would bypass).
  bool writes_now() const override { return mapped_ != nullptr && !offload_places_; }
  uint64_t memory_mapped_copies() const { return mapped_copies_; }

 private:
  DirectFile(Worker& worker, std::string path, UniqueFd fd, int fixed_file,
             const Geometry& geometry, bool block_device, bool direct, bool memory_fs,
             const TargetOptions& options);
  // With O_DIRECT on a file that ends mid-block: opens and installs tail_fd_.
  absl::Status OpenTail(const std::string& path, bool read_only);

  Task<BlockResult> SubmitRead(uint64_t offset, uint32_t length, Buffer buffer) override;
  Task<BlockResult> SubmitWrite(uint64_t offset, Buffer buffer, bool fua) override;
  // IORING_OP_WRITEV of [header, payload] (pwritev2 inline on memory-backed
  // files), chunked and continued like Transfer.
  Task<GatherResult> SubmitWriteGather(uint64_t offset, Buffer header, Buffer payload,
                                       bool fua) override;
  Task<BlockResult> SubmitFlush() override;
  Task<BlockResult> SubmitDiscard(uint64_t offset, uint64_t length) override;
  Task<BlockResult> SubmitWriteZeroes(uint64_t offset, uint64_t length, bool fua) override;
  // Through the mapping only, to pages already allocated (MappedFile::TryCopy).
  bool CopyNow(uint64_t offset, std::span<const uint8_t> data) override;
  // The copy through the mapping that CopyInline and CopyNow share: false
  // (nothing counted) without a mapping or when TryCopy declines.
  bool CopyThroughMapping(bool write, uint64_t offset, std::span<const iovec> pieces);
  // The work of Extents() for a regular file (synchronous lseek calls).
  ExtentResult FileExtents(uint64_t offset, uint64_t length, std::span<Extent> out);
  // Buffered, device-backed files and block devices: fadvise WILLNEED.
  Task<BlockResult> SubmitCache(uint64_t offset, uint64_t length) override;

  // Caps the worker's io-wq threads at offload_threads_ (see direct_file.cc).
  void LimitIoWqThreads();
  // One of the max_offloaded_ places (an empty Permit when all are taken or
  // there are none), held by a request whose reads or writes go to io-wq
  // (IOSQE_ASYNC) for as long as its coroutine holds it: released when the
  // request is done, or when its task is destroyed at shutdown (the target
  // outlives its tasks). Empty: the request stays on the worker.
  QueueDepthLimiter::Permit TakeOffloadPlace() {
    return offload_places_ ? offload_places_->TryAcquire() : QueueDepthLimiter::Permit();
  }
  // After a request copied on this thread while others are in io-wq: true
  // when the request's coroutine yields to the loop before it returns, which
  // submits what was queued and reaps what io-wq finished (a copy on the
  // worker never suspends, so a task issuing request after request would
  // otherwise keep the loop from running until it stops).
  bool YieldAfterInlineCopy() const { return offloaded_in_flight() > 0; }

  // One read or write on a memory-backed file, done on this thread: through
  // the mapping where it can, else with pread/pwrite on `fd` (preadv2/
  // pwritev2 for several pieces or rw_flags). Bytes or -errno.
  int32_t CopyInline(int fd, bool write, uint64_t offset, std::span<const iovec> pieces,
                     int rw_flags);
  // A write of `res` bytes at `offset` returned (copied here or in io-wq):
  // where it wrote, pages exist now, so later copies to them can use the
  // mapping. Nothing for res <= 0 or without a mapping.
  void NoteWritten(uint64_t offset, int32_t res);
  // Read and write share one coroutine (one frame per request).
  Task<BlockResult> Transfer(OpKind kind, uint64_t offset, uint32_t length, Buffer buffer,
                             int rw_flags);
  // Discard and write-zeroes.
  Task<BlockResult> Allocate(OpKind kind, uint64_t offset, uint64_t length, bool fua);

  bool block_device_;
  bool direct_;                       // O_DIRECT; else buffered (the page cache)
  bool zero_range_supported_ = true;  // files: ZERO_RANGE, else PUNCH_HOLE
  bool memory_backed_ = false;        // tmpfs: reads and writes copied inline (see the constructor)
  uint32_t submit_batch_ = 0;         // TargetOptions::submit_batch; 0 on tmpfs
  uint32_t max_offloaded_ = 0;        // TargetOptions::max_offloaded_copies where it applies
  // The max_offloaded_ places (TakeOffloadPlace); none when max_offloaded_ is 0.
  std::optional<QueueDepthLimiter> offload_places_;
  uint32_t offload_threads_ = 0;
  // tmpfs with map_memory_files: the process's mapping of this file, shared
  // with the other workers' targets on it; null otherwise.
  std::shared_ptr<MappedFile> mapped_;
  uint64_t mapped_copies_ = 0;
  uint32_t max_chunk_;
  // O_DIRECT files whose size is not a whole number of blocks: the bytes from
  // tail_start_ to the end go through tail_fd_ (buffered, in the fixed file
  // table at tail_fixed_file_). Otherwise tail_start_ is UINT64_MAX.
  uint64_t tail_start_ = UINT64_MAX;
  UniqueFd tail_fd_;
  int tail_fixed_file_ = -1;
  std::unique_ptr<BlockingHelper> helper_;  // started on the first block-device discard
};

}  // namespace ringline::block
