#include "device.h"

#include <utility>

namespace ringline::nvme_probe {

absl::StatusOr<OpenedDevice> ResolveAndOpen(const std::string& path) {
  // Classify before opening: "not an NVMe device" is more useful than a
  // permission error on, say, /dev/sda, and sysfs needs no privileges.
  absl::StatusOr<block::NvmeDevicePaths> paths = block::ResolveNvmeDevice(path);
  if (!paths.ok()) return paths.status();
  absl::StatusOr<UniqueFd> fd = block::OpenNvmeDevice(path);
  if (!fd.ok()) return fd.status();
  return OpenedDevice{*std::move(paths), *std::move(fd)};
}

std::string KindDescription(block::NvmeDeviceKind kind) {
  switch (kind) {
    case block::NvmeDeviceKind::kController:
      return "NVMe controller";
    case block::NvmeDeviceKind::kNamespaceBlock:
      return "NVMe namespace block device";
    case block::NvmeDeviceKind::kNamespaceGeneric:
      return "NVMe generic char device";
  }
  return "NVMe device";
}

std::string KindId(block::NvmeDeviceKind kind) {
  switch (kind) {
    case block::NvmeDeviceKind::kController:
      return "controller";
    case block::NvmeDeviceKind::kNamespaceBlock:
      return "namespace_block";
    case block::NvmeDeviceKind::kNamespaceGeneric:
      return "namespace_generic";
  }
  return "unknown";
}

}  // namespace ringline::nvme_probe
