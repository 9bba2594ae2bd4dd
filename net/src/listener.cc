#include "ringline/net/listener.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <map>
#include <mutex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "conn_state.h"
#include "listener_state.h"
#include "net_worker.h"
#include "ringline/combinators.h"
#include "ringline/io_result.h"
#include "ringline/log.h"
#include "ringline/net/tls.h"
#include "ringline/spawn.h"
#include "ringline/task_group.h"
#include "ringline/unique_fd.h"

namespace ringline::net {
namespace {

using detail::ListenSocketState;

// The process's listening sockets by address, so that every worker's
// Listener::Bind of one address accepts on one socket (see listener.h). Weak:
// a socket closes when its last user goes.
struct SocketRegistry {
  std::mutex mu;
  std::map<std::string, std::weak_ptr<ListenSocketState>> sockets;  // by ToString()
};
SocketRegistry& Registry() {
  static SocketRegistry* r = new SocketRegistry();
  return *r;
}

bool IsStaleSocket(const SocketAddress& a) {
  struct stat st {};
  const std::string path = a.unix_path();
  if (path.empty() || path[0] == '@' || ::stat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return false;
  }
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe.valid()) return false;
  return ::connect(probe.get(), a.sockaddr_ptr(), a.length()) != 0 && errno == ECONNREFUSED;
}

absl::Status SetInt(int fd, int level, int name, int value, const char* what,
                    const SocketAddress& where) {
  if (setsockopt(fd, level, name, &value, sizeof value) != 0) {
    return ErrnoToStatus(-errno, absl::StrCat(what, " on ", where.ToString()));
  }
  return absl::OkStatus();
}

// On the listening socket: Linux copies these into every accepted socket.
absl::Status ApplyKeepalive(int fd, const TcpKeepalive& k, const SocketAddress& where) {
  if (auto st = k.Validate(); !st.ok()) return st;
  if (auto st = SetInt(fd, SOL_SOCKET, SO_KEEPALIVE, k.enabled ? 1 : 0, "SO_KEEPALIVE", where);
      !st.ok() || !k.enabled) {
    return st;
  }
  if (auto st = SetInt(fd, IPPROTO_TCP, TCP_KEEPIDLE, static_cast<int>(k.idle.count()),
                       "TCP_KEEPIDLE", where);
      !st.ok()) {
    return st;
  }
  if (auto st = SetInt(fd, IPPROTO_TCP, TCP_KEEPINTVL, static_cast<int>(k.interval.count()),
                       "TCP_KEEPINTVL", where);
      !st.ok()) {
    return st;
  }
  return SetInt(fd, IPPROTO_TCP, TCP_KEEPCNT, k.probes, "TCP_KEEPCNT", where);
}

SocketAddress BoundAddress(int fd, const SocketAddress& fallback) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return fallback;
  return SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

absl::StatusOr<std::shared_ptr<ListenSocketState>> OpenSocket(const SocketAddress& address,
                                                              const ListenOptions& o) {
  const std::string where = address.ToString();
  if (!address.is_ip() && !address.is_unix()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot listen on ", where));
  }
  UniqueFd fd(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoToStatus(-errno, absl::StrCat("socket for ", where));
  if (address.is_ip()) {
    // SO_REUSEADDR only lets the bind pass over TIME_WAIT leftovers of an
    // earlier run; on Linux it never shares a port another socket listens on.
    if (auto st = SetInt(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR", address);
        !st.ok()) {
      return st;
    }
    if (o.share_port_across_processes) {
      if (auto st = SetInt(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT", address);
          !st.ok()) {
        return st;
      }
    }
    if (address.family() == AF_INET6) {
      if (auto st =
              SetInt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, o.v6only ? 1 : 0, "IPV6_V6ONLY", address);
          !st.ok()) {
        return st;
      }
    }
    if (o.nodelay) {
      if (auto st = SetInt(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY", address);
          !st.ok()) {
        return st;
      }
    }
    if (auto st = ApplyKeepalive(fd.get(), o.keepalive, address); !st.ok()) return st;
  } else if (o.unlink_stale && IsStaleSocket(address)) {
    ::unlink(address.unix_path().c_str());
  }
  if (::bind(fd.get(), address.sockaddr_ptr(), address.length()) != 0) {
    const int e = errno;
    if (e == EADDRINUSE) {
      return absl::FailedPreconditionError(absl::StrCat(
          where, " is already in use",
          address.is_ip() ? " by another process (ports are not shared across processes)"
                          : " (another server listens on this socket path)"));
    }
    return ErrnoToStatus(-e, absl::StrCat("bind ", where));
  }
  // From here the socket file is ours: unlinked when the state goes.
  auto state = std::make_shared<ListenSocketState>(std::move(fd), address, address.is_unix());
  if (::listen(state->fd.get(), o.backlog) != 0) {
    return ErrnoToStatus(-errno, absl::StrCat("listen on ", where));
  }
  if (address.is_ip()) state->address = BoundAddress(state->fd.get(), address);
  return state;
}

}  // namespace

absl::Status TcpKeepalive::Validate() const {
  if (!enabled) return absl::OkStatus();
  if (idle.count() < 1 || idle.count() > 32767) {
    return absl::InvalidArgumentError(
        absl::StrCat("keepalive idle time ", idle.count(), " s is out of range: use 1..32767"));
  }
  if (interval.count() < 1 || interval.count() > 32767) {
    return absl::InvalidArgumentError(
        absl::StrCat("keepalive interval ", interval.count(), " s is out of range: use 1..32767"));
  }
  if (probes < 1 || probes > 127) {
    return absl::InvalidArgumentError(
        absl::StrCat("keepalive probe count ", probes, " is out of range: use 1..127"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ListenSocket> ListenSocket::Open(const SocketAddress& address,
                                                const ListenOptions& options) {
  auto s = OpenSocket(address, options);
  if (!s.ok()) return s.status();
  return ListenSocket(std::move(*s));
}

absl::StatusOr<ListenSocket> ListenSocket::Adopt(UniqueFd fd, const ListenOptions& options) {
  const std::string what = absl::StrCat("descriptor ", fd.get());
  int type = 0, listening = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd.get(), SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    return ErrnoToStatus(-errno, absl::StrCat(what, " is not a socket"));
  }
  len = sizeof listening;
  if (type != SOCK_STREAM ||
      getsockopt(fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " is not a listening stream socket (a systemd .socket unit needs ListenStream=)"));
  }
  if (fcntl(fd.get(), F_SETFD, FD_CLOEXEC) != 0) {
    return ErrnoToStatus(-errno, absl::StrCat("FD_CLOEXEC on ", what));
  }
  const SocketAddress address = BoundAddress(fd.get(), SocketAddress());
  if (address.is_ip()) {
    if (auto st = ApplyKeepalive(fd.get(), options.keepalive, address); !st.ok()) return st;
  }
  return ListenSocket(std::make_shared<ListenSocketState>(std::move(fd), address, false));
}

absl::StatusOr<std::vector<ListenSocket>> ListenSocket::FromSocketActivation(
    const ListenOptions& options) {
  // systemd's protocol (sd_listen_fds(3)): the variables are meant for the
  // process whose pid LISTEN_PID names, and the descriptors start at 3.
  constexpr int kFirstFd = 3;
  const char* pid_text = std::getenv("LISTEN_PID");
  const char* fds_text = std::getenv("LISTEN_FDS");
  std::vector<ListenSocket> out;
  if (!pid_text || !fds_text) return out;
  const std::string pid_s(pid_text), fds_s(fds_text);
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  long pid = 0, n = 0;
  if (!absl::SimpleAtoi(pid_s, &pid) || pid <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket activation: LISTEN_PID '", pid_s, "' is not a process id"));
  }
  if (pid != ::getpid()) return out;  // meant for another process (our parent)
  if (!absl::SimpleAtoi(fds_s, &n) || n < 0 || n > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket activation: LISTEN_FDS '", fds_s, "' is not a count of sockets"));
  }
  for (int fd = kFirstFd; fd < kFirstFd + n; ++fd) {
    auto s = Adopt(UniqueFd(fd), options);
    if (!s.ok()) {
      // The descriptors not yet adopted are still ours to close.
      for (int rest = fd + 1; rest < kFirstFd + n; ++rest) ::close(rest);
      return absl::Status(s.status().code(),
                          absl::StrCat("socket activation: ", s.status().message()));
    }
    out.push_back(std::move(*s));
  }
  return out;
}

const SocketAddress& ListenSocket::address() const {
  static const SocketAddress kNone;
  return s_ ? s_->address : kNone;
}

absl::StatusOr<Listener> Listener::Bind(const ListenSocket& socket, const ListenOptions& o) {
  if (!socket.valid()) return absl::InvalidArgumentError("Listener::Bind: no socket");
  auto nw = detail::NetWorker::GetOrError();
  if (!nw.ok()) return nw.status();
  auto* s = (*nw)->Adopt(std::make_unique<detail::ListenerState>(**nw, socket.s_, o));
  s->Start();
  return Listener(s);
}

absl::StatusOr<Listener> Listener::Bind(const SocketAddress& address, const ListenOptions& o) {
  if (auto nw = detail::NetWorker::GetOrError(); !nw.ok()) return nw.status();
  if (address.is_ip() && o.share_port_across_processes) {
    auto opened = OpenSocket(address, o);
    if (!opened.ok()) return opened.status();
    return Bind(ListenSocket(std::move(*opened)), o);
  }
  // One socket per address and process. Port 0 asks for a new port: never
  // shared, but registered under the port the kernel chose.
  std::shared_ptr<ListenSocketState> socket;
  {
    std::lock_guard<std::mutex> lock(Registry().mu);
    const bool any_port = address.is_ip() && address.port() == 0;
    if (!any_port) socket = Registry().sockets[address.ToString()].lock();
    if (!socket) {
      auto opened = OpenSocket(address, o);
      if (!opened.ok()) return opened.status();
      socket = std::move(*opened);
      std::erase_if(Registry().sockets, [](const auto& e) { return e.second.expired(); });
      Registry().sockets[socket->address.ToString()] = socket;
    }
  }
  return Bind(ListenSocket(std::move(socket)), o);
}

Listener::Listener(detail::ListenerState* s) : s_(s) { s_->Ref(); }
Listener::Listener(Listener&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
Listener& Listener::operator=(Listener&& o) noexcept {
  if (this != &o) {
    if (s_) s_->Unref();
    s_ = std::exchange(o.s_, nullptr);
  }
  return *this;
}
Listener::~Listener() {
  if (s_) s_->Unref();
}

const SocketAddress& Listener::local_address() const {
  static const SocketAddress kNone;
  return s_ ? s_->local() : kNone;
}

void Listener::Close() {
  if (s_) s_->Close();
}

Task<Result<Connection>> Listener::Accept() {
  detail::ListenerState* l = s_;
  if (!l) co_return Result<Connection>::Error(ECANCELED);
  l->Ref();
  struct Drop {
    detail::ListenerState* l;
    ~Drop() { l->Unref(); }
  } drop{l};
  for (;;) {
    if (detail::ConnState* c = l->Pop()) {
      Connection conn(c);
      c->Unref();  // the queue's reference; the handle holds its own
      co_return Result<Connection>(std::move(conn));
    }
    if (l->closed()) co_return Result<Connection>::Error(ECANCELED);
    co_await l->accept_waiters().Wait();  // a connection arrived, or the close
  }
}

namespace {
Task<> ServeOne(Connection conn, std::shared_ptr<ConnectionHandler> handler,
                std::shared_ptr<TlsServerContext> tls) {
  if (tls) {
    IoResult r = co_await conn.StartTls(tls);
    if (!r.ok()) co_return;  // logged and counted by the connection
  }
  co_await (*handler)(std::move(conn));
}

struct ServeArgs {
  ServeOptions options;
  ConnectionHandler handler;
  CancellationToken stop;
  std::function<void(const SocketAddress&)> bound;
};

Task<absl::Status> ServeImpl(SocketAddress address, std::unique_ptr<ServeArgs> args) {
  ServeOptions& options = args->options;
  CancellationToken& stop = args->stop;
  auto& bound = args->bound;
  ConnectionHandler& handler = args->handler;
  auto listener = Listener::Bind(address, options.listen);
  if (!listener.ok()) co_return listener.status();
  if (bound) bound(listener->local_address());
  auto shared = std::make_shared<ConnectionHandler>(std::move(handler));
  TaskGroup handlers;
  for (;;) {
    auto next = co_await WithCancellation(stop, listener->Accept());
    if (!next) break;  // stop requested
    Result<Connection>& r = *next;
    if (!r.ok()) {
      if (r.error() == ECANCELED) break;
      continue;
    }
    handlers.Spawn(ServeOne(std::move(*r), shared, options.tls));
  }
  listener->Close();
  // Serve returns only after every handler it started has returned, so what the
  // caller owns and the handlers use may be destroyed once Serve is done.
  co_await handlers.Wait();
  co_return absl::OkStatus();
}
}  // namespace

// Not a coroutine: see Connect() (GCC 12 and by-value prvalue arguments).
Task<absl::Status> Serve(SocketAddress address, ServeOptions options, ConnectionHandler handler,
                         CancellationToken stop, std::function<void(const SocketAddress&)> bound) {
  auto args = std::make_unique<ServeArgs>();
  args->options = std::move(options);
  args->handler = std::move(handler);
  args->stop = std::move(stop);
  args->bound = std::move(bound);
  return ServeImpl(address, std::move(args));
}

}  // namespace ringline::net
