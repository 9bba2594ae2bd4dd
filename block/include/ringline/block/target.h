#pragma once
// block::Target: a storage device on the engine, addressed in bytes.
//
// Every operation takes owned Buffers and hands them back in its result: the
// buffer belongs to the operation (kept in the engine's slot, see
// ringline/internal/op_slab.h) until the kernel's final completion, so
// destroying the awaiting task never frees memory under the device. Each target has a
// queue-depth limit; a request beyond it waits in FIFO order until a completion
// frees a place (it is never rejected for being one too many).
// Thread-safety: a Target belongs to one worker and is used on its thread.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
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
  // Cache() prefetches into a cache that later reads hit (buffered files and
  // block devices: the page cache). False where it would mean nothing
  // (O_DIRECT, memory file systems, NVMe passthrough); NBD servers advertise
  // NBD_CMD_CACHE only when this is true.
  bool supports_cache = false;
  // The CPUs on which the device's completions arrive for requests submitted
  // on that same CPU (its queue's interrupt targets it), ascending: a worker
  // that uses the target waits least there (ringline/block/placement.h has
  // the whole picture and PlaceWorkers). Empty when no CPU is better than
  // another: no device (tmpfs), completions local everywhere (one queue per
  // CPU), or not known.
  std::vector<int> completion_cpus;
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

// The result of a gathered write (Target::WriteGather): `res` is the bytes
// written (header and payload) or a negated errno, `status` the reason on
// failure; both buffers come back.
struct GatherResult : IoStatus {
  Buffer header;
  Buffer payload;
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
// or a negated errno, `status` the reason on failure. On success `count`
// extents (at least one) were written to the front of the caller's span
// (Target::Extents); on failure `count` is 0.
struct ExtentResult : IoStatus {
  uint32_t count = 0;
};

struct WriteOptions {
  bool fua = false;  // durable when the result arrives
};

// How a file or block device target uses the page cache (DirectFile; NVMe
// passthrough never does).
enum class CacheMode : uint8_t {
  // O_DIRECT where the filesystem takes it, else kWriteback with one warning
  // naming the reason.
  kAuto,
  // O_DIRECT or nothing: opening fails where the filesystem refuses it.
  kDirect,
  // Buffered I/O through the page cache, with the same durability: FUA is
  // RWF_DSYNC on the write, flush is fdatasync. No alignment constraints.
  kWriteback,
};
// "auto", "direct", "writeback".
const char* CacheModeName(CacheMode mode);
// Parses CacheModeName's spellings; false for anything else.
bool ParseCacheMode(std::string_view text, CacheMode* mode);

// How a target is opened: one set of options for every kind of target
// (OpenTarget, DirectFile::Open, NvmeNamespace::Open). Fields marked "files"
// are used by DirectFile only and ignored by NVMe passthrough.
struct TargetOptions {
  // Open read-only; writes, discards and write-zeroes then fail with -EPERM.
  bool read_only = false;
  // Requests (NVMe: commands) admitted to the kernel at once; more wait in
  // FIFO order.
  uint32_t queue_depth = 128;
  // Split requests above this many bytes (rounded down to the alignment unit).
  // 0: the implementation's own limit (files: never split here, the kernel
  // splits O_DIRECT bios itself; NVMe: MDTS and the kernel's queue limits).
  uint32_t max_transfer_bytes = 0;
  // Record the per-kind latency histograms of metrics() (two clock reads per
  // request). Load generators that time requests themselves turn this off.
  bool latency_histograms = true;
  // Files on tmpfs: copy reads and writes to and from the page cache on the
  // worker's thread (pread/pwrite; pwritev2 for FUA) instead of through the
  // ring, where the kernel hands every one to an io-wq thread. A tmpfs copy
  // never waits for a device.
  bool copy_memory_inline = true;
  // Files on tmpfs copied inline (above): copy with memcpy through one shared
  // memory mapping of the file per process where its pages are known to be
  // allocated, instead of pread/pwrite (a 4 KiB copy then costs no system
  // call). Holes, pages not yet written, and any copy the mapping cannot do
  // (the file shrank, or a page was freed and the file system is full) still
  // go through pread/pwrite, which read holes without allocating and report
  // errors as errno (see block/src/mapped_file.h). Writes through the mapping
  // do not update the file's modification time. The process's SIGBUS handler
  // is installed when the first file is mapped (it passes every SIGBUS not
  // raised by its own copies to the handler it replaced).
  bool map_memory_files = true;
  // Files whose reads and writes complete on the worker's own CPU (tmpfs,
  // copied inline as above; buffered files, whose cached pages io_uring copies
  // inside the worker's io_uring_enter): at most this many of them at once are
  // handed to io_uring's io-wq threads instead (IOSQE_ASYNC), which copy on
  // other CPUs while the worker copies the rest itself. A deep queue on one
  // worker then uses more than one CPU, as fio's single job does on tmpfs
  // (where io_uring always punts to io-wq). The split follows the queue: of
  // queue_depth requests in flight, up to this many are in io-wq, which the
  // target then limits to one thread per CPU of the process besides the
  // worker's (a limit of the worker's ring: see direct_file.cc). 0 (the
  // default): everything stays on the worker, whose CPU is all a
  // thread-per-core server should use (the other CPUs belong to the other
  // workers). Ignored (DirectFile::max_offloaded_copies() says 0) on O_DIRECT
  // files on a device, whose I/O the device does, and on NVMe passthrough.
  uint32_t max_offloaded_copies = 0;
  // DirectFile reads and writes that go to a device (not tmpfs): once a
  // request's submission entry is queued and at least this many entries wait
  // in the submission queue, they are submitted at once (one io_uring_enter in
  // the request's own call, which also posts the completions that arrived
  // meanwhile) instead of with the loop iteration's io_uring_enter. 1 (the
  // default, like fio's iodepth_batch_submit=1) submits every request as it is
  // issued: a device sees a steady stream, not a burst per loop iteration
  // (on a virtio disk, 4k writes at QD32 came back at half the latency), and
  // sequential requests are not merged into larger ones by the block layer's
  // plug. 0: only the loop submits (one io_uring_enter per iteration, fewer
  // system calls, the block layer's plug merges adjacent requests).
  uint32_t submit_batch = 1;
  // Files: create a regular file of `create_size` bytes if `path` does not
  // exist.
  bool create = false;
  uint64_t create_size = 0;
  // Files and block devices: O_DIRECT or the page cache (see CacheMode).
  CacheMode cache = CacheMode::kAuto;
  // NVMe passthrough: complete reads, writes, flushes, write-zeroes and
  // deallocates by polling the namespace's poll queues (the worker's
  // IORING_SETUP_IOPOLL ring) instead of by interrupt: the worker spins while
  // such commands are in flight. Opt-in. Where the namespace has no poll
  // queues (queue/io_poll is 0: load nvme with poll_queues=N) or the kernel
  // refuses a polled ring or command, the target uses interrupts and says so
  // in one warning. Polled commands use plain (not registered) buffers.
  bool polled = false;
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
  // Writes header.size() bytes of `header` and then payload.size() bytes of
  // `payload` at `offset`, as one request (e.g. a record header in front of a
  // block of data, without copying the data to join them). The total follows
  // Write's rules (offset and length multiples of logical_block_size, or
  // ending at the end of the target); each buffer's address is a multiple of
  // memory_alignment and the header's size too (pad it with zeroes:
  // ringline::PadToAlignment in ringline/align.h). Either may be empty.
  // Buffers belong to the operation until it completes and come back in the
  // result. How targets do it: DirectFile issues IORING_OP_WRITEV (a vector of
  // two; plain, not _FIXED, since the kernel has no fixed-buffer vectored
  // write), one kernel write per max-transfer chunk; NvmeNamespace passthrough
  // takes one contiguous data buffer, so the header is copied in front of the
  // payload inside the payload's Buffer (it needs capacity >= header + payload
  // sizes, else EINVAL naming the capacity needed) and the payload Buffer
  // comes back holding both. That joined path is the default here, the one
  // join every target uses: TargetBase's own default (NvmeNamespace) and
  // targets that wrap another one (FaultyTarget, blockserve's health check)
  // call Write() with the joined Buffer.
  virtual Task<GatherResult> WriteGather(uint64_t offset, Buffer header, Buffer payload,
                                         WriteOptions options = {});
  // Writes `data` at `offset` at once, on the target's worker thread, where
  // the target can do that without the kernel: a tmpfs file copied through
  // its mapping (TargetOptions::map_memory_files), to pages the file already
  // holds. `data` is read before the call returns and is not kept, so it may
  // be any memory, such as a connection's receive buffer (blockserve writes a
  // small payload from there, skipping the copy into a block buffer). True
  // when the write is done, counted in metrics() like a Write, and as durable
  // as a FUA write (tmpfs has nothing to write back). False, with nothing
  // written, when the caller must use Write() instead: the target has no such
  // path (the default), the request is one Write would refuse (Write says
  // why), or part of the range is not held yet.
  virtual bool WriteNow(uint64_t offset, std::span<const uint8_t> data, WriteOptions options = {});
  // False when WriteNow() never succeeds, so callers need not prepare for it.
  virtual bool writes_now() const { return false; }
  virtual Task<BlockResult> Flush() = 0;
  virtual Task<BlockResult> Discard(uint64_t offset, uint64_t length) = 0;
  virtual Task<BlockResult> WriteZeroes(uint64_t offset, uint64_t length,
                                        WriteOptions options = {}) = 0;

  // Starts reading [offset, offset + length) into the target's cache so that
  // later reads hit it (NBD_CMD_CACHE); advisory: the result says the request
  // was accepted, not that the data is cached. A no-op success where
  // geometry().supports_cache is false (the default).
  virtual Task<BlockResult> Cache(uint64_t offset, uint64_t length);

  // Reports the allocation state of [offset, offset + length) (length > 0,
  // the range inside the device) as contiguous extents starting at `offset`,
  // written to the front of `out` (at least one place), and their count in
  // the result. They cover at least one byte and at most the queried range: a
  // target stops when `out` is full (or earlier, e.g. at an error after the
  // first extent), and the caller asks again from where they end. Storage:
  // `out` is the caller's and must stay valid until the task completes; the
  // target writes only into it and keeps nothing, so a caller that reuses one
  // bounded span per query allocates nothing per query (blockserve's
  // NBD_CMD_BLOCK_STATUS: block_status_query.h).
  // The default says "all data" in one extent, which is always true; targets
  // that know their holes override it: regular files (DirectFile) report holes
  // from SEEK_DATA/SEEK_HOLE as kExtentHole | kExtentZero. Block devices and
  // NVMe namespaces report data (the default). An NVMe namespace could later
  // report deallocated blocks: Get LBA Status (log of potentially
  // unrecoverable or deallocated LBAs) or, per block, a read with DLFEAT
  // telling that deallocated blocks read as zeroes (kExtentZero; kExtentHole
  // for deallocated ones).
  virtual Task<ExtentResult> Extents(uint64_t offset, uint64_t length, std::span<Extent> out);

  // Per-operation metrics and the queue-depth limiter, owned by the target and
  // readable from any thread (see queue_depth.h); null when an implementation
  // keeps none.
  virtual const TargetMetrics* metrics() const { return nullptr; }
  virtual const QueueDepthLimiter* queue() const { return nullptr; }

 protected:
  // For targets that take one contiguous buffer: copies `header` in front of
  // the payload inside `payload`'s Buffer (payload.size() grows by
  // header.size()). EINVAL, naming the capacity needed, when the Buffer lacks
  // the room; nothing is changed then.
  static IoStatus JoinHeaderIntoPayload(const Buffer& header, Buffer& payload,
                                        const std::string& target_name);
};

}  // namespace ringline::block
