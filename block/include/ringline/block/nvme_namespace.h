#pragma once
// NvmeNamespace: an NVMe namespace driven by NVMe passthrough on its generic
// char device (/dev/ngXnY), as a block::Target.
//
//   auto ns = NvmeNamespace::Open(worker, "/dev/ng0n1", {.queue_depth = 64});
//   Buffer buf = co_await pool.Acquire();               // registered: FIXED
//   BlockResult r = co_await (*ns)->Read(0, 4096, std::move(buf));
//   if (!r.ok()) ... r.status.message() names the NVMe status ...
//
// At open the namespace and its controller are identified (nvme_device.h):
// nsid (NVME_IOCTL_ID), the LBA data size of the LBA format in use, capacity
// (NSZE), the largest transfer (MDTS, capped by the kernel's
// max_hw_sectors_kb and by its max_segments pages, since passthrough buffers
// are mapped page by page and never split by the kernel), the volatile write
// cache (VWC) and the optional commands
// (ONCS: Write Zeroes, Dataset Management). Identify is a synchronous admin
// ioctl: Open() is a set-up call, not for the hot path, and needs the
// privileges of admin passthrough (root / CAP_SYS_ADMIN).
//
// Every I/O is an IORING_OP_URING_CMD with cmd_op NVME_URING_CMD_IO on the
// worker's SQE128|CQE32 ring, with the descriptor in the fixed file table:
//   Read / Write      NVMe Read (0x02) / Write (0x01), FUA = CDW12 bit 30;
//                     IORING_URING_CMD_FIXED when the buffer is registered
//                     (BufferPool), the plain user address otherwise.
//   Flush             NVMe Flush (0x00); nothing is sent when the controller
//                     has no volatile write cache (the spec makes it a no-op).
//   WriteZeroes       NVMe Write Zeroes (0x08), FUA bit honoured.
//   Discard           Dataset Management (0x09) with Attribute Deallocate; the
//                     range list lives in the op slot (kernel-read memory).
// A CQE `res` of 0 is success, a positive `res` an NVMe status
// (docs/io_uring-rules.md R8): BlockResult::res is then a negated errno chosen by the status'
// meaning (LBA Out of Range -> -EINVAL, Invalid Opcode -> -EOPNOTSUPP, write
// protected -> -EPERM, media errors and the rest -> -EIO) and
// BlockResult::status names the status type and code, e.g.
// "read of 4096 bytes at offset ... on /dev/ng0n1: Generic Command Status /
// LBA Out of Range (sct 0x0, sc 0x80, DNR)", with the raw status as the
// kNvmeStatusPayloadKey payload (NvmeStatusFromStatus recovers it).
//
// Requests larger than the maximum transfer (or 65536 LBAs, the NLB field's
// limit) are split into several commands and joined transparently: they run
// concurrently, each holding one queue-depth place; the first failure stops
// the submission of the rest and is the request's result.
//
// Validation, refusals, queue depth and metrics are TargetBase's (see
// target_base.h): offsets and lengths must be multiples of the LBA size,
// buffer addresses of geometry().memory_alignment (4 bytes: NVMe's dword
// alignment); discard and write-zeroes are refused with -EOPNOTSUPP where the
// controller lacks Dataset Management / Write Zeroes (ONCS).
// Passthrough() is the raw escape hatch and validates nothing but the buffer
// size.
//
// Registered buffers: a buffer from a registered BufferPool is passed with
// IORING_URING_CMD_FIXED (no per-command page pinning). Linux 6.1 accepts that
// only when the buffer's whole registration spans at most the queue's
// max_segments pages (127 for NVMe PCI: about 508 KiB); for a larger
// registration it fails every command with EINVAL. The first such EINVAL is
// retried on the same memory without FIXED and the registration is used that
// way from then on (one warning; counted by fixed_buffer_fallbacks()). To keep
// the FIXED path on 6.1, use pools whose registration stays within that size.
//
// Buffers: a buffer handed to Read/Write/Passthrough belongs to the operation
// until the kernel's last completion for it, and comes back in the result.
// It never lives in the coroutine frame while the kernel may touch it: a
// one-command request keeps it in the engine's op slot; a split request keeps
// it in a heap object shared by its commands that is freed only after the last
// of their completions (see nvme_namespace.cc). Destroying the awaiting task
// therefore never frees memory under the device (docs/io_uring-rules.md R1).
//
// Queue depth: every NVMe command in flight holds one place of limiter()
// (FIFO, never rejected); metrics() counts requests per kind with latency from
// the call to the result (including queueing).
//
// Thread-safety: an NvmeNamespace belongs to the worker it was opened on;
// every method must be called on that worker's thread (metrics()/queue()
// counters may be read anywhere). Lifetime: destroy the tasks that use it
// before it, and it before its worker.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ringline/block/nvme_device.h"
#include "ringline/block/target_base.h"
#include "ringline/worker.h"

namespace ringline::block {

// A raw NVM command set I/O command (the NVMe fields of struct
// nvme_uring_cmd). The namespace id is filled in. The data direction follows
// the opcode (bit 0: host to controller, bit 1: controller to host).
struct NvmeIoCommand {
  uint8_t opcode = 0;
  uint32_t cdw2 = 0;
  uint32_t cdw3 = 0;
  uint32_t cdw10 = 0;
  uint32_t cdw11 = 0;
  uint32_t cdw12 = 0;
  uint32_t cdw13 = 0;
  uint32_t cdw14 = 0;
  uint32_t cdw15 = 0;
  uint32_t data_len = 0;    // bytes of the buffer to transfer (0: no data)
  uint32_t timeout_ms = 0;  // 0: the driver's default
};

// A member of the engine's result family (ringline/result.h): `res` is 0 on
// success or a negated errno, never positive. A command the controller
// completed with an error status has that status in `nvme_status` and an errno
// chosen by its meaning in `res` (as for BlockResult); a failure before the
// controller (refused, or an errno from the kernel) has nvme_status 0.
struct NvmeCommandResult : IoStatus {
  uint16_t nvme_status = 0;  // the NVMe status (SCT << 8 | SC), 0 when none
  uint32_t dword0 = 0;       // the completion's result dword 0 (command specific)
  Buffer buffer;             // the buffer handed in
};

class NvmeNamespace final : public TargetBase {
 public:
  // Opens the namespace at `path` (a generic char device /dev/ngXnY; the block
  // device /dev/nvmeXnY is accepted and its ngXnY used, since 6.1 has no
  // io_uring passthrough on block devices) on `worker`. Must be called on the
  // worker's thread. Fails with kInvalidArgument for a controller or a
  // non-NVMe path, kPermissionDenied without the rights for admin commands,
  // kUnimplemented for a format with metadata (not supported).
  static absl::StatusOr<std::unique_ptr<NvmeNamespace>> Open(Worker& worker,
                                                             const std::string& path,
                                                             const TargetOptions& options = {});
  // name() is the generic char device path that is used (e.g. "/dev/ng0n1").
  // Discard is Dataset Management, Attribute Deallocate; whether the range
  // reads back as zeroes afterwards is geometry().discard_zeroes_data (DLFEAT).

  // One raw I/O command on this namespace, with `buffer` (data_len bytes of
  // it) as its data. No range or alignment checks: the controller judges the
  // command, and its status comes back named. A command with the write bit
  // (opcode bit 0) is refused with -EPERM on a read-only target; data_len must
  // fit the buffer and the maximum transfer (-EINVAL otherwise).
  Task<NvmeCommandResult> Passthrough(NvmeIoCommand command, Buffer buffer = {});

  uint32_t nsid() const { return nsid_; }
  const NvmeNamespaceInfo& namespace_info() const { return ns_info_; }
  const NvmeControllerInfo& controller_info() const { return ctrl_info_; }
  // The device's largest single transfer (MDTS and the kernel's limit), before
  // TargetOptions::max_transfer_bytes.
  uint64_t device_max_transfer_bytes() const { return device_max_transfer_; }
  // LBAs per Write Zeroes command and per Dataset Management range.
  uint32_t max_write_zeroes_lbas() const { return max_zeroes_lbas_; }
  uint32_t max_discard_range_lbas() const { return max_dsm_range_lbas_; }
  // Buffer registrations the kernel refused for FIXED passthrough so far (each
  // is then used as plain memory; see "Registered buffers" above).
  uint32_t fixed_buffer_fallbacks() const { return fixed_fallbacks_; }
  // The namespace queue's max_segments (sysfs; 0 if unknown).
  uint32_t max_segments() const { return max_segments_; }

  // Internal: one request's command plan (nvme_namespace.cc).
  struct Plan;

 private:
  NvmeNamespace(Worker& worker, std::string path, UniqueFd fd, int fixed_file,
                const Geometry& geometry, const TargetOptions& options);

  Task<BlockResult> SubmitRead(uint64_t offset, uint32_t length, Buffer buffer) override;
  Task<BlockResult> SubmitWrite(uint64_t offset, Buffer buffer, bool fua) override;
  Task<BlockResult> SubmitFlush() override;
  Task<BlockResult> SubmitDiscard(uint64_t offset, uint64_t length) override;
  Task<BlockResult> SubmitWriteZeroes(uint64_t offset, uint64_t length, bool fua) override;

  // The plan of a validated read, write, discard or write-zeroes.
  Plan PlanRange(OpKind kind, uint8_t opcode, uint64_t offset, uint64_t length,
                 uint32_t lbas_per_cmd) const;
  // Every data-path request: one command or a split.
  Task<BlockResult> Run(Plan plan, Buffer buffer);
  bool FixedUsable(const Buffer& buffer) const;
  void NoteFixedUnusable(const Buffer& buffer);
  bool AddressOk(const Buffer& b) const { return IsAligned(b.data(), geometry().memory_alignment); }

  uint32_t nsid_ = 0;
  uint32_t lba_shift_ = 9;
  uint32_t max_cmd_lbas_ = 0;  // LBAs per Read/Write command
  uint32_t max_zeroes_lbas_ = 0;
  uint32_t max_dsm_range_lbas_ = 0;
  uint64_t device_max_transfer_ = 0;
  uint32_t max_segments_ = 0;
  uint32_t fixed_fallbacks_ = 0;
  std::vector<bool> fixed_unusable_;  // by registered buffer index
  NvmeNamespaceInfo ns_info_;
  NvmeControllerInfo ctrl_info_;
};

}  // namespace ringline::block
