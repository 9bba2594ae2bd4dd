#include "ringline/block/target.h"

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"

namespace ringline::block {

Task<ExtentResult> Target::Extents(uint64_t offset, uint64_t length, uint32_t max_extents) {
  ExtentResult result;
  const uint64_t size = geometry().size_bytes;
  if (length == 0 || max_extents == 0 || offset >= size) {
    result.res = -EINVAL;
    result.status = absl::InvalidArgumentError(absl::StrCat(
        "extent query of ", length, " bytes at ", offset, " outside a device of ", size, " bytes"));
    co_return result;
  }
  result.extents.push_back(Extent{std::min(length, size - offset), 0});
  co_return result;
}

Task<BlockResult> Target::Cache(uint64_t, uint64_t) { co_return BlockResult{}; }

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
