#pragma once
// Connect: an outbound TCP or Unix stream connection on the current worker.
//
//   auto conn = co_await net::Connect(*SocketAddress::Parse("10.0.0.2:10809"),
//                                     std::chrono::seconds(5));
//   if (!conn) { /* conn.error(): ECONNREFUSED, ETIMEDOUT, ... */ }
//
// The socket is connected with IORING_OP_CONNECT (its address lives in the
// operation's slot), bounded by `timeout` (the connect is cancelled when it
// passes: ETIMEDOUT), then installed in the worker's fixed-file table like an
// accepted one. With a TLS context the handshake (SNI, certificate and host-name
// verification) completes before the connection is returned.
// Thread-safety: the connection belongs to the calling worker.

#include <chrono>
#include <memory>
#include <string>

#include "ringline/net/connection.h"
#include "ringline/net/options.h"
#include "ringline/net/result.h"
#include "ringline/net/socket_address.h"
#include "ringline/task.h"

namespace ringline::net {

class TlsClientContext;

struct ConnectOptions {
  ConnectionOptions connection;
  bool nodelay = true;  // TCP_NODELAY
  // Set: TLS client handshake before Connect returns. `server_name` is sent as
  // SNI and checked against the certificate when the context verifies peers
  // (an IP literal is checked against the certificate's IP addresses).
  std::shared_ptr<TlsClientContext> tls;
  std::string server_name;
};

// Note for GCC 12 callers: a ConnectOptions{...} temporary anywhere in a
// statement that contains co_await is destroyed from a bitwise copy by a GCC
// 12 coroutine bug (it owns a std::string); pass a named ConnectOptions (or
// use the overload without options). docs/gcc12-coroutines.md, rule 2.
Task<Result<Connection>> Connect(SocketAddress address, std::chrono::milliseconds timeout);
Task<Result<Connection>> Connect(SocketAddress address, std::chrono::milliseconds timeout,
                                 const ConnectOptions& options);

}  // namespace ringline::net
