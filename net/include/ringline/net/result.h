#pragma once
// net::Result<T>: the value of a network operation, or why there is none. It is
// the engine's ringline::Result<T> (ringline/result.h states the sign
// convention: error() is a positive errno, 0 with no value is a clean end of
// stream). Codes the network layer itself produces:
//   ENODATA     the stream ended inside a message (truncated)
//   EMSGSIZE    a message outgrew the connection's accumulator cap (closed)
//   ETIMEDOUT   connect, handshake or idle timeout
//   ENOTCONN    the connection was closed locally
//   EBUSY       another task is already receiving on this connection
//   ECONNABORTED an earlier read_exact was abandoned mid-way (stream out of sync)
//   EPROTO      TLS failure (the reason is logged)
// Thread-safety: a plain value.

#include "ringline/result.h"

namespace ringline::net {

template <typename T>
using Result = ringline::Result<T>;

}  // namespace ringline::net
