#pragma once
// Server side of the NBD fixed-newstyle handshake as a pure state machine.
//
// The Negotiator never touches a socket. The connection code:
//   1. constructs it (the server greeting is queued as output at once),
//   2. sends PendingOutput() and calls ConsumeOutput() for what was sent,
//   3. calls Feed() with received bytes and acts on the returned event,
// until the event is EnterTransmission or Close. Output queued before an event
// must reach the wire before the connection acts on the event: the ACK to
// STARTTLS goes out in clear text before the TLS handshake, the GO/EXPORT_NAME
// reply before the first transmission reply, the ACK to ABORT before closing.
//
// Bytes that Feed did not consume belong to whatever comes next: TLS records
// after StartTls, transmission requests after EnterTransmission.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "blockserve/nbd/export.h"

namespace blockserve::nbd {

// How the server treats TLS for a whole connection (spec "Server-side
// requirements").
enum class TlsMode : uint8_t {
  kOff,      // NOTLS: STARTTLS is refused with NBD_REP_ERR_POLICY.
  kOn,       // SELECTIVETLS: upgrade optional; tls_only exports need it.
  kRequire,  // FORCEDTLS: every option but STARTTLS/ABORT needs TLS first.
};

struct NegotiationOptions {
  TlsMode tls_mode = TlsMode::kOff;
  // Largest option payload buffered. Longer options are skipped without
  // buffering and answered NBD_REP_ERR_TOO_BIG (NBD_OPT_EXPORT_NAME, which
  // cannot be answered with an error, closes the connection). NBD_OPT_GO and
  // NBD_OPT_INFO are not held to it: their information requests are read two
  // bytes at a time and never buffered, so all 65,535 a client may send are
  // accepted (and the unknown ones ignored, as the spec requires).
  uint32_t max_option_length = 64 * 1024;
  // Longest option announced at all. An option header announcing more closes
  // the connection at once (CloseReason::kOptionTooLong), without reading or
  // skipping the data: no option this server knows comes near it (the longest,
  // NBD_OPT_GO with a 4,096-byte name and all 65,535 information requests, is
  // 135,172 bytes), and a client announcing up to 4 GiB and sending nothing
  // would otherwise hold the connection until the handshake timeout. qemu-nbd
  // and nbdkit also drop the connection on an oversized option length.
  uint32_t max_announced_option_length = 1 << 20;
  // Options accepted before the connection is treated as a denial of service
  // and closed (the spec allows a hard disconnect then). 0 = unlimited.
  // Generous because `nbdinfo --list` sends a few options per export.
  uint32_t max_options = 1024;
};

// ---- Events returned by Feed --------------------------------------------------

// All input was consumed; feed more bytes when they arrive.
struct NeedInput {};

// STARTTLS was acknowledged. Send the pending output in clear text, run the
// TLS server handshake (unconsumed bytes are the start of it), then call
// TlsEstablished() and keep feeding decrypted bytes. If the handshake fails
// the connection must be closed: the spec allows no fallback to clear text.
struct StartTls {};

// The client selected an export with NBD_OPT_GO or NBD_OPT_EXPORT_NAME. Send
// the pending output, then serve requests. Unconsumed bytes are requests.
struct EnterTransmission {
  Export selected;            // Canonical name, description and info.
  TransmissionParams params;  // Flags and constraints the client was sent.
  // The client sent NBD_OPT_GO with an NBD_INFO_BLOCK_SIZE request and so
  // promised to honour the backend's constraints; params.block_size holds
  // them. Otherwise params.block_size.minimum is 1 and the server serves any
  // alignment (params.device_alignment says what the backend needs).
  bool block_size_requested = false;
  bool via_export_name = false;  // Entered with the legacy NBD_OPT_EXPORT_NAME.
};

enum class CloseReason : uint8_t {
  kClientAbort,     // NBD_OPT_ABORT (soft disconnect); its ACK is pending.
  kProtocolError,   // The client broke a MUST (bad magic, unknown flags...).
  kRefused,         // EXPORT_NAME the server cannot honour; TLS required.
  kTooManyOptions,  // NegotiationOptions::max_options exceeded.
  kOptionTooLong,   // An option length above max_announced_option_length.
  kMisuse,          // Feed called after the handshake ended or before TLS.
};

// The connection must be closed (after sending any pending output).
struct Close {
  CloseReason reason;
  std::string message;  // Human-readable, for the server's log.
};

using NegotiationEvent = std::variant<NeedInput, StartTls, EnterTransmission, Close>;

struct FeedResult {
  size_t consumed = 0;  // Bytes of the input that belong to the handshake.
  NegotiationEvent event;
};

// One connection's handshake. Owns its buffers; holds a reference to the
// catalog, which must outlive it. Not thread-safe: use from the connection's
// worker only. Not copyable or movable (the catalog reference and buffered
// partial messages make copies meaningless).
class Negotiator {
 public:
  enum class Phase : uint8_t { kHandshake, kAwaitingTls, kTransmission, kClosed };

  Negotiator(const ExportCatalog& catalog, NegotiationOptions options);
  Negotiator(const Negotiator&) = delete;
  Negotiator& operator=(const Negotiator&) = delete;

  // Consumes handshake bytes from `input`, queueing replies as output, and
  // stops at the first event. Partial messages are buffered internally (up to
  // max_option_length), so a caller may pass any split of the byte stream and
  // never needs to keep consumed bytes. Returns kMisuse Close when called in
  // kAwaitingTls, kTransmission or kClosed.
  FeedResult Feed(std::span<const uint8_t> input);

  // The TLS handshake that followed a StartTls event succeeded; negotiation
  // resumes over the encrypted stream. Ignored outside kAwaitingTls.
  void TlsEstablished();

  // The server is shutting down: further options other than NBD_OPT_ABORT are
  // answered NBD_REP_ERR_SHUTDOWN (EXPORT_NAME closes the connection).
  void BeginShutdown();

  // Bytes to send, valid until the next non-const call.
  std::span<const uint8_t> PendingOutput() const { return output_; }
  // Drops the first `n` bytes of the pending output (n <= its size).
  void ConsumeOutput(size_t n);
  // Moves the pending output out (the caller then owns sending all of it).
  std::vector<uint8_t> TakeOutput();

  Phase phase() const { return phase_; }
  bool tls_active() const { return tls_active_; }
  bool structured_replies() const { return structured_replies_; }

 private:
  enum class Read : uint8_t {
    kClientFlags,
    kOptionHeader,
    kOptionData,
    kSkipData,
    // NBD_OPT_GO / NBD_OPT_INFO, streamed: name length, name + request count,
    // then the information requests two bytes at a time.
    kInfoNameLength,
    kInfoName,
    kInfoRequests,
  };

  // Appends input bytes to in_ until it holds `want`; true when complete.
  bool Gather(std::span<const uint8_t> input, size_t& pos, size_t want);

  // Each returns true when it produced an event in `event`.
  bool OnClientFlags(NegotiationEvent& event);
  bool OnOptionHeader(NegotiationEvent& event);
  bool OnOptionData(NegotiationEvent& event);
  bool OnExportName(std::string_view name, NegotiationEvent& event);
  // Moves to the transmission phase with `selected` (EXPORT_NAME or GO): the
  // EnterTransmission event, with the base:allocation context when the client
  // set it for this export.
  void Enter(Export selected, TransmissionParams params, bool block_size_requested,
             bool via_export_name, NegotiationEvent& event);
  void OnInfoNameLength();
  bool OnInfoName(NegotiationEvent& event);
  void OnInfoRequest();
  bool OnInfoOrGo(NegotiationEvent& event);
  void OnList();
  void OnMetaContext();
  bool OnStartTls(NegotiationEvent& event);

  // Skips the current option's data (or its last `remaining` bytes), then
  // answers it with `reply_type`.
  void SkipThenReply(uint32_t reply_type, std::string message);
  void SkipThenReply(uint32_t remaining, uint32_t reply_type, std::string message);
  bool NeedsTls() const;
  NegotiationEvent Terminate(CloseReason reason, std::string message);

  void QueueReply(uint32_t reply_type, std::span<const uint8_t> data);
  void QueueReply(uint32_t reply_type, std::string_view data);
  void QueueInfo(uint16_t info_type, std::span<const uint8_t> payload);

  const ExportCatalog& catalog_;
  const NegotiationOptions options_;

  Phase phase_ = Phase::kHandshake;
  Read read_ = Read::kClientFlags;
  std::vector<uint8_t> in_;  // The message being assembled.
  std::vector<uint8_t> output_;

  bool fixed_newstyle_ = false;
  bool no_zeroes_ = false;
  bool tls_active_ = false;
  bool structured_replies_ = false;
  bool shutting_down_ = false;
  uint32_t options_seen_ = 0;

  // The option being processed.
  uint32_t option_ = 0;
  uint32_t option_length_ = 0;
  // kSkipData: bytes left to drop and the reply owed once they are gone.
  uint32_t skip_remaining_ = 0;
  uint32_t deferred_reply_ = 0;
  std::string deferred_message_;

  // NBD_OPT_GO / NBD_OPT_INFO being streamed.
  struct InfoRequest {
    std::string name;
    uint32_t name_length = 0;
    uint32_t requests_left = 0;
    bool want_name = false;
    bool want_description = false;
    bool want_block_size = false;
  };
  InfoRequest info_;

  // The last successful NBD_OPT_SET_META_CONTEXT: the canonical name of the
  // export it was for, and whether it selected base:allocation. Applies only
  // if the client then selects that same export.
  std::string meta_export_;
  bool meta_base_allocation_ = false;
};

// The only metadata context this server offers, and its id.
inline constexpr std::string_view kBaseAllocation = "base:allocation";
inline constexpr uint32_t kBaseAllocationContextId = 1;

// Name of an option, reply type or info type for messages ("NBD_OPT_GO",
// "NBD_REP_ERR_UNSUP"); "unknown" for values the spec does not define.
const char* OptionName(uint32_t option);
const char* ReplyTypeName(uint32_t reply_type);

}  // namespace blockserve::nbd
