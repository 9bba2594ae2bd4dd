#include "ringline/net/connect.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "conn_state.h"
#include "net_worker.h"
#include "ringline/combinators.h"
#include "ringline/log.h"
#include "ringline/net/tls.h"
#include "ringline/operation.h"
#include "ringline/unique_fd.h"
#include "tls_session.h"

namespace ringline::net {
namespace detail {
Task<IoResult> AwaitHandshake(ConnState* s);  // connection.cc
}  // namespace detail

namespace {

auto ConnectOp(int fd, const SocketAddress& address) {
  return Submit(detail::kTagConnect, [fd, address](io_uring_sqe* sqe, OpSlot& slot) {
    // The kernel reads the address until the connect completes: it lives in the slot.
    std::memcpy(&slot.storage.sock.addr, address.sockaddr_ptr(), address.length());
    slot.storage.sock.addr_len = address.length();
    io_uring_prep_connect(sqe, fd, reinterpret_cast<const sockaddr*>(&slot.storage.sock.addr),
                          slot.storage.sock.addr_len);
  });
}

}  // namespace

namespace {
Task<Result<Connection>> ConnectImpl(SocketAddress address, std::chrono::milliseconds timeout,
                                     std::unique_ptr<ConnectOptions> opts) {
  ConnectOptions& options = *opts;
  auto nwor = detail::NetWorker::GetOrError();
  if (!nwor.ok()) {
    RL_LOG_ERROR("connect: %s", nwor.status().ToString());
    co_return Result<Connection>::Error(ENOMEM);
  }
  detail::NetWorker& nw = **nwor;
  if (!address.is_ip() && !address.is_unix()) co_return Result<Connection>::Error(EAFNOSUPPORT);
  UniqueFd fd(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) co_return Result<Connection>::Error(errno);
  if (options.nodelay && address.is_ip()) {
    const int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  // On timeout the connect operation is destroyed: the engine cancels it and
  // keeps its slot (and the address in it) until the kernel returns it.
  auto done = co_await Timeout(timeout, ConnectOp(fd.get(), address));
  if (!done || done->res < 0) {
    nw.metrics().connect_failures.Add();
    co_return Result<Connection>::Error(!done ? ETIMEDOUT : done->error());
  }
  detail::ConnState* c = nw.NewConn();
  if (!c) {
    nw.metrics().connect_failures.Add();
    co_return Result<Connection>::Error(EMFILE);
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  SocketAddress local;
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    local = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  }
  c->SetOptions(options.connection);
  c->SetAddresses(local, address);
  Connection conn(c);  // from here the handle owns it (closing it if we return early)
  c->BeginInstall(fd.Release(), nullptr, nullptr, true);
  while (c->phase() == detail::ConnState::Phase::kInstalling) co_await c->install_done().Wait();
  if (c->install_error()) {
    nw.metrics().connect_failures.Add();
    co_return Result<Connection>::Error(c->install_error());
  }
  c->Start();
  if (options.tls) {
    auto tls = detail::TlsSession::NewClient(options.tls->raw(), options.server_name,
                                             options.tls->verify_peer());
    if (!tls) co_return Result<Connection>::Error(ENOMEM);
    c->AttachTls(std::move(tls));
    IoResult hs = co_await detail::AwaitHandshake(c);
    if (!hs.ok()) {
      nw.metrics().connect_failures.Add();
      co_return Result<Connection>::Error(hs.error());
    }
  }
  nw.metrics().connects.Add();
  co_return Result<Connection>(std::move(conn));
}
}  // namespace

// Not coroutines themselves: the options are copied to the heap before the
// caller's expression ends (GCC 12 relocates temporaries of a co_await
// expression bitwise, which breaks std::string's small-string pointer).
Task<Result<Connection>> Connect(SocketAddress address, std::chrono::milliseconds timeout) {
  return ConnectImpl(address, timeout, std::make_unique<ConnectOptions>());
}
Task<Result<Connection>> Connect(SocketAddress address, std::chrono::milliseconds timeout,
                                 const ConnectOptions& options) {
  return ConnectImpl(address, timeout, std::make_unique<ConnectOptions>(options));
}

}  // namespace ringline::net
