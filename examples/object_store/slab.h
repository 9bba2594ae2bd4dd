#pragma once
// The object store's slab file: its on-disk format and the set-up code that
// creates or checks it before the workers start (plain system calls: set-up,
// not the I/O path).
//
//   [ superblock: 4096 bytes ][ worker 0's slots ][ worker 1's slots ] ...
//
// Every worker owns `slots` consecutive slots of `slot_size` bytes (a multiple
// of 4096). A slot holds one object: its value from the start of the slot, and
// a SlotHeader in the slot's last 512 bytes. A PUT writes the whole slot in one
// write with FUA (RWF_DSYNC), so the object is on stable storage when the
// client gets "OK". A torn slot (power loss mid-write) fails its checksum and
// is ignored at recovery; an overwrite goes to a new slot with a higher
// sequence number, so the old copy is never damaged, and recovery keeps the
// newest copy of each key.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace object_store {

// [snippet:format]
inline constexpr uint64_t kSuperMagic = 0x31424c534c474e52;  // "RNGLSLB1"
inline constexpr uint64_t kSlotMagic = 0x314a424f4c474e52;   // "RNGLOBJ1"
inline constexpr std::size_t kSuperSize = 4096;
inline constexpr std::size_t kHeaderSpace = 512;  // at the end of each slot
inline constexpr std::size_t kMaxKey = 250;
inline constexpr uint32_t kClearSize = 4096;  // the block a delete zeroes

struct Superblock {
  uint64_t magic;
  uint32_t workers;    // slots are partitioned by owner: the count is fixed at creation
  uint32_t slots;      // per worker
  uint32_t slot_size;  // bytes, a multiple of 4096
  uint32_t reserved;
};

struct SlotHeader {
  uint64_t magic;     // kSlotMagic when the slot holds an object
  uint64_t checksum;  // Fnv1a over the header from `seq` on, then the value
  uint64_t seq;       // per-worker write sequence: the newest copy of a key wins
  uint32_t value_size;
  uint16_t key_size;
  uint16_t reserved;
  char key[kMaxKey];
};
static_assert(sizeof(SlotHeader) <= kHeaderSpace);
// [/snippet:format]

inline uint64_t Fnv1a(const void* data, std::size_t n, uint64_t h = 0xcbf29ce484222325ULL) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

// The checksum of a slot image (`slot` points at the slot's first byte).
inline uint64_t SlotChecksum(const uint8_t* slot, const SlotHeader& h) {
  const auto* from = reinterpret_cast<const uint8_t*>(&h.seq);
  const auto* end = reinterpret_cast<const uint8_t*>(&h) + sizeof(SlotHeader);
  return Fnv1a(slot, h.value_size, Fnv1a(from, end - from));
}

// The worker that owns `key`: stable across restarts (not a seeded hash).
inline uint32_t OwnerOf(std::string_view key, uint32_t workers) {
  return static_cast<uint32_t>(Fnv1a(key.data(), key.size()) % workers);
}

// Opens `path`, creating it (sparse) with this geometry if it does not exist,
// and checks that an existing slab was made for `workers` workers. Returns the
// slab's geometry (an existing slab's slot count and size win over the flags).
absl::StatusOr<Superblock> PrepareSlab(const std::string& path, uint32_t workers, uint32_t slots,
                                       uint32_t slot_size);

}  // namespace object_store
