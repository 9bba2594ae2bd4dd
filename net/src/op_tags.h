#pragma once
// The network layer's operation tags (user_data.h): its own block, registered
// by every NetWorker before its first operation.

#include "ringline/internal/user_data.h"

namespace ringline::net::detail {

inline constexpr OpTagBlock kNetTags{"net", 32, 16};

inline constexpr OpTag kTagAccept = kNetTags[0];
inline constexpr OpTag kTagRecvMulti = kNetTags[2];
inline constexpr OpTag kTagSend = kNetTags[3];
inline constexpr OpTag kTagSendZc = kNetTags[4];
inline constexpr OpTag kTagSendMsgZc = kNetTags[5];
inline constexpr OpTag kTagConnect = kNetTags[6];
inline constexpr OpTag kTagShutdown = kNetTags[7];
inline constexpr OpTag kTagRecvMsgUdp = kNetTags[8];
inline constexpr OpTag kTagSendMsgUdp = kNetTags[9];
inline constexpr OpTag kTagClose = kNetTags[10];
inline constexpr OpTag kTagTimeout = kNetTags[12];      // idle timeout, close linger
inline constexpr OpTag kTagFilesUpdate = kNetTags[13];  // a socket into the fixed-file table
inline constexpr OpTag kTagRecvDirect = kNetTags[14];   // plain RECV into caller memory
inline constexpr OpTag kTagRecvBounded = kNetTags[15];  // single RECV sized by the reader

}  // namespace ringline::net::detail
