#pragma once
// Transmission-phase requests: parsing the fixed 28-byte header and checking a
// request against what the client was told about the export, so the server
// knows whether to execute it, answer it with an error, or disconnect, and how
// many payload bytes follow the header either way.
//
// Thread-safety: pure functions over caller-owned data; no allocation.

#include <cstdint>
#include <span>

#include "blockserve/nbd/error.h"
#include "blockserve/nbd/export.h"
#include "blockserve/nbd/protocol.h"

namespace blockserve::nbd {

// A request header as sent by the client (fields in host byte order).
struct Request {
  uint16_t flags = 0;   // NBD_CMD_FLAG_*
  uint16_t type = 0;    // NBD_CMD_*
  uint64_t cookie = 0;  // Opaque; echoed in every reply ("handle" in old texts).
  uint64_t offset = 0;
  uint32_t length = 0;

  friend bool operator==(const Request&, const Request&) = default;
};

enum class ParseStatus : uint8_t {
  kNeedMore,  // Fewer than kRequestHeaderSize bytes available.
  kOk,        // `request` is valid; consume kRequestHeaderSize bytes.
  kBadMagic,  // Not a request: the stream is out of sync and the connection
              // must be closed (nothing else in the stream can be trusted).
};

struct ParsedRequest {
  ParseStatus status = ParseStatus::kNeedMore;
  Request request;
};

// Parses the header at the start of `bytes`; reads at most kRequestHeaderSize
// bytes and never the payload.
ParsedRequest ParseRequest(std::span<const uint8_t> bytes);

// Serialises a request header (the client side; used by tests and the fuzzer
// to build streams).
void EncodeRequest(const Request& request, std::span<uint8_t, kRequestHeaderSize> out);

// What the server must do with a parsed request.
enum class Verdict : uint8_t {
  kExecute,              // Valid: run it against the backend, then reply.
  kReplyError,           // Reply with `error` without touching the backend.
  kReplyOk,              // Zero-length READ/WRITE/TRIM/WRITE_ZEROES/CACHE: reply success
                         // without touching the backend (a READ reply carries no data;
                         // with structured replies send NBD_REPLY_TYPE_NONE, since an
                         // OFFSET_DATA chunk must describe at least one byte).
  kDisconnect,           // NBD_CMD_DISC: no reply; finish in-flight requests, close.
  kReplyErrorThenClose,  // A WRITE longer than the maximum block size: its
                         // payload is not read (it may be up to 4 GiB, or never
                         // come), so the stream cannot be resynchronised. Reply
                         // with `error` where the client still reads, read no
                         // further request, finish those in flight, close (the
                         // spec lets a server disconnect a client that abuses
                         // the size constraints).
};

// Why ValidateRequest refused a request, for metrics (RefusalLabel) and logs.
enum class Refusal : uint8_t {
  kNone,
  kUnknownCommand,
  kReadOnly,
  kBadFlags,
  kNotAdvertised,  // a command the export did not advertise
  kBadFlush,       // FLUSH with a nonzero offset or length
  kNoMetaContext,  // BLOCK_STATUS without base:allocation selected
  kEmptyBlockStatus,
  kPastEnd,
  kMisaligned,
  kTooLong,  // above the maximum block size (--max-request)
};
inline constexpr int kRefusals = 11;
// "misaligned" etc. (a Prometheus label value).
const char* RefusalLabel(Refusal refusal);

struct RequestCheck {
  Verdict verdict = Verdict::kExecute;
  NbdError error = NbdError::kOk;  // Set for kReplyError.
  // WRITE payload bytes that follow the header in the stream. For kExecute the
  // server reads them into its buffer; for kReplyError and kReplyOk it must
  // still read and discard them to stay in sync (the client always sends a
  // WRITE's payload, even one the server rejects). 0 for every other command.
  uint32_t payload_length = 0;
  // Why a request was refused: a static string, suitable for the message of a
  // structured error chunk or a log line. Empty for kExecute.
  const char* reason = "";
  Refusal refusal = Refusal::kNone;  // set for kReplyError
};

// Checks `request` against the negotiated export, in this order: unknown
// command (EINVAL); writes to a read-only export (EPERM); command flags not
// valid for the command or not negotiated (EINVAL); commands the export did
// not advertise (EINVAL); FLUSH with a nonzero offset or length (EINVAL);
// BLOCK_STATUS without a negotiated metadata context or of zero bytes
// (EINVAL); ranges past the end (ENOSPC for WRITE and WRITE_ZEROES, EINVAL
// otherwise); misalignment to params.block_size.minimum (EINVAL; 1 unless the
// client requested block sizes; a request ending at the export's end may end
// mid-block); READ/CACHE longer than the maximum block size (EINVAL). A WRITE
// longer than the maximum block size (--max-request) is checked first, right
// after the command type: kReplyErrorThenClose with EINVAL, whatever else is
// wrong with it, because its payload will not be read. WRITE_ZEROES and TRIM are not held to
// the maximum: they carry no payload and the Linux client sizes them up to
// 4 GiB regardless of the advertised maximum.
RequestCheck ValidateRequest(const Request& request, const TransmissionParams& params);

// "NBD_CMD_READ" etc.; "NBD_CMD_?" for an unknown type.
const char* CommandName(uint16_t type);

}  // namespace blockserve::nbd
