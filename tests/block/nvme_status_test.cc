// Unit tests for NVMe status naming (nvme_status.h) and for the pure decoders
// of nvme_device.h (Identify / SMART layouts), which need no device.
#include "ringline/block/nvme_status.h"

#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "ringline/block/nvme_device.h"

namespace ringline::block {
namespace {

TEST(NvmeStatusTest, DecodesFieldsAndFlags) {
  // DNR | More | CRD 2 | SCT 2 | SC 0x81
  const uint16_t status = 0x4000 | 0x2000 | (2 << 11) | 0x200 | 0x81;
  const NvmeStatusFields f = DecodeNvmeStatus(status);
  EXPECT_EQ(f.sc, 0x81);
  EXPECT_EQ(f.sct, 0x2);
  EXPECT_EQ(f.crd, 2);
  EXPECT_TRUE(f.more);
  EXPECT_TRUE(f.dnr);
  EXPECT_EQ(NvmeStatusCode(status), 0x281);

  const NvmeStatusFields plain = DecodeNvmeStatus(0x0080);
  EXPECT_FALSE(plain.dnr);
  EXPECT_FALSE(plain.more);
  EXPECT_EQ(plain.crd, 0);
}

TEST(NvmeStatusTest, ReadPastEndIsLbaOutOfRangeWithDnr) {
  // What a passthrough read past the end of a namespace returns in `res`.
  EXPECT_EQ(NvmeStatusName(0x4080),
            "Generic Command Status / LBA Out of Range (sct 0x0, sc 0x80, DNR)");
  EXPECT_EQ(NvmeStatusName(0x0080), "Generic Command Status / LBA Out of Range (sct 0x0, sc 0x80)");
  EXPECT_EQ(NvmeStatusCode(0x4080), kNvmeScLbaOutOfRange);
  EXPECT_FALSE(NvmeStatusRetryable(0x4080));
  EXPECT_TRUE(NvmeStatusRetryable(0x0080));
}

TEST(NvmeStatusTest, NamesKnownCodesOfEveryType) {
  EXPECT_EQ(NvmeStatusCodeName(0, 0x01), "Invalid Command Opcode");
  EXPECT_EQ(NvmeStatusCodeName(0, 0x02), "Invalid Field in Command");
  EXPECT_EQ(NvmeStatusCodeName(0, 0x82), "Namespace Not Ready");
  EXPECT_EQ(NvmeStatusCodeName(1, 0x09), "Invalid Log Page");
  EXPECT_EQ(NvmeStatusCodeName(1, 0x82), "Attempted Write to Read Only Range");
  EXPECT_EQ(NvmeStatusCodeName(1, 0xb9), "Zone Is Full");
  EXPECT_EQ(NvmeStatusCodeName(2, 0x81), "Unrecovered Read Error");
  EXPECT_EQ(NvmeStatusCodeName(2, 0x87), "Deallocated or Unwritten Logical Block");
  EXPECT_EQ(NvmeStatusCodeName(3, 0x02), "Asymmetric Access Inaccessible");
  EXPECT_EQ(NvmeStatusCodeName(3, 0x71), "Command Aborted By Host");

  EXPECT_EQ(NvmeStatusName(0x4002),
            "Generic Command Status / Invalid Field in Command (sct 0x0, sc 0x2, DNR)");
  EXPECT_EQ(NvmeStatusName(0x0281),
            "Media and Data Integrity Errors / Unrecovered Read Error (sct 0x2, sc 0x81)");
  EXPECT_EQ(NvmeStatusName(0x6109),
            "Command Specific Status / Invalid Log Page (sct 0x1, sc 0x9, DNR, More)");
  EXPECT_EQ(NvmeStatusName(0x0b03),
            "Path Related Status / Asymmetric Access Transition (sct 0x3, sc 0x3, CRD 1)");
  EXPECT_EQ(NvmeStatusName(0), "Successful Completion (sct 0x0, sc 0x0)");
}

TEST(NvmeStatusTest, NamesUnknownCodesAsSuch) {
  EXPECT_TRUE(NvmeStatusCodeName(0, 0x7f).empty());
  EXPECT_TRUE(NvmeStatusCodeName(4, 0x00).empty());
  EXPECT_EQ(NvmeStatusName(0x007f),
            "Generic Command Status / Unknown Status Code (sct 0x0, sc 0x7f)");
  EXPECT_EQ(NvmeStatusName(0x0217),
            "Media and Data Integrity Errors / Unknown Status Code (sct 0x2, sc 0x17)");
  EXPECT_EQ(NvmeStatusName(0x0412),
            "Reserved Status Code Type / Unknown Status Code (sct 0x4, sc 0x12)");
  EXPECT_EQ(NvmeStatusName(0x07c0),
            "Vendor Specific / Vendor Specific Status Code (sct 0x7, sc 0xc0)");
}

TEST(NvmeStatusTest, ToStatusMapsByMeaning) {
  EXPECT_TRUE(NvmeStatusToStatus(0).ok());

  const absl::Status oor = NvmeStatusToStatus(0x4080, "/dev/ng0n1: Read");
  EXPECT_EQ(oor.code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(oor.message(),
            "/dev/ng0n1: Read: Generic Command Status / LBA Out of Range (sct 0x0, sc 0x80, DNR)");
  ASSERT_TRUE(NvmeStatusFromStatus(oor).has_value());
  EXPECT_EQ(*NvmeStatusFromStatus(oor), 0x4080);

  EXPECT_EQ(NvmeStatusToStatus(0x4001).code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(NvmeStatusToStatus(0x4002).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NvmeStatusToStatus(0x0281).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(NvmeStatusToStatus(0x0082).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(NvmeStatusToStatus(0x0081).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(NvmeStatusToStatus(0x0182).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(NvmeStatusToStatus(0x0302).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(NvmeStatusToStatus(0x007f).code(), absl::StatusCode::kUnknown);
  EXPECT_FALSE(NvmeStatusFromStatus(absl::InternalError("x")).has_value());
}

TEST(NvmeStatusTest, ResultToStatusSeparatesErrnoFromNvmeStatus) {
  EXPECT_TRUE(NvmeResultToStatus(0).ok());
  EXPECT_EQ(NvmeResultToStatus(0x4080).code(), absl::StatusCode::kOutOfRange);
  const absl::Status intr = NvmeResultToStatus(-4 /* -EINTR */, "read");
  EXPECT_EQ(intr.code(), absl::StatusCode::kUnavailable);  // absl maps EINTR so
  EXPECT_FALSE(NvmeStatusFromStatus(intr).has_value());
  EXPECT_EQ(NvmeResultToStatus(-13 /* -EACCES */).code(), absl::StatusCode::kPermissionDenied);
}

// ---- nvme_device.h decoders ----------------------------------------------

void Put16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }  // x86: little-endian
void Put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void Put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }

TEST(NvmeDeviceParseTest, IdentifyController) {
  uint8_t d[4096] = {};
  Put16(d + 0, 0x1b36);
  std::memcpy(d + 4, "RINGLINE0001        ", 20);
  std::memcpy(d + 24, "QEMU NVMe Ctrl                          ", 40);
  std::memcpy(d + 64, "7.2.0   ", 8);
  d[77] = 7;  // MDTS
  Put16(d + 78, 0x42);
  Put32(d + 80, 0x00010400);
  Put16(d + 266, 0x157);           // WCTEMP
  Put16(d + 268, 0x175);           // CCTEMP
  Put32(d + 516, 256);             // NN
  Put16(d + 520, 0x00ff & ~0x02);  // ONCS: all but write uncorrectable, up to verify
  d[525] = 0x07;                   // VWC present (+ flush behaviour bits)
  std::memcpy(d + 768, "nqn.2019-08.org.qemu:RINGLINE0001", 33);

  const NvmeControllerInfo c = ParseIdentifyController(d);
  EXPECT_EQ(c.vendor_id, 0x1b36);
  EXPECT_EQ(c.serial, "RINGLINE0001");
  EXPECT_EQ(c.model, "QEMU NVMe Ctrl");
  EXPECT_EQ(c.firmware, "7.2.0");
  EXPECT_EQ(c.mdts, 7);
  EXPECT_EQ(NvmeMdtsBytes(c.mdts), 512u * 1024);
  EXPECT_EQ(NvmeMdtsBytes(0), 0u);
  EXPECT_EQ(c.controller_id, 0x42);
  EXPECT_EQ(c.VersionString(), "1.4");
  EXPECT_EQ(c.warning_temperature_kelvin, 0x157);
  EXPECT_EQ(c.critical_temperature_kelvin, 0x175);
  EXPECT_EQ(c.namespace_count, 256u);
  EXPECT_TRUE(c.volatile_write_cache);
  EXPECT_TRUE(c.optional_commands.compare);
  EXPECT_FALSE(c.optional_commands.write_uncorrectable);
  EXPECT_TRUE(c.optional_commands.dataset_management);
  EXPECT_TRUE(c.optional_commands.write_zeroes);
  EXPECT_TRUE(c.optional_commands.verify);
  EXPECT_FALSE(c.optional_commands.copy);
  EXPECT_EQ(c.subsystem_nqn, "nqn.2019-08.org.qemu:RINGLINE0001");
}

TEST(NvmeDeviceParseTest, IdentifyNamespaceLowFormatIndex) {
  uint8_t d[4096] = {};
  Put64(d + 0, 524288);  // NSZE
  Put64(d + 8, 524288);  // NCAP
  Put64(d + 16, 1000);   // NUSE
  d[25] = 7;             // NLBAF: 8 formats
  d[26] = 0x14;          // FLBAS: index 4, extended-LBA metadata
  d[33] = 0x01;          // DLFEAT: deallocated reads zeroes
  // LBA formats at byte 128, 4 bytes each: MS (16), LBADS (8), RP (8).
  const uint8_t lbads[8] = {9, 9, 9, 9, 12, 12, 12, 12};
  const uint16_t ms[8] = {0, 8, 16, 64, 0, 8, 16, 64};
  for (int i = 0; i < 8; ++i) {
    Put16(d + 128 + 4 * i, ms[i]);
    d[128 + 4 * i + 2] = lbads[i];
    d[128 + 4 * i + 3] = static_cast<uint8_t>(i % 4);
  }
  const NvmeNamespaceInfo ns = ParseIdentifyNamespace(1, d);
  EXPECT_EQ(ns.nsid, 1u);
  EXPECT_EQ(ns.size_lbas, 524288u);
  EXPECT_EQ(ns.utilization_lbas, 1000u);
  ASSERT_EQ(ns.lba_formats.size(), 8u);
  EXPECT_EQ(ns.lba_format_index, 4);
  EXPECT_EQ(ns.lba_size, 4096u);
  EXPECT_EQ(ns.metadata_size, 0);
  EXPECT_TRUE(ns.metadata_extended_lba);
  EXPECT_TRUE(ns.deallocated_reads_zeroes);
  EXPECT_TRUE(ns.lba_formats[4].in_use);
  EXPECT_FALSE(ns.lba_formats[0].in_use);
  EXPECT_EQ(ns.lba_formats[3].metadata_size, 64);
  EXPECT_EQ(ns.lba_formats[3].relative_performance, 3);
  EXPECT_EQ(ns.size_bytes(), 524288ull * 4096);
}

TEST(NvmeDeviceParseTest, IdentifyNamespaceHighFormatIndexBits) {
  uint8_t d[4096] = {};
  Put64(d + 0, 100);
  d[25] = 39;  // 40 formats
  // Index 0x23 = 35: low nibble 3 in bits 3:0, bits 5:4 (= 2) in FLBAS 6:5.
  d[26] = 0x03 | (0x2 << 5);
  for (int i = 0; i < 40; ++i) d[128 + 4 * i + 2] = (i == 35) ? 13 : 9;
  const NvmeNamespaceInfo ns = ParseIdentifyNamespace(2, d);
  ASSERT_EQ(ns.lba_formats.size(), 40u);
  EXPECT_EQ(ns.lba_format_index, 35);
  EXPECT_EQ(ns.lba_size, 8192u);
  EXPECT_TRUE(ns.lba_formats[35].in_use);

  // With 16 or fewer formats the high bits are reserved and ignored.
  d[25] = 15;
  const NvmeNamespaceInfo few = ParseIdentifyNamespace(2, d);
  EXPECT_EQ(few.lba_format_index, 3);
}

TEST(NvmeDeviceParseTest, SmartLog) {
  uint8_t d[512] = {};
  d[0] = 0x05;          // spare below threshold + reliability degraded
  Put16(d + 1, 0x143);  // 323 K = 50 C
  d[3] = 5;
  d[4] = 10;
  d[5] = 95;
  Put64(d + 32, 1234);    // data units read (low half)
  Put64(d + 40, 1);       // ... high half
  Put64(d + 48, 42);      // data units written
  Put64(d + 112, 7);      // power cycles
  Put64(d + 128, 9000);   // power on hours
  Put64(d + 144, 3);      // unsafe shutdowns
  Put64(d + 160, 2);      // media errors
  Put64(d + 176, 11);     // error log entries
  Put32(d + 192, 60);     // warning temperature time
  Put16(d + 200, 0x150);  // sensor 1

  const NvmeSmartLog s = ParseSmartLog(d);
  EXPECT_TRUE(s.critical_warning.spare_below_threshold());
  EXPECT_FALSE(s.critical_warning.temperature());
  EXPECT_TRUE(s.critical_warning.reliability_degraded());
  EXPECT_EQ(s.critical_warning.Describe().size(), 2u);
  EXPECT_EQ(s.temperature_kelvin, 0x143);
  EXPECT_EQ(KelvinToCelsius(s.temperature_kelvin), 50);
  EXPECT_EQ(s.available_spare_percent, 5);
  EXPECT_EQ(s.available_spare_threshold, 10);
  EXPECT_EQ(s.percentage_used, 95);
  EXPECT_EQ(s.data_units_read, absl::MakeUint128(1, 1234));
  EXPECT_EQ(s.data_units_written, 42);
  EXPECT_EQ(s.power_cycles, 7);
  EXPECT_EQ(s.power_on_hours, 9000);
  EXPECT_EQ(s.unsafe_shutdowns, 3);
  EXPECT_EQ(s.media_errors, 2);
  EXPECT_EQ(s.error_log_entries, 11);
  EXPECT_EQ(s.warning_temperature_minutes, 60u);
  EXPECT_EQ(s.temperature_sensors_kelvin[0], 0x150);
  EXPECT_EQ(s.temperature_sensors_kelvin[1], 0);
}

TEST(NvmeDeviceTest, ResolveRejectsWhatIsNotNvme) {
  EXPECT_EQ(ResolveNvmeDevice("/dev/nonexistent-ringline").status().code(),
            absl::StatusCode::kNotFound);
  const absl::Status null_dev = ResolveNvmeDevice("/dev/null").status();
  EXPECT_EQ(null_dev.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(null_dev.message().find("is not an NVMe device"), std::string::npos) << null_dev;
  const absl::Status dir = ResolveNvmeDevice("/dev").status();
  EXPECT_NE(dir.message().find("a directory"), std::string::npos) << dir;
}

}  // namespace
}  // namespace ringline::block
