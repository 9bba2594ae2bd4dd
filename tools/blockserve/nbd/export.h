#pragma once
// What the NBD codec needs to know about an export, the catalog interface the
// handshake consults, and the derivation of the values a client is told about
// an export (transmission flags, block-size constraints).
//
// The codec never opens anything: the server implements ExportCatalog over its
// configured backends and hands it to the Negotiator.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "blockserve/nbd/protocol.h"

namespace blockserve::nbd {

// Block-size constraints as defined in the spec's "Block size constraints"
// section. The defaults are the spec's defaults for a server that advertises
// nothing. Plain value type.
struct BlockSizeConstraints {
  // Smallest addressable length and alignment: a power of two in [1, 2^16].
  uint32_t minimum = kDefaultMinimumBlockSize;
  // Size and alignment for efficient I/O: a power of two >= max(minimum, 512).
  uint32_t preferred = kDefaultPreferredBlockSize;
  // Largest READ/WRITE/CACHE length; 0xffffffff means no inherent limit.
  uint32_t maximum = kUnlimitedBlockSize;

  friend bool operator==(const BlockSizeConstraints&, const BlockSizeConstraints&) = default;
};

// Capabilities and geometry of one export, as the backend reports them. The
// codec turns these into transmission flags and request validation. Plain
// value type.
struct ExportInfo {
  uint64_t size = 0;
  bool read_only = false;
  bool can_flush = false;         // NBD_CMD_FLUSH reaches stable storage.
  bool can_fua = false;           // NBD_CMD_FLAG_FUA honoured on writes.
  bool can_trim = false;          // NBD_CMD_TRIM.
  bool can_write_zeroes = false;  // NBD_CMD_WRITE_ZEROES (+ NBD_CMD_FLAG_NO_HOLE).
  bool can_fast_zero = false;     // NBD_CMD_FLAG_FAST_ZERO (needs can_write_zeroes).
  bool can_cache = false;         // NBD_CMD_CACHE.
  // Flushes and FUA writes are visible to every connection when acknowledged.
  bool can_multi_conn = false;
  bool rotational = false;
  // The server can answer a READ with a single content chunk (NBD_CMD_FLAG_DF);
  // only advertised once structured replies are negotiated.
  bool can_df = false;
  // SELECTIVETLS: the export is only offered to clients that upgraded to TLS
  // (meaningful with TlsMode::kOn; with kRequire every export needs TLS).
  bool tls_only = false;
  // Refuse NBD_OPT_GO unless the client requested NBD_INFO_BLOCK_SIZE (answered
  // with NBD_REP_ERR_BLOCK_SIZE_REQD), and NBD_OPT_EXPORT_NAME (hard close).
  // The spec discourages this for interoperability, hence off by default: a
  // server that allows such clients must cleanly error misaligned requests,
  // which ValidateRequest does.
  bool block_size_required = false;
  // The backend's true constraints (minimum = its alignment). Advertised and
  // enforced only for a client that requested NBD_INFO_BLOCK_SIZE; any other
  // client is told minimum 1 and the server aligns its requests itself.
  BlockSizeConstraints block_size;
  // Largest READ/WRITE/CACHE payload the server accepts (--max-request); caps
  // block_size.maximum. Above 2^25 (32 MiB) only clients that ignore the
  // advertised maximum or that never asked (nbd-tester-client) send such.
  uint32_t max_request_length = kMaxPayloadLength;
};

// An export resolved by name: its canonical name, description and info.
struct Export {
  std::string name;
  std::string description;  // Human-readable; may be empty.
  ExportInfo info;
};

// One line of NBD_OPT_LIST.
struct ExportListing {
  std::string name;
  std::string description;
  bool tls_only = false;  // Omitted from the list before a TLS upgrade.
};

// Lookup interface the Negotiator consults during the handshake.
//
// Implementations are owned by the server and must outlive every Negotiator
// that refers to them. Methods are const and may be called from several
// worker threads at once, so an implementation shared between workers must be
// safe for concurrent reads.
class ExportCatalog {
 public:
  virtual ~ExportCatalog() = default;

  // Resolves a client-supplied export name. The empty name selects the default
  // export, if the server has one. Returns nullopt when no export matches.
  virtual std::optional<Export> Find(std::string_view name) const = 0;

  // Every export, in the order NBD_OPT_LIST should report them.
  virtual std::vector<ExportListing> List() const = 0;
};

// What the client was told about the export it entered transmission with;
// request validation checks every request against it. Plain value type.
struct TransmissionParams {
  uint64_t export_size = 0;
  // Transmission flags exactly as sent to the client.
  uint16_t flags = kFlagHasFlags;
  // The constraints requests are validated against, as advertised: the
  // backend's when the client requested NBD_INFO_BLOCK_SIZE, else minimum 1
  // (any offset and length). Maximum capped to ExportInfo::max_request_length.
  BlockSizeConstraints block_size;
  // The backend's minimum block size: requests not aligned to it are served by
  // read-modify-write (blockserve/unaligned_io.h). Equal to block_size.minimum
  // when the client requested block sizes.
  uint32_t device_alignment = 1;
  bool structured_replies = false;
  // Metadata context id of "base:allocation" selected with
  // NBD_OPT_SET_META_CONTEXT for this export, 0 when none was selected.
  uint32_t base_allocation_context = 0;
};

// Transmission flags for `info`. Write-only features (FUA, TRIM, WRITE_ZEROES,
// FAST_ZERO) are not advertised on a read-only export, so a client never
// attempts them; DF only once structured replies were negotiated (spec:
// "MUST leave this flag clear if structured replies have not been negotiated").
uint16_t ComputeTransmissionFlags(const ExportInfo& info, bool structured_replies);

// Checks `constraints` against the spec's rules for advertised values and
// returns them with `maximum` capped to `max_request_length` (this server never
// accepts a larger payload). InvalidArgument, naming the rule, when the backend
// reported values a client must not be told.
absl::StatusOr<BlockSizeConstraints> EffectiveBlockSize(
    const BlockSizeConstraints& constraints, uint64_t export_size,
    uint32_t max_request_length = kMaxPayloadLength);

// The transmission parameters for `info`, or the EffectiveBlockSize error.
// `block_size_requested`: the client asked for NBD_INFO_BLOCK_SIZE and so is
// held to the backend's minimum; otherwise the minimum is 1.
absl::StatusOr<TransmissionParams> MakeTransmissionParams(const ExportInfo& info,
                                                          bool structured_replies,
                                                          bool block_size_requested = true);

}  // namespace blockserve::nbd
