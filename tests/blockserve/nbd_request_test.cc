// Tests of request parsing and validation (blockserve/nbd/request.h).

#include <gtest/gtest.h>

#include <array>
#include <string>

#include "blockserve/nbd/protocol.h"
#include "blockserve/nbd/request.h"
#include "tests/blockserve/nbd_test_util.h"

namespace blockserve::nbd {
namespace {

using test_util::Bytes;
using test_util::Wire;

// ---- Parsing ---------------------------------------------------------------------

TEST(ParseRequestTest, ParsesHandDerivedHeader) {
  const Bytes bytes = {0x25, 0x60, 0x95, 0x13,                          // magic
                       0x00, 0x01,                                      // FUA
                       0x00, 0x01,                                      // WRITE
                       0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,  // cookie
                       0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x02, 0x00,  // offset
                       0x00, 0x00, 0x10, 0x00,                          // length
                       0xaa, 0xbb};                                     // payload
  const ParsedRequest parsed = ParseRequest(bytes);
  ASSERT_EQ(parsed.status, ParseStatus::kOk);
  EXPECT_EQ(parsed.request.flags, kCmdFlagFua);
  EXPECT_EQ(parsed.request.type, kCmdWrite);
  EXPECT_EQ(parsed.request.cookie, 0x0102030405060708ULL);
  EXPECT_EQ(parsed.request.offset, 0x0000000100000200ULL);
  EXPECT_EQ(parsed.request.length, 4096u);
}

TEST(ParseRequestTest, NeedsAllTwentyEightBytes) {
  const Bytes bytes = Wire().U32(kRequestMagic).Zeroes(24);
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_EQ(ParseRequest(std::span(bytes).first(n)).status, ParseStatus::kNeedMore) << n;
  }
  EXPECT_EQ(ParseRequest(bytes).status, ParseStatus::kOk);
}

TEST(ParseRequestTest, BadMagicIsFatal) {
  // The simple reply magic, a plausible desync, is still not a request.
  const Bytes bytes = Wire().U32(kSimpleReplyMagic).Zeroes(24);
  EXPECT_EQ(ParseRequest(bytes).status, ParseStatus::kBadMagic);
  // The historic request magic is reserved, not accepted.
  EXPECT_EQ(ParseRequest(Wire().U32(0x12560953).Zeroes(24).bytes()).status, ParseStatus::kBadMagic);
}

TEST(EncodeRequestTest, RoundTripsThroughParse) {
  const Request r{kCmdFlagNoHole | kCmdFlagFua, kCmdWriteZeroes, 0xfeedfacecafebeefULL,
                  0x123456789aULL, 0xdeadbeef};
  std::array<uint8_t, kRequestHeaderSize> bytes{};
  EncodeRequest(r, bytes);
  EXPECT_EQ(Bytes(bytes.begin(), bytes.end()), Wire()
                                                   .U32(0x25609513)
                                                   .U16(0x0003)
                                                   .U16(6)
                                                   .U64(0xfeedfacecafebeefULL)
                                                   .U64(0x123456789aULL)
                                                   .U32(0xdeadbeef)
                                                   .bytes());
  EXPECT_EQ(ParseRequest(bytes).request, r);
}

// ---- Validation -------------------------------------------------------------------

// A writable 1 MiB export with every feature, 512-byte minimum, 64 KiB max.
TransmissionParams Params(uint16_t extra_flags = 0) {
  TransmissionParams p;
  p.export_size = 1 << 20;
  p.flags = kFlagHasFlags | kFlagSendFlush | kFlagSendFua | kFlagSendTrim | kFlagSendWriteZeroes |
            kFlagSendFastZero | kFlagSendCache | extra_flags;
  p.block_size = {512, 4096, 64 * 1024};
  p.structured_replies = true;
  return p;
}

TransmissionParams ReadOnlyParams() {
  TransmissionParams p = Params();
  p.flags = kFlagHasFlags | kFlagReadOnly | kFlagSendFlush;
  return p;
}

Request Req(uint16_t type, uint64_t offset, uint32_t length, uint16_t flags = 0) {
  return Request{flags, type, 7, offset, length};
}

void ExpectError(const RequestCheck& c, NbdError error, uint32_t payload,
                 const std::string& reason) {
  EXPECT_EQ(c.verdict, Verdict::kReplyError);
  EXPECT_EQ(c.error, error) << NbdErrorName(c.error);
  EXPECT_EQ(c.payload_length, payload);
  EXPECT_EQ(std::string(c.reason), reason);
}

void ExpectExecute(const RequestCheck& c, uint32_t payload = 0) {
  EXPECT_EQ(c.verdict, Verdict::kExecute) << c.reason;
  EXPECT_EQ(c.error, NbdError::kOk);
  EXPECT_EQ(c.payload_length, payload);
}

TEST(ValidateRequestTest, ValidCommandsExecute) {
  ExpectExecute(ValidateRequest(Req(kCmdRead, 0, 4096), Params()));
  ExpectExecute(ValidateRequest(Req(kCmdWrite, 512, 65536), Params()), 65536);
  ExpectExecute(ValidateRequest(Req(kCmdFlush, 0, 0), Params()));
  ExpectExecute(ValidateRequest(Req(kCmdTrim, 0, 1 << 20), Params()));
  ExpectExecute(ValidateRequest(Req(kCmdCache, 4096, 4096), Params()));
  ExpectExecute(ValidateRequest(Req(kCmdWriteZeroes, 1024, 2048), Params()));
  // The last block, ending exactly at the export size.
  ExpectExecute(ValidateRequest(Req(kCmdRead, (1 << 20) - 512, 512), Params()));
}

TEST(ValidateRequestTest, DiscDisconnectsWhateverItCarries) {
  for (const Request& r : {Req(kCmdDisc, 0, 0), Req(kCmdDisc, 5, 9, 0xffff)}) {
    const RequestCheck c = ValidateRequest(r, Params());
    EXPECT_EQ(c.verdict, Verdict::kDisconnect);
    EXPECT_EQ(c.payload_length, 0u);
  }
}

TEST(ValidateRequestTest, UnknownCommandIsEinval) {
  ExpectError(ValidateRequest(Req(8, 0, 512), Params()), NbdError::kInval, 0, "unknown command");
  ExpectError(ValidateRequest(Req(0xffff, 0, 0), Params()), NbdError::kInval, 0, "unknown command");
}

TEST(ValidateRequestTest, WritesToReadOnlyExportAreEperm) {
  const std::string ro = "export is read-only";
  ExpectError(ValidateRequest(Req(kCmdWrite, 0, 4096), ReadOnlyParams()), NbdError::kPerm, 4096,
              ro);
  ExpectError(ValidateRequest(Req(kCmdTrim, 0, 4096), ReadOnlyParams()), NbdError::kPerm, 0, ro);
  ExpectError(ValidateRequest(Req(kCmdWriteZeroes, 0, 4096), ReadOnlyParams()), NbdError::kPerm, 0,
              ro);
  // Even with a flag the read-only export never advertised.
  ExpectError(ValidateRequest(Req(kCmdWrite, 0, 512, kCmdFlagFua), ReadOnlyParams()),
              NbdError::kPerm, 512, ro);
  ExpectExecute(ValidateRequest(Req(kCmdRead, 0, 4096), ReadOnlyParams()));
  ExpectExecute(ValidateRequest(Req(kCmdFlush, 0, 0), ReadOnlyParams()));
}

TEST(ValidateRequestTest, FlagsNotValidForTheCommandAreEinval) {
  const std::string bad = "command flag not valid for this command";
  // NO_HOLE and FAST_ZERO belong to WRITE_ZEROES only.
  ExpectError(ValidateRequest(Req(kCmdWrite, 0, 512, kCmdFlagNoHole), Params()), NbdError::kInval,
              512, bad);
  ExpectError(ValidateRequest(Req(kCmdTrim, 0, 512, kCmdFlagFastZero), Params()), NbdError::kInval,
              0, bad);
  // DF without SEND_DF.
  ExpectError(ValidateRequest(Req(kCmdRead, 0, 512, kCmdFlagDf), Params()), NbdError::kInval, 0,
              bad);
  // REQ_ONE belongs to BLOCK_STATUS.
  ExpectError(ValidateRequest(Req(kCmdRead, 0, 512, kCmdFlagReqOne), Params()), NbdError::kInval, 0,
              bad);
  // Undefined bits.
  ExpectError(ValidateRequest(Req(kCmdRead, 0, 512, 1u << 5), Params()), NbdError::kInval, 0, bad);
  ExpectError(ValidateRequest(Req(kCmdFlush, 0, 0, 0x8000), Params()), NbdError::kInval, 0, bad);
}

TEST(ValidateRequestTest, NegotiatedFlagsAreAccepted) {
  ExpectExecute(ValidateRequest(Req(kCmdWrite, 0, 512, kCmdFlagFua), Params()), 512);
  // FUA is valid on every command once negotiated (clients set it on flush).
  ExpectExecute(ValidateRequest(Req(kCmdFlush, 0, 0, kCmdFlagFua), Params()));
  ExpectExecute(ValidateRequest(Req(kCmdRead, 0, 512, kCmdFlagFua), Params()));
  ExpectExecute(ValidateRequest(
      Req(kCmdWriteZeroes, 0, 512, kCmdFlagNoHole | kCmdFlagFastZero | kCmdFlagFua), Params()));
  ExpectExecute(ValidateRequest(Req(kCmdRead, 0, 512, kCmdFlagDf), Params(kFlagSendDf)));
}

TEST(ValidateRequestTest, FuaWithoutSendFuaIsEinval) {
  TransmissionParams p = Params();
  p.flags &= static_cast<uint16_t>(~kFlagSendFua);
  ExpectError(ValidateRequest(Req(kCmdWrite, 0, 512, kCmdFlagFua), p), NbdError::kInval, 512,
              "command flag not valid for this command");
}

TEST(ValidateRequestTest, FastZeroWithoutSendFastZeroIsEinval) {
  TransmissionParams p = Params();
  p.flags &= static_cast<uint16_t>(~kFlagSendFastZero);
  ExpectError(ValidateRequest(Req(kCmdWriteZeroes, 0, 512, kCmdFlagFastZero), p), NbdError::kInval,
              0, "command flag not valid for this command");
  // NO_HOLE needs only SEND_WRITE_ZEROES.
  ExpectExecute(ValidateRequest(Req(kCmdWriteZeroes, 0, 512, kCmdFlagNoHole), p));
}

TEST(ValidateRequestTest, CommandsTheExportDidNotAdvertiseAreEinval) {
  TransmissionParams p;
  p.export_size = 1 << 20;
  p.flags = kFlagHasFlags;
  ExpectError(ValidateRequest(Req(kCmdFlush, 0, 0), p), NbdError::kInval, 0,
              "flush not supported by this export");
  ExpectError(ValidateRequest(Req(kCmdTrim, 0, 512), p), NbdError::kInval, 0,
              "trim not supported by this export");
  ExpectError(ValidateRequest(Req(kCmdWriteZeroes, 0, 512), p), NbdError::kInval, 0,
              "write zeroes not supported by this export");
  ExpectError(ValidateRequest(Req(kCmdCache, 0, 512), p), NbdError::kInval, 0,
              "cache not supported by this export");
  ExpectError(ValidateRequest(Req(kCmdBlockStatus, 0, 512), Params()), NbdError::kInval, 0,
              "no metadata context negotiated");
}

TEST(ValidateRequestTest, FlushMustHaveZeroOffsetAndLength) {
  const std::string bad = "flush with nonzero offset or length";
  ExpectError(ValidateRequest(Req(kCmdFlush, 512, 0), Params()), NbdError::kInval, 0, bad);
  ExpectError(ValidateRequest(Req(kCmdFlush, 0, 512), Params()), NbdError::kInval, 0, bad);
}

TEST(ValidateRequestTest, BeyondTheEndIsEnospcForWritesEinvalOtherwise) {
  const std::string past = "request extends past the end of the export";
  const uint64_t end = 1 << 20;
  ExpectError(ValidateRequest(Req(kCmdWrite, end - 512, 1024), Params()), NbdError::kNoSpc, 1024,
              past);
  ExpectError(ValidateRequest(Req(kCmdWriteZeroes, end, 512), Params()), NbdError::kNoSpc, 0, past);
  ExpectError(ValidateRequest(Req(kCmdRead, end, 512), Params()), NbdError::kInval, 0, past);
  ExpectError(ValidateRequest(Req(kCmdTrim, end - 512, 1024), Params()), NbdError::kInval, 0, past);
  ExpectError(ValidateRequest(Req(kCmdCache, end + 512, 512), Params()), NbdError::kInval, 0, past);
  // offset + length overflows 64 bits: still caught.
  ExpectError(ValidateRequest(Req(kCmdRead, ~uint64_t{0} - 511, 1024), Params()), NbdError::kInval,
              0, past);
  ExpectError(ValidateRequest(Req(kCmdWrite, ~uint64_t{0} - 511, 1024), Params()), NbdError::kNoSpc,
              1024, past);
}

TEST(ValidateRequestTest, MisalignedToMinimumBlockSizeIsEinval) {
  const std::string bad = "request not aligned to the minimum block size";
  ExpectError(ValidateRequest(Req(kCmdRead, 1, 512), Params()), NbdError::kInval, 0, bad);
  ExpectError(ValidateRequest(Req(kCmdWrite, 512, 100), Params()), NbdError::kInval, 100, bad);
  ExpectError(ValidateRequest(Req(kCmdTrim, 256, 512), Params()), NbdError::kInval, 0, bad);
  ExpectError(ValidateRequest(Req(kCmdWriteZeroes, 0, 513), Params()), NbdError::kInval, 0, bad);
  // A minimum of 1 accepts anything.
  TransmissionParams p = Params();
  p.block_size.minimum = 1;
  ExpectExecute(ValidateRequest(Req(kCmdRead, 1, 3), p));
}

void ExpectErrorThenClose(const RequestCheck& c, uint32_t payload) {
  EXPECT_EQ(c.verdict, Verdict::kReplyErrorThenClose);
  EXPECT_EQ(c.error, NbdError::kInval) << NbdErrorName(c.error);
  EXPECT_EQ(c.refusal, Refusal::kTooLong);
  EXPECT_EQ(c.payload_length, payload);
  EXPECT_EQ(std::string(c.reason), "write longer than the maximum block size: closing");
}

TEST(ValidateRequestTest, OverMaximumIsEinvalAndAWriteClosesTheConnection) {
  const std::string big = "request longer than the maximum block size";
  ExpectError(ValidateRequest(Req(kCmdRead, 0, 128 * 1024), Params()), NbdError::kInval, 0, big);
  ExpectError(ValidateRequest(Req(kCmdCache, 0, 128 * 1024), Params()), NbdError::kInval, 0, big);
  // A write over the maximum: its payload is not read, so the stream cannot
  // be resynchronised; the server answers and closes.
  ExpectErrorThenClose(ValidateRequest(Req(kCmdWrite, 0, 128 * 1024), Params()), 128 * 1024);
  // Payload-free commands are not held to the maximum.
  ExpectExecute(ValidateRequest(Req(kCmdTrim, 0, 512 * 1024), Params()));
  ExpectExecute(ValidateRequest(Req(kCmdWriteZeroes, 0, 512 * 1024), Params()));
}

TEST(ValidateRequestTest, WriteOverTheMaximumClosesBeforeAnyOtherCheck) {
  TransmissionParams p = Params();
  p.export_size = uint64_t{1} << 40;
  p.block_size.maximum = kMaxPayloadLength;
  ExpectExecute(ValidateRequest(Req(kCmdWrite, 0, kMaxPayloadLength), p), kMaxPayloadLength);
  ExpectErrorThenClose(ValidateRequest(Req(kCmdWrite, 0, 0xffffffff), p), 0xffffffff);
  // Read-only, past the end and bad flags: still closed, the payload unread.
  ExpectErrorThenClose(ValidateRequest(Req(kCmdWrite, 0, 0xffffffff), ReadOnlyParams()),
                       0xffffffff);
  ExpectErrorThenClose(ValidateRequest(Req(kCmdWrite, uint64_t{1} << 41, 0xfffffe00, 0x80), p),
                       0xfffffe00);
}

TEST(ValidateRequestTest, ZeroLengthRequestsSucceedWithoutIo) {
  for (uint16_t type : {kCmdRead, kCmdWrite, kCmdTrim, kCmdWriteZeroes, kCmdCache}) {
    const RequestCheck c = ValidateRequest(Req(type, 4096, 0), Params());
    EXPECT_EQ(c.verdict, Verdict::kReplyOk) << CommandName(type);
    EXPECT_EQ(c.payload_length, 0u);
  }
  // At the very end of the export too; but not past it.
  EXPECT_EQ(ValidateRequest(Req(kCmdRead, 1 << 20, 0), Params()).verdict, Verdict::kReplyOk);
  EXPECT_EQ(ValidateRequest(Req(kCmdRead, (1 << 20) + 512, 0), Params()).verdict,
            Verdict::kReplyError);
}

TEST(CommandNameTest, Names) {
  EXPECT_STREQ(CommandName(kCmdWriteZeroes), "NBD_CMD_WRITE_ZEROES");
  EXPECT_STREQ(CommandName(kCmdDisc), "NBD_CMD_DISC");
  EXPECT_STREQ(CommandName(99), "NBD_CMD_?");
}

}  // namespace
}  // namespace blockserve::nbd
