#include "blockserve/nbd/reply.h"

#include <cassert>
#include <cstring>

#include "blockserve/nbd/byte_order.h"
#include "blockserve/nbd/text.h"

namespace blockserve::nbd {
namespace {

uint16_t DoneFlag(bool done) { return done ? kReplyFlagDone : 0; }

// Shared body of the two error chunk types; `offset` is appended when given.
size_t EncodeError(uint64_t cookie, uint16_t type, NbdError error, std::string_view message,
                   const uint64_t* offset, bool done, std::span<uint8_t, kMaxErrorChunkSize> out) {
  if (error == NbdError::kOk) error = NbdError::kIo;
  const std::string_view text = TruncateUtf8(message, kMaxErrorMessageLength);
  const size_t payload = 4 + 2 + text.size() + (offset != nullptr ? 8 : 0);
  EncodeChunkHeader(cookie, DoneFlag(done), type, static_cast<uint32_t>(payload),
                    out.first<kStructuredChunkHeaderSize>());
  uint8_t* p = out.data() + kStructuredChunkHeaderSize;
  StoreBe32(p, static_cast<uint32_t>(error));
  StoreBe16(p + 4, static_cast<uint16_t>(text.size()));
  if (!text.empty()) std::memcpy(p + 6, text.data(), text.size());
  if (offset != nullptr) StoreBe64(p + 6 + text.size(), *offset);
  return kStructuredChunkHeaderSize + payload;
}

}  // namespace

void EncodeSimpleReply(uint64_t cookie, NbdError error, std::span<uint8_t, kSimpleReplySize> out) {
  StoreBe32(out.data(), kSimpleReplyMagic);
  StoreBe32(out.data() + 4, static_cast<uint32_t>(error));
  StoreBe64(out.data() + 8, cookie);
}

void EncodeChunkHeader(uint64_t cookie, uint16_t flags, uint16_t type, uint32_t payload_length,
                       std::span<uint8_t, kStructuredChunkHeaderSize> out) {
  uint8_t* p = out.data();
  StoreBe32(p, kStructuredReplyMagic);
  StoreBe16(p + 4, flags);
  StoreBe16(p + 6, type);
  StoreBe64(p + 8, cookie);
  StoreBe32(p + 16, payload_length);
}

void EncodeNoneChunk(uint64_t cookie, std::span<uint8_t, kStructuredChunkHeaderSize> out) {
  EncodeChunkHeader(cookie, kReplyFlagDone, kReplyTypeNone, 0, out);
}

void EncodeOffsetDataHeader(uint64_t cookie, uint64_t offset, uint32_t data_length, bool done,
                            std::span<uint8_t, kOffsetDataHeaderSize> out) {
  assert(data_length >= 1 && data_length <= kMaxOffsetDataLength);
  EncodeChunkHeader(cookie, DoneFlag(done), kReplyTypeOffsetData, data_length + 8,
                    out.first<kStructuredChunkHeaderSize>());
  StoreBe64(out.data() + kStructuredChunkHeaderSize, offset);
}

void EncodeOffsetHoleChunk(uint64_t cookie, uint64_t offset, uint32_t hole_size, bool done,
                           std::span<uint8_t, kOffsetHoleChunkSize> out) {
  assert(hole_size > 0);
  EncodeChunkHeader(cookie, DoneFlag(done), kReplyTypeOffsetHole, 12,
                    out.first<kStructuredChunkHeaderSize>());
  StoreBe64(out.data() + kStructuredChunkHeaderSize, offset);
  StoreBe32(out.data() + kStructuredChunkHeaderSize + 8, hole_size);
}

size_t EncodeErrorChunk(uint64_t cookie, NbdError error, std::string_view message, bool done,
                        std::span<uint8_t, kMaxErrorChunkSize> out) {
  return EncodeError(cookie, kReplyTypeError, error, message, nullptr, done, out);
}

size_t EncodeErrorOffsetChunk(uint64_t cookie, NbdError error, std::string_view message,
                              uint64_t offset, bool done,
                              std::span<uint8_t, kMaxErrorChunkSize> out) {
  return EncodeError(cookie, kReplyTypeErrorOffset, error, message, &offset, done, out);
}

void EncodeBlockStatusChunkInto(uint64_t cookie, uint32_t context_id,
                                std::span<const BlockStatusDescriptor> descriptors, bool done,
                                std::span<uint8_t> out) {
  const uint32_t payload =
      static_cast<uint32_t>(4 + kBlockStatusDescriptorSize * descriptors.size());
  EncodeChunkHeader(cookie, done ? kReplyFlagDone : 0, kReplyTypeBlockStatus, payload,
                    out.first<kStructuredChunkHeaderSize>());
  uint8_t* p = out.data() + kStructuredChunkHeaderSize;
  StoreBe32(p, context_id);
  p += 4;
  for (const BlockStatusDescriptor& d : descriptors) {
    StoreBe32(p, d.length);
    StoreBe32(p + 4, d.flags);
    p += kBlockStatusDescriptorSize;
  }
}

}  // namespace blockserve::nbd
