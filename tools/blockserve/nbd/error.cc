#include "blockserve/nbd/error.h"

#include <cerrno>

#include "blockserve/nbd/protocol.h"

namespace blockserve::nbd {

NbdError ErrnoToNbdError(int errnum) {
  if (errnum < 0) errnum = -errnum;
  switch (errnum) {
    case 0:
      return NbdError::kOk;
    case EPERM:
    case EACCES:
    case EROFS:
      return NbdError::kPerm;
    case EIO:
      return NbdError::kIo;
    case ENOMEM:
      return NbdError::kNoMem;
    case EINVAL:
      return NbdError::kInval;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return NbdError::kNoSpc;
    case EOVERFLOW:
      return NbdError::kOverflow;
    case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
    case EOPNOTSUPP:
#endif
      return NbdError::kNotSup;
    case ESHUTDOWN:
      return NbdError::kShutdown;
    default:
      return NbdError::kIo;
  }
}

NbdError ReplyErrorFor(int errnum, uint16_t command, uint16_t flags) {
  const NbdError e = ErrnoToNbdError(errnum);
  if (e == NbdError::kNotSup && !(command == kCmdWriteZeroes && (flags & kCmdFlagFastZero) != 0)) {
    return NbdError::kInval;
  }
  if (e == NbdError::kOverflow && !(command == kCmdRead && (flags & kCmdFlagDf) != 0)) {
    return NbdError::kInval;
  }
  return e;
}

const char* NbdErrorName(NbdError error) {
  switch (error) {
    case NbdError::kOk:
      return "NBD_OK";
    case NbdError::kPerm:
      return "NBD_EPERM";
    case NbdError::kIo:
      return "NBD_EIO";
    case NbdError::kNoMem:
      return "NBD_ENOMEM";
    case NbdError::kInval:
      return "NBD_EINVAL";
    case NbdError::kNoSpc:
      return "NBD_ENOSPC";
    case NbdError::kOverflow:
      return "NBD_EOVERFLOW";
    case NbdError::kNotSup:
      return "NBD_ENOTSUP";
    case NbdError::kShutdown:
      return "NBD_ESHUTDOWN";
  }
  return "NBD_E?";
}

}  // namespace blockserve::nbd
