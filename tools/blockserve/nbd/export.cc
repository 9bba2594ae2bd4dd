#include "blockserve/nbd/export.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace blockserve::nbd {
namespace {

bool IsPowerOfTwo(uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

uint16_t ComputeTransmissionFlags(const ExportInfo& info, bool structured_replies) {
  uint16_t flags = kFlagHasFlags;
  if (info.read_only) flags |= kFlagReadOnly;
  if (info.can_flush) flags |= kFlagSendFlush;
  if (info.rotational) flags |= kFlagRotational;
  if (info.can_multi_conn) flags |= kFlagCanMultiConn;
  if (info.can_cache) flags |= kFlagSendCache;
  if (info.can_df && structured_replies) flags |= kFlagSendDf;
  if (!info.read_only) {
    if (info.can_fua) flags |= kFlagSendFua;
    if (info.can_trim) flags |= kFlagSendTrim;
    if (info.can_write_zeroes) {
      flags |= kFlagSendWriteZeroes;
      // The spec requires SEND_FAST_ZERO clear whenever SEND_WRITE_ZEROES is.
      if (info.can_fast_zero) flags |= kFlagSendFastZero;
    }
  }
  return flags;
}

absl::StatusOr<BlockSizeConstraints> EffectiveBlockSize(const BlockSizeConstraints& c,
                                                        uint64_t export_size,
                                                        uint32_t max_request_length) {
  if (!IsPowerOfTwo(c.minimum) || c.minimum > kMaxMinimumBlockSize) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "minimum block size %u must be a power of two no larger than 65536", c.minimum));
  }
  if (!IsPowerOfTwo(c.preferred) || c.preferred < std::max<uint32_t>(c.minimum, 512)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("preferred block size %u must be a power of two >= max(minimum %u, 512)",
                        c.preferred, c.minimum));
  }
  if (c.maximum != kUnlimitedBlockSize && c.maximum % c.minimum != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "maximum block size %u must be a multiple of the minimum %u", c.maximum, c.minimum));
  }
  if (max_request_length < c.minimum || max_request_length % c.minimum != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("the request limit %u must be a multiple of the minimum block size %u",
                        max_request_length, c.minimum));
  }
  BlockSizeConstraints out = c;
  // Capping keeps `maximum` a multiple of `minimum` (both are).
  out.maximum = std::min(c.maximum, max_request_length);
  const uint64_t floor = std::min<uint64_t>(out.preferred, export_size);
  if (out.maximum < floor) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "maximum block size %u (capped to %u) is below min(preferred %u, export size %u)",
        c.maximum, out.maximum, out.preferred, export_size));
  }
  return out;
}

absl::StatusOr<TransmissionParams> MakeTransmissionParams(const ExportInfo& info,
                                                          bool structured_replies,
                                                          bool block_size_requested) {
  absl::StatusOr<BlockSizeConstraints> block_size =
      EffectiveBlockSize(info.block_size, info.size, info.max_request_length);
  if (!block_size.ok()) return block_size.status();
  TransmissionParams params;
  params.export_size = info.size;
  params.flags = ComputeTransmissionFlags(info, structured_replies);
  params.block_size = *block_size;
  params.device_alignment = block_size->minimum;
  // A client that did not ask is not bound by the backend's alignment (the
  // spec lets it assume a minimum of 1): the server aligns for it.
  if (!block_size_requested) params.block_size.minimum = 1;
  params.structured_replies = structured_replies;
  return params;
}

}  // namespace blockserve::nbd
