#pragma once
// Serialisers for transmission-phase replies: the simple reply and structured
// reply chunks. Each writes into caller-provided fixed-size storage and never
// allocates, so a server can keep the bytes in its per-request slot until the
// send completes. Payloads (read data) are never copied: the caller sends the
// header and then its data buffer.
//
// Thread-safety: pure functions over caller-owned storage.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "blockserve/nbd/error.h"
#include "blockserve/nbd/protocol.h"

namespace blockserve::nbd {

// NBD_REPLY_TYPE_OFFSET_DATA header: chunk header + 64-bit offset.
inline constexpr size_t kOffsetDataHeaderSize = kStructuredChunkHeaderSize + 8;
// NBD_REPLY_TYPE_OFFSET_HOLE chunk: header + offset + 32-bit hole size.
inline constexpr size_t kOffsetHoleChunkSize = kStructuredChunkHeaderSize + 8 + 4;
// The chunk length field is 32 bits and includes the 8-byte offset.
inline constexpr uint32_t kMaxOffsetDataLength = 0xffffffffu - 8;
// Error messages are cut to the spec's recommended string length.
inline constexpr size_t kMaxErrorMessageLength = 256;
// Largest error chunk: header, error, message length, message, offset.
inline constexpr size_t kMaxErrorChunkSize =
    kStructuredChunkHeaderSize + 4 + 2 + kMaxErrorMessageLength + 8;

using SimpleReplyBytes = std::array<uint8_t, kSimpleReplySize>;
using ChunkHeaderBytes = std::array<uint8_t, kStructuredChunkHeaderSize>;
using OffsetDataHeaderBytes = std::array<uint8_t, kOffsetDataHeaderSize>;
using OffsetHoleChunkBytes = std::array<uint8_t, kOffsetHoleChunkSize>;
using ErrorChunkBytes = std::array<uint8_t, kMaxErrorChunkSize>;

// Simple reply: magic, error, cookie. For a successful READ without
// structured replies, the caller sends the data right after these 16 bytes.
void EncodeSimpleReply(uint64_t cookie, NbdError error, std::span<uint8_t, kSimpleReplySize> out);

// A structured chunk header announcing `payload_length` bytes of payload.
void EncodeChunkHeader(uint64_t cookie, uint16_t flags, uint16_t type, uint32_t payload_length,
                       std::span<uint8_t, kStructuredChunkHeaderSize> out);

// NBD_REPLY_TYPE_NONE with NBD_REPLY_FLAG_DONE: the final chunk of a reply
// that succeeded (or whose errors were already sent).
void EncodeNoneChunk(uint64_t cookie, std::span<uint8_t, kStructuredChunkHeaderSize> out);

// NBD_REPLY_TYPE_OFFSET_DATA header for `data_length` bytes read at `offset`
// (the absolute export offset). The caller sends exactly `data_length` bytes
// of data after it. Precondition: 1 <= data_length <= kMaxOffsetDataLength.
// Mark `done` only when no error can still be detected while the data is sent.
void EncodeOffsetDataHeader(uint64_t cookie, uint64_t offset, uint32_t data_length, bool done,
                            std::span<uint8_t, kOffsetDataHeaderSize> out);

// NBD_REPLY_TYPE_OFFSET_HOLE: `hole_size` bytes at `offset` read as zeroes.
// Precondition: hole_size > 0. Not allowed in a reply to a READ with DF.
void EncodeOffsetHoleChunk(uint64_t cookie, uint64_t offset, uint32_t hole_size, bool done,
                           std::span<uint8_t, kOffsetHoleChunkSize> out);

// NBD_REPLY_TYPE_ERROR with `message` (cut to kMaxErrorMessageLength bytes on
// a UTF-8 boundary). Returns the number of bytes written to the front of
// `out`. `error` must not be kOk (the spec requires a nonzero error); kOk is
// sent as NBD_EIO rather than producing a chunk the client would reject.
size_t EncodeErrorChunk(uint64_t cookie, NbdError error, std::string_view message, bool done,
                        std::span<uint8_t, kMaxErrorChunkSize> out);

// NBD_REPLY_TYPE_ERROR_OFFSET: like EncodeErrorChunk, for an error at `offset`
// inside the request's range.
size_t EncodeErrorOffsetChunk(uint64_t cookie, NbdError error, std::string_view message,
                              uint64_t offset, bool done,
                              std::span<uint8_t, kMaxErrorChunkSize> out);

// One NBD_REPLY_TYPE_BLOCK_STATUS descriptor: `length` bytes with `flags`
// (for base:allocation, NBD_STATE_HOLE = 1 and NBD_STATE_ZERO = 2).
struct BlockStatusDescriptor {
  uint32_t length = 0;
  uint32_t flags = 0;
};
// Header of a block status chunk: chunk header + 32-bit context id; each
// descriptor adds kBlockStatusDescriptorSize bytes.
inline constexpr size_t kBlockStatusHeaderSize = kStructuredChunkHeaderSize + 4;
inline constexpr size_t kBlockStatusDescriptorSize = 8;

// Appends an NBD_REPLY_TYPE_BLOCK_STATUS chunk for `context_id` with
// `descriptors` (at least one, the spec requires it) to `out`, which is
// resized to hold it: kBlockStatusHeaderSize + 8 * descriptors.size() bytes.
// The caller keeps `out` (e.g. per request slot) so no allocation happens in
// steady state.
template <typename Bytes>
void EncodeBlockStatusChunk(uint64_t cookie, uint32_t context_id,
                            std::span<const BlockStatusDescriptor> descriptors, bool done,
                            Bytes& out);
void EncodeBlockStatusChunkInto(uint64_t cookie, uint32_t context_id,
                                std::span<const BlockStatusDescriptor> descriptors, bool done,
                                std::span<uint8_t> out);

template <typename Bytes>
void EncodeBlockStatusChunk(uint64_t cookie, uint32_t context_id,
                            std::span<const BlockStatusDescriptor> descriptors, bool done,
                            Bytes& out) {
  out.resize(kBlockStatusHeaderSize + kBlockStatusDescriptorSize * descriptors.size());
  EncodeBlockStatusChunkInto(cookie, context_id, descriptors, done,
                             std::span<uint8_t>(out.data(), out.size()));
}

}  // namespace blockserve::nbd
