#include "blockserve/nbd/block_status.h"

#include <algorithm>

namespace blockserve::nbd {

void ToDescriptors(std::span<const ExtentIn> extents, uint32_t length, bool req_one,
                   std::vector<BlockStatusDescriptor>& out) {
  out.clear();
  uint64_t left = length;
  for (const ExtentIn& e : extents) {
    if (left == 0) break;
    if (e.length == 0) continue;
    const auto n = static_cast<uint32_t>(std::min<uint64_t>(e.length, left));
    const uint32_t flags = e.flags & (kStateHole | kStateZero);
    left -= n;
    if (!out.empty() && out.back().flags == flags) {
      out.back().length += n;  // cannot overflow: the sum is <= length
      continue;
    }
    // REQ_ONE: the first run is complete once a different status follows.
    if (req_one && !out.empty()) break;
    if (out.size() == kMaxBlockStatusDescriptors) break;
    out.push_back({n, flags});
  }
  if (out.empty()) out.push_back({length, 0});
}

}  // namespace blockserve::nbd
