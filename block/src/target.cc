#include "ringline/block/target.h"

namespace ringline::block {

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
