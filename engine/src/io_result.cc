#include "ringline/io_result.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace ringline {

const char* ErrnoName(int e) {
  switch (e) {
#define RL_ERRNO(x) \
  case x:           \
    return #x;
    // clang-format off
    RL_ERRNO(EPERM)
    RL_ERRNO(ENOENT)
    RL_ERRNO(EINTR)
    RL_ERRNO(EIO)
    RL_ERRNO(ENXIO)
    RL_ERRNO(E2BIG)
    RL_ERRNO(EBADF)
    RL_ERRNO(EAGAIN)
    RL_ERRNO(ENOMEM)
    RL_ERRNO(EACCES)
    RL_ERRNO(EFAULT)
    RL_ERRNO(EBUSY)
    RL_ERRNO(EEXIST)
    RL_ERRNO(ENODEV)
    RL_ERRNO(EINVAL)
    RL_ERRNO(ENFILE)
    RL_ERRNO(EMFILE)
    RL_ERRNO(ENOTTY)
    RL_ERRNO(EFBIG)
    RL_ERRNO(ENOSPC)
    RL_ERRNO(ESPIPE)
    RL_ERRNO(EROFS)
    RL_ERRNO(EPIPE)
    RL_ERRNO(ERANGE)
    RL_ERRNO(ENOSYS)
    RL_ERRNO(ETIME)
    RL_ERRNO(ENOBUFS)
    RL_ERRNO(ECANCELED)
    RL_ERRNO(ECONNRESET)
    RL_ERRNO(ECONNREFUSED)
    RL_ERRNO(ETIMEDOUT)
    RL_ERRNO(ENOTCONN)
    RL_ERRNO(EALREADY)
    RL_ERRNO(EINPROGRESS)
    RL_ERRNO(EOPNOTSUPP)
    RL_ERRNO(EADDRINUSE)
    RL_ERRNO(ENOTSOCK)
    RL_ERRNO(EOVERFLOW)
    RL_ERRNO(ESHUTDOWN)
    RL_ERRNO(EHOSTUNREACH)
    RL_ERRNO(ENETUNREACH)
    RL_ERRNO(EMSGSIZE)
    RL_ERRNO(EPROTO)
    RL_ERRNO(EBADMSG)
    RL_ERRNO(ENODATA)
    // clang-format on
#undef RL_ERRNO
    default:
      return nullptr;
  }
}

absl::Status ErrnoToStatus(int negated_errno, absl::string_view context) {
  const int e = negated_errno < 0 ? -negated_errno : negated_errno;
  if (e == 0) return absl::OkStatus();
  const char* name = ErrnoName(e);
  std::string msg =
      absl::StrCat(context, ": ", name ? name : absl::StrCat("E", e), " (", std::strerror(e), ")");
  switch (e) {
    case EPERM:
    case EACCES:
      return absl::PermissionDeniedError(msg);
    case ENOENT:
    case ENODEV:
    case ENXIO:
      return absl::NotFoundError(msg);
    case EINVAL:
    case EBADF:
    case ENOTTY:
      return absl::InvalidArgumentError(msg);
    case ENOMEM:
    case ENOSPC:
    case ENOBUFS:
    case EMFILE:
    case ENFILE:
      return absl::ResourceExhaustedError(msg);
    case EAGAIN:
    case EBUSY:
    case EINTR:
      return absl::UnavailableError(msg);
    case ENOSYS:
    case EOPNOTSUPP:
      return absl::UnimplementedError(msg);
    case ECANCELED:
      return absl::CancelledError(msg);
    case ETIME:
    case ETIMEDOUT:
      return absl::DeadlineExceededError(msg);
    case EEXIST:
      return absl::AlreadyExistsError(msg);
    case ERANGE:
    case EOVERFLOW:
    case EFBIG:
      return absl::OutOfRangeError(msg);
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace ringline
