#include "ringline/block/nvme_namespace.h"

#include <fcntl.h>
#include <linux/nvme_ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <new>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "op_tags.h"
#include "ringline/block/nvme_status.h"
#include "ringline/block/placement.h"
#include "ringline/internal/poll_ring.h"
#include "ringline/io_result.h"
#include "ringline/log.h"
#include "ringline/operation.h"
#include "ringline/unique_fd.h"
#include "sysfs.h"

namespace ringline::block {
namespace {

using Permit = QueueDepthLimiter::Permit;

// NVM command set opcodes.
constexpr uint8_t kOpFlush = 0x00;
constexpr uint8_t kOpWrite = 0x01;
constexpr uint8_t kOpRead = 0x02;
constexpr uint8_t kOpWriteZeroes = 0x08;
constexpr uint8_t kOpDatasetManagement = 0x09;

constexpr uint32_t kCdw12Fua = 1u << 30;        // Read/Write/Write Zeroes: Force Unit Access
constexpr uint32_t kCdw11Deallocate = 1u << 2;  // Dataset Management: Attribute Deallocate
// NLB is a 0-based 16-bit field: one command moves at most 65536 LBAs.
constexpr uint64_t kMaxNlb = 65536;
// Used when neither MDTS nor the kernel report a transfer limit: the block
// layer's classic default, safe on any controller.
constexpr uint64_t kFallbackMaxTransfer = 128 * 1024;
// NVMe's dword alignment of data pointers (the kernel bounces anything less).
constexpr uint32_t kMemoryAlignment = 4;

// One Dataset Management range (NVMe base spec, figure "Dataset Management -
// Range Definition"): raw data the controller reads, little endian.
struct DsmRange {
  uint32_t context_attributes;
  uint32_t nlb;  // 1-based, unlike the command's NLB fields
  uint64_t slba;
};
static_assert(sizeof(DsmRange) == 16);
static_assert(std::endian::native == std::endian::little,
              "DSM range lists are written in host order, which must be NVMe's little endian");
constexpr uint32_t kDsmRangesPerCommand = 8;

// What a command keeps in its OpSlot::storage: the DSM range list (kernel-read
// memory, valid until the final CQE because the slot is) and, for the commands
// of a split request, which command of the request it is.
struct SlotData {
  DsmRange ranges[kDsmRangesPerCommand];
  uint32_t command;
};
static_assert(sizeof(SlotData) <= sizeof(OpSlot::Storage));
static_assert(alignof(OpSlot::Storage) >= alignof(SlotData));

SlotData& InitSlotData(OpSlot& slot, uint32_t command) {
  auto* d = new (slot.storage.bytes) SlotData{};
  d->command = command;
  return *d;
}
SlotData& SlotDataOf(OpSlot& slot) {
  return *std::launder(reinterpret_cast<SlotData*>(slot.storage.bytes));
}

// errno for an NVMe status, by meaning (BlockResult::res is a negated errno).
int32_t NegErrnoForNvmeStatus(uint16_t status) {
  switch (NvmeStatusToStatus(status).code()) {
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kInvalidArgument:
      return -EINVAL;
    case absl::StatusCode::kUnimplemented:
      return -EOPNOTSUPP;
    case absl::StatusCode::kPermissionDenied:
      return -EPERM;
    case absl::StatusCode::kResourceExhausted:
      return -ENOSPC;
    case absl::StatusCode::kUnavailable:
      return -EAGAIN;
    default:
      return -EIO;
  }
}

// Fills the SQE of an IORING_OP_URING_CMD carrying `cmd` (the SQE was cleared
// whole by Ring::GetSqe128: liburing 2.3's helpers do not clear the command
// area). With `fixed_buffer` (null: none) the data address lies in that
// registered buffer and the kernel takes its pages from the ring's
// registration (IORING_URING_CMD_FIXED) instead of pinning them per command.
void FillSqe(io_uring_sqe* sqe, int fixed_file, const nvme_uring_cmd& cmd,
             const Buffer* fixed_buffer) {
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->flags = IOSQE_FIXED_FILE;
  sqe->fd = fixed_file;
  sqe->cmd_op = NVME_URING_CMD_IO;
  if (fixed_buffer != nullptr) {
    sqe->uring_cmd_flags = IORING_URING_CMD_FIXED;
    sqe->buf_index = static_cast<uint16_t>(fixed_buffer->registered_index());
  }
  static_assert(sizeof(nvme_uring_cmd) <= 80, "the SQE128 command area is 80 bytes");
  std::memcpy(sqe->cmd, &cmd, sizeof cmd);
}

// Shared state of a request issued as several commands (one larger than the
// maximum transfer, or a write-zeroes/discard longer than one command covers).
//
// Why a heap object and concurrent commands: every command of the request
// points into the same buffer, so the buffer must outlive all of them, yet no
// single op slot can own it (each slot is released at its own completion, and
// completions come in any order), and the coroutine frame must not own it
// either (it may be destroyed while commands are in flight: docs/io_uring-rules.md R1).
// So the buffer moves into this object, which the engine does not know about
// but which knows its own commands: each runs in a slot with a completion
// handler (Fanout::OnCompletion), and the object lives until the last of
// their final CQEs. While the request's coroutine exists it owns the object
// through FanoutOwner; when the coroutine is destroyed early, the owner
// detaches it: no more commands are started, queue-depth places are returned,
// cancels are sent, and the object (with the buffer) deletes itself after the
// last completion — or is leaked with the slab if the worker gives up waiting
// for the kernel at shutdown, never freed early.
// Running the commands concurrently (each holding one queue-depth place) keeps
// a large request's latency near one command's instead of N round trips;
// sequential slices would have been simpler but multiply latency by N.
class Fanout {
 public:
  Fanout(Worker& worker, Buffer buffer) : worker_(&worker), buffer_(std::move(buffer)) {}
  Fanout(const Fanout&) = delete;
  Fanout& operator=(const Fanout&) = delete;

  // The memory every command of the request points into.
  const Buffer& buffer() const { return buffer_; }
  Buffer TakeBuffer() { return std::move(buffer_); }

  // A slot for command `command`, whose completion comes back to this object;
  // `permit` (its queue-depth place) is held until then. The caller fills and
  // queues the SQE right away.
  OpSlot& Start(uint32_t command, Permit permit) {
    OpSlot& slot =
        worker_->internals().slab().AllocateWithHandler(kTagNvmeCmd, &Fanout::OnCompletion, this);
    InitSlotData(slot, command);
    in_flight_.push_back(InFlight{&slot, std::move(permit)});
    return slot;
  }

  // The first failure: its CQE res (0: none yet) and command index.
  int32_t error_res() const { return error_res_; }
  uint32_t error_command() const { return error_command_; }

  // Resumes the awaiting coroutine when no command is in flight.
  class DrainAwaiter {
   public:
    explicit DrainAwaiter(Fanout* f) : f_(f) {}
    bool await_ready() const noexcept { return f_->in_flight_.empty(); }
    template <EnginePromise P>
    void await_suspend(std::coroutine_handle<P> h) {
      f_->waiter_ = &h.promise();
    }
    void await_resume() const noexcept {}

   private:
    Fanout* f_;
  };
  DrainAwaiter Drained() { return DrainAwaiter(this); }

  // The owning coroutine is done with the object (normally after Drained(),
  // or early because its frame is being destroyed).
  void Detach() {
    detached_ = true;
    waiter_ = nullptr;
    for (InFlight& e : in_flight_) {
      // The target (and its limiter) may be destroyed right after its tasks:
      // give the places back now, the commands finish on their own.
      e.permit.Release();
      worker_->internals().slab().Cancel(*e.slot);
    }
    if (in_flight_.empty()) delete this;
  }

 private:
  struct InFlight {
    OpSlot* slot;
    Permit permit;
  };

  static void OnCompletion(void* owner, OpSlot& slot, int32_t res, uint32_t flags) {
    if (flags & IORING_CQE_F_MORE) return;  // not sent by passthrough; only the final CQE counts
    static_cast<Fanout*>(owner)->Complete(slot, res);
  }

  void Complete(OpSlot& slot, int32_t res) {
    // At most queue_depth entries: a scan is cheaper than any index.
    auto it = std::find_if(in_flight_.begin(), in_flight_.end(),
                           [&](const InFlight& e) { return e.slot == &slot; });
    if (it != in_flight_.end()) {
      *it = std::move(in_flight_.back());  // releases this command's place
      in_flight_.pop_back();
    }
    if (res != 0 && error_res_ == 0) {
      error_res_ = res;
      error_command_ = SlotDataOf(slot).command;
    }
    if (!in_flight_.empty()) return;
    if (detached_) {
      delete this;  // the slab releases `slot` after we return; it never touches us again
      return;
    }
    if (PromiseBase* w = std::exchange(waiter_, nullptr)) worker_->internals().Schedule(w);
  }

  Worker* worker_;
  Buffer buffer_;
  std::vector<InFlight> in_flight_;
  PromiseBase* waiter_ = nullptr;
  int32_t error_res_ = 0;
  uint32_t error_command_ = 0;
  bool detached_ = false;
};

// Owns a Fanout for the coroutine that drives it (RAII: detaches on scope exit).
class FanoutOwner {
 public:
  explicit FanoutOwner(Fanout* f) : f_(f) {}
  FanoutOwner(const FanoutOwner&) = delete;
  FanoutOwner& operator=(const FanoutOwner&) = delete;
  ~FanoutOwner() { f_->Detach(); }
  Fanout* operator->() const { return f_; }

 private:
  Fanout* f_;
};

}  // namespace

// The commands of one request: command i covers LBAs
// [slba + i * lbas_per_cmd, ...) up to nlb in total.
struct NvmeNamespace::Plan {
  OpKind kind = OpKind::kRead;
  uint8_t opcode = kOpRead;
  uint64_t offset = 0;  // bytes, for messages
  uint64_t length = 0;  // bytes
  uint64_t slba = 0;
  uint64_t nlb = 0;
  uint32_t lba_shift = 9;
  uint32_t lbas_per_cmd = 1;
  uint32_t dsm_range_lbas = 0;  // Dataset Management: LBAs per range
  uint32_t cdw12_flags = 0;
  bool data = false;   // Read/Write: the command moves bytes of the buffer
  bool fixed = false;  // ...of a registered buffer, with IORING_URING_CMD_FIXED

  uint32_t Commands() const {
    return nlb == 0 ? 1 : static_cast<uint32_t>((nlb + lbas_per_cmd - 1) / lbas_per_cmd);
  }
  uint64_t FirstLba(uint32_t i) const { return slba + uint64_t{i} * lbas_per_cmd; }
  uint64_t Lbas(uint32_t i) const {
    return std::min<uint64_t>(lbas_per_cmd, nlb - uint64_t{i} * lbas_per_cmd);
  }

  // Builds command `i` into `sqe`. `buffer` is the request's buffer where it
  // now lives (slot.held[0] or the Fanout); kernel-read argument memory goes
  // into `slot`.
  void Fill(uint32_t i, uint32_t nsid, int fixed_file, const Buffer* buffer, OpSlot& slot,
            io_uring_sqe* sqe) const {
    nvme_uring_cmd cmd{};
    cmd.opcode = opcode;
    cmd.nsid = nsid;
    if (opcode == kOpFlush) {
      FillSqe(sqe, fixed_file, cmd, nullptr);
      return;
    }
    const uint64_t lba = FirstLba(i);
    const uint64_t n = Lbas(i);
    if (opcode == kOpDatasetManagement) {
      SlotData& d = SlotDataOf(slot);
      uint32_t r = 0;
      for (uint64_t done = 0; done < n; done += dsm_range_lbas, ++r) {
        d.ranges[r] =
            DsmRange{.context_attributes = 0,
                     .nlb = static_cast<uint32_t>(std::min<uint64_t>(dsm_range_lbas, n - done)),
                     .slba = lba + done};
      }
      // The range list is in the slot: it lives until the final CQE.
      cmd.addr = reinterpret_cast<uint64_t>(d.ranges);
      cmd.data_len = r * static_cast<uint32_t>(sizeof(DsmRange));
      cmd.cdw10 = r - 1;  // number of ranges, 0-based
      cmd.cdw11 = kCdw11Deallocate;
      FillSqe(sqe, fixed_file, cmd, nullptr);
      return;
    }
    cmd.cdw10 = static_cast<uint32_t>(lba);
    cmd.cdw11 = static_cast<uint32_t>(lba >> 32);
    cmd.cdw12 = static_cast<uint32_t>(n - 1) | cdw12_flags;
    if (data) {
      cmd.addr = reinterpret_cast<uint64_t>(buffer->data() + ((lba - slba) << lba_shift));
      cmd.data_len = static_cast<uint32_t>(n << lba_shift);
      FillSqe(sqe, fixed_file, cmd, fixed ? buffer : nullptr);
    } else {
      FillSqe(sqe, fixed_file, cmd, nullptr);
    }
  }
};

namespace {

// The SQE of a request that is one command. The buffer moves into the op slot
// (slot.held[0]) here and stays there until the final CQE, so the kernel never
// touches memory the awaiting frame could free (docs/io_uring-rules.md R1).
struct OneCommandPrep {
  const NvmeNamespace::Plan* plan;  // in the awaiting frame; used only here, synchronously
  Buffer* buffer;
  uint32_t nsid;
  int fixed_file;
  void operator()(io_uring_sqe* sqe, OpSlot& slot) const {
    slot.held[0] = std::move(*buffer);
    InitSlotData(slot, 0);
    plan->Fill(0, nsid, fixed_file, &slot.held[0], slot, sqe);
  }
};

// Hands the buffer back once the kernel is done with it.
struct OneCommandFinish {
  Buffer* buffer;
  int32_t operator()(OpSlot& slot) const {
    *buffer = std::move(slot.held[0]);
    return slot.res;
  }
};

}  // namespace

// ---- open ----------------------------------------------------------------------
// Open is a sequence of set-up steps, each a function: find the nodes, open
// the char device, identify, derive the limits, describe the geometry.

namespace {

// The generic char device to open, and the block device's sysfs name (its
// queue limits); block_name is empty when sysfs does not say.
struct NamespaceNodes {
  std::string char_path;
  std::string block_name;
};

absl::StatusOr<NamespaceNodes> FindNamespaceNodes(const std::string& path) {
  auto resolved = ResolveNvmeDevice(path);
  if (!resolved.ok()) {
    if (absl::IsNotFound(resolved.status()) || absl::IsInvalidArgument(resolved.status())) {
      return resolved.status();
    }
    return NamespaceNodes{path, ""};  // sysfs unreadable: try the path as given
  }
  if (resolved->kind == NvmeDeviceKind::kController) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " is an NVMe controller; open one of its namespaces (/dev/ngXnY) instead"));
  }
  if (resolved->generic_name.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path,
                     ": the kernel offers no generic char device (/dev/ngXnY) for this "
                     "namespace; NVMe passthrough needs one (Linux 5.13+)"));
  }
  return NamespaceNodes{resolved->generic_path(), resolved->block_name};
}

absl::StatusOr<UniqueFd> OpenCharDevice(const std::string& path, bool read_only) {
  UniqueFd fd(::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (fd) return fd;
  const int e = errno;
  if (e == EACCES || e == EPERM) {
    return absl::PermissionDeniedError(
        absl::StrCat("open ", path, ": ", std::strerror(e),
                     " (NVMe passthrough needs root, or CAP_SYS_ADMIN for admin commands)"));
  }
  return ErrnoToStatus(-e, absl::StrCat("open ", path));
}

// What Identify says, checked for a format NvmeNamespace can serve.
struct Identity {
  uint32_t nsid = 0;
  NvmeNamespaceInfo ns;
  NvmeControllerInfo ctrl;
};

absl::StatusOr<Identity> IdentifyUsable(int fd, const std::string& path) {
  Identity id;
  auto nsid = GetNamespaceId(fd);
  if (!nsid.ok()) return nsid.status();
  id.nsid = *nsid;
  auto ns = IdentifyNamespace(fd, id.nsid);
  if (!ns.ok()) return ns.status();
  id.ns = std::move(*ns);
  auto ctrl = IdentifyController(fd);
  if (!ctrl.ok()) return ctrl.status();
  id.ctrl = std::move(*ctrl);
  if (id.ns.lba_size < 512 || !std::has_single_bit(id.ns.lba_size) || id.ns.size_lbas == 0) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": namespace ", id.nsid, " reports ",
                                                      id.ns.size_lbas, " LBAs of ", id.ns.lba_size,
                                                      " bytes; not usable (is it formatted?)"));
  }
  if (id.ns.metadata_size != 0) {
    return absl::UnimplementedError(absl::StrCat(
        path, ": LBA format ", id.ns.lba_format_index, " carries ", id.ns.metadata_size,
        " bytes of metadata per LBA, which NvmeNamespace does not support; format the "
        "namespace with a metadata-free LBA format"));
  }
  return id;
}

// How much one command may carry, from MDTS and the kernel's queue limits.
struct CommandLimits {
  uint64_t device_max_transfer = 0;  // bytes, a multiple of the LBA size
  uint32_t max_segments = 0;         // 0: unknown
  uint64_t zeroes_lbas = 0;          // per Write Zeroes command
  uint64_t dsm_range_lbas = 0;       // per Dataset Management range
};

absl::StatusOr<CommandLimits> DeriveCommandLimits(const std::string& path,
                                                  const std::string& block_name, uint8_t mdts,
                                                  uint32_t lba) {
  CommandLimits l;
  const std::string queue_dir = absl::StrCat("/sys/class/block/", block_name, "/queue/");
  auto queue_attr = [&](const char* name) -> std::optional<uint64_t> {
    if (block_name.empty()) return std::nullopt;
    return ReadSysfsUint(queue_dir + name);
  };
  // The largest transfer: MDTS, capped by what the kernel maps onto the
  // namespace's request queue (the same limits apply to passthrough):
  //  - max_hw_sectors_kb (MDTS and the driver's own limit);
  //  - max_segments: the kernel maps a passthrough buffer page by page and,
  //    unlike for ordinary block I/O, never splits the command, so a buffer
  //    whose pages are not physically contiguous fails with EINVAL once it
  //    spans more pages than that (seen in the QEMU guest: 127 segments, a
  //    512 KiB command on plain memory failed). A 4-byte-aligned buffer of
  //    N bytes may touch N/page + 1 pages, hence (max_segments - 1) pages.
  uint64_t max_transfer = NvmeMdtsBytes(mdts);
  if (!block_name.empty()) {
    if (auto k = KernelMaxTransferBytes(block_name); k.ok()) {
      max_transfer = max_transfer ? std::min(max_transfer, *k) : *k;
    }
  }
  if (auto m = queue_attr("max_segments"); m && *m > 1) {
    l.max_segments = static_cast<uint32_t>(std::min<uint64_t>(*m, UINT32_MAX));
    const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    const uint64_t by_segments = (l.max_segments - 1) * page;
    max_transfer = max_transfer ? std::min(max_transfer, by_segments) : by_segments;
  }
  if (max_transfer == 0) max_transfer = kFallbackMaxTransfer;
  max_transfer = std::min(max_transfer, kMaxNlb * lba) / lba * lba;
  if (max_transfer == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": the maximum transfer is smaller than one ", lba, "-byte LBA"));
  }
  l.device_max_transfer = max_transfer;
  // Write Zeroes: the kernel's limit (WZSL, else as cautious as the kernel
  // itself: the maximum transfer) within the NLB field.
  l.zeroes_lbas = kMaxNlb;
  if (auto z = queue_attr("write_zeroes_max_bytes"); z && *z >= lba) {
    l.zeroes_lbas = std::min<uint64_t>(l.zeroes_lbas, *z / lba);
  } else {
    l.zeroes_lbas = std::min<uint64_t>(l.zeroes_lbas, max_transfer / lba);
  }
  // Dataset Management: one range's NLB is 32 bits; the kernel's discard
  // limit reflects the controller's DMRSL.
  l.dsm_range_lbas = UINT32_MAX;
  if (auto d = queue_attr("discard_max_hw_bytes"); d && *d >= lba) {
    l.dsm_range_lbas = std::min<uint64_t>(l.dsm_range_lbas, *d / lba);
  }
  return l;
}

Geometry NamespaceGeometry(const Identity& id, const std::string& block_name, uint32_t max_transfer,
                           bool read_only) {
  const uint32_t lba = id.ns.lba_size;
  Geometry g;
  g.size_bytes = id.ns.size_bytes();
  g.logical_block_size = lba;
  g.physical_block_size = lba;
  g.memory_alignment = kMemoryAlignment;
  g.max_transfer_bytes = max_transfer;
  g.read_only = read_only;
  if (!block_name.empty()) {
    const std::string dir = absl::StrCat("/sys/class/block/", block_name, "/");
    if (auto p = ReadSysfsUint(dir + "queue/physical_block_size");
        p && *p >= lba && std::has_single_bit(*p)) {
      g.physical_block_size = static_cast<uint32_t>(*p);
    }
    // Write protected (the kernel read the namespace attributes).
    if (auto ro = ReadSysfsUint(dir + "ro"); ro && *ro != 0) g.read_only = true;
    // Passthrough commands use the block device's hardware queues.
    g.completion_cpus = ProbeCompletionPlacementOfDisk(block_name).PreferredCpus();
  }
  g.volatile_write_cache = id.ctrl.volatile_write_cache;
  g.supports_fua = true;
  g.supports_discard = id.ctrl.optional_commands.dataset_management;
  g.supports_write_zeroes = id.ctrl.optional_commands.write_zeroes;
  g.discard_zeroes_data = id.ns.deallocated_reads_zeroes;
  g.rotational = false;
  return g;
}

}  // namespace

NvmeNamespace::NvmeNamespace(Worker& worker, std::string path, UniqueFd fd, int fixed_file,
                             const Geometry& geometry, const TargetOptions& options)
    : TargetBase(worker, std::move(path), std::move(fd), fixed_file, geometry, options) {}

absl::StatusOr<std::unique_ptr<NvmeNamespace>> NvmeNamespace::Open(Worker& worker,
                                                                   const std::string& path,
                                                                   const TargetOptions& options) {
  if (auto st = CheckOnWorkerThread(worker); !st.ok()) return st;
  auto nodes = FindNamespaceNodes(path);
  if (!nodes.ok()) return nodes.status();
  const std::string& dev_path = nodes->char_path;
  auto fd = OpenCharDevice(dev_path, options.read_only);
  if (!fd.ok()) return fd.status();
  auto id = IdentifyUsable(fd->get(), dev_path);
  if (!id.ok()) return id.status();
  const uint32_t lba = id->ns.lba_size;
  auto limits = DeriveCommandLimits(dev_path, nodes->block_name, id->ctrl.mdts, lba);
  if (!limits.ok()) return limits.status();
  auto max_transfer =
      MaxTransferFor(options.max_transfer_bytes, lba, limits->device_max_transfer, dev_path);
  if (!max_transfer.ok()) return max_transfer.status();
  if (*max_transfer == 0) *max_transfer = static_cast<uint32_t>(limits->device_max_transfer);
  const Geometry g = NamespaceGeometry(*id, nodes->block_name, *max_transfer, options.read_only);

  auto fixed = InstallFixed(worker, fd->get());
  if (!fixed.ok()) return fixed.status();
  std::unique_ptr<NvmeNamespace> t(
      new NvmeNamespace(worker, dev_path, std::move(*fd), *fixed, g, options));
  t->nsid_ = id->nsid;
  t->lba_shift_ = static_cast<uint32_t>(std::countr_zero(lba));
  t->max_cmd_lbas_ = *max_transfer / lba;
  t->max_zeroes_lbas_ = static_cast<uint32_t>(limits->zeroes_lbas);
  t->max_dsm_range_lbas_ = static_cast<uint32_t>(limits->dsm_range_lbas);
  t->device_max_transfer_ = limits->device_max_transfer;
  t->max_segments_ = limits->max_segments;
  t->ns_info_ = std::move(id->ns);
  t->ctrl_info_ = std::move(id->ctrl);
  if (options.polled) t->EnablePolling(nodes->block_name);
  return t;
}

NvmeNamespace::~NvmeNamespace() {
  // Polled commands of destroyed tasks may still be in flight: the kernel
  // holds its own reference to the file for them.
  if (poll_ring_) (void)poll_ring_->RemoveFixedFile(poll_fixed_file_);
}

void NvmeNamespace::EnablePolling(const std::string& block_name) {
  // 6.18 refuses polled passthrough without poll queues (EOPNOTSUPP); 6.1
  // silently completes it by interrupt. Ask sysfs first so both say so.
  const std::optional<uint64_t> io_poll =
      block_name.empty()
          ? std::nullopt
          : ReadSysfsUint(absl::StrCat("/sys/class/block/", block_name, "/queue/io_poll"));
  if (!io_poll || *io_poll == 0) {
    RL_LOG_WARN(
        "%s: polled completions asked for, but %s: using interrupts (load the nvme driver "
        "with poll_queues=N, e.g. nvme.poll_queues=2 on the kernel command line)",
        name(),
        io_poll ? absl::StrCat(block_name, " has no poll queues (queue/io_poll is 0)")
                : std::string("sysfs does not say whether the namespace has poll queues"));
    return;
  }
  auto ring = worker().internals().poll_ring();
  if (!ring.ok()) {
    RL_LOG_WARN("%s: the kernel refused an IOPOLL ring (%s): using interrupts", name(),
                std::string(ring.status().message()));
    return;
  }
  auto index = (*ring)->InstallFixedFile(fd());
  if (!index.ok()) {
    RL_LOG_WARN("%s: cannot install the descriptor in the IOPOLL ring (%s): using interrupts",
                name(), std::string(index.status().message()));
    return;
  }
  poll_ring_ = *ring;
  poll_fixed_file_ = *index;
}

void NvmeNamespace::DisablePolling(const std::string& why) {
  RL_LOG_WARN("%s: %s: polled completions off, using interrupts from now on", name(), why);
  (void)poll_ring_->RemoveFixedFile(poll_fixed_file_);
  poll_ring_ = nullptr;
  poll_fixed_file_ = -1;
}

// ---- requests ------------------------------------------------------------------

NvmeNamespace::Plan NvmeNamespace::PlanRange(OpKind kind, uint8_t opcode, uint64_t offset,
                                             uint64_t length, uint32_t lbas_per_cmd) const {
  Plan p;
  p.kind = kind;
  p.opcode = opcode;
  p.offset = offset;
  p.length = length;
  p.slba = offset >> lba_shift_;
  p.nlb = length >> lba_shift_;
  p.lba_shift = lba_shift_;
  p.lbas_per_cmd = lbas_per_cmd;
  return p;
}

Task<BlockResult> NvmeNamespace::SubmitRead(uint64_t offset, uint32_t length, Buffer buffer) {
  Plan p = PlanRange(OpKind::kRead, kOpRead, offset, length, max_cmd_lbas_);
  p.data = true;
  return Run(p, std::move(buffer));
}

Task<BlockResult> NvmeNamespace::SubmitWrite(uint64_t offset, Buffer buffer, bool fua) {
  Plan p = PlanRange(OpKind::kWrite, kOpWrite, offset, buffer.size(), max_cmd_lbas_);
  p.cdw12_flags = fua ? kCdw12Fua : 0;
  p.data = true;
  return Run(p, std::move(buffer));
}

Task<BlockResult> NvmeNamespace::SubmitFlush() {
  Plan p;
  p.kind = OpKind::kFlush;
  p.opcode = kOpFlush;
  return Run(p, Buffer());
}

Task<BlockResult> NvmeNamespace::SubmitDiscard(uint64_t offset, uint64_t length) {
  Plan p = PlanRange(OpKind::kDiscard, kOpDatasetManagement, offset, length,
                     static_cast<uint32_t>(std::min<uint64_t>(
                         UINT32_MAX, uint64_t{max_dsm_range_lbas_} * kDsmRangesPerCommand)));
  p.dsm_range_lbas = max_dsm_range_lbas_;
  return Run(p, Buffer());
}

Task<BlockResult> NvmeNamespace::SubmitWriteZeroes(uint64_t offset, uint64_t length, bool fua) {
  Plan p = PlanRange(OpKind::kWriteZeroes, kOpWriteZeroes, offset, length, max_zeroes_lbas_);
  p.cdw12_flags = fua ? kCdw12Fua : 0;
  return Run(p, Buffer());
}

// Why a FIXED command can fail where the same command on plain memory works:
// Linux 6.1 maps a registered buffer for passthrough (blk_rq_map_user_bvec)
// only if the whole registration, not just the slice a command uses, has no
// more pages than the queue's max_segments (127 for NVMe PCI); a larger
// registration fails every command with EINVAL (checked in the QEMU guest:
// 127 pages work, 128 do not). Later kernels lifted this. So the first EINVAL
// of a FIXED command retries it on the same memory without FIXED (the kernel
// then pins the pages per command) and marks that registration, once, as not
// usable FIXED for this namespace. Any other EINVAL recurs on the retry and is
// reported. Re-running a read or write that the kernel refused is harmless.
// The mark is by registration index: should a later pool reuse the index, its
// buffers also go as plain memory (slower, never wrong).
bool NvmeNamespace::FixedUsable(const Buffer& buffer) const {
  const int i = buffer.registered_index();
  return i >= 0 && (static_cast<std::size_t>(i) >= fixed_unusable_.size() || !fixed_unusable_[i]);
}

void NvmeNamespace::NoteFixedUnusable(const Buffer& buffer) {
  const auto i = static_cast<std::size_t>(buffer.registered_index());
  if (fixed_unusable_.size() <= i) fixed_unusable_.resize(i + 1, false);
  if (fixed_unusable_[i]) return;
  fixed_unusable_[i] = true;
  ++fixed_fallbacks_;
  RL_LOG_WARN(
      "%s: the kernel refused registered buffer %d for NVMe passthrough (EINVAL); its "
      "commands use plain (per-command pinned) memory from now on. Linux 6.1 takes a "
      "registered buffer only if its whole registration spans at most max_segments (%u) "
      "pages: register buffers of at most %u KiB each to keep the FIXED path.",
      name(), buffer.registered_index(), max_segments_,
      static_cast<uint64_t>(max_segments_) * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)) / 1024);
}

Task<BlockResult> NvmeNamespace::Run(Plan plan, Buffer buffer) {
  const Clock::time_point start = StartTimer();
  // A registration index means something only on its own worker's ring.
  if (absl::Status foreign = buffer.CheckUsableOn(worker()); !foreign.ok()) [[unlikely]] {
    BlockResult r;
    r.Fail(EXDEV, std::move(foreign));
    r.buffer = std::move(buffer);
    Record(plan.kind, false, plan.length, start);
    co_return r;
  }
  int32_t res = 0;
  uint32_t failed = 0;  // the failing command's index
  const uint32_t commands = plan.Commands();
  const bool nothing = plan.opcode == kOpFlush ? !geometry().volatile_write_cache : plan.nlb == 0;
  while (!nothing) {
    // Polled commands go to the IOPOLL ring, which has no registered buffers.
    // Only Read and Write are polled: Linux 6.1 polls a passthrough command
    // through the bio it recorded at issue, and records none for a command
    // without a data buffer (Flush, Write Zeroes), so polling one reads a
    // stale cookie and oopses in bio_poll (seen in the QEMU guest on
    // 6.1.0-57). Those few commands complete by interrupt instead.
    const bool polled = poll_ring_ != nullptr && plan.data;
    const int file = polled ? poll_fixed_file_ : fixed_file();
    plan.fixed = !polled && plan.data && FixedUsable(buffer);
    if (commands == 1) [[likely]] {
      Permit permit = co_await limiter().Acquire();
      res = co_await SubmitCommand128(kTagNvmeCmd, OneCommandPrep{&plan, &buffer, nsid_, file},
                                      OneCommandFinish{&buffer}, polled);
    } else {
      // Several commands into one buffer: see Fanout for who owns what, when.
      FanoutOwner fan(new Fanout(worker(), std::move(buffer)));
      for (uint32_t i = 0; i < commands && fan->error_res() == 0; ++i) {
        Permit permit = co_await limiter().Acquire();
        if (fan->error_res() != 0) break;  // an earlier command failed meanwhile
        OpSlot& slot = fan->Start(i, std::move(permit));
        io_uring_sqe* sqe =
            polled ? poll_ring_->GetSqe128() : worker().internals().ring().GetSqe128();
        plan.Fill(i, nsid_, file, &fan->buffer(), slot, sqe);
        io_uring_sqe_set_data64(sqe, slot.user_data().raw());
      }
      co_await fan->Drained();
      res = fan->error_res();
      failed = fan->error_command();
      buffer = fan->TakeBuffer();
    }
    if (res == -EINVAL && plan.fixed) [[unlikely]] {
      NoteFixedUnusable(buffer);  // see above: retry on plain memory
      continue;
    }
    if (res == -EOPNOTSUPP && polled) [[unlikely]] {
      // (Another request may have switched already.)
      if (poll_ring_ != nullptr) DisablePolling("the kernel refused a polled command (EOPNOTSUPP)");
      continue;  // retry by interrupt
    }
    break;
  }

  BlockResult r;
  if (res == 0) [[likely]] {
    r.res = plan.data ? static_cast<int32_t>(plan.length) : 0;
    if (plan.kind == OpKind::kRead) buffer.set_size(plan.length);
  } else {
    std::string context = Describe(plan.kind, plan.offset, plan.length);
    if (commands > 1) {
      absl::StrAppend(&context, " (command ", failed + 1, " of ", commands, ": LBA ",
                      plan.FirstLba(failed), ", ", plan.Lbas(failed), " LBAs)");
    } else if (plan.kind != OpKind::kFlush) {
      absl::StrAppend(&context, " (LBA ", plan.slba, ", ", plan.nlb, " LBAs)");
    }
    if (res > 0) {
      r.res = NegErrnoForNvmeStatus(static_cast<uint16_t>(res));
      r.status = NvmeStatusToStatus(static_cast<uint16_t>(res), context);
    } else {
      r = Failure(res, context);
    }
  }
  r.buffer = std::move(buffer);
  Record(plan.kind, r.ok(), plan.length, start);
  co_return r;
}

// ---- raw passthrough -------------------------------------------------------------

Task<NvmeCommandResult> NvmeNamespace::Passthrough(NvmeIoCommand command, Buffer buffer) {
  NvmeCommandResult r;
  const std::string context = absl::StrFormat("NVMe command 0x%02x on %s", command.opcode, name());
  if ((command.opcode & 1) && geometry().read_only) {
    r.res = -EPERM;
    r.status = absl::PermissionDeniedError(
        absl::StrCat(context, ": the command writes and ", name(), " is read-only"));
  } else if (command.data_len > buffer.capacity()) {
    r.res = -EINVAL;
    r.status = absl::InvalidArgumentError(absl::StrCat(context, ": data_len ", command.data_len,
                                                       " exceeds the buffer's ", buffer.capacity(),
                                                       " bytes"));
  } else if (command.data_len > device_max_transfer_) {
    r.res = -EINVAL;
    r.status = absl::InvalidArgumentError(absl::StrCat(context, ": data_len ", command.data_len,
                                                       " exceeds the maximum transfer of ",
                                                       device_max_transfer_, " bytes"));
  } else if (command.data_len != 0 && !AddressOk(buffer)) {
    r.res = -EINVAL;
    r.status = absl::InvalidArgumentError(absl::StrCat(context, ": the buffer must be aligned to ",
                                                       geometry().memory_alignment, " bytes"));
  }
  if (r.res != 0) {
    r.buffer = std::move(buffer);
    co_return r;
  }

  struct Out {
    int32_t res;
    uint32_t dword0;
  };
  Out out{};
  bool fixed = command.data_len != 0 && FixedUsable(buffer);
  for (;;) {
    Permit permit = co_await limiter().Acquire();
    // The buffer lives in slot.held[0] from submission to the final CQE.
    out = co_await SubmitCommand128(
        kTagNvmeCmd,
        [&command, &buffer, fixed, nsid = nsid_, fixed_file = fixed_file()](io_uring_sqe* sqe,
                                                                            OpSlot& slot) {
          slot.held[0] = std::move(buffer);
          nvme_uring_cmd cmd{};
          cmd.opcode = command.opcode;
          cmd.nsid = nsid;
          cmd.cdw2 = command.cdw2;
          cmd.cdw3 = command.cdw3;
          cmd.cdw10 = command.cdw10;
          cmd.cdw11 = command.cdw11;
          cmd.cdw12 = command.cdw12;
          cmd.cdw13 = command.cdw13;
          cmd.cdw14 = command.cdw14;
          cmd.cdw15 = command.cdw15;
          cmd.timeout_ms = command.timeout_ms;
          if (command.data_len != 0) {
            cmd.addr = reinterpret_cast<uint64_t>(slot.held[0].data());
            cmd.data_len = command.data_len;
          }
          FillSqe(sqe, fixed_file, cmd, fixed ? &slot.held[0] : nullptr);
        },
        [&buffer](OpSlot& slot) {
          buffer = std::move(slot.held[0]);
          return Out{slot.res, static_cast<uint32_t>(slot.big[0])};
        });
    if (out.res == -EINVAL && fixed) [[unlikely]] {
      NoteFixedUnusable(buffer);  // see Run()
      fixed = false;
      continue;
    }
    break;
  }
  r.res = out.res;
  r.dword0 = out.dword0;
  if (out.res > 0) {
    // A positive CQE res is an NVMe status (docs/io_uring-rules.md R8).
    r.nvme_status = static_cast<uint16_t>(out.res);
    r.res = NegErrnoForNvmeStatus(r.nvme_status);
    r.status = NvmeStatusToStatus(r.nvme_status, context);
  } else if (out.res < 0) {
    r.status = ErrnoToStatus(out.res, context);
  } else if (command.opcode & 2) {
    buffer.set_size(command.data_len);
  }
  r.buffer = std::move(buffer);
  co_return r;
}

}  // namespace ringline::block
