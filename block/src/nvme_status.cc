#include "ringline/block/nvme_status.h"

#include <array>
#include <cerrno>
#include <cstdlib>
#include <optional>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ringline::block {
namespace {

struct CodeName {
  uint8_t sc;
  std::string_view name;
};

// Generic Command Status (SCT 0). 0x00-0x7f are common to all commands;
// 0x80-0xbf are the NVM command set's generic values.
constexpr CodeName kGeneric[] = {
    {0x00, "Successful Completion"},
    {0x01, "Invalid Command Opcode"},
    {0x02, "Invalid Field in Command"},
    {0x03, "Command ID Conflict"},
    {0x04, "Data Transfer Error"},
    {0x05, "Commands Aborted due to Power Loss Notification"},
    {0x06, "Internal Error"},
    {0x07, "Command Abort Requested"},
    {0x08, "Command Aborted due to SQ Deletion"},
    {0x09, "Command Aborted due to Failed Fused Command"},
    {0x0a, "Command Aborted due to Missing Fused Command"},
    {0x0b, "Invalid Namespace or Format"},
    {0x0c, "Command Sequence Error"},
    {0x0d, "Invalid SGL Segment Descriptor"},
    {0x0e, "Invalid Number of SGL Descriptors"},
    {0x0f, "Data SGL Length Invalid"},
    {0x10, "Metadata SGL Length Invalid"},
    {0x11, "SGL Descriptor Type Invalid"},
    {0x12, "Invalid Use of Controller Memory Buffer"},
    {0x13, "PRP Offset Invalid"},
    {0x14, "Atomic Write Unit Exceeded"},
    {0x15, "Operation Denied"},
    {0x16, "SGL Offset Invalid"},
    {0x18, "Host Identifier Inconsistent Format"},
    {0x19, "Keep Alive Timer Expired"},
    {0x1a, "Keep Alive Timeout Invalid"},
    {0x1b, "Command Aborted due to Preempt and Abort"},
    {0x1c, "Sanitize Failed"},
    {0x1d, "Sanitize In Progress"},
    {0x1e, "SGL Data Block Granularity Invalid"},
    {0x1f, "Command Not Supported for Queue in CMB"},
    {0x20, "Namespace is Write Protected"},
    {0x21, "Command Interrupted"},
    {0x22, "Transient Transport Error"},
    {0x23, "Command Prohibited by Command and Feature Lockdown"},
    {0x24, "Admin Command Media Not Ready"},
    {0x29, "FDP Disabled"},
    {0x2a, "Invalid Placement Handle List"},
    // NVM command set.
    {0x80, "LBA Out of Range"},
    {0x81, "Capacity Exceeded"},
    {0x82, "Namespace Not Ready"},
    {0x83, "Reservation Conflict"},
    {0x84, "Format In Progress"},
};

// Command Specific Status (SCT 1). 0x00-0x7f come from the admin commands
// of the base specification; 0x80-0xbf belong to the I/O command set. The
// same 0x80-0x91 values mean something else for the Fabrics Connect command,
// which this engine never issues, so the NVM and Zoned Namespace meanings
// are the ones named.
constexpr CodeName kCommandSpecific[] = {
    {0x00, "Completion Queue Invalid"},
    {0x01, "Invalid Queue Identifier"},
    {0x02, "Invalid Queue Size"},
    {0x03, "Abort Command Limit Exceeded"},
    {0x05, "Asynchronous Event Request Limit Exceeded"},
    {0x06, "Invalid Firmware Slot"},
    {0x07, "Invalid Firmware Image"},
    {0x08, "Invalid Interrupt Vector"},
    {0x09, "Invalid Log Page"},
    {0x0a, "Invalid Format"},
    {0x0b, "Firmware Activation Requires Conventional Reset"},
    {0x0c, "Invalid Queue Deletion"},
    {0x0d, "Feature Identifier Not Saveable"},
    {0x0e, "Feature Not Changeable"},
    {0x0f, "Feature Not Namespace Specific"},
    {0x10, "Firmware Activation Requires NVM Subsystem Reset"},
    {0x11, "Firmware Activation Requires Controller Level Reset"},
    {0x12, "Firmware Activation Requires Maximum Time Violation"},
    {0x13, "Firmware Activation Prohibited"},
    {0x14, "Overlapping Range"},
    {0x15, "Namespace Insufficient Capacity"},
    {0x16, "Namespace Identifier Unavailable"},
    {0x18, "Namespace Already Attached"},
    {0x19, "Namespace Is Private"},
    {0x1a, "Namespace Not Attached"},
    {0x1b, "Thin Provisioning Not Supported"},
    {0x1c, "Controller List Invalid"},
    {0x1d, "Device Self-test In Progress"},
    {0x1e, "Boot Partition Write Prohibited"},
    {0x1f, "Invalid Controller Identifier"},
    {0x20, "Invalid Secondary Controller State"},
    {0x21, "Invalid Number of Controller Resources"},
    {0x22, "Invalid Resource Identifier"},
    {0x23, "Sanitize Prohibited While Persistent Memory Region is Enabled"},
    {0x24, "ANA Group Identifier Invalid"},
    {0x25, "ANA Attach Failed"},
    {0x26, "Insufficient Capacity"},
    {0x27, "Namespace Attachment Limit Exceeded"},
    {0x28, "Prohibition of Command Execution Not Supported"},
    {0x29, "I/O Command Set Not Supported"},
    {0x2a, "I/O Command Set Not Enabled"},
    {0x2b, "I/O Command Set Combination Rejected"},
    {0x2c, "Invalid I/O Command Set"},
    {0x2d, "Identifier Unavailable"},
    {0x2f, "Invalid Discovery Information"},
    {0x30, "Zoning Data Structure Locked"},
    {0x31, "Zoning Data Structure Not Found"},
    {0x32, "Insufficient Discovery Resources"},
    {0x33, "Requested Function Disabled"},
    {0x34, "ZoneGroup Originator Invalid"},
    // NVM command set.
    {0x80, "Conflicting Attributes"},
    {0x81, "Invalid Protection Information"},
    {0x82, "Attempted Write to Read Only Range"},
    {0x83, "Command Size Limit Exceeded"},
    // Zoned Namespace command set.
    {0xb6, "Invalid Zone Operation Request"},
    {0xb7, "ZRWA Resources Unavailable"},
    {0xb8, "Zone Boundary Error"},
    {0xb9, "Zone Is Full"},
    {0xba, "Zone Is Read Only"},
    {0xbb, "Zone Is Offline"},
    {0xbc, "Zone Invalid Write"},
    {0xbd, "Too Many Active Zones"},
    {0xbe, "Too Many Open Zones"},
    {0xbf, "Invalid Zone State Transition"},
};

// Media and Data Integrity Errors (SCT 2).
constexpr CodeName kMedia[] = {
    {0x80, "Write Fault"},
    {0x81, "Unrecovered Read Error"},
    {0x82, "End-to-end Guard Check Error"},
    {0x83, "End-to-end Application Tag Check Error"},
    {0x84, "End-to-end Reference Tag Check Error"},
    {0x85, "Compare Failure"},
    {0x86, "Access Denied"},
    {0x87, "Deallocated or Unwritten Logical Block"},
    {0x88, "End-to-end Storage Tag Check Error"},
};

// Path Related Status (SCT 3).
constexpr CodeName kPath[] = {
    {0x00, "Internal Path Error"},
    {0x01, "Asymmetric Access Persistent Loss"},
    {0x02, "Asymmetric Access Inaccessible"},
    {0x03, "Asymmetric Access Transition"},
    {0x60, "Controller Pathing Error"},
    {0x70, "Host Pathing Error"},
    {0x71, "Command Aborted By Host"},
};

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

template <size_t N>
std::string_view Find(const CodeName (&table)[N], uint8_t sc) {
  for (const CodeName& entry : table) {
    if (entry.sc == sc) return entry.name;
  }
  return {};
}

// The canonical code that best describes what a caller should do about an
// NVMe status. Unlisted errors become kUnknown rather than a guess.
absl::StatusCode CanonicalCode(uint16_t status) {
  const NvmeStatusFields f = DecodeNvmeStatus(status);
  switch (static_cast<NvmeStatusCodeType>(f.sct)) {
    case NvmeStatusCodeType::kGeneric:
      switch (f.sc) {
        case 0x00:
          return absl::StatusCode::kOk;
        case 0x01:  // Invalid Command Opcode: the device lacks the command.
          return absl::StatusCode::kUnimplemented;
        case 0x02:  // Invalid Field
        case 0x0b:  // Invalid Namespace or Format
        case 0x0d:
        case 0x0e:
        case 0x0f:
        case 0x10:
        case 0x11:
        case 0x12:
        case 0x13:
        case 0x14:
        case 0x16:
        case 0x1e:
          return absl::StatusCode::kInvalidArgument;
        case 0x04:  // Data Transfer Error
        case 0x06:  // Internal Error
          return absl::StatusCode::kInternal;
        case 0x05:
        case 0x07:
        case 0x08:
        case 0x09:
        case 0x0a:
        case 0x1b:
        case 0x21:  // Command Interrupted
          return absl::StatusCode::kAborted;
        case 0x15:  // Operation Denied
        case 0x20:  // Namespace is Write Protected
        case 0x23:
        case 0x83:  // Reservation Conflict
          return absl::StatusCode::kPermissionDenied;
        case 0x0c:  // Command Sequence Error
        case 0x29:  // FDP Disabled
          return absl::StatusCode::kFailedPrecondition;
        case 0x1c:  // Sanitize Failed
          return absl::StatusCode::kDataLoss;
        case 0x1d:  // Sanitize In Progress
        case 0x22:  // Transient Transport Error
        case 0x24:  // Admin Command Media Not Ready
        case 0x82:  // Namespace Not Ready
        case 0x84:  // Format In Progress
          return absl::StatusCode::kUnavailable;
        case 0x80:  // LBA Out of Range
          return absl::StatusCode::kOutOfRange;
        case 0x81:  // Capacity Exceeded
          return absl::StatusCode::kResourceExhausted;
        default:
          return absl::StatusCode::kUnknown;
      }
    case NvmeStatusCodeType::kCommandSpecific:
      switch (f.sc) {
        case 0x80:  // Conflicting Attributes
        case 0x81:  // Invalid Protection Information
        case 0x83:  // Command Size Limit Exceeded
        case 0x09:  // Invalid Log Page
        case 0x0a:  // Invalid Format
          return absl::StatusCode::kInvalidArgument;
        case 0x82:  // Attempted Write to Read Only Range
        case 0xba:  // Zone Is Read Only
          return absl::StatusCode::kPermissionDenied;
        case 0x15:
        case 0x26:
        case 0xb9:  // Zone Is Full
        case 0xbd:
        case 0xbe:
          return absl::StatusCode::kResourceExhausted;
        case 0xb8:  // Zone Boundary Error
          return absl::StatusCode::kOutOfRange;
        case 0xbb:  // Zone Is Offline
          return absl::StatusCode::kUnavailable;
        default:
          return absl::StatusCode::kFailedPrecondition;
      }
    case NvmeStatusCodeType::kMediaDataIntegrity:
      switch (f.sc) {
        case 0x85:  // Compare Failure: the data differs, nothing is lost.
          return absl::StatusCode::kFailedPrecondition;
        case 0x86:  // Access Denied
          return absl::StatusCode::kPermissionDenied;
        default:  // Write Fault, Unrecovered Read Error, PI check errors ...
          return absl::StatusCode::kDataLoss;
      }
    case NvmeStatusCodeType::kPathRelated:
      // Path errors are about reaching the namespace, not about the data.
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kUnknown;
  }
}

}  // namespace

std::string_view NvmeStatusCodeTypeName(uint8_t sct) {
  switch (sct) {
    case 0x0:
      return "Generic Command Status";
    case 0x1:
      return "Command Specific Status";
    case 0x2:
      return "Media and Data Integrity Errors";
    case 0x3:
      return "Path Related Status";
    case 0x7:
      return "Vendor Specific";
    default:
      return "Reserved Status Code Type";
  }
}

std::string_view NvmeStatusCodeName(uint8_t sct, uint8_t sc) {
  switch (sct) {
    case 0x0:
      return Find(kGeneric, sc);
    case 0x1:
      return Find(kCommandSpecific, sc);
    case 0x2:
      return Find(kMedia, sc);
    case 0x3:
      return Find(kPath, sc);
    default:
      return {};
  }
}

std::string NvmeStatusName(uint16_t status) {
  const NvmeStatusFields f = DecodeNvmeStatus(status);
  std::string flags;
  if (f.dnr) absl::StrAppend(&flags, ", DNR");
  if (f.more) absl::StrAppend(&flags, ", More");
  if (f.crd != 0) absl::StrAppend(&flags, ", CRD ", f.crd);
  const std::string codes = absl::StrFormat("(sct 0x%x, sc 0x%x%s)", f.sct, f.sc, flags);

  if (f.sct == 0 && f.sc == 0) return absl::StrCat("Successful Completion ", codes);
  std::string_view name = NvmeStatusCodeName(f.sct, f.sc);
  if (name.empty()) {
    name = f.sct == 0x7 ? "Vendor Specific Status Code" : "Unknown Status Code";
  }
  return absl::StrCat(AV(NvmeStatusCodeTypeName(f.sct)), " / ", AV(name), " ", codes);
}

absl::Status NvmeStatusToStatus(uint16_t status, std::string_view context) {
  const absl::StatusCode code = CanonicalCode(status);
  if (code == absl::StatusCode::kOk) return absl::OkStatus();
  std::string message = NvmeStatusName(status);
  if (!context.empty()) message = absl::StrCat(AV(context), ": ", message);
  absl::Status result(code, message);
  result.SetPayload(AV(kNvmeStatusPayloadKey), absl::Cord(absl::StrCat(status)));
  return result;
}

absl::Status NvmeResultToStatus(int result, std::string_view context) {
  if (result == 0) return absl::OkStatus();
  if (result > 0) {
    // Only the low 15 bits are defined; anything above would be a kernel
    // change we do not understand, so keep it visible in the name.
    return NvmeStatusToStatus(static_cast<uint16_t>(result), context);
  }
  std::string message =
      context.empty() ? std::string("NVMe passthrough failed") : std::string(context);
  return absl::ErrnoToStatus(-result, message);
}

std::optional<uint16_t> NvmeStatusFromStatus(const absl::Status& status) {
  auto payload = status.GetPayload(AV(kNvmeStatusPayloadKey));
  if (!payload.has_value()) return std::nullopt;
  const std::string text(*payload);
  char* end = nullptr;
  const unsigned long value = std::strtoul(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != '\0' || value > 0xffff) return std::nullopt;
  return static_cast<uint16_t>(value);
}

}  // namespace ringline::block
