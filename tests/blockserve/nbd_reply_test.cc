// Byte-exact tests of the transmission reply encoders (blockserve/nbd/reply.h).

#include <gtest/gtest.h>

#include <string>

#include "blockserve/nbd/reply.h"
#include "tests/blockserve/nbd_test_util.h"

namespace blockserve::nbd {
namespace {

using test_util::Bytes;
using test_util::Wire;

template <size_t N>
Bytes Prefix(const std::array<uint8_t, N>& a, size_t n = N) {
  return Bytes(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(n));
}

TEST(SimpleReplyTest, HandDerivedBytes) {
  SimpleReplyBytes out;
  EncodeSimpleReply(0x0102030405060708ULL, NbdError::kNoSpc, out);
  EXPECT_EQ(Prefix(out), (Bytes{0x67, 0x44, 0x66, 0x98, 0x00, 0x00, 0x00, 0x1c, 0x01, 0x02, 0x03,
                                0x04, 0x05, 0x06, 0x07, 0x08}));
  EncodeSimpleReply(42, NbdError::kOk, out);
  EXPECT_EQ(Prefix(out), Wire().U32(0x67446698).U32(0).U64(42).bytes());
}

TEST(StructuredReplyTest, NoneChunkIsDoneWithEmptyPayload) {
  ChunkHeaderBytes out;
  EncodeNoneChunk(0xabcdef, out);
  EXPECT_EQ(Prefix(out), (Bytes{0x66, 0x8e, 0x33, 0xef, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
                                0x00, 0x00, 0x00, 0xab, 0xcd, 0xef, 0x00, 0x00, 0x00, 0x00}));
}

TEST(StructuredReplyTest, ChunkHeaderFields) {
  ChunkHeaderBytes out;
  EncodeChunkHeader(9, 0x0000, kReplyTypeBlockStatus, 12, out);
  EXPECT_EQ(Prefix(out), Wire().U32(0x668e33ef).U16(0).U16(5).U64(9).U32(12).bytes());
}

TEST(StructuredReplyTest, OffsetDataHeaderCountsTheOffsetInTheLength) {
  OffsetDataHeaderBytes out;
  EncodeOffsetDataHeader(7, 0x100000, 4096, true, out);
  // length = 8 (offset) + 4096 = 0x1008; the data itself is not part of it.
  EXPECT_EQ(Prefix(out), (Bytes{0x66, 0x8e, 0x33, 0xef, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
                                0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x10, 0x08,
                                0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00}));
  EncodeOffsetDataHeader(7, 0, kMaxOffsetDataLength, false, out);
  EXPECT_EQ(Prefix(out),
            Wire().U32(0x668e33ef).U16(0).U16(1).U64(7).U32(0xffffffff).U64(0).bytes());
}

TEST(StructuredReplyTest, OffsetHoleChunk) {
  OffsetHoleChunkBytes out;
  EncodeOffsetHoleChunk(3, 8192, 65536, false, out);
  EXPECT_EQ(Prefix(out),
            Wire().U32(0x668e33ef).U16(0).U16(2).U64(3).U32(12).U64(8192).U32(65536).bytes());
}

TEST(StructuredReplyTest, ErrorChunkCarriesErrorAndMessage) {
  ErrorChunkBytes out;
  const size_t n = EncodeErrorChunk(5, NbdError::kInval, "bad", true, out);
  // payload = 4 (error) + 2 (message length) + 3 = 9; type 2^15 + 1.
  EXPECT_EQ(Prefix(out, n), (Bytes{0x66, 0x8e, 0x33, 0xef, 0x00, 0x01, 0x80, 0x01, 0x00, 0x00,
                                   0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x09,
                                   0x00, 0x00, 0x00, 0x16, 0x00, 0x03, 'b',  'a',  'd'}));
}

TEST(StructuredReplyTest, ErrorChunkWithoutMessage) {
  ErrorChunkBytes out;
  const size_t n = EncodeErrorChunk(5, NbdError::kIo, "", false, out);
  EXPECT_EQ(Prefix(out, n),
            Wire().U32(0x668e33ef).U16(0).U16(0x8001).U64(5).U32(6).U32(5).U16(0).bytes());
}

TEST(StructuredReplyTest, ErrorChunkNeverCarriesZero) {
  ErrorChunkBytes out;
  const size_t n = EncodeErrorChunk(1, NbdError::kOk, "", true, out);
  ASSERT_EQ(n, 26u);
  EXPECT_EQ(Bytes(out.begin() + 20, out.begin() + 24), Wire().U32(5).bytes());
}

TEST(StructuredReplyTest, ErrorOffsetChunkAppendsTheOffset) {
  ErrorChunkBytes out;
  const size_t n = EncodeErrorOffsetChunk(5, NbdError::kIo, "eio", 0x200, false, out);
  EXPECT_EQ(Prefix(out, n), Wire()
                                .U32(0x668e33ef)
                                .U16(0)
                                .U16(0x8002)
                                .U64(5)
                                .U32(4 + 2 + 3 + 8)
                                .U32(5)
                                .U16(3)
                                .Str("eio")
                                .U64(0x200)
                                .bytes());
}

TEST(StructuredReplyTest, LongMessagesAreCutOnAUtf8Boundary) {
  // 255 ASCII bytes then a 2-byte character straddling the 256-byte limit.
  const std::string message = std::string(255, 'a') + "\xc3\xa9" + std::string(100, 'b');
  ErrorChunkBytes out;
  const size_t n = EncodeErrorOffsetChunk(1, NbdError::kIo, message, 77, true, out);
  EXPECT_EQ(n, 20u + 6u + 255u + 8u);
  EXPECT_EQ(Bytes(out.begin() + 24, out.begin() + 26), Wire().U16(255).bytes());
  EXPECT_EQ(Bytes(out.begin() + 281, out.begin() + 289), Wire().U64(77).bytes());
  // A message of exactly the limit fits whole.
  const size_t full = EncodeErrorChunk(1, NbdError::kIo, std::string(256, 'c'), true, out);
  EXPECT_EQ(full, 20u + 6u + 256u);
}

}  // namespace
}  // namespace blockserve::nbd
