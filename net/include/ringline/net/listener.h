#pragma once
// Listener and Serve: accepting connections on a worker.
//
// Each worker binds its own SO_REUSEPORT socket (TCP) and arms a multishot
// accept on it, so there is no acceptor thread and no hand-off: a connection is
// served by the worker whose socket accepted it. Every accepted socket is
// installed in the worker's fixed-file table (a direct descriptor in the
// kernel-allocated range) and used only through it. The plain descriptor the
// accept returns exists just long enough to read the peer's address
// (getpeername) and set TCP_NODELAY: a multishot accept that wrote addresses
// itself would overwrite them for every connection of a burst.
//
// When the worker's connection table is full (NetOptions::max_connections), or
// its fixed-file table is, the newcomer is closed at once, cleanly (FIN, nothing
// read or written), counted in NetMetrics::refused and logged (rate-limited).
// When accepted connections pile up faster than Accept() takes them (more than
// ListenOptions::accept_queue), the multishot accept is paused and the kernel's
// backlog holds the rest.
//
//   Task<> WorkerMain(Worker& w) {
//     co_await net::Serve(SocketAddress::Any4(10809), {}, HandleClient, w.stop_token());
//   }
//
// Thread-safety: a Listener belongs to the worker that created it; use and
// destroy it on that worker's thread, before the worker is destroyed.

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "ringline/cancellation.h"
#include "ringline/net/connection.h"
#include "ringline/net/options.h"
#include "ringline/net/result.h"
#include "ringline/net/socket_address.h"
#include "ringline/task.h"

namespace ringline::net {

class TlsServerContext;

namespace detail {
class ListenerState;
}

class Listener {
 public:
  // Binds and starts accepting on the current worker. For TCP port 0 the kernel
  // picks a port (local_address() tells which; other workers should bind that).
  static absl::StatusOr<Listener> Bind(const SocketAddress& address,
                                       const ListenOptions& options = {});
  Listener() = default;
  Listener(Listener&& o) noexcept;
  Listener& operator=(Listener&& o) noexcept;
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener();  // Close()

  // The next accepted connection (plaintext; TLS is Serve's or the caller's
  // job). ECANCELED once the listener is closed; several tasks may wait (FIFO).
  Task<Result<Connection>> Accept();
  const SocketAddress& local_address() const;
  // Stops accepting; connections accepted but not taken are closed.
  void Close();
  bool valid() const { return s_ != nullptr; }

 private:
  explicit Listener(detail::ListenerState* s);
  detail::ListenerState* s_ = nullptr;
};

using ConnectionHandler = std::function<Task<>(Connection)>;

struct ServeOptions {
  ListenOptions listen;
  // Set: every accepted connection completes a TLS handshake (bounded by
  // listen.connection.handshake_timeout) before the handler sees it; failures
  // are logged with OpenSSL's reason and counted, and the connection closed.
  std::shared_ptr<TlsServerContext> tls;
};

// Accepts on the current worker until `stop` is cancelled, running `handler` as
// its own task (on this worker) for every connection. Returns an error only if
// binding fails; handlers still running when it returns keep running.
// `bound` (optional) is called once with the listening address.
Task<absl::Status> Serve(SocketAddress address, ServeOptions options, ConnectionHandler handler,
                         CancellationToken stop = {},
                         std::function<void(const SocketAddress&)> bound = {});

}  // namespace ringline::net
