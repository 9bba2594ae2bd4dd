#pragma once
// The NBD error values carried in replies, and the mapping from the host's
// errno values to them. The spec restricts the wire to a fixed set because
// errno numbering is not portable.
//
// Thread-safety: pure functions.

#include <cstdint>

namespace blockserve::nbd {

// Wire values of the reply error field (spec "Error values").
enum class NbdError : uint32_t {
  kOk = 0,
  kPerm = 1,        // NBD_EPERM
  kIo = 5,          // NBD_EIO
  kNoMem = 12,      // NBD_ENOMEM
  kInval = 22,      // NBD_EINVAL
  kNoSpc = 28,      // NBD_ENOSPC
  kOverflow = 75,   // NBD_EOVERFLOW
  kNotSup = 95,     // NBD_ENOTSUP
  kShutdown = 108,  // NBD_ESHUTDOWN
};

// Maps a host errno to the NBD error to send. Accepts a positive errno or a
// negated one (an io_uring result); 0 maps to kOk. Follows the spec's advice:
// EDQUOT and EFBIG become ENOSPC, EROFS and EACCES become EPERM, both spellings
// of "not supported" become ENOTSUP, and anything without an NBD equivalent
// becomes EIO (the request failed for a reason the client cannot act on).
NbdError ErrnoToNbdError(int errnum);

// The error to answer a transmission request of `command` with `flags`
// (protocol.h) that the backend failed with `errnum` (either sign): the
// mapping above, narrowed by the spec's "SHOULD NOT"s. NBD_ENOTSUP is sent only
// for a WRITE_ZEROES with FAST_ZERO and NBD_EOVERFLOW only for a READ with DF;
// elsewhere both become NBD_EINVAL (the request cannot be served as asked),
// because a client that never asked for those semantics may not know them.
NbdError ReplyErrorFor(int errnum, uint16_t command, uint16_t flags);

// "NBD_EINVAL" etc.; "NBD_E?" for a value outside the defined set.
const char* NbdErrorName(NbdError error);

}  // namespace blockserve::nbd
