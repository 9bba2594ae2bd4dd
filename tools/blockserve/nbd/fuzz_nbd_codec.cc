// libFuzzer target for the NBD codec: arbitrary client bytes go through the
// handshake state machine and, once an export is selected, through the request
// parser, validator and reply encoders.
//
// Input layout: byte 0 selects the configuration (TLS mode, shutdown), byte 1
// the chunk size for the incremental run, the rest is the client's stream.
// Oracles besides the sanitizers:
//   - feeding the stream in one piece and in small chunks must produce the
//     same output, the same event sequence and the same phase boundaries
//     (this covers the streamed GO/INFO information requests and the meta
//     context options, LIST and SET);
//   - every validated request obeys the verdict invariants checked below;
//   - a BLOCK_STATUS that executes gets descriptors that sum to at most its
//     length (exactly one with REQ_ONE) from extents taken from the stream.
// Seeds live in tests/blockserve/fuzz_corpus (see the ctest nbd_codec_fuzz).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "blockserve/nbd/block_status.h"
#include "blockserve/nbd/byte_order.h"
#include "blockserve/nbd/export.h"
#include "blockserve/nbd/negotiation.h"
#include "blockserve/nbd/protocol.h"
#include "blockserve/nbd/reply.h"
#include "blockserve/nbd/request.h"

namespace blockserve::nbd {
namespace {

void Require(bool ok) {
  if (!ok) __builtin_trap();
}

class FuzzCatalog : public ExportCatalog {
 public:
  std::optional<Export> Find(std::string_view name) const override {
    Export e;
    e.name = std::string(name);
    e.info.size = 1 << 20;
    e.info.can_flush = e.info.can_fua = e.info.can_trim = true;
    e.info.can_write_zeroes = e.info.can_fast_zero = e.info.can_cache = true;
    e.info.can_df = true;
    e.info.block_size = {512, 4096, 64 * 1024};
    if (name.empty()) {
      e.name = "disk";
      e.description = "default";
    } else if (name == "ro") {
      e.info.read_only = true;
      e.info.block_size = {};
    } else if (name == "tls") {
      e.info.tls_only = true;
    } else if (name == "bs") {
      e.info.block_size_required = true;
    } else if (name == "bad") {
      e.info.block_size.minimum = 3;
    } else if (name == "big") {
      e.info.size = ~uint64_t{0};
      e.info.block_size = {1, 4096, kUnlimitedBlockSize};
      e.info.max_request_length = 64u << 20;  // above the 32 MiB default
    } else if (name == "tail") {
      e.info.size = 5000;  // the last block is short
    } else if (name != "disk") {
      return std::nullopt;
    }
    return e;
  }
  std::vector<ExportListing> List() const override {
    return {{"disk", "default", false}, {"ro", "", false},  {"tls", "secret", true},
            {"bs", "", false},          {"bad", "", false}, {"big", "", false},
            {"tail", "", false}};
  }
};

// Everything observable about one handshake run.
struct Trace {
  std::vector<uint8_t> output;
  std::vector<size_t> event_kinds;  // variant index per non-NeedInput event
  std::vector<size_t> boundaries;   // stream offset of each event
  std::optional<TransmissionParams> params;
  size_t transmission_start = 0;
  bool ended = false;
};

Trace RunHandshake(std::span<const uint8_t> stream, NegotiationOptions options, bool shutdown,
                   size_t chunk) {
  static const FuzzCatalog catalog;
  Negotiator negotiator(catalog, options);
  Trace trace;
  size_t pos = 0;
  size_t options_fed = 0;
  while (!trace.ended) {
    const size_t n = std::min(chunk, stream.size() - pos);
    FeedResult result = negotiator.Feed(stream.subspan(pos, n));
    Require(result.consumed <= n);
    pos += result.consumed;
    const std::span<const uint8_t> out = negotiator.PendingOutput();
    trace.output.insert(trace.output.end(), out.begin(), out.end());
    negotiator.ConsumeOutput(out.size());
    if (shutdown && ++options_fed == 1) negotiator.BeginShutdown();
    if (std::holds_alternative<NeedInput>(result.event)) {
      Require(result.consumed == n);
      if (pos == stream.size()) break;
      continue;
    }
    trace.event_kinds.push_back(result.event.index());
    trace.boundaries.push_back(pos);
    if (std::holds_alternative<StartTls>(result.event)) {
      Require(negotiator.phase() == Negotiator::Phase::kAwaitingTls);
      negotiator.TlsEstablished();
      Require(negotiator.tls_active());
    } else if (auto* enter = std::get_if<EnterTransmission>(&result.event)) {
      Require(negotiator.phase() == Negotiator::Phase::kTransmission);
      Require((enter->params.flags & kFlagHasFlags) != 0);
      trace.params = enter->params;
      trace.transmission_start = pos;
      trace.ended = true;
    } else {
      Require(std::holds_alternative<Close>(result.event));
      trace.ended = true;
    }
  }
  return trace;
}

// The server's output must be the greeting, then well-formed option replies,
// then at most one NBD_OPT_EXPORT_NAME reply (10 or 134 bytes). In NOTLS mode
// the spec forbids NBD_REP_ERR_TLS_REQD.
void CheckOutputFraming(const std::vector<uint8_t>& out, TlsMode mode) {
  Require(out.size() >= kGreetingSize && LoadBe64(out.data()) == kNbdMagic);
  size_t pos = kGreetingSize;
  while (out.size() - pos >= kOptionReplyHeaderSize &&
         LoadBe64(out.data() + pos) == kOptionReplyMagic) {
    const uint32_t type = LoadBe32(out.data() + pos + 12);
    const uint32_t length = LoadBe32(out.data() + pos + 16);
    Require(length <= out.size() - pos - kOptionReplyHeaderSize);
    if (mode == TlsMode::kOff) Require(type != kRepErrTlsReqd);
    if (type == kRepAck) Require(length == 0);
    pos += kOptionReplyHeaderSize + length;
  }
  const size_t rest = out.size() - pos;
  Require(rest == 0 || rest == 10 || rest == 10 + kExportNameReplyZeroes);
}

void RunTransmission(std::span<const uint8_t> stream, const TransmissionParams& params) {
  size_t pos = 0;
  while (pos < stream.size()) {
    const ParsedRequest parsed = ParseRequest(stream.subspan(pos));
    if (parsed.status != ParseStatus::kOk) return;
    pos += kRequestHeaderSize;
    const Request& r = parsed.request;
    const RequestCheck check = ValidateRequest(r, params);
    if (check.verdict == Verdict::kDisconnect) {
      Require(r.type == kCmdDisc);
      return;
    }
    Require(check.payload_length == (r.type == kCmdWrite ? r.length : 0));
    if (check.verdict == Verdict::kReplyErrorThenClose) {
      // Only a WRITE over the maximum, whose payload the server never reads.
      Require(r.type == kCmdWrite && r.length > params.block_size.maximum);
      Require(check.error != NbdError::kOk && check.reason[0] != '\0');
      return;
    }
    if (check.verdict == Verdict::kExecute) {
      Require(check.error == NbdError::kOk);
      Require(r.offset <= params.export_size && r.length <= params.export_size - r.offset);
      Require(r.offset % params.block_size.minimum == 0);
      Require(r.length % params.block_size.minimum == 0 ||
              r.offset + r.length == params.export_size);
      if (r.type == kCmdRead || r.type == kCmdWrite) {
        Require(r.length > 0 && r.length <= params.block_size.maximum);
      }
      if (r.type == kCmdBlockStatus) {
        Require(params.base_allocation_context != 0 && params.structured_replies);
        Require(r.length > 0);
        // Extents as a backend might report them: lengths and flags from the
        // bytes that follow, possibly longer or shorter than the request.
        std::vector<ExtentIn> extents;
        for (size_t i = pos; i + 3 <= stream.size() && extents.size() < 300; i += 3) {
          extents.push_back(
              {uint64_t{LoadBe16(stream.data() + i)} << (stream[i + 2] & 15), stream[i + 2]});
        }
        std::vector<BlockStatusDescriptor> descriptors;
        const bool req_one = (r.flags & kCmdFlagReqOne) != 0;
        ToDescriptors(extents, r.length, req_one, descriptors);
        Require(!descriptors.empty() && descriptors.size() <= kMaxBlockStatusDescriptors);
        Require(!req_one || descriptors.size() == 1);
        uint64_t sum = 0;
        for (size_t i = 0; i < descriptors.size(); ++i) {
          Require(descriptors[i].length > 0 && (descriptors[i].flags & ~3u) == 0);
          if (i > 0) Require(descriptors[i].flags != descriptors[i - 1].flags);
          sum += descriptors[i].length;
        }
        Require(sum <= r.length);
        std::vector<uint8_t> chunk;
        EncodeBlockStatusChunk(r.cookie, params.base_allocation_context, descriptors, true, chunk);
        Require(LoadBe32(chunk.data() + 16) == 4 + 8 * descriptors.size());
      }
    } else if (check.verdict == Verdict::kReplyError) {
      Require(check.error != NbdError::kOk && check.reason[0] != '\0');
    }

    SimpleReplyBytes simple;
    EncodeSimpleReply(r.cookie, check.error, simple);
    Require(LoadBe64(simple.data() + 8) == r.cookie);
    ErrorChunkBytes error_chunk;
    const size_t n = EncodeErrorChunk(r.cookie, check.error, check.reason, true, error_chunk);
    Require(n <= error_chunk.size() && LoadBe32(error_chunk.data() + 16) == n - 20);
    if (check.verdict == Verdict::kExecute && r.type == kCmdRead) {
      OffsetDataHeaderBytes header;
      EncodeOffsetDataHeader(r.cookie, r.offset, r.length, true, header);
      Require(LoadBe32(header.data() + 16) == r.length + 8);
    }
    // Skip the WRITE payload as the server would.
    pos += std::min<size_t>(check.payload_length, stream.size() - pos);
  }
}

}  // namespace
}  // namespace blockserve::nbd

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blockserve::nbd;
  if (size < 2) return 0;
  NegotiationOptions options;
  switch (data[0] & 3) {
    case 0:
      options.tls_mode = TlsMode::kOff;
      break;
    case 1:
      options.tls_mode = TlsMode::kOn;
      break;
    default:
      options.tls_mode = TlsMode::kRequire;
      break;
  }
  const bool shutdown = (data[0] & 4) != 0;
  // A small option cap makes the skip-and-refuse path reachable.
  if ((data[0] & 8) != 0) options.max_option_length = 64;
  options.max_options = (data[0] & 16) != 0 ? 8 : 1024;
  const size_t chunk = static_cast<size_t>(data[1] % 32) + 1;
  const std::span<const uint8_t> stream(data + 2, size - 2);

  const Trace whole = RunHandshake(stream, options, shutdown, stream.size() + 1);
  const Trace pieces = RunHandshake(stream, options, shutdown, chunk);
  // Shutdown is applied after the first Feed, which covers a different amount
  // of the stream in the two runs, so only compare runs without it.
  if (!shutdown) {
    Require(whole.output == pieces.output);
    Require(whole.event_kinds == pieces.event_kinds);
    Require(whole.boundaries == pieces.boundaries);
  }
  CheckOutputFraming(whole.output, options.tls_mode);
  CheckOutputFraming(pieces.output, options.tls_mode);
  if (whole.params) RunTransmission(stream.subspan(whole.transmission_start), *whole.params);
  return 0;
}
