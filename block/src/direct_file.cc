#include "ringline/block/direct_file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "blocking_helper.h"
#include "device_geometry.h"
#include "op_tags.h"
#include "ringline/io_result.h"
#include "ringline/log.h"
#include "ringline/operation.h"
#include "ringline/unique_fd.h"

namespace ringline::block {
namespace {

using Clock = QueueDepthLimiter::Clock;

// The kernel caps one read/write at MAX_RW_COUNT (INT_MAX & PAGE_MASK); a
// larger request comes back short and is continued.
constexpr uint32_t kMaxRwCount = 0x7ffff000u;

// Fills the SQE of one read or write chunk. The buffer moves into the op slot
// (slot.held[0]) and stays there until the final completion, so the kernel
// never writes into memory the awaiting frame could free (DESIGN.md rule 1).
struct RwPrep {
  Buffer* buffer;  // the request's buffer, moved into the slot here
  uint64_t offset;
  uint32_t pos;  // byte position of this chunk within the buffer
  uint32_t len;
  int fixed_file;
  int rw_flags;
  uint8_t opcode;

  void operator()(io_uring_sqe* sqe, OpSlot& slot) const {
    slot.held[0] = std::move(*buffer);
    const Buffer& b = slot.held[0];
    sqe->opcode = opcode;
    sqe->flags = IOSQE_FIXED_FILE;
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

Task<BlockResult> Finished(BlockResult r) { co_return r; }

std::string Describe(OpKind kind, uint64_t offset, uint64_t length, const std::string& path) {
  return absl::StrCat(OpKindName(kind), " of ", length, " bytes at offset ", offset, " on ", path);
}

}  // namespace

DirectFile::DirectFile(Worker& worker, std::string path, int fd, int fixed_file,
                       const Geometry& geometry, bool block_device,
                       const DirectFileOptions& options)
    : worker_(&worker),
      path_(std::move(path)),
      fd_(fd),
      fixed_file_(fixed_file),
      geometry_(geometry),
      block_device_(block_device),
      latency_(options.latency_histograms),
      limiter_(options.queue_depth) {
  const uint32_t unit = std::max(geometry_.logical_block_size, geometry_.memory_alignment);
  const uint32_t cap = geometry_.max_transfer_bytes ? geometry_.max_transfer_bytes : kMaxRwCount;
  max_chunk_ = std::max(unit, cap / unit * unit);
  // tmpfs files do not support non-blocking reads and writes (no FMODE_NOWAIT):
  // io_uring's inline attempt always fails with EAGAIN and hands the request
  // to an io-wq thread, which costs two thread switches per batch and a wake-up
  // of this worker per completion (a third of the CPU of a 4 KiB tmpfs read).
  // A tmpfs read or write is a copy to or from the page cache that never waits
  // for a device, so it is done here, on the worker, with preadv2/pwritev2.
  struct statfs fs;
  memory_backed_ = !block_device_ && ::fstatfs(fd_, &fs) == 0 && fs.f_type == TMPFS_MAGIC &&
                   options.copy_memory_inline;
}

DirectFile::~DirectFile() {
  helper_.reset();  // waits for a discard still running on the helper thread
  // Operations of destroyed tasks may still be in flight: the kernel holds its
  // own reference to the file for them, so the slot can go now.
  if (auto st = worker_->internals().ring().RemoveFixedFile(fixed_file_); !st.ok()) {
    RL_LOG_WARN("%s: %s", path_, st.message());
  }
  ::close(fd_);
}

absl::StatusOr<std::unique_ptr<DirectFile>> DirectFile::Open(Worker& worker,
                                                             const std::string& path,
                                                             const DirectFileOptions& options) {
  if (Worker::CurrentOrNull() != &worker) {
    return absl::FailedPreconditionError(
        "DirectFile::Open must be called on the thread of the worker it is opened on");
  }
  int flags = (options.read_only ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC;
  bool created = false;
  if (options.create && !options.read_only) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) {
      flags |= O_CREAT | O_EXCL;
      created = true;
    }
  }
  UniqueFd fd(::open(path.c_str(), flags, 0644));
  if (!fd) {
    const int e = errno;
    if (e == EINVAL) {
      return absl::InvalidArgumentError(
          absl::StrCat("open ", path,
                       ": O_DIRECT is not supported there (EINVAL); use a file on a "
                       "filesystem that supports direct I/O, or a block device"));
    }
    return ErrnoToStatus(
        -e, absl::StrCat("open ", path, options.read_only ? " read-only" : "", " with O_DIRECT"));
  }
  if (created && options.create_size > 0 &&
      ::ftruncate(fd.get(), static_cast<off_t>(options.create_size)) != 0) {
    return ErrnoToStatus(-errno, absl::StrCat("ftruncate ", path, " to ", options.create_size));
  }
  auto probed = ProbeDevice(fd.get(), path);
  if (!probed.ok()) return probed.status();
  Geometry g = probed->geometry;
  g.read_only = g.read_only || options.read_only;
  if (options.max_transfer_bytes != 0) {
    const uint32_t unit = std::max(g.logical_block_size, g.memory_alignment);
    if (options.max_transfer_bytes < unit) {
      return absl::InvalidArgumentError(absl::StrCat("max_transfer_bytes ",
                                                     options.max_transfer_bytes, " is below the ",
                                                     unit, "-byte alignment of ", path));
    }
    g.max_transfer_bytes = options.max_transfer_bytes / unit * unit;
  }
  auto fixed = worker.internals().ring().InstallFixedFile(fd.get());
  if (!fixed.ok()) return fixed.status();
  const int raw_fd = fd.Release();
  return std::unique_ptr<DirectFile>(
      new DirectFile(worker, path, raw_fd, *fixed, g, probed->block_device, options));
}

// ---- validation (cold) -------------------------------------------------------

Task<BlockResult> DirectFile::Refuse(OpKind kind, int res, std::string message, Buffer buffer) {
  metrics_.Record(kind, false, 0);
  BlockResult r;
  r.res = res;
  r.status =
      res == -EPERM ? absl::PermissionDeniedError(message) : absl::InvalidArgumentError(message);
  r.buffer = std::move(buffer);
  return Finished(std::move(r));
}

Task<BlockResult> DirectFile::RefuseRequest(OpKind kind, uint64_t offset, uint64_t length,
                                            const uint8_t* address, Buffer buffer) {
  const uint32_t lbs = geometry_.logical_block_size;
  std::string msg;
  if (offset % lbs != 0) {
    msg = absl::StrCat(OpKindName(kind), ": offset ", offset,
                       " is misaligned: offsets must be multiples of ", lbs,
                       " bytes (the logical block size of ", path_, ")");
  } else if (length % lbs != 0) {
    msg = absl::StrCat(OpKindName(kind), ": length ", length,
                       " is misaligned: lengths must be multiples of ", lbs,
                       " bytes (the logical block size of ", path_, ")");
  } else if (address != nullptr && !AddressOk(address)) {
    msg = absl::StrFormat(
        "%s: buffer address %p is misaligned: buffers must be aligned to %u bytes (the O_DIRECT "
        "memory alignment of %s)",
        OpKindName(kind), static_cast<const void*>(address), geometry_.memory_alignment, path_);
  } else {
    msg = absl::StrCat(OpKindName(kind), ": ", length, " bytes at offset ", offset,
                       " extend beyond the end of ", path_, " (size ", geometry_.size_bytes,
                       " bytes)");
  }
  return Refuse(kind, -EINVAL, std::move(msg), std::move(buffer));
}

// ---- read and write ------------------------------------------------------------

Task<BlockResult> DirectFile::Read(uint64_t offset, uint32_t length, Buffer buffer) {
  if (!buffer || buffer.capacity() < length) [[unlikely]] {
    return Refuse(OpKind::kRead, -EINVAL,
                  absl::StrCat("read: buffer capacity ", buffer.capacity(),
                               " is smaller than the length ", length),
                  std::move(buffer));
  }
  if (!RangeOk(offset, length) || !AddressOk(buffer.data())) [[unlikely]] {
    const uint8_t* address = buffer.data();  // before the buffer moves
    return RefuseRequest(OpKind::kRead, offset, length, address, std::move(buffer));
  }
  return Transfer(OpKind::kRead, offset, length, std::move(buffer), 0);
}

Task<BlockResult> DirectFile::Write(uint64_t offset, Buffer buffer, WriteOptions options) {
  const uint32_t length = static_cast<uint32_t>(buffer.size());
  if (geometry_.read_only) [[unlikely]] {
    return Refuse(OpKind::kWrite, -EPERM, absl::StrCat("write: ", path_, " is read-only"),
                  std::move(buffer));
  }
  if (!RangeOk(offset, length) || (length != 0 && !AddressOk(buffer.data()))) [[unlikely]] {
    const uint8_t* address = length != 0 ? buffer.data() : nullptr;  // before the buffer moves
    return RefuseRequest(OpKind::kWrite, offset, length, address, std::move(buffer));
  }
  return Transfer(OpKind::kWrite, offset, length, std::move(buffer), options.fua ? RWF_DSYNC : 0);
}

Task<BlockResult> DirectFile::Transfer(OpKind kind, uint64_t offset, uint32_t length, Buffer buffer,
                                       int rw_flags) {
  const Clock::time_point start = latency_ ? Clock::now() : Clock::time_point();
  QueueDepthLimiter::Permit permit = co_await limiter_.Acquire();

  const bool write = kind == OpKind::kWrite;
  const bool fixed = buffer.registered();
  const OpTag tag = write ? kTagWrite : kTagRead;
  RwPrep prep{
      .buffer = &buffer,
      .offset = offset,
      .pos = 0,
      .len = 0,
      .fixed_file = fixed_file_,
      .rw_flags = rw_flags,
      .opcode = static_cast<uint8_t>(write ? (fixed ? IORING_OP_WRITE_FIXED : IORING_OP_WRITE)
                                           : (fixed ? IORING_OP_READ_FIXED : IORING_OP_READ))};
  int32_t res = 0;
  uint32_t done = 0;
  // One chunk normally; more when split at max_chunk_ or continued after a
  // short transfer.
  while (done < length) {
    prep.pos = done;
    prep.offset = offset + done;
    prep.len = std::min(length - done, max_chunk_);
    if (memory_backed_) {
      res = CopyInline(write, prep.offset, buffer.data() + prep.pos, prep.len, rw_flags);
    } else {
      res = co_await Submit(tag, prep, RwFinish{&buffer});
    }
    if (res <= 0) [[unlikely]]
      break;
    done += static_cast<uint32_t>(res);
    if (done < length &&
        (done & (std::max(geometry_.logical_block_size, geometry_.memory_alignment) - 1)) != 0)
        [[unlikely]] {
      res = -EIO;  // the rest could not be issued aligned
      break;
    }
  }
  permit.Release();

  BlockResult r;
  if (done == length) [[likely]] {
    r.res = static_cast<int32_t>(length);
    if (!write) buffer.set_size(length);
  } else if (res == 0) {
    r.res = -EIO;
    r.status = absl::DataLossError(absl::StrCat(Describe(kind, offset, length, path_),
                                                ": unexpected end of file after ", done,
                                                " bytes (did the file shrink?)"));
  } else if (res == -EIO && done > 0 && done < length) {
    r.res = -EIO;
    r.status = absl::DataLossError(absl::StrCat(Describe(kind, offset, length, path_),
                                                ": short transfer of ", done,
                                                " bytes that cannot be continued aligned"));
  } else {
    r.res = res;
    r.status = ErrnoToStatus(res, Describe(kind, offset, length, path_));
  }
  r.buffer = std::move(buffer);
  metrics_.Record(kind, r.res >= 0, length);
  if (latency_) metrics_.RecordLatency(kind, start);
  co_return r;
}

int32_t DirectFile::CopyInline(bool write, uint64_t offset, uint8_t* data, uint32_t len,
                               int rw_flags) {
  iovec iov{data, len};
  const ssize_t n = write ? ::pwritev2(fd_, &iov, 1, static_cast<off_t>(offset), rw_flags)
                          : ::preadv2(fd_, &iov, 1, static_cast<off_t>(offset), 0);
  return n < 0 ? -errno : static_cast<int32_t>(n);
}

// ---- flush, discard, write-zeroes ------------------------------------------------

Task<BlockResult> DirectFile::Flush() {
  const Clock::time_point start = latency_ ? Clock::now() : Clock::time_point();
  QueueDepthLimiter::Permit permit = co_await limiter_.Acquire();
  const int32_t res = co_await DatasyncOp(fixed_file_);
  permit.Release();
  BlockResult r;
  r.res = res;
  if (res < 0) r.status = ErrnoToStatus(res, absl::StrCat("flush (fdatasync) of ", path_));
  metrics_.Record(OpKind::kFlush, res >= 0, 0);
  if (latency_) metrics_.RecordLatency(OpKind::kFlush, start);
  co_return r;
}

Task<BlockResult> DirectFile::Discard(uint64_t offset, uint64_t length) {
  if (geometry_.read_only) [[unlikely]] {
    return Refuse(OpKind::kDiscard, -EPERM, absl::StrCat("discard: ", path_, " is read-only"),
                  Buffer());
  }
  if (!RangeOk(offset, length)) [[unlikely]] {
    return RefuseRequest(OpKind::kDiscard, offset, length, nullptr, Buffer());
  }
  return Allocate(OpKind::kDiscard, offset, length, false);
}

Task<BlockResult> DirectFile::WriteZeroes(uint64_t offset, uint64_t length, WriteOptions options) {
  if (geometry_.read_only) [[unlikely]] {
    return Refuse(OpKind::kWriteZeroes, -EPERM,
                  absl::StrCat("write_zeroes: ", path_, " is read-only"), Buffer());
  }
  if (!RangeOk(offset, length)) [[unlikely]] {
    return RefuseRequest(OpKind::kWriteZeroes, offset, length, nullptr, Buffer());
  }
  return Allocate(OpKind::kWriteZeroes, offset, length, options.fua);
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
  const Clock::time_point start = latency_ ? Clock::now() : Clock::time_point();
  int32_t res = 0;
  if (length != 0) {
    QueueDepthLimiter::Permit permit = co_await limiter_.Acquire();
    if (block_device_ && kind == OpKind::kDiscard) {
      if (!helper_) helper_ = std::make_unique<BlockingHelper>();
      const int fd = fd_;  // valid until the helper is joined in ~DirectFile
      res = co_await helper_->Run(*worker_, [fd, offset, length] {
        uint64_t range[2] = {offset, length};
        return ::ioctl(fd, BLKDISCARD, range) == 0 ? 0 : -errno;
      });
    } else if (block_device_) {
      res = co_await FallocateOp(fixed_file_, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset,
                                 length);
    } else {
      const bool punch = kind == OpKind::kDiscard || !zero_range_supported_;
      res = co_await FallocateOp(
          fixed_file_, (punch ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) | FALLOC_FL_KEEP_SIZE,
          offset, length);
      if (res == -EOPNOTSUPP && !punch) {
        zero_range_supported_ = false;
        res = co_await FallocateOp(fixed_file_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset,
                                   length);
      }
    }
    if (res >= 0 && fua) res = co_await DatasyncOp(fixed_file_);
  }
  BlockResult r;
  r.res = res;
  if (res < 0) r.status = ErrnoToStatus(res, Describe(kind, offset, length, path_));
  metrics_.Record(kind, res >= 0, length);
  if (latency_) metrics_.RecordLatency(kind, start);
  co_return r;
}

}  // namespace ringline::block
