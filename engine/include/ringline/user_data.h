#pragma once
// The 64-bit user_data carried by every SQE: tag (8 bits) | generation (24 bits)
// | slot index (32 bits). A completion whose generation no longer matches its slot
// is stale and dropped (DESIGN.md rule 3). Tags are unique across subsystems.

#include <cstdint>

namespace ringline {

enum class OpTag : uint8_t {
  kNone = 0,
  // engine (1..31)
  kCancel = 1,  // async-cancel SQEs; their CQEs carry no slot
  kNop = 2,
  kEventfdRead = 3,
  kTimeout = 4,
  kClose = 5,
  kGeneric = 6,
  // net (32..95)
  kAccept = 32,
  kRecv = 33,
  kRecvMulti = 34,
  kSend = 35,
  kSendZc = 36,
  kSendMsgZc = 37,
  kConnect = 38,
  kShutdown = 39,
  kRecvMsgUdp = 40,
  kSendMsgUdp = 41,
  kNetClose = 42,
  kNetCancel = 43,
  kNetTimeout = 44,   // per-connection timers (idle timeout, close linger)
  kFilesUpdate = 45,  // installs a socket into the fixed-file table
  kRecvDirect = 46,   // plain RECV into caller memory (read_exact of a large payload)
  kRecvBounded = 47,  // single RECV sized by the waiting reader (net Receiver, paced)
  // block (96..159)
  kBlockRead = 96,
  kBlockWrite = 97,
  kBlockFsync = 98,
  kBlockFallocate = 99,
  kNvmeCmd = 100,
  kBlockAux = 101,
};

class UserData {
 public:
  static constexpr uint32_t kGenerationMask = (1u << 24) - 1;

  constexpr UserData() = default;
  constexpr explicit UserData(uint64_t raw) : raw_(raw) {}
  static constexpr UserData Encode(OpTag tag, uint32_t generation, uint32_t index) {
    return UserData((uint64_t{static_cast<uint8_t>(tag)} << 56) |
                    (uint64_t{generation & kGenerationMask} << 32) | index);
  }

  constexpr uint64_t raw() const { return raw_; }
  constexpr OpTag tag() const { return static_cast<OpTag>(raw_ >> 56); }
  constexpr uint32_t generation() const {
    return static_cast<uint32_t>(raw_ >> 32) & kGenerationMask;
  }
  constexpr uint32_t index() const { return static_cast<uint32_t>(raw_); }

 private:
  uint64_t raw_ = 0;
};

}  // namespace ringline
