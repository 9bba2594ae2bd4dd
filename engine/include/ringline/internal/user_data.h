#pragma once
// INTERNAL to ringline: installed only because public templates need it; not
// part of the API and may change without notice. Applications include the
// headers in ringline/ (ringline/ringline.h).
//
// The 64-bit user_data carried by every SQE: generation (24 bits) | tag (8 bits)
// | slot index (32 bits). A completion whose generation no longer matches its slot
// is stale and dropped (docs/io_uring-rules.md R3). The generation is the top
// field so that adding one to it wraps within its 24 bits by itself (the slab
// bumps it at every release).
//
// Tags say which kind of operation a slot carries. The engine owns the tags
// below 32 (OpTag's named values). Every other subsystem owns a block of tags
// it declares itself and registers with RegisterOpTags() before its first
// operation; registration refuses a block that overlaps another owner's, so
// tags stay unique across subsystems without the engine knowing its clients.

#include <cstdint>

namespace ringline {

enum class OpTag : uint8_t {
  kNone = 0,
  kCancel = 1,  // async-cancel SQEs; their CQEs carry no slot
  kNop = 2,
  kEventfdRead = 3,
  kTimeout = 4,
  kGeneric = 6,  // operations with no tag of their own (tests, one-off callers)
};

// The engine's own tags are [0, kFirstSubsystemTag).
inline constexpr uint8_t kFirstSubsystemTag = 32;

// A subsystem's block of tags: [first, first + count), named for diagnostics.
struct OpTagBlock {
  const char* owner;
  uint8_t first;
  uint8_t count;
  // The block's i-th tag (i < count).
  constexpr OpTag operator[](uint8_t i) const { return static_cast<OpTag>(first + i); }
};

// Registers `block` for the process. Registering the same block again is a
// no-op; a block that overlaps the engine's tags or another owner's block is a
// programming error and aborts naming both owners. Thread-safe.
void RegisterOpTags(const OpTagBlock& block);
// The owner of `tag` ("engine", or the name its block was registered with),
// or nullptr when no one registered it. Thread-safe.
const char* OpTagOwner(OpTag tag);

class UserData {
 public:
  static constexpr uint32_t kGenerationMask = (1u << 24) - 1;
  static constexpr int kTagShift = 32;
  static constexpr int kGenerationShift = 40;

  constexpr UserData() = default;
  constexpr explicit UserData(uint64_t raw) : raw_(raw) {}
  static constexpr UserData Encode(OpTag tag, uint32_t generation, uint32_t index) {
    return UserData((uint64_t{generation & kGenerationMask} << kGenerationShift) |
                    (uint64_t{static_cast<uint8_t>(tag)} << kTagShift) | index);
  }

  constexpr uint64_t raw() const { return raw_; }
  constexpr OpTag tag() const {
    return static_cast<OpTag>(static_cast<uint8_t>(raw_ >> kTagShift));
  }
  constexpr uint32_t generation() const { return static_cast<uint32_t>(raw_ >> kGenerationShift); }
  constexpr uint32_t index() const { return static_cast<uint32_t>(raw_); }

 private:
  uint64_t raw_ = 0;
};

}  // namespace ringline
