// Tests of the errno -> NBD error mapping (blockserve/nbd/error.h).

#include <gtest/gtest.h>

#include <cerrno>

#include "blockserve/nbd/error.h"
#include "blockserve/nbd/protocol.h"

namespace blockserve::nbd {
namespace {

TEST(ErrnoToNbdErrorTest, WireValuesAreTheSpecNumbers) {
  EXPECT_EQ(static_cast<uint32_t>(NbdError::kPerm), 1u);
  EXPECT_EQ(static_cast<uint32_t>(NbdError::kIo), 5u);
  EXPECT_EQ(static_cast<uint32_t>(NbdError::kNoMem), 12u);
  EXPECT_EQ(static_cast<uint32_t>(NbdError::kInval), 22u);
  EXPECT_EQ(static_cast<uint32_t>(NbdError::kNoSpc), 28u);
  EXPECT_EQ(static_cast<uint32_t>(NbdError::kOverflow), 75u);
  EXPECT_EQ(static_cast<uint32_t>(NbdError::kNotSup), 95u);
  EXPECT_EQ(static_cast<uint32_t>(NbdError::kShutdown), 108u);
}

TEST(ErrnoToNbdErrorTest, DirectMappings) {
  EXPECT_EQ(ErrnoToNbdError(0), NbdError::kOk);
  EXPECT_EQ(ErrnoToNbdError(EPERM), NbdError::kPerm);
  EXPECT_EQ(ErrnoToNbdError(EIO), NbdError::kIo);
  EXPECT_EQ(ErrnoToNbdError(ENOMEM), NbdError::kNoMem);
  EXPECT_EQ(ErrnoToNbdError(EINVAL), NbdError::kInval);
  EXPECT_EQ(ErrnoToNbdError(ENOSPC), NbdError::kNoSpc);
  EXPECT_EQ(ErrnoToNbdError(EOVERFLOW), NbdError::kOverflow);
  EXPECT_EQ(ErrnoToNbdError(ENOTSUP), NbdError::kNotSup);
  EXPECT_EQ(ErrnoToNbdError(ESHUTDOWN), NbdError::kShutdown);
}

TEST(ErrnoToNbdErrorTest, SpecRecommendedFoldings) {
  EXPECT_EQ(ErrnoToNbdError(EDQUOT), NbdError::kNoSpc);
  EXPECT_EQ(ErrnoToNbdError(EFBIG), NbdError::kNoSpc);
  EXPECT_EQ(ErrnoToNbdError(EROFS), NbdError::kPerm);
  EXPECT_EQ(ErrnoToNbdError(EACCES), NbdError::kPerm);
  EXPECT_EQ(ErrnoToNbdError(EOPNOTSUPP), NbdError::kNotSup);
}

TEST(ErrnoToNbdErrorTest, UnknownErrnoIsIo) {
  EXPECT_EQ(ErrnoToNbdError(ENOENT), NbdError::kIo);
  EXPECT_EQ(ErrnoToNbdError(ECANCELED), NbdError::kIo);
  EXPECT_EQ(ErrnoToNbdError(9999), NbdError::kIo);
}

TEST(ErrnoToNbdErrorTest, NegatedErrnoFromIoUringIsAccepted) {
  EXPECT_EQ(ErrnoToNbdError(-ENOSPC), NbdError::kNoSpc);
  EXPECT_EQ(ErrnoToNbdError(-EIO), NbdError::kIo);
}

TEST(ReplyErrorForTest, DeviceErrorsKeepTheirMapping) {
  for (uint16_t cmd : {kCmdRead, kCmdWrite, kCmdFlush, kCmdTrim, kCmdWriteZeroes}) {
    EXPECT_EQ(ReplyErrorFor(-EIO, cmd, 0), NbdError::kIo);
    EXPECT_EQ(ReplyErrorFor(-ENOSPC, cmd, 0), NbdError::kNoSpc);
    EXPECT_EQ(ReplyErrorFor(EDQUOT, cmd, 0), NbdError::kNoSpc);
    EXPECT_EQ(ReplyErrorFor(-EFBIG, cmd, kCmdFlagFua), NbdError::kNoSpc);
    EXPECT_EQ(ReplyErrorFor(-EROFS, cmd, 0), NbdError::kPerm);
    EXPECT_EQ(ReplyErrorFor(-EAGAIN, cmd, 0), NbdError::kIo);
  }
}

TEST(ReplyErrorForTest, NotSupOnlyForFastZero) {
  EXPECT_EQ(ReplyErrorFor(-ENOTSUP, kCmdWriteZeroes, kCmdFlagFastZero), NbdError::kNotSup);
  EXPECT_EQ(ReplyErrorFor(-EOPNOTSUPP, kCmdWriteZeroes, kCmdFlagFastZero | kCmdFlagFua),
            NbdError::kNotSup);
  EXPECT_EQ(ReplyErrorFor(-EOPNOTSUPP, kCmdWriteZeroes, 0), NbdError::kInval);
  EXPECT_EQ(ReplyErrorFor(-EOPNOTSUPP, kCmdTrim, 0), NbdError::kInval);
  EXPECT_EQ(ReplyErrorFor(-EOPNOTSUPP, kCmdFlush, 0), NbdError::kInval);
}

TEST(ReplyErrorForTest, OverflowOnlyForDfReads) {
  EXPECT_EQ(ReplyErrorFor(-EOVERFLOW, kCmdRead, kCmdFlagDf), NbdError::kOverflow);
  EXPECT_EQ(ReplyErrorFor(-EOVERFLOW, kCmdRead, 0), NbdError::kInval);
  EXPECT_EQ(ReplyErrorFor(-EOVERFLOW, kCmdWrite, kCmdFlagDf), NbdError::kInval);
}

TEST(NbdErrorNameTest, Names) {
  EXPECT_STREQ(NbdErrorName(NbdError::kInval), "NBD_EINVAL");
  EXPECT_STREQ(NbdErrorName(NbdError::kShutdown), "NBD_ESHUTDOWN");
  EXPECT_STREQ(NbdErrorName(static_cast<NbdError>(7)), "NBD_E?");
}

}  // namespace
}  // namespace blockserve::nbd
