// NVMe completion status: decoding and naming.
//
// Where the value comes from. The NVMe completion queue entry carries a 16-bit
// Status field in DW3[31:16]; bit 0 of it is the Phase Tag. The Linux driver
// stores `le16_to_cpu(cqe->status) >> 1` in the request (nvme_try_complete_req
// / nvme_end_request in drivers/nvme/host/nvme.h), i.e. it drops the phase
// bit, and hands that 15-bit value unchanged to user space:
//   - NVME_IOCTL_ADMIN_CMD / NVME_IOCTL_IO_CMD return it as the (positive)
//     ioctl return value;
//   - IORING_OP_URING_CMD (NVME_URING_CMD_IO / _ADMIN) puts it in the CQE's
//     `res` (nvme_uring_cmd_end_io: pdu->status = nvme_req(req)->status).
// A negative value on either path is -errno from the kernel (e.g. -EINTR for
// a command the driver cancelled), never an NVMe status.
//
// Layout of that 15-bit value (the kernel's NVME_SC_* / NVME_SCT_* constants
// in include/linux/nvme.h use the same one):
//   bits 0-7   SC   Status Code
//   bits 8-10  SCT  Status Code Type (0 generic, 1 command specific,
//                   2 media and data integrity, 3 path related, 7 vendor)
//   bits 11-12 CRD  Command Retry Delay (index into the controller's CRDT)
//   bit  13    M    More: more information in the Error Information log
//   bit  14    DNR  Do Not Retry: the same command will fail again
// Example: a read past the end of a namespace completes with 0x4080 =
// DNR | SCT 0 | SC 0x80 (LBA Out of Range).
//
// The names follow the NVM Express Base Specification 2.0 status tables
// (Generic Command Status, Command Specific Status, Media and Data Integrity
// Errors, Path Related Status) plus the NVM and Zoned Namespace command set
// specific values that an I/O path can see.
//
// Thread-safety: every function here is pure (no shared state) and may be
// called from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace ringline::block {

// Bit masks of the 15-bit status value described above.
inline constexpr uint16_t kNvmeStatusScMask = 0x00ff;
inline constexpr uint16_t kNvmeStatusSctMask = 0x0700;
inline constexpr uint16_t kNvmeStatusCrdMask = 0x1800;
inline constexpr uint16_t kNvmeStatusMore = 0x2000;
inline constexpr uint16_t kNvmeStatusDnr = 0x4000;

// Status Code Type values.
enum class NvmeStatusCodeType : uint8_t {
  kGeneric = 0x0,
  kCommandSpecific = 0x1,
  kMediaDataIntegrity = 0x2,
  kPathRelated = 0x3,
  kVendorSpecific = 0x7,
};

// A few status values callers test for by name (SCT << 8 | SC, no flag bits).
inline constexpr uint16_t kNvmeScSuccess = 0x000;
inline constexpr uint16_t kNvmeScInvalidOpcode = 0x001;
inline constexpr uint16_t kNvmeScInvalidField = 0x002;
inline constexpr uint16_t kNvmeScLbaOutOfRange = 0x080;
inline constexpr uint16_t kNvmeScUnrecoveredReadError = 0x281;

// The fields of a status value.
struct NvmeStatusFields {
  uint8_t sc = 0;   // Status Code
  uint8_t sct = 0;  // Status Code Type (3 bits)
  uint8_t crd = 0;  // Command Retry Delay index (2 bits), 0 = retry at once
  bool more = false;
  bool dnr = false;
};

constexpr NvmeStatusFields DecodeNvmeStatus(uint16_t status) {
  return NvmeStatusFields{
      .sc = static_cast<uint8_t>(status & kNvmeStatusScMask),
      .sct = static_cast<uint8_t>((status & kNvmeStatusSctMask) >> 8),
      .crd = static_cast<uint8_t>((status & kNvmeStatusCrdMask) >> 11),
      .more = (status & kNvmeStatusMore) != 0,
      .dnr = (status & kNvmeStatusDnr) != 0,
  };
}

// SCT << 8 | SC: the status with the CRD, More and DNR bits removed, for
// comparing against the kNvmeSc* constants.
constexpr uint16_t NvmeStatusCode(uint16_t status) {
  return status & (kNvmeStatusSctMask | kNvmeStatusScMask);
}

// "Generic Command Status", "Command Specific Status", "Media and Data
// Integrity Errors", "Path Related Status", "Vendor Specific" or
// "Reserved Status Code Type".
std::string_view NvmeStatusCodeTypeName(uint8_t sct);

// The specification's name of one (SCT, SC) pair, e.g. "LBA Out of Range";
// an empty view when the code is reserved, vendor specific or unknown here.
// The returned view points at static storage.
std::string_view NvmeStatusCodeName(uint8_t sct, uint8_t sc);

// A complete, human-readable name, e.g. for 0x4080:
//   "Generic Command Status / LBA Out of Range (sct 0x0, sc 0x80, DNR)"
// Flags appear only when set: "DNR", "More", "CRD n". Unknown codes read
// "Generic Command Status / Unknown Status Code (sct 0x0, sc 0x7f)".
// 0 is "Successful Completion (sct 0x0, sc 0x0)".
std::string NvmeStatusName(uint16_t status);

// True when the controller allows a retry (DNR clear) and the status is an
// error. Says nothing about whether a retry is likely to succeed.
constexpr bool NvmeStatusRetryable(uint16_t status) {
  return NvmeStatusCode(status) != kNvmeScSuccess && (status & kNvmeStatusDnr) == 0;
}

// An absl::Status for an NVMe status: OK for success, otherwise a canonical
// code chosen by meaning (LBA Out of Range -> kOutOfRange, media errors ->
// kDataLoss, Namespace Not Ready -> kUnavailable, Invalid Opcode ->
// kUnimplemented, ...) and the message "<context>: <NvmeStatusName>" (just
// the name when context is empty). The raw status is also attached as the
// payload "ringline.nvme_status" (decimal text) so callers can recover it.
absl::Status NvmeStatusToStatus(uint16_t status, std::string_view context = {});

// The payload key used by NvmeStatusToStatus.
inline constexpr std::string_view kNvmeStatusPayloadKey = "ringline.nvme_status";

// The NVMe status carried by a Status made by NvmeStatusToStatus (or by
// NvmeResultToStatus for a positive result); nullopt for any other Status.
std::optional<uint16_t> NvmeStatusFromStatus(const absl::Status& status);

// The result of a passthrough ioctl or an IORING_OP_URING_CMD CQE `res`:
// 0 is OK, a positive value is an NVMe status (NvmeStatusToStatus), a
// negative value is -errno (absl::ErrnoToStatus).
absl::Status NvmeResultToStatus(int result, std::string_view context = {});

}  // namespace ringline::block
