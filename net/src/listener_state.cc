#include "listener_state.h"

#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "conn_state.h"
#include "net_worker.h"
#include "ringline/log.h"
#include "ringline/worker.h"

namespace ringline::net::detail {

ListenSocketState::~ListenSocketState() {
  if (!unlink_path) return;
  const std::string path = address.unix_path();
  if (!path.empty() && path[0] != '@') ::unlink(path.c_str());
}

ListenerState::ListenerState(NetWorker& nw, std::shared_ptr<const ListenSocketState> socket,
                             const ListenOptions& options)
    : nw_(nw), socket_(std::move(socket)), local_(socket_->address), opts_(options) {}

ListenerState::~ListenerState() {
  // Connections still queued hold a reference each; NetWorker frees their
  // states itself when it goes, so only drop them while the worker runs.
  if (nw_.can_submit()) {
    for (std::size_t i = ready_head_; i < ready_.size(); ++i) {
      ready_[i]->BeginClose(false);
      ready_[i]->Unref();
    }
  }
}

void ListenerState::Unref() {
  if (--refs_ > 0) return;
  Close();
  MaybeFree();
}

void ListenerState::MaybeFree() {
  if (refs_ == 0 && ops_ == 0 && installing_ == 0) nw_.Free(this);  // deletes this
}

void ListenerState::Close() {
  if (closed_) return;
  closed_ = true;
  OpSlab& slab = nw_.worker().internals().slab();
  if (accept_slot_ && !cancel_sent_) {
    slab.Cancel(*accept_slot_);
    cancel_sent_ = true;
  }
  if (backoff_slot_) slab.Cancel(*backoff_slot_);
  // Accepted but never taken: close them now.
  for (std::size_t i = ready_head_; i < ready_.size(); ++i) {
    ready_[i]->BeginClose(false);
    ready_[i]->Unref();
  }
  ready_.clear();
  ready_head_ = 0;
  waiters_.NotifyAll();
}

ConnState* ListenerState::Pop() {
  if (ready_head_ == ready_.size()) return nullptr;
  ConnState* c = ready_[ready_head_++];
  if (ready_head_ == ready_.size()) {
    ready_.clear();
    ready_head_ = 0;
  }
  Update();  // below the queue limit again: resume accepting
  return c;
}

void ListenerState::WakeOne() { waiters_.NotifyOne(); }

void ListenerState::Update() {
  const std::size_t queued = ready_.size() - ready_head_ + installing_;
  const bool want = !closed_ && !backoff_slot_ && queued < opts_.accept_queue;
  OpSlab& slab = nw_.worker().internals().slab();
  if (want) {
    if (accept_slot_ || !nw_.can_submit()) return;
    OpSlot& slot = slab.AllocateWithHandler(kTagAccept, &ListenerState::OnAccept, this);
    ++ops_;
    io_uring_sqe* sqe = nw_.worker().internals().ring().GetSqe();
    // Single-shot, re-armed after each connection: see listener.h for why
    // (spreading one socket's connections across workers). No address
    // buffer: peer addresses come from getpeername.
    io_uring_prep_accept(sqe, socket_->fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, slot.user_data().raw());
    accept_slot_ = &slot;
    cancel_sent_ = false;
  } else if (accept_slot_ && !cancel_sent_) {
    slab.Cancel(*accept_slot_);
    cancel_sent_ = true;
  }
}

void ListenerState::OnAccept(void* owner, OpSlot&, int32_t res, uint32_t flags) {
  auto* self = static_cast<ListenerState*>(owner);
  self->Ref();
  const bool final = !(flags & IORING_CQE_F_MORE);
  if (res >= 0) {
    if (self->closed_) {
      ::close(res);
    } else {
      self->Accepted(res);
    }
  } else if (res != -ECANCELED && !self->closed_) {
    if (res == -EMFILE || res == -ENFILE || res == -ENOMEM || res == -ENOBUFS) {
      // Out of descriptors or memory: retrying at once would spin. Pause.
      RL_LOG_WARN("listener %s: accept failed: %s; retrying in 100 ms", self->local_.ToString(),
                  std::strerror(-res));
      if (!self->backoff_slot_ && self->nw_.can_submit()) {
        OpSlot& slot = self->nw_.worker().internals().slab().AllocateWithHandler(
            kTagTimeout, &ListenerState::OnBackoff, self);
        ++self->ops_;
        slot.storage.ts.tv_sec = 0;
        slot.storage.ts.tv_nsec = 100'000'000;
        io_uring_sqe* sqe = self->nw_.worker().internals().ring().GetSqe();
        io_uring_prep_timeout(sqe, &slot.storage.ts, 0, 0);
        io_uring_sqe_set_data64(sqe, slot.user_data().raw());
        self->backoff_slot_ = &slot;
      }
    } else if (res != -ECONNABORTED && res != -EAGAIN && res != -EINTR) {
      RL_LOG_WARN("listener %s: accept failed: %s", self->local_.ToString(), std::strerror(-res));
    }
  }
  if (final) {
    self->accept_slot_ = nullptr;
    self->cancel_sent_ = false;
    --self->ops_;
  }
  self->Update();
  self->Unref();
}

void ListenerState::OnBackoff(void* owner, OpSlot&, int32_t, uint32_t) {
  auto* self = static_cast<ListenerState*>(owner);
  self->Ref();
  --self->ops_;
  self->backoff_slot_ = nullptr;
  self->Update();
  self->Unref();
}

void ListenerState::Refuse(int fd, const char* why) {
  ::close(fd);  // nothing read or written: the peer sees a clean FIN
  nw_.metrics().refused.Add();
  ++refused_since_log_;
  const auto now = nw_.worker().now();
  if (now - last_refuse_log_ >= std::chrono::seconds(1)) {
    RL_LOG_WARN("listener %s: refused %llu connection(s): %s", local_.ToString(),
                static_cast<unsigned long long>(refused_since_log_), why);
    refused_since_log_ = 0;
    last_refuse_log_ = now;
  }
}

void ListenerState::Accepted(int fd) {
  ConnState* c = nw_.NewConn();
  if (!c) {
    Refuse(fd, "the connection table is full (NetOptions::max_connections)");
    return;
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  SocketAddress peer;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    peer = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  }
  SocketAddress local = local_;
  len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    local = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  }
  if (opts_.nodelay && local_.is_ip()) {
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  c->SetOptions(opts_.connection);
  c->SetAddresses(local, peer);
  c->Ref();  // the install's reference, handed to the ready queue
  Ref();
  ++installing_;
  c->BeginInstall(fd, &ListenerState::OnConnReady, this, false);
}

void ListenerState::OnConnReady(void* ctx, ConnState* c) {
  auto* self = static_cast<ListenerState*>(ctx);
  --self->installing_;
  if (c->install_error()) {
    // ENFILE: no free slot in the fixed-file table's allocation range.
    self->nw_.metrics().refused.Add();
    RL_LOG_WARN(
        "listener %s: refused a connection from %s: installing it as a direct "
        "descriptor failed: %s",
        self->local_.ToString(), c->peer().ToString(), std::strerror(c->install_error()));
    c->Unref();
  } else if (self->closed_) {
    c->BeginClose(false);
    c->Unref();
  } else {
    self->nw_.metrics().accepted.Add();
    c->Start();
    self->ready_.push_back(c);
    self->WakeOne();
  }
  self->Update();
  self->Unref();
}

}  // namespace ringline::net::detail
