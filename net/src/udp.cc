#include "ringline/net/udp.h"

#include <liburing.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "net_worker.h"
#include "ringline/io_result.h"
#include "ringline/log.h"
#include "ringline/worker.h"
#include "udp_state.h"

namespace ringline::net {
namespace detail {

UdpState::UdpState(NetWorker& nw, UniqueFd fd, const SocketAddress& local,
                   const UdpOptions& options)
    : nw_(nw), fd_(std::move(fd)), local_(local), opts_(options) {}

UdpState::~UdpState() = default;

absl::Status UdpState::Init() {
  // One buffer holds io_uring_recvmsg_out, the peer address and the payload.
  const uint32_t size = opts_.max_datagram + static_cast<uint32_t>(sizeof(io_uring_recvmsg_out) +
                                                                   sizeof(sockaddr_storage));
  auto ring = BufferRing::Create(nw_.worker().internals().ring(), nw_.NextBufferGroup(),
                                 opts_.buffer_count, size);
  if (!ring.ok()) return ring.status();
  ring_ = std::move(*ring);
  msg_.msg_namelen = sizeof(sockaddr_storage);
  msg_.msg_controllen = 0;
  Arm();
  return absl::OkStatus();
}

void UdpState::Unref() {
  if (--refs_ > 0) return;
  Close();
  MaybeFree();
}

void UdpState::MaybeFree() {
  if (refs_ == 0 && ops_ == 0) nw_.Free(this);  // deletes this (the socket closes with it)
}

void UdpState::Close() {
  if (closed_) return;
  closed_ = true;
  OpSlab& slab = nw_.worker().internals().slab();
  if (recv_slot_ && !cancel_sent_) {
    slab.Cancel(*recv_slot_);
    cancel_sent_ = true;
  }
  if (starved_) {
    nw_.RemoveStarved(this);
    starved_ = false;
  }
  recv_waiters_.NotifyAll();
}

void UdpState::Arm() {
  if (closed_ || recv_slot_ || starved_ || !nw_.can_submit()) return;
  OpSlot& slot =
      nw_.worker().internals().slab().AllocateWithHandler(kTagRecvMsgUdp, &UdpState::OnRecv, this);
  ++ops_;
  io_uring_sqe* sqe = nw_.worker().internals().ring().GetSqe();
  io_uring_prep_recvmsg_multishot(sqe, fd_.get(), &msg_, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = ring_->group();
  io_uring_sqe_set_data64(sqe, slot.user_data().raw());
  recv_slot_ = &slot;
  cancel_sent_ = false;
}

void UdpState::OnBuffersPublished() {
  starved_ = false;
  Arm();
}

void UdpState::OnRecv(void* owner, OpSlot&, int32_t res, uint32_t flags) {
  auto* self = static_cast<UdpState*>(owner);
  self->Ref();
  NetWorker& nw = self->nw_;
  const bool final = !(flags & IORING_CQE_F_MORE);
  if (flags & IORING_CQE_F_BUFFER) {
    const auto bid = static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    self->ring_->Taken();
    if (res > 0) {
      uint8_t* buf = self->ring_->Addr(bid);
      io_uring_recvmsg_out* out = io_uring_recvmsg_validate(buf, res, &self->msg_);
      if (out && !(out->flags & MSG_TRUNC) && self->queue_.size() < self->opts_.queue_limit) {
        const auto* payload =
            static_cast<const uint8_t*>(io_uring_recvmsg_payload(out, &self->msg_));
        const unsigned len = io_uring_recvmsg_payload_length(out, res, &self->msg_);
        const socklen_t namelen = std::min<socklen_t>(out->namelen, sizeof(sockaddr_storage));
        Datagram d;
        d.data.assign(payload, payload + len);
        d.peer = SocketAddress::FromSockaddr(
            static_cast<const sockaddr*>(io_uring_recvmsg_name(out)), namelen);
        self->queue_.push_back(std::move(d));
        nw.metrics().udp_datagrams_in.Add();
        self->recv_waiters_.NotifyAll();
      } else {
        nw.metrics().udp_dropped.Add();
      }
    }
    nw.ReturnBuffer(*self->ring_, bid);
  } else if (res == -ENOBUFS) {
    nw.metrics().recv_enobufs.Add();
    if (final && !self->closed_ && !self->starved_) {
      self->starved_ = true;
      nw.AddStarved(self);
    }
  } else if (res < 0 && res != -ECANCELED) {
    RL_LOG_WARN("UDP socket %s: recvmsg failed: %s", self->local_.ToString(), std::strerror(-res));
  }
  if (final) {
    self->recv_slot_ = nullptr;
    --self->ops_;
    self->Arm();
  }
  self->Unref();
}

Datagram UdpState::PopDatagram() {
  Datagram d = std::move(queue_.front());
  queue_.pop_front();
  return d;
}

void UdpState::StartSend(SendWait* w, std::span<const uint8_t> payload, const SocketAddress& to) {
  OpSlot& slot =
      nw_.worker().internals().slab().AllocateWithHandler(kTagSendMsgUdp, &UdpState::OnSend, this);
  ++ops_;
  // The payload and the msghdr/iovec/address the kernel reads live in the slot.
  slot.held[0] = Buffer::Allocate(std::max<std::size_t>(payload.size(), 1), 64);
  if (!payload.empty()) std::memcpy(slot.held[0].data(), payload.data(), payload.size());
  auto& m = slot.storage.msg;
  std::memset(&m.msg, 0, sizeof m.msg);
  std::memcpy(&m.addr, to.sockaddr_ptr(), to.length());
  m.iov[0] = iovec{slot.held[0].data(), payload.size()};
  m.msg.msg_name = &m.addr;
  m.msg.msg_namelen = to.length();
  m.msg.msg_iov = m.iov;
  m.msg.msg_iovlen = 1;
  io_uring_sqe* sqe = nw_.worker().internals().ring().GetSqe();
  io_uring_prep_sendmsg(sqe, fd_.get(), &m.msg, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, slot.user_data().raw());
  w->slot = &slot;
  sends_.push_back(w);
}

void UdpState::ForgetSend(SendWait* w) { std::erase(sends_, w); }

void UdpState::OnSend(void* owner, OpSlot& slot, int32_t res, uint32_t) {
  auto* self = static_cast<UdpState*>(owner);
  self->Ref();
  --self->ops_;
  if (res >= 0) self->nw_.metrics().udp_datagrams_out.Add();
  for (SendWait* w : self->sends_) {
    if (w->slot != &slot) continue;
    w->res = res;
    w->done = true;
    w->slot = nullptr;
    if (PromiseBase* p = std::exchange(w->promise, nullptr))
      self->nw_.worker().internals().Schedule(p);
    std::erase(self->sends_, w);
    break;
  }
  self->Unref();
}

}  // namespace detail

namespace {

class UdpSendWait {
 public:
  UdpSendWait(detail::UdpState* s, std::span<const uint8_t> payload, const SocketAddress& to)
      : s_(s), payload_(payload), to_(to) {}
  UdpSendWait(const UdpSendWait&) = delete;
  ~UdpSendWait() {
    if (w_.slot) s_->ForgetSend(&w_);  // the operation completes without us
  }
  bool await_ready() const { return false; }
  template <EnginePromise P>
  void await_suspend(std::coroutine_handle<P> h) {
    w_.promise = &h.promise();
    s_->StartSend(&w_, payload_, to_);
  }
  IoResult await_resume() { return IoResult{w_.res, 0}; }

 private:
  detail::UdpState* s_;
  std::span<const uint8_t> payload_;
  const SocketAddress& to_;
  detail::UdpState::SendWait w_;
};

}  // namespace

absl::StatusOr<UdpSocket> UdpSocket::Bind(const SocketAddress& address, const UdpOptions& o) {
  auto nw = detail::NetWorker::GetOrError();
  if (!nw.ok()) return nw.status();
  if (!address.is_ip()) {
    return absl::InvalidArgumentError(
        absl::StrCat("UDP needs an IP address, not ", address.ToString()));
  }
  UniqueFd fd(::socket(address.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoToStatus(-errno, "UDP socket");
  const int one = 1;
  if (o.reuse_port) setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (::bind(fd.get(), address.sockaddr_ptr(), address.length()) != 0) {
    return ErrnoToStatus(-errno, absl::StrCat("bind UDP ", address.ToString()));
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  SocketAddress local = address;
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    local = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  }
  auto state = std::make_unique<detail::UdpState>(**nw, std::move(fd), local, o);
  if (auto st = state->Init(); !st.ok()) return st;
  return UdpSocket((*nw)->Adopt(std::move(state)));
}

UdpSocket::UdpSocket(detail::UdpState* s) : s_(s) { s_->Ref(); }
UdpSocket::UdpSocket(UdpSocket&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
UdpSocket& UdpSocket::operator=(UdpSocket&& o) noexcept {
  if (this != &o) {
    if (s_) s_->Unref();
    s_ = std::exchange(o.s_, nullptr);
  }
  return *this;
}
UdpSocket::~UdpSocket() {
  if (s_) s_->Unref();
}

const SocketAddress& UdpSocket::local_address() const {
  static const SocketAddress kNone;
  return s_ ? s_->local() : kNone;
}

void UdpSocket::Close() {
  if (s_) s_->Close();
}

Task<Result<Datagram>> UdpSocket::recv_from() {
  detail::UdpState* s = s_;
  if (!s) co_return Result<Datagram>::Error(ECANCELED);
  if (s->receiving) co_return Result<Datagram>::Error(EBUSY);
  s->Ref();
  s->receiving = true;
  struct Release {
    detail::UdpState* s;
    ~Release() {
      s->receiving = false;
      s->Unref();
    }
  } release{s};
  for (;;) {
    if (s->HasDatagram()) co_return Result<Datagram>(s->PopDatagram());
    if (s->closed()) co_return Result<Datagram>::Error(ECANCELED);
    co_await s->datagram_or_close().Wait();
  }
}

Task<IoResult> UdpSocket::send_to(std::span<const uint8_t> payload, const SocketAddress& to) {
  detail::UdpState* s = s_;
  if (!s || s->closed()) co_return IoResult{-ECANCELED, 0};
  s->Ref();
  struct Release {
    detail::UdpState* s;
    ~Release() { s->Unref(); }
  } release{s};
  co_return co_await UdpSendWait(s, payload, to);
}

}  // namespace ringline::net
