// Open-time facts about an NVMe controller and namespace: Identify
// Controller, Identify Namespace, the SMART / Health Information log, the
// largest transfer the kernel accepts, and the mapping between the device
// nodes of one namespace (/dev/ngXnY, /dev/nvmeXnY, /dev/nvmeX).
//
// Shared by the block layer (NvmeNamespace reads LBA size, capacity, max
// transfer, VWC and optional commands at open) and by nvme-probe.
//
// How: admin commands go through the NVME_IOCTL_ADMIN_CMD ioctl, which the
// kernel accepts on the controller char device (/dev/nvmeX), the block device
// (/dev/nvmeXnY) and the generic char device (/dev/ngXnY); the namespace id of
// a namespace device comes from NVME_IOCTL_ID. These are synchronous ioctls,
// meant for set-up, never for a worker's hot path. The kernel requires
// CAP_SYS_ADMIN for most admin commands; without it they fail with EACCES or
// EPERM, reported as kPermissionDenied.
//
// Ownership: functions taking an `int fd` borrow it (they neither close it
// nor keep it). Results are plain values owned by the caller.
// Thread-safety: every function is reentrant; calls on the same fd from
// several threads are safe (the kernel serialises admin commands).
//
// Errors are absl::Status values whose message names the device (from
// /proc/self/fd), the command and, for an NVMe error, the NVMe status name,
// e.g. "/dev/ng0n1: Identify Namespace (nsid 1): Generic Command Status /
// Invalid Field in Command (sct 0x0, sc 0x2, DNR)".
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/numeric/int128.h"
#include "absl/status/statusor.h"
#include "ringline/unique_fd.h"

namespace ringline::block {

// ---- Identify Controller ------------------------------------------------

// Optional NVM commands the controller supports (Identify Controller ONCS).
struct NvmeOptionalCommands {
  bool compare = false;               // bit 0
  bool write_uncorrectable = false;   // bit 1
  bool dataset_management = false;    // bit 2 (deallocate / TRIM)
  bool write_zeroes = false;          // bit 3
  bool save_select_features = false;  // bit 4
  bool reservations = false;          // bit 5
  bool timestamp = false;             // bit 6
  bool verify = false;                // bit 7
  bool copy = false;                  // bit 8
};

struct NvmeControllerInfo {
  uint16_t vendor_id = 0;            // VID (PCI vendor id)
  uint16_t subsystem_vendor_id = 0;  // SSVID
  std::string serial;                // SN, trailing blanks removed
  std::string model;                 // MN, trailing blanks removed
  std::string firmware;              // FR, trailing blanks removed
  uint16_t controller_id = 0;        // CNTLID
  // VER as reported: major in bits 31:16, minor 15:8, tertiary 7:0. 0 means
  // the controller predates NVMe 1.2 and did not report it.
  uint32_t version = 0;
  // MDTS: the maximum data transfer size as a power of two in units of the
  // controller's minimum memory page size (CAP.MPSMIN). 0 = no limit.
  uint8_t mdts = 0;
  // VWC bit 0: a volatile write cache is present, so writes need a Flush (or
  // FUA) to be durable.
  bool volatile_write_cache = false;
  uint16_t oncs = 0;  // raw ONCS
  NvmeOptionalCommands optional_commands;
  uint32_t namespace_count = 0;  // NN: the largest namespace id
  // Composite temperature thresholds in kelvin; 0 = not reported.
  uint16_t warning_temperature_kelvin = 0;   // WCTEMP
  uint16_t critical_temperature_kelvin = 0;  // CCTEMP
  std::string subsystem_nqn;                 // SUBNQN

  // "1.4" or "1.4.1" ("" when version is 0).
  std::string VersionString() const;
};

// The unit of MDTS is CAP.MPSMIN, a controller register that user space
// cannot read without mapping the PCI BAR. Linux's PCIe driver refuses any
// controller whose MPSMIN is above 4 KiB, and 4 KiB is the smallest value
// the specification allows, so every controller Linux drives over PCIe has
// an MPSMIN of 4 KiB; this constant stands for it.
inline constexpr uint64_t kNvmeAssumedMinPageSize = 4096;

// MDTS in bytes (2^mdts * 4 KiB, see kNvmeAssumedMinPageSize); 0 when the
// controller reports no limit.
uint64_t NvmeMdtsBytes(uint8_t mdts);

// ---- Identify Namespace -------------------------------------------------

struct NvmeLbaFormat {
  uint32_t data_size = 0;      // bytes per LBA (2^LBADS)
  uint16_t metadata_size = 0;  // MS, bytes per LBA
  // RP: 0 best, 1 better, 2 good, 3 degraded performance.
  uint8_t relative_performance = 0;
  bool in_use = false;  // this is the format FLBAS selects
};

struct NvmeNamespaceInfo {
  uint32_t nsid = 0;
  uint64_t size_lbas = 0;         // NSZE
  uint64_t capacity_lbas = 0;     // NCAP
  uint64_t utilization_lbas = 0;  // NUSE
  // All NLBAF+1 supported formats, in index order.
  std::vector<NvmeLbaFormat> lba_formats;
  // Index of the format in use, decoded from FLBAS bits 3:0 plus bits 6:5
  // as the index's bits 5:4 (only when more than 16 formats exist).
  uint8_t lba_format_index = 0;
  uint32_t lba_size = 0;       // data_size of the format in use
  uint16_t metadata_size = 0;  // metadata_size of the format in use
  // FLBAS bit 4: metadata is transferred at the end of each LBA (extended
  // LBA) rather than in a separate buffer.
  bool metadata_extended_lba = false;
  bool thin_provisioning = false;  // NSFEAT bit 0
  // DLFEAT bits 2:0 == 001b: a deallocated block reads back as zeroes.
  bool deallocated_reads_zeroes = false;
  // NOIOB: optimal I/O boundary in LBAs; 0 = not reported.
  uint16_t optimal_io_boundary_lbas = 0;

  uint64_t size_bytes() const { return size_lbas * lba_size; }
  uint64_t capacity_bytes() const { return capacity_lbas * lba_size; }
  uint64_t utilization_bytes() const { return utilization_lbas * lba_size; }
};

// ---- SMART / Health Information log (log page 0x02) ------------------------

// Critical Warning bits.
struct NvmeCriticalWarning {
  uint8_t raw = 0;
  bool spare_below_threshold() const { return raw & 0x01; }
  bool temperature() const { return raw & 0x02; }  // over or under a threshold
  bool reliability_degraded() const { return raw & 0x04; }
  bool read_only() const { return raw & 0x08; }
  bool volatile_backup_failed() const { return raw & 0x10; }
  bool pmr_read_only() const { return raw & 0x20; }
  // One sentence per set bit, e.g. "available spare is below the threshold";
  // bits 6-7 (reserved) read "reserved critical warning bit N".
  std::vector<std::string> Describe() const;
};

struct NvmeSmartLog {
  NvmeCriticalWarning critical_warning;
  uint16_t temperature_kelvin = 0;        // composite temperature
  uint8_t available_spare_percent = 0;    // 0-100
  uint8_t available_spare_threshold = 0;  // percent
  uint8_t percentage_used = 0;            // may exceed 100 (capped at 255)
  // Data units are thousands of 512-byte units (1 unit = 512,000 bytes).
  absl::uint128 data_units_read = 0;
  absl::uint128 data_units_written = 0;
  absl::uint128 host_read_commands = 0;
  absl::uint128 host_write_commands = 0;
  absl::uint128 controller_busy_minutes = 0;
  absl::uint128 power_cycles = 0;
  absl::uint128 power_on_hours = 0;
  absl::uint128 unsafe_shutdowns = 0;
  absl::uint128 media_errors = 0;  // unrecovered data integrity errors
  absl::uint128 error_log_entries = 0;
  uint32_t warning_temperature_minutes = 0;
  uint32_t critical_temperature_minutes = 0;
  std::array<uint16_t, 8> temperature_sensors_kelvin{};  // 0 = not present
};

// Kelvin to degrees Celsius (NVMe reports integer kelvin).
constexpr int KelvinToCelsius(uint16_t kelvin) { return static_cast<int>(kelvin) - 273; }

// ---- Commands -----------------------------------------------------------

// The namespace id of a namespace device, /dev/nvmeXnY or /dev/ngXnY
// (NVME_IOCTL_ID). A controller char device has no namespace id: the kernel
// fails the ioctl with ENOTTY, returned as kFailedPrecondition.
absl::StatusOr<uint32_t> GetNamespaceId(int fd);

// Identify Controller (CNS 0x01).
absl::StatusOr<NvmeControllerInfo> IdentifyController(int fd);

// Identify Namespace (CNS 0x00) for `nsid`.
absl::StatusOr<NvmeNamespaceInfo> IdentifyNamespace(int fd, uint32_t nsid);

// Get Log Page: SMART / Health Information for the whole controller
// (nsid 0xffffffff).
absl::StatusOr<NvmeSmartLog> GetSmartLog(int fd);

// Decoders for the raw 4096-byte / 512-byte structures, used by the
// functions above and by tests.
NvmeControllerInfo ParseIdentifyController(const uint8_t (&data)[4096]);
NvmeNamespaceInfo ParseIdentifyNamespace(uint32_t nsid, const uint8_t (&data)[4096]);
NvmeSmartLog ParseSmartLog(const uint8_t (&data)[512]);

// ---- Device nodes -------------------------------------------------------

enum class NvmeDeviceKind {
  kController,        // /dev/nvmeX
  kNamespaceBlock,    // /dev/nvmeXnY
  kNamespaceGeneric,  // /dev/ngXnY
};

// The device nodes that belong together. Names are kernel names (the sysfs
// ones), paths are "/dev/" + name; a name is empty when the kernel has no
// such device (e.g. no block device for a namespace in a format the block
// layer cannot use, or a controller with no namespace given).
struct NvmeDevicePaths {
  NvmeDeviceKind kind = NvmeDeviceKind::kController;
  std::string input;            // the path as given
  std::string controller_name;  // "nvme0"
  std::string block_name;       // "nvme0n1"
  std::string generic_name;     // "ng0n1"
  uint32_t nsid = 0;            // 0 for a controller

  std::string controller_path() const;  // "/dev/nvme0" or ""
  std::string block_path() const;       // "/dev/nvme0n1" or ""
  std::string generic_path() const;     // "/dev/ng0n1" or ""
};

// Works out what `path` (any path to a device node, symlinks allowed) is by
// its device number and sysfs (/sys/dev/{char,block}/MAJ:MIN), then finds
// the other nodes: ngXnY <-> nvmeXnY share their numbers (the kernel names
// both after the same subsystem/namespace instance), and the controller is
// the /sys/class/nvme/nvmeC whose sysfs directory holds that namespace
// (as nvmeXnY, or as the multipath path device nvmeXcCnY).
// Errors: kNotFound (no such path), kPermissionDenied (cannot stat it),
// kInvalidArgument with "is not an NVMe device (...)" for anything else,
// including partitions.
// Reads sysfs only: needs no privileges and sends no command.
absl::StatusOr<NvmeDevicePaths> ResolveNvmeDevice(std::string_view path);

// The kernel's limit on one transfer to this namespace, in bytes, from
// /sys/block/<block_name>/queue/max_hw_sectors_kb. The kernel derives it
// from MDTS and CAP.MPSMIN (and its own DMA limits) and enforces the same
// limit on passthrough commands on /dev/ngXnY (they are mapped onto the
// namespace's request queue), so it is the number to size I/O by.
absl::StatusOr<uint64_t> KernelMaxTransferBytes(std::string_view block_name);

// The namespace names (nvmeXnY) whose controller is `controller_name`
// ("nvme0"), from sysfs, sorted by namespace id.
std::vector<std::string> NvmeControllerNamespaces(std::string_view controller_name);

// Opens an NVMe device node read-only for admin ioctls (O_RDONLY |
// O_CLOEXEC; the kernel does not need write access for admin passthrough).
// EACCES/EPERM become kPermissionDenied with a hint to run as root or as a
// member of the disk group; ENOENT becomes kNotFound.
absl::StatusOr<UniqueFd> OpenNvmeDevice(const std::string& path);

}  // namespace ringline::block
