#pragma once
// OpenTarget: opens a block::Target by path, choosing the implementation.
//
//   character device (/dev/ngXnY)  -> NvmeNamespace (NVMe passthrough; other
//                                     character devices are refused by it)
//   regular file or block device   -> DirectFile (O_DIRECT; /dev/nvmeXnY too)
//
// Thread-safety: call on the thread of `worker`; the target belongs to it and
// must be destroyed before it (after the tasks that use it).

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "ringline/block/target.h"
#include "ringline/worker.h"

namespace ringline::block {

struct TargetOptions {
  bool read_only = false;
  // Requests admitted at once; more wait in FIFO order.
  uint32_t queue_depth = 128;
  // Split requests above this size (0: the implementation's own limit).
  uint32_t max_transfer_bytes = 0;
  // Record per-kind latency histograms in metrics().
  bool latency_histograms = true;
};

absl::StatusOr<std::unique_ptr<Target>> OpenTarget(Worker& worker, const std::string& path,
                                                   const TargetOptions& options = {});

}  // namespace ringline::block
