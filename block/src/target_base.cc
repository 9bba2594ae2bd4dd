#include "ringline/block/target_base.h"

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ringline/io_result.h"
#include "ringline/log.h"

namespace ringline::block {
namespace {

Task<BlockResult> Finished(BlockResult r) { co_return r; }

}  // namespace

TargetBase::TargetBase(Worker& worker, std::string path, UniqueFd fd, int fixed_file,
                       const Geometry& geometry, const TargetOptions& options)
    : worker_(&worker),
      path_(std::move(path)),
      fd_(std::move(fd)),
      fixed_file_(fixed_file),
      latency_(options.latency_histograms),
      geometry_(geometry),
      limiter_(options.queue_depth) {}

TargetBase::~TargetBase() {
  if (auto st = worker_->internals().ring().RemoveFixedFile(fixed_file_); !st.ok()) {
    RL_LOG_WARN("%s: %s", path_, st.message());
  }
  // fd_ closes after this body, once the fixed slot no longer refers to it.
}

absl::Status TargetBase::CheckOnWorkerThread(const Worker& worker) {
  if (Worker::CurrentOrNull() != &worker) {
    return absl::FailedPreconditionError(
        "a block target must be opened on the thread of the worker it belongs to");
  }
  return absl::OkStatus();
}

absl::StatusOr<int> TargetBase::InstallFixed(Worker& worker, int fd) {
  return worker.internals().ring().InstallFixedFile(fd);
}

absl::StatusOr<uint32_t> TargetBase::MaxTransferFor(uint32_t requested, uint32_t unit,
                                                    uint64_t device_max, const std::string& path) {
  if (requested == 0) return 0u;
  if (requested < unit) {
    return absl::InvalidArgumentError(absl::StrCat("max_transfer_bytes ", requested,
                                                   " is below the ", unit, "-byte alignment of ",
                                                   path, "; use a multiple of ", unit, " or 0"));
  }
  uint64_t bytes = requested / unit * unit;
  if (device_max != 0 && device_max < bytes) bytes = device_max;
  return static_cast<uint32_t>(bytes);
}

std::string TargetBase::Describe(OpKind kind, uint64_t offset, uint64_t length) const {
  if (kind == OpKind::kFlush) return absl::StrCat("flush of ", path_);
  return absl::StrCat(OpKindName(kind), " of ", length, " bytes at offset ", offset, " on ", path_);
}

BlockResult TargetBase::Failure(int32_t res, absl::string_view context, Buffer buffer) {
  BlockResult r;
  r.res = res < 0 ? res : -EIO;
  r.status = ringline::ErrnoToStatus(r.res, context);
  r.buffer = std::move(buffer);
  return r;
}

// ---- validation ------------------------------------------------------------------
// The checks are inline and cheap; everything that explains a refusal is in
// the cold Refuse* functions.

Task<BlockResult> TargetBase::Read(uint64_t offset, uint32_t length, Buffer buffer) {
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
  return SubmitRead(offset, length, std::move(buffer));
}

Task<BlockResult> TargetBase::Write(uint64_t offset, Buffer buffer, WriteOptions options) {
  const uint32_t length = static_cast<uint32_t>(buffer.size());
  if (geometry_.read_only) [[unlikely]] {
    return Refuse(OpKind::kWrite, -EPERM, absl::StrCat("write: ", path_, " is read-only"),
                  std::move(buffer));
  }
  if (!RangeOk(offset, length) || (length != 0 && !AddressOk(buffer.data()))) [[unlikely]] {
    const uint8_t* address = length != 0 ? buffer.data() : nullptr;  // before the buffer moves
    return RefuseRequest(OpKind::kWrite, offset, length, address, std::move(buffer));
  }
  return SubmitWrite(offset, std::move(buffer), options.fua);
}

bool TargetBase::WriteNow(uint64_t offset, std::span<const uint8_t> data, WriteOptions) {
  // The caller's memory need not be aligned: only a copy uses it.
  if (geometry_.read_only || data.empty() || !RangeOk(offset, data.size())) return false;
  const Clock::time_point start = StartTimer();
  if (!CopyNow(offset, data)) return false;
  Record(OpKind::kWrite, true, data.size(), start);
  return true;
}

Task<GatherResult> TargetBase::WriteGather(uint64_t offset, Buffer header, Buffer payload,
                                           WriteOptions options) {
  const std::size_t h = header.size();
  const std::size_t p = payload.size();
  const uint64_t total = uint64_t{h} + p;
  const uint8_t* bad_address = nullptr;
  if (h != 0 && !AddressOk(header.data())) bad_address = header.data();
  if (p != 0 && !AddressOk(payload.data())) bad_address = payload.data();
  if (geometry_.read_only || total > UINT32_MAX || !RangeOk(offset, total) ||
      bad_address != nullptr || !IsAligned(h, geometry_.memory_alignment)) [[unlikely]] {
    BlockResult refused;
    if (geometry_.read_only) {
      refused = co_await Refuse(OpKind::kWrite, -EPERM,
                                absl::StrCat("gathered write: ", path_, " is read-only"), Buffer());
    } else if (total > UINT32_MAX) {
      refused = co_await Refuse(
          OpKind::kWrite, -EINVAL,
          absl::StrCat("gathered write of ", total, " bytes exceeds 4 GiB - 1 in one request"),
          Buffer());
    } else if (!IsAligned(h, geometry_.memory_alignment)) {
      refused = co_await Refuse(
          OpKind::kWrite, -EINVAL,
          absl::StrCat("gathered write on ", path_, ": a header of ", h,
                       " bytes is not a multiple of the memory alignment (",
                       geometry_.memory_alignment, " bytes); pad it (ringline::PadToAlignment)"),
          Buffer());
    } else {
      refused = co_await RefuseRequest(OpKind::kWrite, offset, total, bad_address, Buffer());
    }
    GatherResult r;
    r.res = refused.res;
    r.status = std::move(refused.status);
    r.header = std::move(header);
    r.payload = std::move(payload);
    co_return r;
  }
  GatherResult r =
      co_await SubmitWriteGather(offset, std::move(header), std::move(payload), options.fua);
  co_return r;
}

Task<GatherResult> TargetBase::SubmitWriteGather(uint64_t offset, Buffer header, Buffer payload,
                                                 bool fua) {
  // Target's one join-then-Write(): Write() validates the joined buffer again
  // (it passes: same range, the payload's address, a header of whole
  // alignment units) and SubmitWrite() counts the request.
  return Target::WriteGather(offset, std::move(header), std::move(payload), {.fua = fua});
}

Task<BlockResult> TargetBase::Flush() { return SubmitFlush(); }

Task<BlockResult> TargetBase::Discard(uint64_t offset, uint64_t length) {
  if (geometry_.read_only || !geometry_.supports_discard) [[unlikely]] {
    return RefuseUnsupported(OpKind::kDiscard);
  }
  if (!RangeOk(offset, length)) [[unlikely]] {
    return RefuseRequest(OpKind::kDiscard, offset, length, nullptr, Buffer());
  }
  return SubmitDiscard(offset, length);
}

Task<BlockResult> TargetBase::WriteZeroes(uint64_t offset, uint64_t length, WriteOptions options) {
  if (geometry_.read_only || !geometry_.supports_write_zeroes) [[unlikely]] {
    return RefuseUnsupported(OpKind::kWriteZeroes);
  }
  if (!RangeOk(offset, length)) [[unlikely]] {
    return RefuseRequest(OpKind::kWriteZeroes, offset, length, nullptr, Buffer());
  }
  return SubmitWriteZeroes(offset, length, options.fua);
}

Task<BlockResult> TargetBase::Cache(uint64_t offset, uint64_t length) {
  if (!geometry_.supports_cache || length == 0) return Finished(BlockResult{});
  if (length > geometry_.size_bytes || offset > geometry_.size_bytes - length) [[unlikely]] {
    return Finished(Failure(-EINVAL, absl::StrCat("cache: ", length, " bytes at offset ", offset,
                                                  " extend beyond the end of ", path_, " (size ",
                                                  geometry_.size_bytes, " bytes)")));
  }
  return SubmitCache(offset, length);
}

Task<BlockResult> TargetBase::SubmitCache(uint64_t, uint64_t) { return Finished(BlockResult{}); }

// ---- refusals (cold) ---------------------------------------------------------------

Task<BlockResult> TargetBase::Refuse(OpKind kind, int res, std::string message, Buffer buffer) {
  metrics_.Record(kind, false, 0);
  return Finished(Failure(res, message, std::move(buffer)));
}

Task<BlockResult> TargetBase::RefuseUnsupported(OpKind kind) {
  if (geometry_.read_only) {
    return Refuse(kind, -EPERM, absl::StrCat(OpKindName(kind), ": ", path_, " is read-only"),
                  Buffer());
  }
  return Refuse(kind, -EOPNOTSUPP,
                absl::StrCat(OpKindName(kind), ": ", path_, " does not support ",
                             kind == OpKind::kDiscard ? "discard" : "write-zeroes",
                             " (see its geometry: supports_",
                             kind == OpKind::kDiscard ? "discard" : "write_zeroes", ")"),
                Buffer());
}

Task<BlockResult> TargetBase::RefuseRequest(OpKind kind, uint64_t offset, uint64_t length,
                                            const uint8_t* address, Buffer buffer) {
  const uint32_t lbs = geometry_.logical_block_size;
  std::string msg;
  if (offset % lbs != 0) {
    msg = absl::StrCat(OpKindName(kind), ": offset ", offset,
                       " is misaligned: offsets must be multiples of ", lbs,
                       " bytes (the logical block size of ", path_, ")");
  } else if (length % lbs != 0 && length <= geometry_.size_bytes &&
             offset <= geometry_.size_bytes - length) {
    msg = absl::StrCat(OpKindName(kind), ": length ", length,
                       " is misaligned: lengths must be multiples of ", lbs,
                       " bytes (the logical block size of ", path_,
                       "), except for a request that ends at the end of the target");
  } else if (address != nullptr && !AddressOk(address)) {
    msg = absl::StrFormat(
        "%s: buffer address %p is misaligned: buffers must be aligned to %u bytes (the memory "
        "alignment of %s)",
        OpKindName(kind), static_cast<const void*>(address), geometry_.memory_alignment, path_);
  } else {
    msg = absl::StrCat(OpKindName(kind), ": ", length, " bytes at offset ", offset,
                       " extend beyond the end of ", path_, " (size ", geometry_.size_bytes,
                       " bytes)");
  }
  return Refuse(kind, -EINVAL, std::move(msg), std::move(buffer));
}

}  // namespace ringline::block
