// Resolving and opening the DEVICE argument of `info` and `health`.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "ringline/block/nvme_device.h"

namespace ringline::nvme_probe {

// A resolved NVMe device node and an open fd on it (owned).
struct OpenedDevice {
  block::NvmeDevicePaths paths;
  UniqueFd fd;
};

// Resolves `path` (ResolveNvmeDevice) and opens it read-only. Errors say
// what the path is when it is not an NVMe device, and are kPermissionDenied
// with a root/disk-group hint when the node cannot be opened.
absl::StatusOr<OpenedDevice> ResolveAndOpen(const std::string& path);

// "NVMe controller", "NVMe namespace block device", "NVMe generic char device".
std::string KindDescription(block::NvmeDeviceKind kind);
// "controller", "namespace_block", "namespace_generic" (JSON).
std::string KindId(block::NvmeDeviceKind kind);

// The device to use for io_uring passthrough (/dev/ngXnY) or "".
inline std::string PassthroughPath(const block::NvmeDevicePaths& p) { return p.generic_path(); }

}  // namespace ringline::nvme_probe
