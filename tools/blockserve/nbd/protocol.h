#pragma once
// Wire constants of the NBD protocol (NetworkBlockDevice doc/proto.md), fixed
// newstyle handshake and transmission phase. Values only: no behaviour lives
// here, so every other codec file and the tests share one spelling of them.
//
// Thread-safety: constants only.

#include <cstddef>
#include <cstdint>

namespace blockserve::nbd {

// ---- Handshake magics -------------------------------------------------------

// "NBDMAGIC", sent first by the server (a.k.a. INIT_PASSWD).
inline constexpr uint64_t kNbdMagic = 0x4e42444d41474943ULL;
// "IHAVEOPT": newstyle server magic, and the magic heading every client option.
inline constexpr uint64_t kOptionMagic = 0x49484156454f5054ULL;
// Magic heading every fixed-newstyle option reply.
inline constexpr uint64_t kOptionReplyMagic = 0x0003e889045565a9ULL;

// ---- Handshake flags (server, 16 bits) ----------------------------------------
inline constexpr uint16_t kFlagFixedNewstyle = 1u << 0;
inline constexpr uint16_t kFlagNoZeroes = 1u << 1;

// ---- Client flags (32 bits) -------------------------------------------------
inline constexpr uint32_t kClientFlagFixedNewstyle = 1u << 0;
inline constexpr uint32_t kClientFlagNoZeroes = 1u << 1;

// ---- Options ----------------------------------------------------------------
inline constexpr uint32_t kOptExportName = 1;
inline constexpr uint32_t kOptAbort = 2;
inline constexpr uint32_t kOptList = 3;
inline constexpr uint32_t kOptPeekExport = 4;  // withdrawn; answered as unsupported
inline constexpr uint32_t kOptStartTls = 5;
inline constexpr uint32_t kOptInfo = 6;
inline constexpr uint32_t kOptGo = 7;
inline constexpr uint32_t kOptStructuredReply = 8;
inline constexpr uint32_t kOptListMetaContext = 9;
inline constexpr uint32_t kOptSetMetaContext = 10;
inline constexpr uint32_t kOptExtendedHeaders = 11;

// ---- Option reply types ---------------------------------------------------
inline constexpr uint32_t kRepAck = 1;
inline constexpr uint32_t kRepServer = 2;
inline constexpr uint32_t kRepInfo = 3;
inline constexpr uint32_t kRepMetaContext = 4;
// Error replies have bit 31 set.
inline constexpr uint32_t kRepErrorBit = 1u << 31;
inline constexpr uint32_t kRepErrUnsup = kRepErrorBit + 1;
inline constexpr uint32_t kRepErrPolicy = kRepErrorBit + 2;
inline constexpr uint32_t kRepErrInvalid = kRepErrorBit + 3;
inline constexpr uint32_t kRepErrPlatform = kRepErrorBit + 4;
inline constexpr uint32_t kRepErrTlsReqd = kRepErrorBit + 5;
inline constexpr uint32_t kRepErrUnknown = kRepErrorBit + 6;
inline constexpr uint32_t kRepErrShutdown = kRepErrorBit + 7;
inline constexpr uint32_t kRepErrBlockSizeReqd = kRepErrorBit + 8;
inline constexpr uint32_t kRepErrTooBig = kRepErrorBit + 9;

// ---- NBD_REP_INFO information types -----------------------------------------
inline constexpr uint16_t kInfoExport = 0;
inline constexpr uint16_t kInfoName = 1;
inline constexpr uint16_t kInfoDescription = 2;
inline constexpr uint16_t kInfoBlockSize = 3;

// ---- Transmission flags (16 bits, per export) -------------------------------
inline constexpr uint16_t kFlagHasFlags = 1u << 0;
inline constexpr uint16_t kFlagReadOnly = 1u << 1;
inline constexpr uint16_t kFlagSendFlush = 1u << 2;
inline constexpr uint16_t kFlagSendFua = 1u << 3;
inline constexpr uint16_t kFlagRotational = 1u << 4;
inline constexpr uint16_t kFlagSendTrim = 1u << 5;
inline constexpr uint16_t kFlagSendWriteZeroes = 1u << 6;
inline constexpr uint16_t kFlagSendDf = 1u << 7;
inline constexpr uint16_t kFlagCanMultiConn = 1u << 8;
inline constexpr uint16_t kFlagSendResize = 1u << 9;
inline constexpr uint16_t kFlagSendCache = 1u << 10;
inline constexpr uint16_t kFlagSendFastZero = 1u << 11;

// ---- Transmission phase -----------------------------------------------------
inline constexpr uint32_t kRequestMagic = 0x25609513;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698;
inline constexpr uint32_t kStructuredReplyMagic = 0x668e33ef;

// Command types.
inline constexpr uint16_t kCmdRead = 0;
inline constexpr uint16_t kCmdWrite = 1;
inline constexpr uint16_t kCmdDisc = 2;
inline constexpr uint16_t kCmdFlush = 3;
inline constexpr uint16_t kCmdTrim = 4;
inline constexpr uint16_t kCmdCache = 5;
inline constexpr uint16_t kCmdWriteZeroes = 6;
inline constexpr uint16_t kCmdBlockStatus = 7;

// Command flags.
inline constexpr uint16_t kCmdFlagFua = 1u << 0;
inline constexpr uint16_t kCmdFlagNoHole = 1u << 1;
inline constexpr uint16_t kCmdFlagDf = 1u << 2;
inline constexpr uint16_t kCmdFlagReqOne = 1u << 3;
inline constexpr uint16_t kCmdFlagFastZero = 1u << 4;

// Structured reply chunk flags and types.
inline constexpr uint16_t kReplyFlagDone = 1u << 0;
inline constexpr uint16_t kReplyTypeNone = 0;
inline constexpr uint16_t kReplyTypeOffsetData = 1;
inline constexpr uint16_t kReplyTypeOffsetHole = 2;
inline constexpr uint16_t kReplyTypeBlockStatus = 5;
inline constexpr uint16_t kReplyTypeErrorBit = 1u << 15;
inline constexpr uint16_t kReplyTypeError = kReplyTypeErrorBit + 1;
inline constexpr uint16_t kReplyTypeErrorOffset = kReplyTypeErrorBit + 2;

// ---- Message sizes ----------------------------------------------------------
// Server greeting: NBDMAGIC, IHAVEOPT, 16-bit handshake flags.
inline constexpr size_t kGreetingSize = 8 + 8 + 2;
inline constexpr size_t kClientFlagsSize = 4;
// Option header: IHAVEOPT, option, data length.
inline constexpr size_t kOptionHeaderSize = 8 + 4 + 4;
// Option reply header: magic, option, reply type, data length.
inline constexpr size_t kOptionReplyHeaderSize = 8 + 4 + 4 + 4;
// NBD_OPT_EXPORT_NAME reply: size, transmission flags, optionally 124 zeroes.
inline constexpr size_t kExportNameReplyZeroes = 124;
inline constexpr size_t kRequestHeaderSize = 4 + 2 + 2 + 8 + 8 + 4;
inline constexpr size_t kSimpleReplySize = 4 + 4 + 8;
inline constexpr size_t kStructuredChunkHeaderSize = 4 + 2 + 2 + 8 + 4;

// ---- Limits -----------------------------------------------------------------
// A protocol string (export name, message) MUST be no longer than this.
inline constexpr size_t kMaxStringLength = 4096;
// Largest READ/WRITE payload this server accepts in one request (2^25). The
// spec says a length below 2^25 SHOULD NOT be treated as denial of service, and
// clients that did not negotiate block sizes limit themselves to it.
inline constexpr uint32_t kMaxPayloadLength = 32u * 1024 * 1024;
// Default block-size constraints when the server advertises none.
inline constexpr uint32_t kDefaultMinimumBlockSize = 1;
inline constexpr uint32_t kDefaultPreferredBlockSize = 4096;
inline constexpr uint32_t kUnlimitedBlockSize = 0xffffffff;
// Largest minimum block size the spec allows (2^16).
inline constexpr uint32_t kMaxMinimumBlockSize = 64 * 1024;

}  // namespace blockserve::nbd
