#include "device_geometry.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "ringline/block/placement.h"
#include "ringline/io_result.h"
#include "sysfs.h"

// glibc takes struct statx from <linux/stat.h> when the kernel headers are new
// enough; older headers lack the DIO alignment fields, so read them at their
// uapi offsets (struct statx: stx_dio_mem_align at 0x98, stx_dio_offset_align
// at 0x9c) from the same 256-byte structure.
#ifndef STATX_DIOALIGN
#define STATX_DIOALIGN 0x00002000U
#define RINGLINE_STATX_DIO_BY_OFFSET 1
#endif

namespace ringline::block {
namespace {

constexpr uint32_t kFallbackAlignment = 4096;

uint32_t DioMemAlign(const struct statx& st) {
#ifdef RINGLINE_STATX_DIO_BY_OFFSET
  uint32_t v;
  std::memcpy(&v, reinterpret_cast<const char*>(&st) + 0x98, sizeof v);
  return v;
#else
  return st.stx_dio_mem_align;
#endif
}
uint32_t DioOffsetAlign(const struct statx& st) {
#ifdef RINGLINE_STATX_DIO_BY_OFFSET
  uint32_t v;
  std::memcpy(&v, reinterpret_cast<const char*>(&st) + 0x9c, sizeof v);
  return v;
#else
  return st.stx_dio_offset_align;
#endif
}

// The request-queue directory of a block device: its own for a whole disk, the
// parent's for a partition. Empty when sysfs does not have it.
std::string QueueDir(unsigned major_num, unsigned minor_num) {
  const std::string dev = absl::StrCat("/sys/dev/block/", major_num, ":", minor_num);
  if (access((dev + "/queue").c_str(), F_OK) == 0) return dev + "/queue";
  if (access((dev + "/../queue").c_str(), F_OK) == 0) return dev + "/../queue";
  return "";
}

bool IsPowerOfTwo(uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

absl::StatusOr<ProbedDevice> ProbeDevice(int fd, const std::string& path, bool direct) {
  struct statx st;
  std::memset(&st, 0, sizeof st);
  if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_DIOALIGN, &st) != 0) {
    return ErrnoToStatus(-errno, absl::StrCat("statx ", path));
  }
  ProbedDevice out;
  Geometry& g = out.geometry;
  const bool has_dio = (st.stx_mask & STATX_DIOALIGN) != 0;
  if (has_dio && DioOffsetAlign(st) == 0) {
    out.no_direct_io = "the filesystem does not support O_DIRECT (statx reports no DIO alignment)";
    direct = false;
  }

  if (S_ISBLK(st.stx_mode)) {
    out.block_device = true;
    int lbs = 0;
    unsigned int pbs = 0;
    uint64_t size = 0;
    int ro = 0;
    if (ioctl(fd, BLKSSZGET, &lbs) != 0) return ErrnoToStatus(-errno, "ioctl BLKSSZGET " + path);
    if (ioctl(fd, BLKPBSZGET, &pbs) != 0) return ErrnoToStatus(-errno, "ioctl BLKPBSZGET " + path);
    if (ioctl(fd, BLKGETSIZE64, &size) != 0) {
      return ErrnoToStatus(-errno, "ioctl BLKGETSIZE64 " + path);
    }
    if (ioctl(fd, BLKROGET, &ro) != 0) return ErrnoToStatus(-errno, "ioctl BLKROGET " + path);
    g.logical_block_size = static_cast<uint32_t>(lbs);
    g.physical_block_size = pbs ? pbs : g.logical_block_size;
    g.memory_alignment = g.logical_block_size;
    if (has_dio) {
      g.logical_block_size = std::max(g.logical_block_size, DioOffsetAlign(st));
      g.memory_alignment = DioMemAlign(st) ? DioMemAlign(st) : g.memory_alignment;
    }
    g.size_bytes = size / g.logical_block_size * g.logical_block_size;
    // Through the page cache any buffer address works, but offsets and
    // lengths keep the device's sector size: discard (BLKDISCARD) and
    // write-zeroes (blkdev_issue_zeroout) take whole sectors only.
    if (!direct) g.memory_alignment = 1;
    g.read_only = ro != 0;
    const std::string q = QueueDir(st.stx_rdev_major, st.stx_rdev_minor);
    if (!q.empty()) {
      if (auto v = ReadSysfs(q + "/write_cache")) g.volatile_write_cache = (*v == "write back");
      if (auto v = ReadSysfsUint(q + "/rotational")) g.rotational = *v != 0;
      if (auto v = ReadSysfsUint(q + "/discard_max_bytes")) g.supports_discard = *v != 0;
    }
    // FUA: RWF_DSYNC on an O_DIRECT write becomes REQ_FUA, or a write plus a
    // cache flush where the device has no FUA; either way it is durable.
    g.supports_fua = true;
    // blkdev_issue_zeroout falls back to writing zero pages: always available.
    g.supports_write_zeroes = true;
    // Reads after a discard are undefined for block devices in general.
    g.discard_zeroes_data = false;
    g.completion_cpus = ProbeCompletionPlacementOfDevice(true, st.stx_rdev_major, st.stx_rdev_minor)
                            .PreferredCpus();
  } else if (S_ISREG(st.stx_mode)) {
    uint32_t offset_align = 0;
    uint32_t mem_align = 0;
    std::string q;
    if (st.stx_dev_major != 0) q = QueueDir(st.stx_dev_major, st.stx_dev_minor);
    if (!direct) {
      offset_align = 1;  // the page cache takes any offset, length and address
      mem_align = 1;
    } else if (has_dio) {
      offset_align = DioOffsetAlign(st);
      mem_align = DioMemAlign(st);
    } else {
      auto lbs = q.empty() ? std::nullopt : ReadSysfsUint(q + "/logical_block_size");
      offset_align = lbs ? static_cast<uint32_t>(*lbs) : kFallbackAlignment;
      mem_align = offset_align;
    }
    if (!IsPowerOfTwo(offset_align) || !IsPowerOfTwo(mem_align)) {
      return absl::FailedPreconditionError(absl::StrCat(path, ": unexpected DIO alignment (offset ",
                                                        offset_align, ", memory ", mem_align, ")"));
    }
    g.logical_block_size = offset_align;
    g.memory_alignment = mem_align;
    g.physical_block_size = std::max<uint32_t>(offset_align, st.stx_blksize);
    if (!IsPowerOfTwo(g.physical_block_size)) g.physical_block_size = 4096;
    // Every byte, including a tail shorter than a block (DirectFile reaches
    // it through the page cache when it uses O_DIRECT).
    g.size_bytes = st.stx_size;
    if (!q.empty()) {
      if (auto v = ReadSysfsUint(q + "/rotational")) g.rotational = *v != 0;
    }
    g.volatile_write_cache = true;  // page-cache metadata and the disk's cache
    g.supports_fua = true;
    g.supports_discard = true;       // PUNCH_HOLE; EOPNOTSUPP is reported if the fs lacks it
    g.supports_write_zeroes = true;  // ZERO_RANGE, else PUNCH_HOLE
    g.discard_zeroes_data = true;    // a punched hole reads as zeroes
    // The filesystem's device (none for tmpfs: no preference).
    g.completion_cpus =
        ProbeCompletionPlacementOfDevice(true, st.stx_dev_major, st.stx_dev_minor).PreferredCpus();
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is neither a regular file nor a block device"));
  }
  return out;
}

}  // namespace ringline::block
