#include "ringline/block/target.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace ringline::block {

Task<ExtentResult> Target::Extents(uint64_t offset, uint64_t length, std::span<Extent> out) {
  ExtentResult result;
  const uint64_t size = geometry().size_bytes;
  if (length == 0 || out.empty() || offset >= size) {
    result.res = -EINVAL;
    result.status = absl::InvalidArgumentError(
        absl::StrCat("extent query of ", length, " bytes at ", offset, " into ", out.size(),
                     " places, on a device of ", size, " bytes"));
    co_return result;
  }
  out[0] = Extent{std::min(length, size - offset), 0};
  result.count = 1;
  co_return result;
}

Task<BlockResult> Target::Cache(uint64_t, uint64_t) { co_return BlockResult{}; }

bool Target::WriteNow(uint64_t, std::span<const uint8_t>, WriteOptions) { return false; }

IoStatus Target::JoinHeaderIntoPayload(const Buffer& header, Buffer& payload,
                                       const std::string& target_name) {
  IoStatus r;
  const std::size_t h = header.size();
  const std::size_t p = payload.size();
  if (h == 0) return r;
  if (payload.capacity() < h + p) {
    r.Fail(EINVAL, absl::InvalidArgumentError(absl::StrCat(
                       "gathered write on ", target_name,
                       ": this target takes one contiguous buffer, so the header is copied in "
                       "front of the payload in the payload's Buffer, which needs a capacity of ",
                       h + p, " bytes (it has ", payload.capacity(), ")")));
    return r;
  }
  std::memmove(payload.data() + h, payload.data(), p);
  std::memcpy(payload.data(), header.data(), h);
  payload.set_size(h + p);
  return r;
}

Task<GatherResult> Target::WriteGather(uint64_t offset, Buffer header, Buffer payload,
                                       WriteOptions options) {
  GatherResult r;
  IoStatus joined = JoinHeaderIntoPayload(header, payload, name());
  if (!joined.ok()) {
    r.res = joined.res;
    r.status = std::move(joined.status);
  } else {
    BlockResult written = co_await Write(offset, std::move(payload), options);
    r.res = written.res;
    r.status = std::move(written.status);
    payload = std::move(written.buffer);
  }
  r.header = std::move(header);
  r.payload = std::move(payload);
  co_return r;
}

const char* CacheModeName(CacheMode mode) {
  switch (mode) {
    case CacheMode::kAuto:
      return "auto";
    case CacheMode::kDirect:
      return "direct";
    case CacheMode::kWriteback:
      return "writeback";
  }
  return "unknown";
}

bool ParseCacheMode(std::string_view text, CacheMode* mode) {
  for (CacheMode m : {CacheMode::kAuto, CacheMode::kDirect, CacheMode::kWriteback}) {
    if (text == CacheModeName(m)) {
      *mode = m;
      return true;
    }
  }
  return false;
}

const char* OpKindName(OpKind kind) {
  switch (kind) {
    case OpKind::kRead:
      return "read";
    case OpKind::kWrite:
      return "write";
    case OpKind::kFlush:
      return "flush";
    case OpKind::kDiscard:
      return "discard";
    case OpKind::kWriteZeroes:
      return "write_zeroes";
  }
  return "unknown";
}

}  // namespace ringline::block
