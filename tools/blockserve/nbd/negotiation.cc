#include "blockserve/nbd/negotiation.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "blockserve/nbd/byte_order.h"
#include "blockserve/nbd/protocol.h"
#include "blockserve/nbd/text.h"

namespace blockserve::nbd {
namespace {

constexpr uint32_t kKnownClientFlags = kClientFlagFixedNewstyle | kClientFlagNoZeroes;
// Echoed export names are cut so a reply message stays near the spec's
// recommended 256-byte string length.
constexpr size_t kEchoedNameLimit = 200;
// Length of the INFO payload after the 16-bit type: size + flags / 3 sizes.
constexpr size_t kInfoExportPayload = 8 + 2;
constexpr size_t kInfoBlockSizePayload = 4 + 4 + 4;

std::string Quoted(std::string_view name) {
  if (name.empty()) return "(default)";
  return absl::StrFormat("\"%s\"", TruncateUtf8(name, kEchoedNameLimit));
}

bool HasNul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

}  // namespace

Negotiator::Negotiator(const ExportCatalog& catalog, NegotiationOptions options)
    : catalog_(catalog), options_(options) {
  output_.resize(kGreetingSize);
  StoreBe64(output_.data(), kNbdMagic);
  StoreBe64(output_.data() + 8, kOptionMagic);
  StoreBe16(output_.data() + 16, kFlagFixedNewstyle | kFlagNoZeroes);
}

void Negotiator::ConsumeOutput(size_t n) {
  n = std::min(n, output_.size());
  output_.erase(output_.begin(), output_.begin() + static_cast<std::ptrdiff_t>(n));
}

std::vector<uint8_t> Negotiator::TakeOutput() {
  std::vector<uint8_t> out;
  out.swap(output_);
  return out;
}

void Negotiator::TlsEstablished() {
  if (phase_ != Phase::kAwaitingTls) return;
  tls_active_ = true;
  phase_ = Phase::kHandshake;
}

void Negotiator::BeginShutdown() { shutting_down_ = true; }

bool Negotiator::Gather(std::span<const uint8_t> input, size_t& pos, size_t want) {
  const size_t take = std::min(want - in_.size(), input.size() - pos);
  in_.insert(in_.end(), input.begin() + static_cast<std::ptrdiff_t>(pos),
             input.begin() + static_cast<std::ptrdiff_t>(pos + take));
  pos += take;
  return in_.size() == want;
}

FeedResult Negotiator::Feed(std::span<const uint8_t> input) {
  if (phase_ != Phase::kHandshake) {
    return {0, Close{CloseReason::kMisuse, phase_ == Phase::kAwaitingTls
                                               ? "handshake bytes fed before TlsEstablished()"
                                               : "handshake bytes fed after the handshake ended"}};
  }
  size_t pos = 0;
  NegotiationEvent event = NeedInput{};
  for (;;) {
    bool produced = false;
    switch (read_) {
      case Read::kClientFlags:
        if (!Gather(input, pos, kClientFlagsSize)) return {pos, NeedInput{}};
        produced = OnClientFlags(event);
        break;
      case Read::kOptionHeader:
        if (!Gather(input, pos, kOptionHeaderSize)) return {pos, NeedInput{}};
        produced = OnOptionHeader(event);
        break;
      case Read::kOptionData:
        if (!Gather(input, pos, option_length_)) return {pos, NeedInput{}};
        produced = OnOptionData(event);
        break;
      case Read::kInfoNameLength:
        if (!Gather(input, pos, 4)) return {pos, NeedInput{}};
        OnInfoNameLength();
        break;
      case Read::kInfoName:
        if (!Gather(input, pos, 4 + size_t{info_.name_length} + 2)) return {pos, NeedInput{}};
        produced = OnInfoName(event);
        break;
      case Read::kInfoRequests:
        if (!Gather(input, pos, 2)) return {pos, NeedInput{}};
        OnInfoRequest();
        if (info_.requests_left == 0) {
          read_ = Read::kOptionHeader;
          produced = OnInfoOrGo(event);
        }
        break;
      case Read::kSkipData: {
        const size_t take = std::min<size_t>(skip_remaining_, input.size() - pos);
        pos += take;
        skip_remaining_ -= static_cast<uint32_t>(take);
        if (skip_remaining_ > 0) return {pos, NeedInput{}};
        QueueReply(deferred_reply_, deferred_message_);
        deferred_message_.clear();
        read_ = Read::kOptionHeader;
        break;
      }
    }
    if (produced) return {pos, std::move(event)};
  }
}

NegotiationEvent Negotiator::Terminate(CloseReason reason, std::string message) {
  phase_ = Phase::kClosed;
  in_.clear();
  return Close{reason, std::move(message)};
}

bool Negotiator::OnClientFlags(NegotiationEvent& event) {
  const uint32_t flags = LoadBe32(in_.data());
  in_.clear();
  // Spec: the server MUST drop the connection on a flag it does not know or
  // did not advertise (we advertise both known flags).
  if ((flags & ~kKnownClientFlags) != 0) {
    event = Terminate(CloseReason::kProtocolError,
                      absl::StrFormat("client sent unknown flags 0x%08x", flags));
    return true;
  }
  fixed_newstyle_ = (flags & kClientFlagFixedNewstyle) != 0;
  no_zeroes_ = (flags & kClientFlagNoZeroes) != 0;
  // Spec: without C_FIXED_NEWSTYLE the server MUST operate in NOTLS mode, which
  // a FORCEDTLS server cannot do.
  if (!fixed_newstyle_ && options_.tls_mode == TlsMode::kRequire) {
    event = Terminate(CloseReason::kRefused,
                      "TLS is required but the client did not set NBD_FLAG_C_FIXED_NEWSTYLE");
    return true;
  }
  read_ = Read::kOptionHeader;
  return false;
}

bool Negotiator::NeedsTls() const { return options_.tls_mode == TlsMode::kRequire && !tls_active_; }

void Negotiator::SkipThenReply(uint32_t reply_type, std::string message) {
  SkipThenReply(option_length_, reply_type, std::move(message));
}

void Negotiator::SkipThenReply(uint32_t remaining, uint32_t reply_type, std::string message) {
  deferred_reply_ = reply_type;
  deferred_message_ = std::move(message);
  skip_remaining_ = remaining;
  read_ = Read::kSkipData;
  in_.clear();
  // Nothing left to skip: the reply is owed now (Feed would wait for input).
  if (remaining == 0) {
    QueueReply(deferred_reply_, deferred_message_);
    deferred_message_.clear();
    read_ = Read::kOptionHeader;
  }
}

bool Negotiator::OnOptionHeader(NegotiationEvent& event) {
  const uint64_t magic = LoadBe64(in_.data());
  option_ = LoadBe32(in_.data() + 8);
  option_length_ = LoadBe32(in_.data() + 12);
  in_.clear();
  if (magic != kOptionMagic) {
    event =
        Terminate(CloseReason::kProtocolError, absl::StrFormat("bad option magic 0x%016x", magic));
    return true;
  }
  if (option_length_ > options_.max_announced_option_length) {
    event = Terminate(
        CloseReason::kOptionTooLong,
        absl::StrFormat("%s announces %u bytes of data, more than the %u any option "
                        "may have: closing",
                        OptionName(option_), option_length_, options_.max_announced_option_length));
    return true;
  }
  ++options_seen_;
  if (options_.max_options != 0 && options_seen_ > options_.max_options) {
    event = Terminate(CloseReason::kTooManyOptions,
                      absl::StrFormat("client sent more than %u options without selecting an "
                                      "export",
                                      options_.max_options));
    return true;
  }

  // ABORT needs no data: reply at once; the client drops the connection next.
  if (option_ == kOptAbort) {
    QueueReply(kRepAck, std::string_view());
    event = Terminate(CloseReason::kClientAbort, "client sent NBD_OPT_ABORT");
    return true;
  }
  // EXPORT_NAME cannot be answered with an error: anything that would make it
  // fail before its data is read closes the connection now.
  if (option_ == kOptExportName) {
    if (shutting_down_) {
      event = Terminate(CloseReason::kRefused, "NBD_OPT_EXPORT_NAME while shutting down");
      return true;
    }
    if (NeedsTls()) {
      event = Terminate(CloseReason::kRefused, "NBD_OPT_EXPORT_NAME before the required TLS");
      return true;
    }
    if (option_length_ > std::min<size_t>(options_.max_option_length, kMaxStringLength)) {
      event = Terminate(
          CloseReason::kRefused,
          absl::StrFormat("NBD_OPT_EXPORT_NAME name of %u bytes is too long", option_length_));
      return true;
    }
    read_ = Read::kOptionData;
    return option_length_ == 0 ? OnOptionData(event) : false;
  }
  if (shutting_down_) {
    SkipThenReply(kRepErrShutdown, "server is shutting down");
    return false;
  }
  // FORCEDTLS: everything except STARTTLS (and ABORT, above) is refused
  // before the upgrade, including unknown options.
  if (NeedsTls() && option_ != kOptStartTls) {
    SkipThenReply(kRepErrTlsReqd, "TLS is required");
    return false;
  }
  switch (option_) {
    case kOptList:
    case kOptStartTls:
    case kOptStructuredReply:
      // These take no data; any length is malformed and nothing need be kept.
      if (option_length_ != 0) {
        SkipThenReply(kRepErrInvalid, absl::StrFormat("%s takes no data", OptionName(option_)));
        return false;
      }
      read_ = Read::kOptionData;
      return OnOptionData(event);
    case kOptInfo:
    case kOptGo:
      // Layout: u32 name length, name, u16 request count, u16 requests[count].
      if (option_length_ < 6) {
        SkipThenReply(kRepErrInvalid,
                      absl::StrFormat("%s data is shorter than 6 bytes", OptionName(option_)));
        return false;
      }
      info_ = InfoRequest{};
      read_ = Read::kInfoNameLength;
      return false;
    case kOptListMetaContext:
    case kOptSetMetaContext:
      if (option_length_ > options_.max_option_length) {
        SkipThenReply(kRepErrTooBig, absl::StrFormat("%s data of %u bytes exceeds the limit of %u",
                                                     OptionName(option_), option_length_,
                                                     options_.max_option_length));
        return false;
      }
      read_ = Read::kOptionData;
      return option_length_ == 0 ? OnOptionData(event) : false;
    default:
      // Spec baseline: unknown options get NBD_REP_ERR_UNSUP and the server
      // MUST still parse the next one.
      SkipThenReply(kRepErrUnsup, absl::StrFormat("option %u is not supported", option_));
      return false;
  }
}

bool Negotiator::OnOptionData(NegotiationEvent& event) {
  read_ = Read::kOptionHeader;
  bool produced = false;
  switch (option_) {
    case kOptExportName: {
      const std::string name(in_.begin(), in_.end());
      in_.clear();
      return OnExportName(name, event);
    }
    case kOptListMetaContext:
    case kOptSetMetaContext:
      OnMetaContext();
      break;
    case kOptList:
      OnList();
      break;
    case kOptStartTls:
      produced = OnStartTls(event);
      break;
    case kOptStructuredReply:
      // A repeat is accepted again (the spec only says the server MAY refuse
      // it): the result is the same state.
      structured_replies_ = true;
      QueueReply(kRepAck, std::string_view());
      break;
    default:
      break;
  }
  in_.clear();
  return produced;
}

bool Negotiator::OnExportName(std::string_view name, NegotiationEvent& event) {
  if (HasNul(name)) {
    event = Terminate(CloseReason::kRefused, "NBD_OPT_EXPORT_NAME name contains NUL");
    return true;
  }
  std::optional<Export> found = catalog_.Find(name);
  if (!found) {
    event = Terminate(CloseReason::kRefused,
                      absl::StrFormat("NBD_OPT_EXPORT_NAME: unknown export %s", Quoted(name)));
    return true;
  }
  if (found->info.tls_only && !tls_active_) {
    event = Terminate(
        CloseReason::kRefused,
        absl::StrFormat("NBD_OPT_EXPORT_NAME: export %s requires TLS", Quoted(found->name)));
    return true;
  }
  if (found->info.block_size_required) {
    event = Terminate(CloseReason::kRefused,
                      absl::StrFormat("NBD_OPT_EXPORT_NAME: export %s requires block size "
                                      "negotiation with NBD_OPT_GO",
                                      Quoted(found->name)));
    return true;
  }
  absl::StatusOr<TransmissionParams> params =
      MakeTransmissionParams(found->info, structured_replies_, /*block_size_requested=*/false);
  if (!params.ok()) {
    event = Terminate(CloseReason::kRefused,
                      absl::StrFormat("export %s is misconfigured: %s", Quoted(found->name),
                                      params.status().message()));
    return true;
  }
  const size_t base = output_.size();
  output_.resize(base + 8 + 2 + (no_zeroes_ ? 0 : kExportNameReplyZeroes), 0);
  StoreBe64(output_.data() + base, params->export_size);
  StoreBe16(output_.data() + base + 8, params->flags);
  Enter(std::move(*found), *params, /*block_size_requested=*/false, /*via_export_name=*/true,
        event);
  return true;
}

void Negotiator::Enter(Export selected, TransmissionParams params, bool block_size_requested,
                       bool via_export_name, NegotiationEvent& event) {
  phase_ = Phase::kTransmission;
  if (structured_replies_ && meta_base_allocation_ && meta_export_ == selected.name) {
    params.base_allocation_context = kBaseAllocationContextId;
  }
  EnterTransmission enter;
  enter.selected = std::move(selected);
  enter.params = params;
  enter.block_size_requested = block_size_requested;
  enter.via_export_name = via_export_name;
  event = std::move(enter);
}

void Negotiator::OnInfoNameLength() {
  info_.name_length = LoadBe32(in_.data());
  // Past the length field: the name, the count and the requests.
  const uint32_t rest = option_length_ - 4;
  if (info_.name_length > rest - 2) {
    SkipThenReply(rest, kRepErrInvalid,
                  absl::StrFormat("%s name length %u overruns the option data", OptionName(option_),
                                  info_.name_length));
    return;
  }
  if (info_.name_length > kMaxStringLength) {
    SkipThenReply(rest, kRepErrInvalid, "export name is not a valid NBD string");
    return;
  }
  read_ = Read::kInfoName;  // in_ keeps the length field: Gather counts it
}

bool Negotiator::OnInfoName(NegotiationEvent& event) {
  const uint16_t count = LoadBe16(in_.data() + 4 + info_.name_length);
  info_.name.assign(reinterpret_cast<const char*>(in_.data() + 4), info_.name_length);
  const uint32_t rest = option_length_ - 4 - info_.name_length - 2;
  in_.clear();
  if (rest != 2 * uint32_t{count}) {
    SkipThenReply(rest, kRepErrInvalid,
                  absl::StrFormat("%s data length %u does not match %u information requests",
                                  OptionName(option_), option_length_, count));
    return false;
  }
  if (HasNul(info_.name)) {
    SkipThenReply(rest, kRepErrInvalid, "export name is not a valid NBD string");
    return false;
  }
  info_.requests_left = count;
  if (count > 0) {
    read_ = Read::kInfoRequests;
    return false;
  }
  read_ = Read::kOptionHeader;
  return OnInfoOrGo(event);
}

void Negotiator::OnInfoRequest() {
  switch (LoadBe16(in_.data())) {
    case kInfoName:
      info_.want_name = true;
      break;
    case kInfoDescription:
      info_.want_description = true;
      break;
    case kInfoBlockSize:
      info_.want_block_size = true;
      break;
    default:
      break;  // Spec: the server MUST ignore requests it does not understand.
  }
  in_.clear();
  --info_.requests_left;
}

bool Negotiator::OnInfoOrGo(NegotiationEvent& event) {
  const bool go = option_ == kOptGo;
  const std::string_view name = info_.name;
  const bool want_name = info_.want_name;
  const bool want_description = info_.want_description;
  const bool want_block_size = info_.want_block_size;

  std::optional<Export> found = catalog_.Find(name);
  if (!found) {
    QueueReply(kRepErrUnknown, absl::StrFormat("unknown export %s", Quoted(name)));
    return false;
  }
  // NOTLS: the spec forbids NBD_REP_ERR_TLS_REQD altogether, so a TLS-only
  // export is refused by policy. SELECTIVETLS: it MUST be refused with
  // TLS_REQD until the client upgrades.
  if (found->info.tls_only && options_.tls_mode == TlsMode::kOff) {
    QueueReply(kRepErrPolicy, absl::StrFormat("export %s requires TLS, which is not enabled",
                                              Quoted(found->name)));
    return false;
  }
  if (found->info.tls_only && !tls_active_) {
    QueueReply(kRepErrTlsReqd, absl::StrFormat("export %s requires TLS", Quoted(found->name)));
    return false;
  }
  absl::StatusOr<TransmissionParams> params =
      MakeTransmissionParams(found->info, structured_replies_, want_block_size);
  if (!params.ok()) {
    QueueReply(kRepErrUnknown,
               absl::StrFormat("export %s is unavailable: %s", Quoted(found->name),
                               TruncateUtf8(std::string(params.status().message()), 160)));
    return false;
  }

  std::array<uint8_t, kInfoBlockSizePayload> block_size{};
  StoreBe32(block_size.data(), params->block_size.minimum);
  StoreBe32(block_size.data() + 4, params->block_size.preferred);
  StoreBe32(block_size.data() + 8, params->block_size.maximum);
  if (found->info.block_size_required && !want_block_size) {
    // Spec: a server sending BLOCK_SIZE_REQD SHOULD first send the constraints
    // to save the client a round trip: the backend's, which it will be held to.
    std::array<uint8_t, kInfoBlockSizePayload> required = block_size;
    StoreBe32(required.data(), params->device_alignment);
    QueueInfo(kInfoBlockSize, required);
    QueueReply(kRepErrBlockSizeReqd,
               absl::StrFormat("export %s requires the client to request NBD_INFO_BLOCK_SIZE",
                               Quoted(found->name)));
    return false;
  }

  std::array<uint8_t, kInfoExportPayload> export_info{};
  StoreBe64(export_info.data(), params->export_size);
  StoreBe16(export_info.data() + 8, params->flags);
  QueueInfo(kInfoExport, export_info);
  if (want_name) {
    const std::string_view canonical = TruncateUtf8(found->name, kMaxStringLength);
    QueueInfo(kInfoName,
              std::span(reinterpret_cast<const uint8_t*>(canonical.data()), canonical.size()));
  }
  if (want_description && !found->description.empty()) {
    const std::string_view text = TruncateUtf8(found->description, kMaxStringLength);
    QueueInfo(kInfoDescription,
              std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  }
  // Sent even when not requested (the spec says a server with constraints
  // SHOULD advertise them for INFO and GO; a client MUST ignore info it did
  // not ask for): then with minimum 1, which is what the server accepts from a
  // client that did not ask.
  QueueInfo(kInfoBlockSize, block_size);
  QueueReply(kRepAck, std::string_view());
  if (!go) return false;

  Enter(std::move(*found), *params, want_block_size, /*via_export_name=*/false, event);
  return true;
}

// Layout: u32 export name length, name, u32 query count, then per query a u32
// length and the query string. Everything is parsed before anything is
// answered, so a malformed option gets only its error.
void Negotiator::OnMetaContext() {
  const bool set = option_ == kOptSetMetaContext;
  if (set) {
    // A SET replaces the previous selection, even when it fails.
    meta_export_.clear();
    meta_base_allocation_ = false;
    // Spec: SET is only valid once structured replies are negotiated.
    if (!structured_replies_) {
      QueueReply(kRepErrInvalid, "NBD_OPT_SET_META_CONTEXT needs NBD_OPT_STRUCTURED_REPLY first");
      return;
    }
  }
  const std::span<const uint8_t> data(in_);
  auto invalid = [&](std::string message) { QueueReply(kRepErrInvalid, message); };
  if (data.size() < 4)
    return invalid(absl::StrFormat("%s data is shorter than 4 bytes", OptionName(option_)));
  const uint32_t name_length = LoadBe32(data.data());
  if (name_length > data.size() - 4 || data.size() - 4 - name_length < 4) {
    return invalid(absl::StrFormat("%s name length %u overruns the option data",
                                   OptionName(option_), name_length));
  }
  const std::string_view name(reinterpret_cast<const char*>(data.data() + 4), name_length);
  if (name_length > kMaxStringLength || HasNul(name)) {
    return invalid("export name is not a valid NBD string");
  }
  size_t pos = 4 + size_t{name_length};
  const uint32_t queries = LoadBe32(data.data() + pos);
  pos += 4;
  bool base_allocation = queries == 0 && !set;  // empty LIST: everything offered
  for (uint32_t i = 0; i < queries; ++i) {
    if (data.size() - pos < 4) return invalid("query list overruns the option data");
    const uint32_t length = LoadBe32(data.data() + pos);
    pos += 4;
    if (length > data.size() - pos) return invalid("query length overruns the option data");
    const std::string_view query(reinterpret_cast<const char*>(data.data() + pos), length);
    pos += length;
    if (length > kMaxStringLength) return invalid("query is longer than an NBD string");
    // "base:" alone asks LIST for every context of the namespace; SET selects
    // only exact names. Other namespaces and leaves are ignored (spec: the
    // server MUST ignore queries in namespaces it does not know).
    if (query == kBaseAllocation || (!set && query == "base:")) base_allocation = true;
  }
  if (pos != data.size()) return invalid("data follows the last query");

  std::optional<Export> found = catalog_.Find(name);
  if (!found) {
    QueueReply(kRepErrUnknown, absl::StrFormat("unknown export %s", Quoted(name)));
    return;
  }
  if (found->info.tls_only && !tls_active_) {
    QueueReply(options_.tls_mode == TlsMode::kOff ? kRepErrPolicy : kRepErrTlsReqd,
               absl::StrFormat("export %s requires TLS", Quoted(found->name)));
    return;
  }
  if (base_allocation) {
    // Spec: LIST replies carry no usable id (0); SET assigns the one that
    // NBD_REPLY_TYPE_BLOCK_STATUS chunks will name.
    std::vector<uint8_t> reply(4 + kBaseAllocation.size());
    StoreBe32(reply.data(), set ? kBaseAllocationContextId : 0);
    std::memcpy(reply.data() + 4, kBaseAllocation.data(), kBaseAllocation.size());
    QueueReply(kRepMetaContext, reply);
  }
  if (set) {
    meta_export_ = found->name;
    meta_base_allocation_ = base_allocation;
  }
  QueueReply(kRepAck, std::string_view());
}

void Negotiator::OnList() {
  const bool hide_tls_only = !tls_active_;
  for (const ExportListing& entry : catalog_.List()) {
    // Spec: a SELECTIVETLS server MAY omit TLS-only exports before TLS; doing
    // so keeps clients from enumerating what they cannot open.
    if (entry.tls_only && hide_tls_only) continue;
    const std::string_view name = TruncateUtf8(entry.name, kMaxStringLength);
    const std::string_view description = TruncateUtf8(entry.description, kMaxStringLength);
    std::vector<uint8_t> data(4 + name.size() + description.size());
    StoreBe32(data.data(), static_cast<uint32_t>(name.size()));
    std::memcpy(data.data() + 4, name.data(), name.size());
    std::memcpy(data.data() + 4 + name.size(), description.data(), description.size());
    QueueReply(kRepServer, data);
  }
  QueueReply(kRepAck, std::string_view());
}

bool Negotiator::OnStartTls(NegotiationEvent& event) {
  if (tls_active_) {
    QueueReply(kRepErrInvalid, "TLS is already active");
    return false;
  }
  // NOTLS mode: the option is understood but policy forbids it. A client that
  // did not negotiate fixed newstyle keeps the server in NOTLS mode (spec).
  if (options_.tls_mode == TlsMode::kOff || !fixed_newstyle_) {
    QueueReply(kRepErrPolicy, "TLS is not enabled on this server");
    return false;
  }
  QueueReply(kRepAck, std::string_view());
  // Spec: after a successful STARTTLS the server MUST NOT keep negotiation
  // state from before it.
  structured_replies_ = false;
  meta_export_.clear();
  meta_base_allocation_ = false;
  phase_ = Phase::kAwaitingTls;
  event = StartTls{};
  return true;
}

void Negotiator::QueueReply(uint32_t reply_type, std::span<const uint8_t> data) {
  const size_t base = output_.size();
  output_.resize(base + kOptionReplyHeaderSize + data.size());
  uint8_t* p = output_.data() + base;
  StoreBe64(p, kOptionReplyMagic);
  StoreBe32(p + 8, option_);
  StoreBe32(p + 12, reply_type);
  StoreBe32(p + 16, static_cast<uint32_t>(data.size()));
  if (!data.empty()) std::memcpy(p + kOptionReplyHeaderSize, data.data(), data.size());
}

void Negotiator::QueueReply(uint32_t reply_type, std::string_view data) {
  QueueReply(reply_type, std::span(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
}

void Negotiator::QueueInfo(uint16_t info_type, std::span<const uint8_t> payload) {
  std::vector<uint8_t> data(2 + payload.size());
  StoreBe16(data.data(), info_type);
  if (!payload.empty()) std::memcpy(data.data() + 2, payload.data(), payload.size());
  QueueReply(kRepInfo, data);
}

const char* OptionName(uint32_t option) {
  switch (option) {
    case kOptExportName:
      return "NBD_OPT_EXPORT_NAME";
    case kOptAbort:
      return "NBD_OPT_ABORT";
    case kOptList:
      return "NBD_OPT_LIST";
    case kOptPeekExport:
      return "NBD_OPT_PEEK_EXPORT";
    case kOptStartTls:
      return "NBD_OPT_STARTTLS";
    case kOptInfo:
      return "NBD_OPT_INFO";
    case kOptGo:
      return "NBD_OPT_GO";
    case kOptStructuredReply:
      return "NBD_OPT_STRUCTURED_REPLY";
    case kOptListMetaContext:
      return "NBD_OPT_LIST_META_CONTEXT";
    case kOptSetMetaContext:
      return "NBD_OPT_SET_META_CONTEXT";
    case kOptExtendedHeaders:
      return "NBD_OPT_EXTENDED_HEADERS";
    default:
      return "unknown";
  }
}

const char* ReplyTypeName(uint32_t reply_type) {
  switch (reply_type) {
    case kRepAck:
      return "NBD_REP_ACK";
    case kRepServer:
      return "NBD_REP_SERVER";
    case kRepInfo:
      return "NBD_REP_INFO";
    case kRepMetaContext:
      return "NBD_REP_META_CONTEXT";
    case kRepErrUnsup:
      return "NBD_REP_ERR_UNSUP";
    case kRepErrPolicy:
      return "NBD_REP_ERR_POLICY";
    case kRepErrInvalid:
      return "NBD_REP_ERR_INVALID";
    case kRepErrPlatform:
      return "NBD_REP_ERR_PLATFORM";
    case kRepErrTlsReqd:
      return "NBD_REP_ERR_TLS_REQD";
    case kRepErrUnknown:
      return "NBD_REP_ERR_UNKNOWN";
    case kRepErrShutdown:
      return "NBD_REP_ERR_SHUTDOWN";
    case kRepErrBlockSizeReqd:
      return "NBD_REP_ERR_BLOCK_SIZE_REQD";
    case kRepErrTooBig:
      return "NBD_REP_ERR_TOO_BIG";
    default:
      return "unknown";
  }
}

}  // namespace blockserve::nbd
