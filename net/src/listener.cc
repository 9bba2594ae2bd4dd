#include "ringline/net/listener.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "conn_state.h"
#include "listener_state.h"
#include "net_worker.h"
#include "ringline/combinators.h"
#include "ringline/io_result.h"
#include "ringline/log.h"
#include "ringline/net/tls.h"
#include "ringline/spawn.h"
#include "ringline/unique_fd.h"

namespace ringline::net {
namespace {

// A Unix path is bound once per process; every worker accepts on that socket.
struct UnixRegistry {
  std::mutex mu;
  std::map<std::string, std::weak_ptr<UniqueFd>> sockets;
};
UnixRegistry& Unix() {
  static UnixRegistry* r = new UnixRegistry();
  return *r;
}

// Unlinks the socket file when the last worker's listener goes.
struct UnlinkingFd : UniqueFd {
  UnlinkingFd(int fd, std::string path) : UniqueFd(fd), path(std::move(path)) {}
  ~UnlinkingFd() {
    if (!path.empty() && path[0] != '@') ::unlink(path.c_str());
  }
  std::string path;
};

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

absl::StatusOr<std::shared_ptr<UniqueFd>> OpenSocket(const SocketAddress& address,
                                                     const ListenOptions& o, SocketAddress* local) {
  const std::string where = address.ToString();
  UniqueFd fd(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoToStatus(-errno, absl::StrCat("socket for ", where));
  const int one = 1;
  if (address.is_ip()) {
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (o.reuse_port && setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
      return ErrnoToStatus(-errno, absl::StrCat("SO_REUSEPORT on ", where));
    }
    if (address.family() == AF_INET6) {
      const int v6only = o.v6only ? 1 : 0;
      setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    }
    if (o.nodelay) setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  } else if (o.unlink_stale && IsStaleSocket(address)) {
    ::unlink(address.unix_path().c_str());
  }
  if (::bind(fd.get(), address.sockaddr_ptr(), address.length()) != 0) {
    return ErrnoToStatus(-errno, absl::StrCat("bind ", where));
  }
  if (::listen(fd.get(), o.backlog) != 0) {
    return ErrnoToStatus(-errno, absl::StrCat("listen on ", where));
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  *local = address;
  if (address.is_ip() && getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    *local = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  }
  if (address.is_unix()) {
    return std::shared_ptr<UniqueFd>(new UnlinkingFd(fd.Release(), address.unix_path()));
  }
  return std::make_shared<UniqueFd>(std::move(fd));
}

// Waits for a listener's next connection (or its close).
class AcceptWait {
 public:
  explicit AcceptWait(detail::ListenerState* l) : l_(l) {}
  AcceptWait(const AcceptWait&) = delete;
  ~AcceptWait() {
    if (p_) l_->Unpark(p_);
  }
  bool await_ready() const noexcept { return false; }
  template <EnginePromise P>
  void await_suspend(std::coroutine_handle<P> h) {
    p_ = &h.promise();
    l_->Park(p_);
  }
  void await_resume() { p_ = nullptr; }

 private:
  detail::ListenerState* l_;
  PromiseBase* p_ = nullptr;
};

}  // namespace

absl::StatusOr<Listener> Listener::Bind(const SocketAddress& address, const ListenOptions& o) {
  auto nw = detail::NetWorker::GetOrError();
  if (!nw.ok()) return nw.status();
  if (!address.is_ip() && !address.is_unix()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot listen on ", address.ToString()));
  }
  std::shared_ptr<UniqueFd> fd;
  SocketAddress local;
  if (address.is_unix()) {
    std::lock_guard<std::mutex> lock(Unix().mu);
    auto& slot = Unix().sockets[address.unix_path()];
    fd = slot.lock();
    if (fd) {
      local = address;
    } else {
      auto opened = OpenSocket(address, o, &local);
      if (!opened.ok()) return opened.status();
      fd = *opened;
      slot = fd;
    }
  } else {
    auto opened = OpenSocket(address, o, &local);
    if (!opened.ok()) return opened.status();
    fd = *opened;
  }
  auto* s = (*nw)->Adopt(std::make_unique<detail::ListenerState>(**nw, fd, local, o));
  s->Start();
  return Listener(s);
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
    co_await AcceptWait(l);
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
  for (;;) {
    auto next = co_await WithCancellation(stop, listener->Accept());
    if (!next) break;  // stop requested
    Result<Connection>& r = *next;
    if (!r.ok()) {
      if (r.error() == ECANCELED) break;
      continue;
    }
    Spawn(ServeOne(std::move(*r), shared, options.tls)).Detach();
  }
  listener->Close();
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
