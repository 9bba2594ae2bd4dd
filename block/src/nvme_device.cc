#include "ringline/block/nvme_device.h"

#include <endian.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

// Order matters: <libnvme.h> must come before <linux/nvme_ioctl.h>. Its
// nvme/ioctl.h carries its
// own copy of the kernel's ioctl definitions behind the uapi header's include
// guard, so including <linux/nvme_ioctl.h> first would hide libnvme's
// definitions from its own inline functions and break the build.
#include <libnvme.h>
// (second: only documents where NVME_IOCTL_ADMIN_CMD / NVME_IOCTL_ID come from)
#include <linux/nvme_ioctl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "ringline/block/nvme_status.h"
#include "sysfs.h"

namespace ringline::block {
namespace {

// Debian's abseil is built with its own absl::string_view (not an alias of
// std::string_view), so public std::string_view arguments are converted.
absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Admin opcodes and values from the NVMe base specification.
constexpr uint8_t kAdminGetLogPage = 0x02;
constexpr uint8_t kAdminIdentify = 0x06;
constexpr uint32_t kCnsNamespace = 0x00;
constexpr uint32_t kCnsController = 0x01;
constexpr uint32_t kLogSmartHealth = 0x02;
constexpr uint32_t kNsidAll = 0xffffffff;

static_assert(sizeof(nvme_id_ctrl) == 4096);
static_assert(sizeof(nvme_id_ns) == 4096);
static_assert(sizeof(nvme_smart_log) == 512);

// What the fd refers to, for error messages: the path the process opened.
std::string DeviceName(int fd) {
  char buf[256];
  const std::string link = absl::StrCat("/proc/self/fd/", fd);
  const ssize_t n = readlink(link.c_str(), buf, sizeof(buf) - 1);
  if (n <= 0) return absl::StrCat("fd ", fd);
  return std::string(buf, static_cast<size_t>(n));
}

// Turns a failed ioctl (-1/errno) or a positive NVMe status into a Status
// naming the device and the command.
absl::Status CommandError(int fd, absl::string_view command, int ret, int err) {
  const std::string context = absl::StrCat(DeviceName(fd), ": ", command);
  if (ret > 0) return NvmeStatusToStatus(static_cast<uint16_t>(ret), context);
  if (err == EACCES || err == EPERM) {
    return absl::PermissionDeniedError(absl::StrCat(
        context, ": ", std::strerror(err), " (NVMe admin commands need root / CAP_SYS_ADMIN)"));
  }
  if (err == ENOTTY || err == EINVAL) {
    return absl::FailedPreconditionError(
        absl::StrCat(context, ": ", std::strerror(err), " (not an NVMe device node?)"));
  }
  return absl::ErrnoToStatus(err, context);
}

// One admin command with a data-in buffer through NVME_IOCTL_ADMIN_CMD. The
// ioctl returns 0, a positive NVMe status (see nvme_status.h), or -1/errno.
absl::Status AdminRead(int fd, absl::string_view command, uint8_t opcode, uint32_t nsid,
                       uint32_t cdw10, void* data, uint32_t len) {
  nvme_passthru_cmd cmd;
  std::memset(&cmd, 0, sizeof(cmd));
  cmd.opcode = opcode;
  cmd.nsid = nsid;
  cmd.addr = reinterpret_cast<uint64_t>(data);
  cmd.data_len = len;
  cmd.cdw10 = cdw10;
  cmd.timeout_ms = 0;  // the kernel's default admin timeout
  int ret;
  do {
    ret = ioctl(fd, NVME_IOCTL_ADMIN_CMD, &cmd);
  } while (ret < 0 && errno == EINTR);
  if (ret == 0) return absl::OkStatus();
  return CommandError(fd, command, ret, errno);
}

uint16_t Le16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return le16toh(v);
}

absl::uint128 Le128(const uint8_t (&bytes)[16]) {
  uint64_t lo;
  uint64_t hi;
  std::memcpy(&lo, bytes, 8);
  std::memcpy(&hi, bytes + 8, 8);
  return absl::MakeUint128(le64toh(hi), le64toh(lo));
}

// Identify strings are space padded (and sometimes NUL padded) ASCII.
std::string FixedString(const char* data, size_t len) {
  std::string s(data, strnlen(data, len));
  absl::StripTrailingAsciiWhitespace(&s);
  return s;
}

// Parses the decimal number at the front of `s`, advancing it.
bool ConsumeNumber(absl::string_view& s, uint32_t* out) {
  size_t n = 0;
  while (n < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[n]))) ++n;
  if (n == 0 || n > 9) return false;
  if (!absl::SimpleAtoi(s.substr(0, n), out)) return false;
  s.remove_prefix(n);
  return true;
}

// Kernel device names of the NVMe driver.
struct ParsedName {
  enum Kind { kController, kBlock, kGeneric, kPath, kPartition, kOther } kind = kOther;
  uint32_t a = 0;  // controller / subsystem instance
  uint32_t c = 0;  // controller instance of a multipath path device
  uint32_t n = 0;  // namespace (head) instance
};

ParsedName ParseName(absl::string_view name) {
  ParsedName p;
  absl::string_view s = name;
  bool generic = false;
  if (absl::ConsumePrefix(&s, "ng")) {
    generic = true;
  } else if (!absl::ConsumePrefix(&s, "nvme")) {
    return p;
  }
  if (!ConsumeNumber(s, &p.a)) return p;
  if (s.empty()) {
    if (!generic) p.kind = ParsedName::kController;
    return p;
  }
  bool path = false;
  if (absl::ConsumePrefix(&s, "c")) {
    if (!ConsumeNumber(s, &p.c)) return p;
    path = true;
  }
  if (!absl::ConsumePrefix(&s, "n") || !ConsumeNumber(s, &p.n)) return p;
  if (s.empty()) {
    p.kind = path ? ParsedName::kPath : (generic ? ParsedName::kGeneric : ParsedName::kBlock);
  } else if (!generic && s.front() == 'p') {
    p.kind = ParsedName::kPartition;
  }
  return p;
}

uint32_t SysfsNsid(const std::string& block_name) {
  uint32_t nsid = 0;
  if (auto s = ReadSysfs(absl::StrCat("/sys/class/block/", block_name, "/nsid"))) {
    if (!absl::SimpleAtoi(*s, &nsid)) nsid = 0;
  }
  return nsid;
}

// The controller (nvmeC) whose sysfs directory holds namespace nvmeXnY,
// either directly (no multipath) or as the path device nvmeXcCnY.
std::string ControllerOfNamespace(uint32_t x, uint32_t y) {
  for (const std::string& ctrl : ListSysfsDir("/sys/class/nvme")) {
    const ParsedName pc = ParseName(ctrl);
    if (pc.kind != ParsedName::kController) continue;
    const std::string dir = absl::StrCat("/sys/class/nvme/", ctrl, "/");
    if (SysfsExists(absl::StrCat(dir, "nvme", x, "n", y)) ||
        SysfsExists(absl::StrCat(dir, "nvme", x, "c", pc.a, "n", y)) ||
        SysfsExists(absl::StrCat(dir, "ng", x, "n", y))) {
      return ctrl;
    }
  }
  return {};
}

std::string DescribeFileType(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a device node";
}

}  // namespace

// ---- Identify Controller ------------------------------------------------

std::string NvmeControllerInfo::VersionString() const {
  if (version == 0) return {};
  const uint32_t major = version >> 16;
  const uint32_t minor = (version >> 8) & 0xff;
  const uint32_t tertiary = version & 0xff;
  if (tertiary == 0) return absl::StrCat(major, ".", minor);
  return absl::StrCat(major, ".", minor, ".", tertiary);
}

uint64_t NvmeMdtsBytes(uint8_t mdts) {
  if (mdts == 0) return 0;
  // 2^mdts pages; beyond 2^51 the value no longer fits, and no device
  // reports anything near it, so saturate instead of overflowing.
  if (mdts >= 52) return UINT64_MAX;
  return kNvmeAssumedMinPageSize << mdts;
}

NvmeControllerInfo ParseIdentifyController(const uint8_t (&data)[4096]) {
  nvme_id_ctrl id;
  std::memcpy(&id, data, sizeof(id));
  NvmeControllerInfo info;
  info.vendor_id = le16toh(id.vid);
  info.subsystem_vendor_id = le16toh(id.ssvid);
  info.serial = FixedString(id.sn, sizeof(id.sn));
  info.model = FixedString(id.mn, sizeof(id.mn));
  info.firmware = FixedString(id.fr, sizeof(id.fr));
  info.controller_id = le16toh(id.cntlid);
  info.version = le32toh(id.ver);
  info.mdts = id.mdts;
  info.volatile_write_cache = (id.vwc & 0x01) != 0;
  info.oncs = le16toh(id.oncs);
  const uint16_t oncs = info.oncs;
  info.optional_commands = NvmeOptionalCommands{
      .compare = (oncs & (1u << 0)) != 0,
      .write_uncorrectable = (oncs & (1u << 1)) != 0,
      .dataset_management = (oncs & (1u << 2)) != 0,
      .write_zeroes = (oncs & (1u << 3)) != 0,
      .save_select_features = (oncs & (1u << 4)) != 0,
      .reservations = (oncs & (1u << 5)) != 0,
      .timestamp = (oncs & (1u << 6)) != 0,
      .verify = (oncs & (1u << 7)) != 0,
      .copy = (oncs & (1u << 8)) != 0,
  };
  info.namespace_count = le32toh(id.nn);
  info.warning_temperature_kelvin = le16toh(id.wctemp);
  info.critical_temperature_kelvin = le16toh(id.cctemp);
  info.subsystem_nqn = FixedString(id.subnqn, sizeof(id.subnqn));
  return info;
}

absl::StatusOr<NvmeControllerInfo> IdentifyController(int fd) {
  alignas(4096) uint8_t data[4096] = {};
  absl::Status st =
      AdminRead(fd, "Identify Controller", kAdminIdentify, 0, kCnsController, data, sizeof(data));
  if (!st.ok()) return st;
  return ParseIdentifyController(data);
}

// ---- Identify Namespace -------------------------------------------------

NvmeNamespaceInfo ParseIdentifyNamespace(uint32_t nsid, const uint8_t (&data)[4096]) {
  nvme_id_ns id;
  std::memcpy(&id, data, sizeof(id));
  NvmeNamespaceInfo info;
  info.nsid = nsid;
  info.size_lbas = le64toh(id.nsze);
  info.capacity_lbas = le64toh(id.ncap);
  info.utilization_lbas = le64toh(id.nuse);
  info.thin_provisioning = (id.nsfeat & 0x01) != 0;
  info.deallocated_reads_zeroes = (id.dlfeat & 0x07) == 0x01;
  info.optimal_io_boundary_lbas = le16toh(id.noiob);
  info.metadata_extended_lba = (id.flbas & 0x10) != 0;

  // NLBAF is 0's based; at most 64 formats fit in the structure.
  const size_t count = std::min<size_t>(static_cast<size_t>(id.nlbaf) + 1, 64);
  // FLBAS bits 3:0 are the low bits of the index; bits 6:5 are its bits
  // 5:4, defined only when there are more than 16 formats (else reserved).
  uint8_t index = id.flbas & 0x0f;
  if (count > 16) index |= static_cast<uint8_t>((id.flbas & 0x60) >> 1);
  info.lba_format_index = index;

  for (size_t i = 0; i < count; ++i) {
    const nvme_lbaf& f = id.lbaf[i];
    NvmeLbaFormat lf;
    // LBADS is a power of two; values below 9 (512 bytes) mean "not
    // supported" and values past 31 would not fit.
    lf.data_size = (f.ds >= 9 && f.ds < 32) ? (1u << f.ds) : 0;
    lf.metadata_size = le16toh(f.ms);
    lf.relative_performance = f.rp & 0x03;
    lf.in_use = (i == index);
    info.lba_formats.push_back(lf);
  }
  if (index < info.lba_formats.size()) {
    info.lba_size = info.lba_formats[index].data_size;
    info.metadata_size = info.lba_formats[index].metadata_size;
  }
  return info;
}

absl::StatusOr<NvmeNamespaceInfo> IdentifyNamespace(int fd, uint32_t nsid) {
  alignas(4096) uint8_t data[4096] = {};
  const std::string command = absl::StrCat("Identify Namespace (nsid ", nsid, ")");
  absl::Status st = AdminRead(fd, command, kAdminIdentify, nsid, kCnsNamespace, data, sizeof(data));
  if (!st.ok()) return st;
  NvmeNamespaceInfo info = ParseIdentifyNamespace(nsid, data);
  // An inactive namespace id identifies as all zeroes rather than failing.
  if (info.size_lbas == 0 && info.lba_size == 0) {
    return absl::NotFoundError(
        absl::StrCat(DeviceName(fd), ": ", command, ": namespace is not active"));
  }
  if (info.lba_size == 0) {
    return absl::DataLossError(
        absl::StrFormat("%s: %s: LBA format %d in use has an invalid data size", DeviceName(fd),
                        command, info.lba_format_index));
  }
  return info;
}

absl::StatusOr<uint32_t> GetNamespaceId(int fd) {
  const int ret = ioctl(fd, NVME_IOCTL_ID);
  if (ret > 0) return static_cast<uint32_t>(ret);
  return CommandError(fd, "NVME_IOCTL_ID", ret < 0 ? -1 : 0, ret < 0 ? errno : EINVAL);
}

// ---- SMART / Health -----------------------------------------------------

std::vector<std::string> NvmeCriticalWarning::Describe() const {
  std::vector<std::string> out;
  if (spare_below_threshold()) out.emplace_back("available spare is below the threshold");
  if (temperature()) out.emplace_back("temperature is outside a threshold");
  if (reliability_degraded()) {
    out.emplace_back("reliability is degraded by media or internal errors");
  }
  if (read_only()) out.emplace_back("media has been placed in read-only mode");
  if (volatile_backup_failed()) out.emplace_back("volatile memory backup device has failed");
  if (pmr_read_only()) out.emplace_back("persistent memory region has become read-only");
  for (int bit = 6; bit < 8; ++bit) {
    if (raw & (1u << bit)) out.push_back(absl::StrCat("reserved critical warning bit ", bit));
  }
  return out;
}

NvmeSmartLog ParseSmartLog(const uint8_t (&data)[512]) {
  nvme_smart_log log;
  std::memcpy(&log, data, sizeof(log));
  NvmeSmartLog out;
  out.critical_warning.raw = log.critical_warning;
  out.temperature_kelvin = Le16(log.temperature);
  out.available_spare_percent = log.avail_spare;
  out.available_spare_threshold = log.spare_thresh;
  out.percentage_used = log.percent_used;
  out.data_units_read = Le128(log.data_units_read);
  out.data_units_written = Le128(log.data_units_written);
  out.host_read_commands = Le128(log.host_reads);
  out.host_write_commands = Le128(log.host_writes);
  out.controller_busy_minutes = Le128(log.ctrl_busy_time);
  out.power_cycles = Le128(log.power_cycles);
  out.power_on_hours = Le128(log.power_on_hours);
  out.unsafe_shutdowns = Le128(log.unsafe_shutdowns);
  out.media_errors = Le128(log.media_errors);
  out.error_log_entries = Le128(log.num_err_log_entries);
  out.warning_temperature_minutes = le32toh(log.warning_temp_time);
  out.critical_temperature_minutes = le32toh(log.critical_comp_time);
  for (size_t i = 0; i < out.temperature_sensors_kelvin.size(); ++i) {
    out.temperature_sensors_kelvin[i] = le16toh(log.temp_sensor[i]);
  }
  return out;
}

absl::StatusOr<NvmeSmartLog> GetSmartLog(int fd) {
  alignas(4096) uint8_t data[512] = {};
  // CDW10: NUMDL (dwords - 1) in 31:16, RAE 15 clear, LID in 7:0.
  const uint32_t numd = sizeof(data) / 4 - 1;
  const uint32_t cdw10 = (numd << 16) | kLogSmartHealth;
  absl::Status st = AdminRead(fd, "Get Log Page (SMART / Health Information)", kAdminGetLogPage,
                              kNsidAll, cdw10, data, sizeof(data));
  if (!st.ok()) return st;
  return ParseSmartLog(data);
}

// ---- Device nodes -------------------------------------------------------

std::string NvmeDevicePaths::controller_path() const {
  return controller_name.empty() ? std::string() : absl::StrCat("/dev/", controller_name);
}
std::string NvmeDevicePaths::block_path() const {
  return block_name.empty() ? std::string() : absl::StrCat("/dev/", block_name);
}
std::string NvmeDevicePaths::generic_path() const {
  return generic_name.empty() ? std::string() : absl::StrCat("/dev/", generic_name);
}

absl::StatusOr<NvmeDevicePaths> ResolveNvmeDevice(std::string_view path_view) {
  const std::string path(path_view);
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return absl::NotFoundError(absl::StrCat(path, ": no such device"));
    }
    if (err == EACCES || err == EPERM) {
      return absl::PermissionDeniedError(absl::StrCat(path, ": ", std::strerror(err)));
    }
    return absl::ErrnoToStatus(err, path);
  }
  if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not an NVMe device (it is ", DescribeFileType(st.st_mode), ")"));
  }
  const bool is_block = S_ISBLK(st.st_mode);
  const std::string sys_link = absl::StrFormat("/sys/dev/%s/%u:%u", is_block ? "block" : "char",
                                               major(st.st_rdev), minor(st.st_rdev));
  char real[PATH_MAX];
  if (realpath(sys_link.c_str(), real) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s is not an NVMe device (%s device %u:%u is unknown to sysfs)", path,
                        is_block ? "block" : "character", major(st.st_rdev), minor(st.st_rdev)));
  }
  absl::string_view kernel_name(real);
  kernel_name = kernel_name.substr(kernel_name.rfind('/') + 1);
  const ParsedName pn = ParseName(kernel_name);

  NvmeDevicePaths out;
  out.input = path;
  const std::string not_nvme =
      absl::StrCat(path, " is not an NVMe device (kernel name ", kernel_name,
                   is_block ? ", block" : ", character", " device)");
  switch (pn.kind) {
    case ParsedName::kController:
      if (is_block || !SysfsExists(absl::StrCat("/sys/class/nvme/", kernel_name))) {
        return absl::InvalidArgumentError(not_nvme);
      }
      out.kind = NvmeDeviceKind::kController;
      out.controller_name = std::string(kernel_name);
      return out;
    case ParsedName::kBlock:
      if (!is_block) return absl::InvalidArgumentError(not_nvme);
      out.kind = NvmeDeviceKind::kNamespaceBlock;
      break;
    case ParsedName::kGeneric:
      if (is_block) return absl::InvalidArgumentError(not_nvme);
      out.kind = NvmeDeviceKind::kNamespaceGeneric;
      break;
    case ParsedName::kPartition:
      return absl::InvalidArgumentError(absl::StrCat(path, " is a partition of an NVMe namespace (",
                                                     kernel_name,
                                                     "); give the whole namespace instead"));
    case ParsedName::kPath:
      return absl::InvalidArgumentError(absl::StrCat(path, " is a hidden multipath path device (",
                                                     kernel_name,
                                                     "); give the namespace device instead"));
    case ParsedName::kOther:
      return absl::InvalidArgumentError(not_nvme);
  }
  const std::string block = absl::StrCat("nvme", pn.a, "n", pn.n);
  const std::string generic = absl::StrCat("ng", pn.a, "n", pn.n);
  if (SysfsExists(absl::StrCat("/sys/class/block/", block))) out.block_name = block;
  if (SysfsExists(absl::StrCat("/sys/class/nvme-generic/", generic))) out.generic_name = generic;
  // The node given always belongs to the result, even if its class link is
  // missing (older kernels have no nvme-generic class).
  if (out.kind == NvmeDeviceKind::kNamespaceBlock) out.block_name = block;
  if (out.kind == NvmeDeviceKind::kNamespaceGeneric) out.generic_name = generic;
  out.nsid = out.block_name.empty() ? 0 : SysfsNsid(out.block_name);
  out.controller_name = ControllerOfNamespace(pn.a, pn.n);
  return out;
}

absl::StatusOr<uint64_t> KernelMaxTransferBytes(std::string_view block_name) {
  const std::string file =
      absl::StrCat("/sys/class/block/", AV(block_name), "/queue/max_hw_sectors_kb");
  std::optional<std::string> text = ReadSysfs(file);
  uint64_t kib = 0;
  if (!text.has_value()) return absl::NotFoundError(absl::StrCat(file, ": cannot read"));
  if (!absl::SimpleAtoi(*text, &kib) || kib == 0) {
    return absl::DataLossError(absl::StrCat(file, ": unexpected content '", *text, "'"));
  }
  return kib * 1024;
}

std::vector<std::string> NvmeControllerNamespaces(std::string_view controller_name) {
  std::vector<std::pair<uint32_t, std::string>> found;
  for (const std::string& entry :
       ListSysfsDir(absl::StrCat("/sys/class/nvme/", AV(controller_name)))) {
    const ParsedName p = ParseName(entry);
    std::string name;
    if (p.kind == ParsedName::kBlock) {
      name = entry;
    } else if (p.kind == ParsedName::kPath) {
      name = absl::StrCat("nvme", p.a, "n", p.n);  // the multipath head
    } else {
      continue;
    }
    const uint32_t nsid = SysfsNsid(name);
    if (std::none_of(found.begin(), found.end(), [&](const auto& f) { return f.second == name; })) {
      found.emplace_back(nsid == 0 ? p.n : nsid, name);
    }
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> names;
  names.reserve(found.size());
  for (auto& f : found) names.push_back(std::move(f.second));
  return names;
}

// ---- fds ----------------------------------------------------------------

absl::StatusOr<UniqueFd> OpenNvmeDevice(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) return UniqueFd(fd);
  const int err = errno;
  if (err == EACCES || err == EPERM) {
    // Say who may open it: a root:root 0600 node (/dev/ngXnY, /dev/nvmeX
    // by default) needs root; a group-accessible one (/dev/nvmeXnY is
    // usually root:disk 0660) also opens for members of that group.
    std::string who = "run as root";
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && st.st_gid != 0 && (st.st_mode & S_IRGRP) != 0) {
      const group* g = getgrgid(st.st_gid);
      absl::StrAppend(&who, " or as a member of group '",
                      g != nullptr ? std::string(g->gr_name) : absl::StrCat(st.st_gid), "'");
    } else {
      absl::StrAppend(&who,
                      " (or as a member of the group that owns the device, usually 'disk', "
                      "where udev makes it group-readable)");
    }
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open ", path, ": ", std::strerror(err), "; ", who));
  }
  if (err == ENOENT)
    return absl::NotFoundError(absl::StrCat("cannot open ", path, ": no such device"));
  return absl::ErrnoToStatus(err, absl::StrCat("cannot open ", path));
}

}  // namespace ringline::block
