#pragma once
// The block layer's operation tags (user_data.h): its own block, registered
// when the first block target is created (RegisterBlockOpTags).

#include "ringline/internal/user_data.h"

namespace ringline::block {

inline constexpr OpTagBlock kBlockTags{"block", 96, 6};

inline constexpr OpTag kTagRead = kBlockTags[0];
inline constexpr OpTag kTagWrite = kBlockTags[1];
inline constexpr OpTag kTagFsync = kBlockTags[2];
inline constexpr OpTag kTagFallocate = kBlockTags[3];
inline constexpr OpTag kTagNvmeCmd = kBlockTags[4];
inline constexpr OpTag kTagAux = kBlockTags[5];  // auxiliary operations (e.g. a read-back)

inline void RegisterBlockOpTags() { RegisterOpTags(kBlockTags); }

}  // namespace ringline::block
