#pragma once
// FakeTarget: a TargetBase whose Submit* succeed at once, for tests of what the
// base does around an implementation (validation, refusals, metrics, the
// gathered-write join). It counts the requests that reach it, calls Record()
// as an implementation must, and keeps the bytes and offset of the last write
// (the one contiguous buffer a target such as NvmeNamespace is handed).
// Header-only; include it from one test file per binary. Worker-local.

#include <fcntl.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "ringline/block/target_base.h"
#include "ringline/unique_fd.h"
#include "ringline/worker.h"

namespace ringline::block {

class FakeTarget final : public TargetBase {
 public:
  // Over /dev/null installed in `worker`'s fixed file table; null on failure.
  static std::unique_ptr<FakeTarget> Open(Worker& worker, const Geometry& g) {
    UniqueFd fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!fd) return nullptr;
    auto fixed = InstallFixed(worker, fd.get());
    if (!fixed.ok()) return nullptr;
    return std::unique_ptr<FakeTarget>(new FakeTarget(worker, std::move(fd), *fixed, g));
  }
  int submitted = 0;             // requests that reached a Submit*
  std::vector<uint8_t> written;  // the last write's bytes
  uint64_t written_at = 0;       // and its offset

 private:
  FakeTarget(Worker& worker, UniqueFd fd, int fixed, const Geometry& g)
      : TargetBase(worker, "fake-target", std::move(fd), fixed, g, TargetOptions{}) {}
  Task<BlockResult> Done(OpKind kind, uint64_t bytes, Buffer buffer = {}) {
    ++submitted;
    BlockResult r;
    r.res = static_cast<int32_t>(bytes);
    r.buffer = std::move(buffer);
    Record(kind, true, bytes, StartTimer());
    co_return r;
  }
  Task<BlockResult> SubmitRead(uint64_t, uint32_t length, Buffer buffer) override {
    return Done(OpKind::kRead, length, std::move(buffer));
  }
  Task<BlockResult> SubmitWrite(uint64_t offset, Buffer buffer, bool) override {
    written.assign(buffer.data(), buffer.data() + buffer.size());
    written_at = offset;
    const uint64_t n = buffer.size();
    return Done(OpKind::kWrite, n, std::move(buffer));
  }
  Task<BlockResult> SubmitFlush() override { return Done(OpKind::kFlush, 0); }
  Task<BlockResult> SubmitDiscard(uint64_t, uint64_t) override { return Done(OpKind::kDiscard, 0); }
  Task<BlockResult> SubmitWriteZeroes(uint64_t, uint64_t, bool) override {
    return Done(OpKind::kWriteZeroes, 0);
  }
};

}  // namespace ringline::block
