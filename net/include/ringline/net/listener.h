#pragma once
// ListenSocket, Listener and Serve: accepting connections on workers.
//
// A process listens on an address through ONE listening socket (a
// ListenSocket: opened once, or adopted from systemd's socket activation),
// and every worker that serves the address arms its own accept on that same
// socket, so there is no acceptor thread and no hand-off: a connection is
// served by the worker whose accept took it. Sharing one socket rather than
// binding one SO_REUSEPORT socket per worker keeps the port exclusive to the
// process: the kernel refuses the address to any other process (EADDRINUSE)
// instead of silently giving it a share of the connections
// (ListenOptions::share_port_across_processes restores per-worker
// SO_REUSEPORT sockets for applications that want cross-process sharing).
//
// How connections spread over the workers of one socket: every worker's
// accept waits on the socket's wait queue as an exclusive waiter, and the
// kernel hands a new connection to the first waiter in that queue. A multishot
// accept stays at its place in the queue, so the first worker to arm would take
// nearly every connection (measured: 2 workers, 200 sequential connections:
// see the listener tests). Each worker therefore arms a single-shot accept and
// re-arms it after every connection; a re-armed accept joins the queue's tail,
// which turns the queue into a round robin across the workers that are ready
// to accept. The cost is one submission per accepted connection.
//
// Every accepted socket is installed in the worker's fixed-file table (a
// direct descriptor in the kernel-allocated range) and used only through it.
// The plain descriptor the accept returns exists just long enough to read the
// peer's address (getpeername) and set TCP_NODELAY.
//
// When the worker's connection table is full (NetOptions::max_connections), or
// its fixed-file table is, the newcomer is closed at once, cleanly (FIN, nothing
// read or written), counted in NetMetrics::refused and logged (rate-limited).
// When accepted connections pile up faster than Accept() takes them (more than
// ListenOptions::accept_queue), accepting is paused and the kernel's backlog
// holds the rest.
//
//   Task<> WorkerMain(Worker& w) {
//     co_await net::Serve(SocketAddress::Any4(10809), {}, HandleClient, w.stop_token());
//   }
//
// Thread-safety: a Listener belongs to the worker that created it; use and
// destroy it on that worker's thread, before the worker is destroyed. A
// ListenSocket handle may be copied to and used from any thread.

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "ringline/cancellation.h"
#include "ringline/net/connection.h"
#include "ringline/net/options.h"
#include "ringline/net/result.h"
#include "ringline/net/socket_address.h"
#include "ringline/task.h"
#include "ringline/unique_fd.h"

namespace ringline::net {

class TlsServerContext;

namespace detail {
class ListenerState;
struct ListenSocketState;
}  // namespace detail

// A listening stream socket shared by the workers of a process. A handle:
// copies share the socket, which is closed (and a Unix socket file this
// process created is unlinked) when the last handle and the last Listener
// accepting on it are gone.
class ListenSocket {
 public:
  // Opens, binds and listens. TCP: without SO_REUSEPORT unless
  // options.share_port_across_processes; an address another process holds
  // fails with FailedPrecondition naming it and "already in use". Unix: a
  // stale socket file is replaced (options.unlink_stale), a live one is an
  // error. Socket-level options (backlog, keepalive, v6only) come from
  // `options`.
  static absl::StatusOr<ListenSocket> Open(const SocketAddress& address,
                                           const ListenOptions& options = {});
  // Takes over a socket that already listens (from socket activation or a
  // parent process): it must be a SOCK_STREAM socket in the listening state.
  // options.keepalive is applied to a TCP socket; nothing is unlinked at the end.
  static absl::StatusOr<ListenSocket> Adopt(UniqueFd fd, const ListenOptions& options = {});
  // The sockets passed by systemd's socket activation protocol (sd_listen_fds):
  // when LISTEN_PID is this process, descriptors 3 .. 3+LISTEN_FDS-1, each
  // adopted as above. Empty when the process was not socket-activated. Clears
  // LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES so children do not inherit them.
  // Call it once, before other threads start (it edits the environment).
  static absl::StatusOr<std::vector<ListenSocket>> FromSocketActivation(
      const ListenOptions& options = {});

  ListenSocket() = default;
  bool valid() const { return s_ != nullptr; }
  // The bound address (for TCP port 0, the port the kernel chose).
  const SocketAddress& address() const;

 private:
  friend class Listener;
  explicit ListenSocket(std::shared_ptr<detail::ListenSocketState> s) : s_(std::move(s)) {}
  std::shared_ptr<detail::ListenSocketState> s_;
};

class Listener {
 public:
  // Starts accepting on the current worker. TCP: the process's socket for
  // `address` when one is open (another worker bound it), else a new one
  // (ListenSocket::Open), which later Binds of the same address then share;
  // with share_port_across_processes, always a new SO_REUSEPORT socket. For TCP
  // port 0 the kernel picks a port (local_address() tells which; other workers
  // bind that address to share the socket).
  static absl::StatusOr<Listener> Bind(const SocketAddress& address,
                                       const ListenOptions& options = {});
  // Starts accepting on the current worker on `socket` (opened or adopted by
  // the application, typically once in main() before the workers start).
  // Only the accept-side options (accept_queue, nodelay, connection) apply.
  static absl::StatusOr<Listener> Bind(const ListenSocket& socket,
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
// binding fails. After `stop` it stops accepting, then waits for every handler
// it started to return (a TaskGroup), so it returns only when no handler runs:
// handlers that should end on stop watch the same token (or the worker's stop
// token); at worker shutdown those still running at the end of
// Config::shutdown_grace are destroyed with Serve.
// `bound` (optional) is called once with the listening address.
Task<absl::Status> Serve(SocketAddress address, ServeOptions options, ConnectionHandler handler,
                         CancellationToken stop = {},
                         std::function<void(const SocketAddress&)> bound = {});

}  // namespace ringline::net
