#include "ringline/block/direct_file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <coroutine>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "blocking_helper.h"
#include "device_geometry.h"
#include "mapped_file.h"
#include "op_tags.h"
#include "ringline/align.h"
#include "ringline/internal/ring.h"
#include "ringline/io_result.h"
#include "ringline/log.h"
#include "ringline/operation.h"
#include "ringline/unique_fd.h"

namespace ringline::block {
namespace {

// The kernel caps one read/write at MAX_RW_COUNT (INT_MAX & PAGE_MASK); a
// larger request comes back short and is continued.
constexpr uint32_t kMaxRwCount = 0x7ffff000u;

// Fills the SQE of one read or write chunk. The buffer moves into the op slot
// (slot.held[0]) and stays there until the final completion, so the kernel
// never writes into memory the awaiting frame could free (docs/io_uring-rules.md R1).
struct RwPrep {
  Buffer* buffer;  // the request's buffer, moved into the slot here
  uint64_t offset;
  uint32_t pos;  // byte position of this chunk within the buffer
  uint32_t len;
  int fixed_file;
  int rw_flags;
  uint8_t opcode;
  uint8_t sqe_flags;  // IOSQE_ASYNC for a request offloaded to io-wq, else 0

  void operator()(io_uring_sqe* sqe, OpSlot& slot) const {
    slot.held[0] = std::move(*buffer);
    const Buffer& b = slot.held[0];
    sqe->opcode = opcode;
    sqe->flags = IOSQE_FIXED_FILE | sqe_flags;
    sqe->fd = fixed_file;
    sqe->off = offset;
    sqe->addr = reinterpret_cast<uint64_t>(b.data() + pos);
    sqe->len = len;
    sqe->rw_flags = rw_flags;
    if (b.registered()) sqe->buf_index = static_cast<uint16_t>(b.registered_index());
  }
};

// Hands the buffer back to the request once the kernel is done with it.
struct RwFinish {
  Buffer* buffer;
  int32_t operator()(OpSlot& slot) const {
    *buffer = std::move(slot.held[0]);
    return slot.res;
  }
};

// A vectored write of [header, payload] pieces: both Buffers move into the
// slot (held[0], held[1]) and the iovecs into its storage, where they stay
// until the final completion (docs/io_uring-rules.md R1). Moving a Buffer
// keeps its memory where it is, so the iovecs built before still point right.
struct WritevPrep {
  Buffer* header;
  Buffer* payload;
  iovec iov[2];
  unsigned iov_count;
  uint64_t offset;
  int fixed_file;
  int rw_flags;
  uint8_t sqe_flags;  // IOSQE_ASYNC for a request offloaded to io-wq, else 0

  void operator()(io_uring_sqe* sqe, OpSlot& slot) const {
    slot.held[0] = std::move(*header);
    slot.held[1] = std::move(*payload);
    static_assert(OpSlot::kMaxIov >= 2);
    std::copy(iov, iov + iov_count, slot.storage.msg.iov);
    io_uring_prep_writev(sqe, fixed_file, slot.storage.msg.iov, iov_count, offset);
    sqe->flags |= IOSQE_FIXED_FILE | sqe_flags;
    sqe->rw_flags = rw_flags;
  }
};
struct WritevFinish {
  Buffer* header;
  Buffer* payload;
  int32_t operator()(OpSlot& slot) const {
    *header = std::move(slot.held[0]);
    *payload = std::move(slot.held[1]);
    return slot.res;
  }
};

// The awaiter of a read or write operation, which submits early: once the
// operation's entry is queued, the submission queue goes to the kernel at
// once when `batch` (TargetOptions::submit_batch; 0: never) or more entries
// wait there. Ring::SubmitNow also posts the completions that arrived
// meanwhile, so the loop finds them without sleeping; on backpressure or a
// signal the entries stay queued for the loop's own submit
// (docs/io_uring-rules.md R7). The SQE is complete when the inner
// await_suspend returns (the slot, user data and waiter are set), so the
// kernel may take it at once; what it points at lives in the slot until the
// final completion (R1).
template <typename Op>
class SubmitSoon {
 public:
  SubmitSoon(Op op, Ring& ring, uint32_t batch) : op_(std::move(op)), ring_(ring), batch_(batch) {}
  bool await_ready() const noexcept { return false; }
  template <typename Promise>
  void await_suspend(std::coroutine_handle<Promise> h) {
    op_.await_suspend(h);
    if (batch_ != 0 && io_uring_sq_ready(ring_.raw()) >= batch_) {
      (void)ring_.SubmitNow();
    }
  }
  decltype(auto) await_resume() { return op_.await_resume(); }

 private:
  Op op_;
  Ring& ring_;
  uint32_t batch_;
};

Task<ExtentResult> ReadyExtents(ExtentResult r) { co_return r; }

struct ResFinish {
  int32_t operator()(OpSlot& slot) const { return slot.res; }
};

auto DatasyncOp(int fixed_file) {
  return Submit(
      kTagFsync,
      [fixed_file](io_uring_sqe* sqe, OpSlot&) {
        io_uring_prep_fsync(sqe, fixed_file, IORING_FSYNC_DATASYNC);
        sqe->flags |= IOSQE_FIXED_FILE;
      },
      ResFinish{});
}

auto FallocateOp(int fixed_file, int mode, uint64_t offset, uint64_t length) {
  return Submit(
      kTagFallocate,
      [=](io_uring_sqe* sqe, OpSlot&) {
        io_uring_prep_fallocate(sqe, fixed_file, mode, static_cast<off_t>(offset),
                                static_cast<off_t>(length));
        sqe->flags |= IOSQE_FIXED_FILE;
      },
      ResFinish{});
}

// The io-wq threads offloaded requests may use: one per CPU the process may
// run on besides the worker's own, at least one. The same for every target on
// the worker (the cap is the ring's), and io-wq starts no more threads than it
// has requests at once.
uint32_t OffloadThreads() {
  cpu_set_t set;
  CPU_ZERO(&set);
  // The process's CPUs (its first thread's affinity), not this worker
  // thread's, which may be pinned to one: io-wq threads run anywhere in the
  // process's cpuset.
  const int cpus = ::sched_getaffinity(::getpid(), sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
  return static_cast<uint32_t>(std::max(cpus - 1, 1));
}

}  // namespace

DirectFile::DirectFile(Worker& worker, std::string path, UniqueFd fd, int fixed_file,
                       const Geometry& geometry, bool block_device, bool direct, bool memory_fs,
                       const TargetOptions& options)
    : TargetBase(worker, std::move(path), std::move(fd), fixed_file, geometry, options),
      block_device_(block_device),
      direct_(direct) {
  const Geometry& g = this->geometry();
  const uint32_t unit = std::max(g.logical_block_size, g.memory_alignment);
  const uint32_t cap = g.max_transfer_bytes ? g.max_transfer_bytes : kMaxRwCount;
  max_chunk_ = std::max(unit, cap / unit * unit);
  // tmpfs files do not support non-blocking reads and writes (no FMODE_NOWAIT):
  // io_uring's inline attempt always fails with EAGAIN and hands the request
  // to an io-wq thread, which costs two thread switches per batch and a wake-up
  // of this worker per completion (a third of the CPU of a 4 KiB tmpfs read).
  // A tmpfs read or write is a copy to or from the page cache that never waits
  // for a device, so it is done here, on the worker, with pread/pwrite
  // (pwritev2 for FUA).
  memory_backed_ = memory_fs && options.copy_memory_inline;
  // tmpfs through the ring goes to io-wq, where submitting request by request
  // only adds system calls; there is no device to keep busy.
  submit_batch_ = memory_fs ? 0 : options.submit_batch;
  // Where a read or write completes on this worker's CPU (the inline copy
  // above, or a buffered file's cached pages, which io_uring's non-blocking
  // first attempt copies inside this thread's io_uring_enter), IOSQE_ASYNC
  // sends it to an io-wq thread at once (no first attempt), which the
  // scheduler runs on another CPU. O_DIRECT on a device is the device's work.
  max_offloaded_ = memory_fs || !direct ? options.max_offloaded_copies : 0;
  if (max_offloaded_ > 0) offload_places_.emplace(max_offloaded_);
}

DirectFile::~DirectFile() {
  helper_.reset();  // waits for a discard still running on the helper thread (it uses fd())
  if (tail_fixed_file_ >= 0) {
    if (auto st = worker().internals().ring().RemoveFixedFile(tail_fixed_file_); !st.ok()) {
      RL_LOG_WARN("%s: %s", name(), st.message());
    }
  }
}

// The tail of an O_DIRECT file that ends mid-block. O_DIRECT moves whole
// blocks, so reading or writing the last partial block that way would need a
// whole block past the end (a write would grow the file). Those bytes go
// through a second descriptor without O_DIRECT instead, exactly up to the end.
// Why the two descriptors stay coherent: the page cache is per file, not per
// descriptor, and the kernel keeps O_DIRECT coherent with it page by page:
// before an O_DIRECT read or write it writes back dirty cached pages in its
// range, and after an O_DIRECT write it invalidates them. The one page shared
// by the last whole blocks and the tail (when blocks are smaller than a page)
// is therefore written back before O_DIRECT touches those blocks and re-read
// after an O_DIRECT write; the tail itself is only ever accessed buffered.
// Durability is the same as elsewhere: FUA is RWF_DSYNC on the buffered write,
// and fdatasync on the main descriptor writes back the file's dirty pages
// whichever descriptor dirtied them. As with any device, overlapping requests
// in flight at once are not ordered against each other.
absl::Status DirectFile::OpenTail(const std::string& path, bool read_only) {
  tail_fd_.Reset(::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (!tail_fd_) {
    return ErrnoToStatus(-errno, absl::StrCat("open ", path, " (buffered, for its last ",
                                              geometry().size_bytes - tail_start_, " bytes)"));
  }
  auto fixed = InstallFixed(worker(), tail_fd_.get());
  if (!fixed.ok()) return fixed.status();
  tail_fixed_file_ = *fixed;
  return absl::OkStatus();
}

namespace {

// The descriptor of a file or block device, opened for the cache mode asked.
struct OpenedFile {
  UniqueFd fd;
  bool created = false;
  bool direct = false;
  std::string why_buffered;  // cache=auto fell back to the page cache: why
};

absl::StatusOr<OpenedFile> OpenForCacheMode(const std::string& path, const TargetOptions& options) {
  OpenedFile out;
  int flags = (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  if (options.create && !options.read_only) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) {
      flags |= O_CREAT | O_EXCL;
      out.created = true;
    }
  }
  out.direct = options.cache != CacheMode::kWriteback;
  out.fd.Reset(::open(path.c_str(), flags | (out.direct ? O_DIRECT : 0), 0644));
  if (!out.fd && errno == EINVAL && out.direct) {
    // The filesystem refuses O_DIRECT (the kernel checks it after creating a
    // file, so an O_EXCL retry would find the file: drop O_EXCL).
    if (options.cache == CacheMode::kDirect) {
      if (out.created) ::unlink(path.c_str());  // leave nothing behind
      return absl::InvalidArgumentError(absl::StrCat(
          "open ", path,
          ": O_DIRECT is not supported there (EINVAL); use cache=writeback (or auto) to serve it "
          "through the page cache, or a file on a filesystem that supports direct I/O"));
    }
    out.direct = false;
    out.why_buffered = "the filesystem refuses O_DIRECT (open returned EINVAL)";
    out.fd.Reset(::open(path.c_str(), flags & ~O_EXCL, 0644));
  }
  if (!out.fd) {
    return ErrnoToStatus(-errno, absl::StrCat("open ", path, options.read_only ? " read-only" : "",
                                              out.direct ? " with O_DIRECT" : ""));
  }
  if (out.created && options.create_size > 0 &&
      ::ftruncate(out.fd.get(), static_cast<off_t>(options.create_size)) != 0) {
    return ErrnoToStatus(-errno, absl::StrCat("ftruncate ", path, " to ", options.create_size));
  }
  return out;
}

}  // namespace

namespace {

// Every worker opens each export on its own, so the fallback would be reported
// once per worker; an operator needs to read it once per file per process.
void WarnBufferedOnce(const std::string& path, const std::string& why) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* const warned = new std::set<std::string>();  // never freed
  {
    absl::MutexLock lock(&mu);
    if (!warned->insert(path).second) return;
  }
  RL_LOG_WARN("%s: serving through the page cache (cache=auto) because %s", path, why);
}

}  // namespace

absl::StatusOr<std::unique_ptr<DirectFile>> DirectFile::Open(Worker& worker,
                                                             const std::string& path,
                                                             const TargetOptions& options) {
  if (auto st = CheckOnWorkerThread(worker); !st.ok()) return st;
  auto opened = OpenForCacheMode(path, options);
  if (!opened.ok()) return opened.status();
  auto probed = ProbeDevice(opened->fd.get(), path, opened->direct);
  if (!probed.ok()) return probed.status();
  if (opened->direct && !probed->no_direct_io.empty()) {
    // Open took O_DIRECT but statx says direct I/O cannot work here.
    if (options.cache == CacheMode::kDirect) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": ", probed->no_direct_io,
                       "; use cache=writeback (or auto) to serve it through "
                       "the page cache"));
    }
    const int fl = ::fcntl(opened->fd.get(), F_GETFL);
    if (fl < 0 || ::fcntl(opened->fd.get(), F_SETFL, fl & ~O_DIRECT) != 0) {
      return ErrnoToStatus(-errno, absl::StrCat("clearing O_DIRECT on ", path));
    }
    opened->direct = false;
    opened->why_buffered = probed->no_direct_io;
  }
  if (!opened->why_buffered.empty()) WarnBufferedOnce(path, opened->why_buffered);
  Geometry g = probed->geometry;
  g.read_only = g.read_only || options.read_only;
  // tmpfs and ramfs (the same page-cache-only file system without O_DIRECT).
  struct statfs fs;
  const bool memory_fs = !probed->block_device && ::fstatfs(opened->fd.get(), &fs) == 0 &&
                         (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);
  // A prefetch means something only where reads go through a page cache that
  // is filled from a device.
  g.supports_cache = !opened->direct && !memory_fs;
  auto max_transfer = MaxTransferFor(options.max_transfer_bytes,
                                     std::max(g.logical_block_size, g.memory_alignment), 0, path);
  if (!max_transfer.ok()) return max_transfer.status();
  g.max_transfer_bytes = *max_transfer;
  auto fixed = InstallFixed(worker, opened->fd.get());
  if (!fixed.ok()) return fixed.status();
  std::unique_ptr<DirectFile> f(new DirectFile(worker, path, std::move(opened->fd), *fixed, g,
                                               probed->block_device, opened->direct, memory_fs,
                                               options));
  if (f->max_offloaded_ > 0) f->LimitIoWqThreads();
  // tmpfs only: its SEEK_DATA tells which pages exist, so reads of holes stay
  // off the mapping (ramfs reports every page as data).
  if (f->memory_backed_ && fs.f_type == TMPFS_MAGIC && options.map_memory_files &&
      g.size_bytes > 0) {
    auto mapped = MappedFile::Share(f->fd(), g.size_bytes, g.read_only);
    if (mapped.ok()) {
      f->mapped_ = *std::move(mapped);
    } else {
      RL_LOG_WARN("%s: copying with pread/pwrite, not through a mapping: %s", path,
                  mapped.status().ToString());
    }
  }
  const uint32_t unit = std::max(g.logical_block_size, g.memory_alignment);
  if (opened->direct && g.size_bytes % unit != 0) {
    f->tail_start_ = g.size_bytes / unit * unit;
    if (auto st = f->OpenTail(path, g.read_only); !st.ok()) return st;
  }
  return f;
}

// Offloaded requests are IOSQE_ASYNC on a fixed file, which io-wq receives
// before the file is looked up (that happens when the request runs), so it
// counts them as unbounded work: limited only by RLIMIT_NPROC, and a thread is
// started for each forced-async request that finds none idle. On tmpfs that
// made five or six io-wq threads for 32 offloaded reads, taking turns on the
// one CPU left beside the worker. IORING_REGISTER_IOWQ_MAX_WORKERS (5.15)
// caps this worker's io-wq at offload_threads_ unbounded threads; bounded work
// (fsync, fallocate: the file is known when they are punted) keeps its limit.
// The cap belongs to the ring and its thread, so it also holds for the other
// targets on this worker (none of ringline's other requests is forced async).
// A refusal costs only the cap: the requests still run, with a warning.
void DirectFile::LimitIoWqThreads() {
  offload_threads_ = OffloadThreads();
  unsigned limits[2] = {0, offload_threads_};  // [bounded (0: unchanged), unbounded]
  const int ret = io_uring_register_iowq_max_workers(worker().internals().ring().raw(), limits);
  if (ret < 0) {
    RL_LOG_WARN("%s: io-wq threads for offloaded copies not limited to %u: %s", name(),
                offload_threads_,
                ErrnoToStatus(ret, "IORING_REGISTER_IOWQ_MAX_WORKERS").ToString());
  }
}

// ---- read and write ------------------------------------------------------------

Task<BlockResult> DirectFile::SubmitRead(uint64_t offset, uint32_t length, Buffer buffer) {
  return Transfer(OpKind::kRead, offset, length, std::move(buffer), 0);
}

Task<BlockResult> DirectFile::SubmitWrite(uint64_t offset, Buffer buffer, bool fua) {
  const auto length = static_cast<uint32_t>(buffer.size());
  return Transfer(OpKind::kWrite, offset, length, std::move(buffer), fua ? RWF_DSYNC : 0);
}

Task<BlockResult> DirectFile::Transfer(OpKind kind, uint64_t offset, uint32_t length, Buffer buffer,
                                       int rw_flags) {
  const Clock::time_point start = StartTimer();
  // A registration index means something only on its own worker's ring.
  if (absl::Status foreign = buffer.CheckUsableOn(worker()); !foreign.ok()) [[unlikely]] {
    BlockResult r;
    r.Fail(EXDEV, std::move(foreign));
    r.buffer = std::move(buffer);
    Record(kind, false, length, start);
    co_return r;
  }
  QueueDepthLimiter::Permit permit = co_await limiter().Acquire();
  QueueDepthLimiter::Permit offload = TakeOffloadPlace();
  const bool inline_copy = memory_backed_ && !offload;

  const bool write = kind == OpKind::kWrite;
  const bool fixed = buffer.registered();
  const OpTag tag = write ? kTagWrite : kTagRead;
  RwPrep prep{
      .buffer = &buffer,
      .offset = offset,
      .pos = 0,
      .len = 0,
      .fixed_file = fixed_file(),
      .rw_flags = rw_flags,
      .opcode = static_cast<uint8_t>(write ? (fixed ? IORING_OP_WRITE_FIXED : IORING_OP_WRITE)
                                           : (fixed ? IORING_OP_READ_FIXED : IORING_OP_READ)),
      .sqe_flags = static_cast<uint8_t>(offload ? IOSQE_ASYNC : 0)};
  int32_t res = 0;
  uint32_t done = 0;
  // One chunk normally; more when split at max_chunk_ or continued after a
  // short transfer.
  while (done < length) {
    prep.pos = done;
    prep.offset = offset + done;
    prep.len = std::min(length - done, max_chunk_);
    // The O_DIRECT part ends at tail_start_; the rest goes buffered (OpenTail).
    const bool tail = prep.offset >= tail_start_;
    if (!tail && prep.offset + prep.len > tail_start_) [[unlikely]] {
      prep.len = static_cast<uint32_t>(tail_start_ - prep.offset);
    }
    prep.fixed_file = tail ? tail_fixed_file_ : fixed_file();
    if (inline_copy) {
      const iovec piece{buffer.data() + prep.pos, prep.len};
      res = CopyInline(tail ? tail_fd_.get() : fd(), write, prep.offset, {&piece, 1}, rw_flags);
    } else {
      res = co_await SubmitSoon(Submit(tag, prep, RwFinish{&buffer}), worker().internals().ring(),
                                submit_batch_);
      if (write) NoteWritten(prep.offset, res);  // offloaded to io-wq (tmpfs), or a device
    }
    if (res <= 0) [[unlikely]]
      break;
    done += static_cast<uint32_t>(res);
    if (done < length && !IsAligned(done, std::max(geometry().logical_block_size,
                                                   geometry().memory_alignment))) [[unlikely]] {
      res = -EIO;  // the rest could not be issued aligned
      break;
    }
  }
  permit.Release();
  offload.Release();
  if (inline_copy && YieldAfterInlineCopy()) co_await worker().Yield();

  BlockResult r;
  if (done == length) [[likely]] {
    r.res = static_cast<int32_t>(length);
    if (!write) buffer.set_size(length);
    r.buffer = std::move(buffer);
  } else if (res == 0) {
    r = Failure(-EIO,
                absl::StrCat(Describe(kind, offset, length), ": unexpected end of file after ",
                             done, " bytes (did the file shrink?)"),
                std::move(buffer));
  } else if (res == -EIO && done > 0 && done < length) {
    r = Failure(-EIO,
                absl::StrCat(Describe(kind, offset, length), ": short transfer of ", done,
                             " bytes that cannot be continued aligned"),
                std::move(buffer));
  } else {
    r = Failure(res, Describe(kind, offset, length), std::move(buffer));
  }
  Record(kind, r.ok(), length, start);
  co_return r;
}

Task<GatherResult> DirectFile::SubmitWriteGather(uint64_t offset, Buffer header, Buffer payload,
                                                 bool fua) {
  const Clock::time_point start = StartTimer();
  QueueDepthLimiter::Permit permit = co_await limiter().Acquire();
  QueueDepthLimiter::Permit offload = TakeOffloadPlace();
  const bool inline_copy = memory_backed_ && !offload;
  const int rw_flags = fua ? RWF_DSYNC : 0;
  const std::size_t h = header.size();
  const auto total = static_cast<uint32_t>(h + payload.size());
  const uint32_t unit = std::max(geometry().logical_block_size, geometry().memory_alignment);
  int32_t res = 0;
  uint32_t done = 0;
  while (done < total) {
    WritevPrep prep{.header = &header,
                    .payload = &payload,
                    .iov = {},
                    .iov_count = 0,
                    .offset = offset + done,
                    .fixed_file = fixed_file(),
                    .rw_flags = rw_flags,
                    .sqe_flags = static_cast<uint8_t>(offload ? IOSQE_ASYNC : 0)};
    uint32_t len = std::min(total - done, max_chunk_);
    // The O_DIRECT part ends at tail_start_; the rest goes buffered (OpenTail).
    const bool tail = prep.offset >= tail_start_;
    if (!tail && prep.offset + len > tail_start_) [[unlikely]] {
      len = static_cast<uint32_t>(tail_start_ - prep.offset);
    }
    if (tail) prep.fixed_file = tail_fixed_file_;
    // [done, done + len) of the concatenation: the rest of the header, then
    // payload bytes.
    const std::size_t end = std::size_t{done} + len;
    if (done < h) {
      prep.iov[prep.iov_count++] = {header.data() + done, std::min(end, h) - done};
    }
    if (end > h) {
      const std::size_t from = std::max<std::size_t>(done, h) - h;
      prep.iov[prep.iov_count++] = {payload.data() + from, end - h - from};
    }
    if (inline_copy) {
      res = CopyInline(tail ? tail_fd_.get() : fd(), true, prep.offset, {prep.iov, prep.iov_count},
                       rw_flags);
    } else {
      res = co_await SubmitSoon(Submit(kTagWrite, prep, WritevFinish{&header, &payload}),
                                worker().internals().ring(), submit_batch_);
      NoteWritten(prep.offset, res);
    }
    if (res <= 0) [[unlikely]]
      break;
    done += static_cast<uint32_t>(res);
    if (done < total && !IsAligned(done, unit)) [[unlikely]] {
      res = -EIO;  // the rest could not be issued aligned
      break;
    }
  }
  permit.Release();
  offload.Release();
  if (inline_copy && YieldAfterInlineCopy()) co_await worker().Yield();
  GatherResult r;
  if (done == total) [[likely]] {
    r.res = static_cast<int32_t>(total);
  } else {
    const std::string what = absl::StrCat("gathered ", Describe(OpKind::kWrite, offset, total));
    BlockResult failed =
        res == 0
            ? Failure(-EIO, absl::StrCat(what, ": the kernel wrote nothing after ", done, " bytes"))
            : Failure(res, what);
    r.res = failed.res;
    r.status = std::move(failed.status);
  }
  Record(OpKind::kWrite, r.ok(), total, start);
  r.header = std::move(header);
  r.payload = std::move(payload);
  co_return r;
}

int32_t DirectFile::CopyInline(int fd, bool write, uint64_t offset, std::span<const iovec> pieces,
                               int rw_flags) {
  // tmpfs keeps no data for FUA (RWF_DSYNC) to write back: its fsync does
  // nothing, so a FUA write through the mapping is as durable as through
  // pwritev2.
  if (CopyThroughMapping(write, offset, pieces)) {
    uint32_t total = 0;
    for (const iovec& piece : pieces) total += static_cast<uint32_t>(piece.iov_len);
    return static_cast<int32_t>(total);
  }
  ssize_t n;
  if (pieces.size() == 1 && rw_flags == 0) {
    // pread/pwrite hand the kernel one user buffer (ITER_UBUF), with no
    // iovec to copy in and walk as preadv2/pwritev2 do.
    n = write ? ::pwrite(fd, pieces[0].iov_base, pieces[0].iov_len, static_cast<off_t>(offset))
              : ::pread(fd, pieces[0].iov_base, pieces[0].iov_len, static_cast<off_t>(offset));
  } else {
    const auto count = static_cast<int>(pieces.size());
    n = write ? ::pwritev2(fd, pieces.data(), count, static_cast<off_t>(offset), rw_flags)
              : ::preadv2(fd, pieces.data(), count, static_cast<off_t>(offset), rw_flags);
  }
  if (n < 0) return -errno;
  if (write) NoteWritten(offset, static_cast<int32_t>(n));
  return static_cast<int32_t>(n);
}

bool DirectFile::CopyThroughMapping(bool write, uint64_t offset, std::span<const iovec> pieces) {
  if (mapped_ == nullptr || !mapped_->TryCopy(write, offset, pieces)) return false;
  ++mapped_copies_;
  return true;
}

bool DirectFile::CopyNow(uint64_t offset, std::span<const uint8_t> data) {
  if (!writes_now()) return false;
  // A write only reads the pieces; iovec's base is not const.
  const iovec piece{const_cast<uint8_t*>(data.data()), data.size()};
  return CopyThroughMapping(true, offset, {&piece, 1});
}

void DirectFile::NoteWritten(uint64_t offset, int32_t res) {
  if (res > 0 && mapped_ != nullptr) mapped_->MarkAllocated(offset, static_cast<uint64_t>(res));
}

// ---- cache and extents -----------------------------------------------------------

// Prefetch: IORING_OP_FADVISE(WILLNEED) starts readahead of the range into the
// page cache without blocking the worker (io-wq runs it where it would block).
Task<BlockResult> DirectFile::SubmitCache(uint64_t offset, uint64_t length) {
  QueueDepthLimiter::Permit permit = co_await limiter().Acquire();
  const int32_t res = co_await Submit(
      kTagAux,
      [fixed = fixed_file(), offset, length](io_uring_sqe* sqe, OpSlot&) {
        io_uring_prep_fadvise(sqe, fixed, offset, static_cast<off_t>(length), POSIX_FADV_WILLNEED);
        sqe->flags |= IOSQE_FIXED_FILE;
      },
      ResFinish{});
  permit.Release();
  BlockResult r;
  if (res < 0)
    r = Failure(res, absl::StrCat("cache (fadvise WILLNEED) of ", length, " bytes at offset ",
                                  offset, " on ", name()));
  co_return r;
}

// Holes of a regular file from SEEK_DATA/SEEK_HOLE. Each extent costs one or
// two lseek calls on the worker's thread (no I/O: the file system answers from
// its extent tree or page cache), so a query is bounded by out.size(). The
// extents go straight into the caller's span: nothing is allocated.
// lseek has no io_uring form; it does not wait for a device.
Task<ExtentResult> DirectFile::Extents(uint64_t offset, uint64_t length, std::span<Extent> out) {
  const uint64_t size = geometry().size_bytes;
  if (block_device_ || length == 0 || out.empty() || offset >= size) {
    return Target::Extents(offset, length, out);  // data, or the refusal
  }
  return ReadyExtents(FileExtents(offset, length, out));
}

ExtentResult DirectFile::FileExtents(uint64_t offset, uint64_t length, std::span<Extent> out) {
  const uint64_t size = geometry().size_bytes;
  ExtentResult r;
  const uint64_t end = offset + std::min(length, size - offset);
  uint64_t pos = offset;
  const int file = fd();
  while (pos < end && r.count < out.size()) {
    off_t data = ::lseek(file, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0 && errno == ENXIO) data = static_cast<off_t>(end);  // a hole to the end
    if (data < 0) {
      r.res = -errno;
      r.status = ErrnoToStatus(
          r.res, absl::StrCat("extents of ", name(), " at ", pos, " (lseek SEEK_DATA)"));
      break;
    }
    if (static_cast<uint64_t>(data) > pos) {
      const uint64_t hole_end = std::min<uint64_t>(data, end);
      out[r.count++] = Extent{hole_end - pos, kExtentHole | kExtentZero};
      pos = hole_end;
      continue;
    }
    const off_t hole = ::lseek(file, static_cast<off_t>(pos), SEEK_HOLE);
    if (hole < 0) {
      r.res = -errno;
      r.status = ErrnoToStatus(
          r.res, absl::StrCat("extents of ", name(), " at ", pos, " (lseek SEEK_HOLE)"));
      break;
    }
    const uint64_t data_end = std::min<uint64_t>(std::max<uint64_t>(hole, pos + 1), end);
    out[r.count++] = Extent{data_end - pos, 0};
    pos = data_end;
  }
  if (r.res < 0 && r.count > 0) {
    r.res = 0;  // report what was found; the next query meets the error again
    r.status = absl::OkStatus();
  }
  return r;
}

// ---- flush, discard, write-zeroes ------------------------------------------------

Task<BlockResult> DirectFile::SubmitFlush() {
  const Clock::time_point start = StartTimer();
  QueueDepthLimiter::Permit permit = co_await limiter().Acquire();
  const int32_t res = co_await DatasyncOp(fixed_file());
  permit.Release();
  BlockResult r;
  if (res < 0) r = Failure(res, absl::StrCat(Describe(OpKind::kFlush, 0, 0), " (fdatasync)"));
  Record(OpKind::kFlush, r.ok(), 0, start);
  co_return r;
}

Task<BlockResult> DirectFile::SubmitDiscard(uint64_t offset, uint64_t length) {
  return Allocate(OpKind::kDiscard, offset, length, false);
}

Task<BlockResult> DirectFile::SubmitWriteZeroes(uint64_t offset, uint64_t length, bool fua) {
  return Allocate(OpKind::kWriteZeroes, offset, length, fua);
}

// How each step is issued, and why:
//  - Files: IORING_OP_FALLOCATE. io_uring runs fallocate in its io-wq worker
//    threads, so the worker thread never blocks. Discard is PUNCH_HOLE|KEEP_SIZE
//    (the range then reads as zeroes). Write-zeroes is ZERO_RANGE|KEEP_SIZE,
//    which keeps the blocks allocated; filesystems without it (tmpfs) get
//    PUNCH_HOLE|KEEP_SIZE instead, which also reads back as zeroes.
//  - Block devices, write-zeroes: IORING_OP_FALLOCATE with ZERO_RANGE|KEEP_SIZE,
//    which blkdev_fallocate turns into blkdev_issue_zeroout(BLKDEV_ZERO_NOUNMAP):
//    the same call as the BLKZEROOUT ioctl, but asynchronous (io-wq).
//  - Block devices, discard: the BLKDISCARD ioctl, which has no io_uring form
//    on 6.1 (BLOCK_URING_CMD_DISCARD arrived in 6.12). 6.1's blkdev_fallocate
//    would discard for PUNCH_HOLE|KEEP_SIZE|NO_HIDE_STALE, but later kernels
//    (this host's 6.18 among them) dropped that mode (EOPNOTSUPP), and plain
//    PUNCH_HOLE on a block device is a write-zeroes that fails where the device
//    cannot write zeroes — not a discard. So the ioctl runs on a helper thread
//    (one per target, started on first use) and its result is posted back to the
//    worker: the worker thread never blocks on it. Discards are rare and large;
//    a thread hop is cheap next to them.
//  - FUA on write-zeroes: an fdatasync after the zeroing succeeded.
Task<BlockResult> DirectFile::Allocate(OpKind kind, uint64_t offset, uint64_t length, bool fua) {
  const Clock::time_point start = StartTimer();
  int32_t res = 0;
  if (length != 0) {
    QueueDepthLimiter::Permit permit = co_await limiter().Acquire();
    if (block_device_ && kind == OpKind::kDiscard) {
      if (!helper_) helper_ = std::make_unique<BlockingHelper>();
      const int fd = this->fd();  // valid until the helper is joined in ~DirectFile
      res = co_await helper_->Run(worker(), [fd, offset, length] {
        uint64_t range[2] = {offset, length};
        return ::ioctl(fd, BLKDISCARD, range) == 0 ? 0 : -errno;
      });
    } else if (block_device_) {
      res = co_await FallocateOp(fixed_file(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset,
                                 length);
    } else {
      // The mapping must not touch pages that may be freed now: a read
      // through it would allocate them again (mapped_file.h).
      if (mapped_ != nullptr) mapped_->Forget(offset, length);
      const bool punch = kind == OpKind::kDiscard || !zero_range_supported_;
      res = co_await FallocateOp(
          fixed_file(), (punch ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) | FALLOC_FL_KEEP_SIZE,
          offset, length);
      if (res == -EOPNOTSUPP && !punch) {
        zero_range_supported_ = false;
        res = co_await FallocateOp(fixed_file(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset,
                                   length);
      }
    }
    if (res >= 0 && fua) res = co_await DatasyncOp(fixed_file());
  }
  BlockResult r;
  if (res < 0) r = Failure(res, Describe(kind, offset, length));
  Record(kind, r.ok(), length, start);
  co_return r;
}

}  // namespace ringline::block
