#pragma once
// Discovery of a file's or block device's geometry for O_DIRECT I/O (internal
// to DirectFile).
//
// Direct I/O (`direct`: the descriptor is O_DIRECT) constrains alignment;
// buffered I/O does not (files: logical block and memory alignment 1; block
// devices: memory alignment 1, offsets and lengths still whole sectors, which
// discard and write-zeroes need).
// Regular files: size from statx, alignment from STATX_DIOALIGN
// (stx_dio_offset_align / stx_dio_mem_align, Linux 6.1+). Filesystems that do
// not report it (tmpfs) get the backing device's logical block size, or 4096
// when there is no backing device — a safe choice for any O_DIRECT-capable
// filesystem, at the cost of refusing 512-byte requests there.
// Block devices: BLKSSZGET, BLKPBSZGET, BLKGETSIZE64, BLKROGET and
// /sys/dev/block/MAJ:MIN/queue/* (the parent's queue for a partition).
// Both: Geometry::completion_cpus from the device's queue interrupts (the
// filesystem's device for a file; see ringline/block/placement.h).

#include <string>

#include "absl/status/statusor.h"
#include "ringline/block/target.h"

namespace ringline::block {

struct ProbedDevice {
  Geometry geometry;
  bool block_device = false;
  // Non-empty when statx says the file cannot do direct I/O: why.
  std::string no_direct_io;
};

// `fd` is open on `path` (O_DIRECT when `direct`); `path` is used in messages
// only.
absl::StatusOr<ProbedDevice> ProbeDevice(int fd, const std::string& path, bool direct);

}  // namespace ringline::block
