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

// `options`: see TargetOptions (target.h).
absl::StatusOr<std::unique_ptr<Target>> OpenTarget(Worker& worker, const std::string& path,
                                                   const TargetOptions& options = {});

}  // namespace ringline::block
