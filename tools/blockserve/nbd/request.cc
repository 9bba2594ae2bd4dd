#include "blockserve/nbd/request.h"

#include "blockserve/nbd/byte_order.h"

namespace blockserve::nbd {
namespace {

RequestCheck Refuse(Refusal refusal, NbdError error, uint32_t payload_length, const char* reason) {
  return RequestCheck{Verdict::kReplyError, error, payload_length, reason, refusal};
}

// Command flags a request of `type` may carry given the transmission flags.
// FUA is valid on every command once negotiated (spec: the server MUST accept
// it anywhere, even by ignoring it).
uint16_t AllowedFlags(uint16_t type, uint16_t tflags) {
  uint16_t allowed = (tflags & kFlagSendFua) != 0 ? kCmdFlagFua : 0;
  switch (type) {
    case kCmdRead:
      if ((tflags & kFlagSendDf) != 0) allowed |= kCmdFlagDf;
      break;
    case kCmdWriteZeroes:
      allowed |= kCmdFlagNoHole;
      if ((tflags & kFlagSendFastZero) != 0) allowed |= kCmdFlagFastZero;
      break;
    case kCmdBlockStatus:
      allowed |= kCmdFlagReqOne;
      break;
    default:
      break;
  }
  return allowed;
}

}  // namespace

ParsedRequest ParseRequest(std::span<const uint8_t> bytes) {
  ParsedRequest parsed;
  if (bytes.size() < kRequestHeaderSize) return parsed;
  const uint8_t* p = bytes.data();
  if (LoadBe32(p) != kRequestMagic) {
    parsed.status = ParseStatus::kBadMagic;
    return parsed;
  }
  parsed.status = ParseStatus::kOk;
  parsed.request.flags = LoadBe16(p + 4);
  parsed.request.type = LoadBe16(p + 6);
  parsed.request.cookie = LoadBe64(p + 8);
  parsed.request.offset = LoadBe64(p + 16);
  parsed.request.length = LoadBe32(p + 24);
  return parsed;
}

void EncodeRequest(const Request& request, std::span<uint8_t, kRequestHeaderSize> out) {
  uint8_t* p = out.data();
  StoreBe32(p, kRequestMagic);
  StoreBe16(p + 4, request.flags);
  StoreBe16(p + 6, request.type);
  StoreBe64(p + 8, request.cookie);
  StoreBe64(p + 16, request.offset);
  StoreBe32(p + 24, request.length);
}

RequestCheck ValidateRequest(const Request& r, const TransmissionParams& params) {
  const uint16_t tflags = params.flags;
  // The client sends a WRITE's payload whatever the server thinks of it.
  const uint32_t payload = r.type == kCmdWrite ? r.length : 0;

  switch (r.type) {
    case kCmdDisc:
      // No reply exists for DISC, so a malformed one is still a disconnect.
      return RequestCheck{Verdict::kDisconnect, NbdError::kOk, 0, ""};
    case kCmdRead:
    case kCmdWrite:
    case kCmdFlush:
    case kCmdTrim:
    case kCmdCache:
    case kCmdWriteZeroes:
    case kCmdBlockStatus:
      break;
    default:
      return Refuse(Refusal::kUnknownCommand, NbdError::kInval, 0, "unknown command");
  }

  // A payload longer than the server will ever buffer is not read and
  // discarded either: a client announcing up to 4 GiB (and perhaps sending
  // nothing) would hold the connection for as long as it likes.
  if (r.type == kCmdWrite && r.length > params.block_size.maximum) {
    return RequestCheck{Verdict::kReplyErrorThenClose, NbdError::kInval, payload,
                        "write longer than the maximum block size: closing", Refusal::kTooLong};
  }
  const bool writes = r.type == kCmdWrite || r.type == kCmdTrim || r.type == kCmdWriteZeroes;
  if (writes && (tflags & kFlagReadOnly) != 0) {
    return Refuse(Refusal::kReadOnly, NbdError::kPerm, payload, "export is read-only");
  }
  if ((r.flags & ~AllowedFlags(r.type, tflags)) != 0) {
    return Refuse(Refusal::kBadFlags, NbdError::kInval, payload,
                  "command flag not valid for this command");
  }

  switch (r.type) {
    case kCmdFlush:
      if ((tflags & kFlagSendFlush) == 0) {
        return Refuse(Refusal::kNotAdvertised, NbdError::kInval, 0,
                      "flush not supported by this export");
      }
      // Spec: offset and length of a flush are reserved and MUST be zero.
      if (r.offset != 0 || r.length != 0) {
        return Refuse(Refusal::kBadFlush, NbdError::kInval, 0,
                      "flush with nonzero offset or length");
      }
      return RequestCheck{};
    case kCmdTrim:
      if ((tflags & kFlagSendTrim) == 0) {
        return Refuse(Refusal::kNotAdvertised, NbdError::kInval, 0,
                      "trim not supported by this export");
      }
      break;
    case kCmdWriteZeroes:
      if ((tflags & kFlagSendWriteZeroes) == 0) {
        return Refuse(Refusal::kNotAdvertised, NbdError::kInval, 0,
                      "write zeroes not supported by this export");
      }
      break;
    case kCmdCache:
      if ((tflags & kFlagSendCache) == 0) {
        return Refuse(Refusal::kNotAdvertised, NbdError::kInval, 0,
                      "cache not supported by this export");
      }
      break;
    case kCmdBlockStatus:
      // Spec: a client MUST NOT send it before a metadata context was selected
      // (NBD_OPT_SET_META_CONTEXT), and the reply needs structured replies.
      if (params.base_allocation_context == 0 || !params.structured_replies) {
        return Refuse(Refusal::kNoMetaContext, NbdError::kInval, 0,
                      "no metadata context negotiated");
      }
      // The reply MUST carry at least one descriptor, which a zero-length
      // range cannot have.
      if (r.length == 0)
        return Refuse(Refusal::kEmptyBlockStatus, NbdError::kInval, 0,
                      "block status of zero bytes");
      break;
    default:
      break;
  }

  const uint64_t size = params.export_size;
  if (r.offset > size || r.length > size - r.offset) {
    // Spec: ENOSPC for writes past the end, EINVAL for reads and trims.
    const bool space = r.type == kCmdWrite || r.type == kCmdWriteZeroes;
    return Refuse(Refusal::kPastEnd, space ? NbdError::kNoSpc : NbdError::kInval, payload,
                  "request extends past the end of the export");
  }
  const uint64_t align_mask = uint64_t{params.block_size.minimum} - 1;
  // A request that ends at the end of the export may end mid-block: the tail
  // of an export whose size is not a multiple of the minimum is reachable.
  const bool ends_at_end = r.offset + r.length == size;
  if ((r.offset & align_mask) != 0 || ((r.length & align_mask) != 0 && !ends_at_end)) {
    return Refuse(Refusal::kMisaligned, NbdError::kInval, payload,
                  "request not aligned to the minimum block size");
  }
  const bool bounded = r.type == kCmdRead || r.type == kCmdWrite || r.type == kCmdCache;
  if (bounded && r.length > params.block_size.maximum) {
    return Refuse(Refusal::kTooLong, NbdError::kInval, payload,
                  "request longer than the maximum block size");
  }
  if (r.length == 0) {
    return RequestCheck{Verdict::kReplyOk, NbdError::kOk, 0, ""};
  }
  return RequestCheck{Verdict::kExecute, NbdError::kOk, payload, ""};
}

const char* RefusalLabel(Refusal refusal) {
  switch (refusal) {
    case Refusal::kNone:
      return "none";
    case Refusal::kUnknownCommand:
      return "unknown_command";
    case Refusal::kReadOnly:
      return "read_only";
    case Refusal::kBadFlags:
      return "bad_flags";
    case Refusal::kNotAdvertised:
      return "not_advertised";
    case Refusal::kBadFlush:
      return "bad_flush";
    case Refusal::kNoMetaContext:
      return "no_meta_context";
    case Refusal::kEmptyBlockStatus:
      return "empty_block_status";
    case Refusal::kPastEnd:
      return "past_end";
    case Refusal::kMisaligned:
      return "misaligned";
    case Refusal::kTooLong:
      return "too_long";
  }
  return "none";
}

const char* CommandName(uint16_t type) {
  switch (type) {
    case kCmdRead:
      return "NBD_CMD_READ";
    case kCmdWrite:
      return "NBD_CMD_WRITE";
    case kCmdDisc:
      return "NBD_CMD_DISC";
    case kCmdFlush:
      return "NBD_CMD_FLUSH";
    case kCmdTrim:
      return "NBD_CMD_TRIM";
    case kCmdCache:
      return "NBD_CMD_CACHE";
    case kCmdWriteZeroes:
      return "NBD_CMD_WRITE_ZEROES";
    case kCmdBlockStatus:
      return "NBD_CMD_BLOCK_STATUS";
    default:
      return "NBD_CMD_?";
  }
}

}  // namespace blockserve::nbd
