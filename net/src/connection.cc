#include "ringline/net/connection.h"

#include <cerrno>

#include "conn_state.h"
#include "net_worker.h"
#include "ringline/combinators.h"
#include "ringline/net/tls.h"
#include "ringline/worker.h"
#include "tls_session.h"

namespace ringline::net {
namespace detail {

int ClaimRecv(ConnState* s) { return s->receiver().Claim(); }
void ReleaseRecv(ConnState* s) { s->receiver().Release(); }
std::span<const uint8_t> Contiguous(ConnState* s, std::size_t want) {
  return s->receiver().Contiguous(want);
}
void ConsumeMessage(ConnState* s, std::size_t n) { s->receiver().ConsumeMessage(n); }
std::size_t AccumulatorCap(ConnState* s) { return s->options().accumulator_cap; }
int OverflowClose(ConnState* s) { return s->OverflowClose(); }
int RecvError(ConnState* s) { return s->receiver().error(); }

// ---- RecvWait ----------------------------------------------------------------

RecvWait::~RecvWait() {
  if (promise_) s_->receiver().Unpark(promise_);
}

bool RecvWait::await_ready() { return s_->receiver().MessageReady(want_); }

void RecvWait::Park(PromiseBase* p) {
  promise_ = p;
  s_->receiver().ParkMessage(p, want_);
}

StreamState RecvWait::await_resume() {
  Receiver& rx = s_->receiver();
  if (promise_) {
    rx.Unpark(promise_);
    promise_ = nullptr;
  }
  return rx.buffered() >= want_ ? StreamState::kOpen : rx.state();
}

// ---- ReadExactWait -------------------------------------------------------------

ReadExactWait::ReadExactWait(ConnState* s, uint8_t* dst, std::size_t n, Buffer* lent,
                             std::size_t lent_size, int preset_error)
    : s_(s), dst_(dst), n_(n), lent_(lent), lent_size_(lent_size), error_(preset_error) {
  if (!s_ && !error_) error_ = ENOTCONN;
  if (error_) {
    s_ = nullptr;
    stage_ = Stage::kOver;
    return;
  }
  s_->Ref();
}

ReadExactWait::~ReadExactWait() {
  if (!s_) return;  // failed before it started
  Receiver& rx = s_->receiver();
  if (promise_) rx.Unpark(promise_);
  if (stage_ == Stage::kReading) rx.AbandonRead();  // the task went away mid-read
  if (claimed_) rx.Release();
  s_->Unref();
}

bool ReadExactWait::await_ready() {
  if (!s_) return true;
  Receiver& rx = s_->receiver();
  error_ = rx.Claim();
  claimed_ = error_ == 0;
  if (!claimed_ || n_ == 0) {
    stage_ = Stage::kOver;
    return true;
  }
  stage_ = Stage::kReading;
  return rx.StartRead(dst_, n_, lent_);
}

void ReadExactWait::Park(PromiseBase* p) {
  promise_ = p;
  s_->receiver().ParkRead(p);
}

IoResult ReadExactWait::await_resume() {
  if (!s_) return IoResult{-error_, 0};
  Receiver& rx = s_->receiver();
  if (promise_) {
    rx.Unpark(promise_);
    promise_ = nullptr;
  }
  if (stage_ == Stage::kReading) {
    error_ = rx.FinishRead(lent_);
    stage_ = Stage::kOver;
  }
  if (error_) return IoResult{-error_, 0};
  if (lent_) lent_->set_size(lent_size_);
  return IoResult{static_cast<int32_t>(n_), 0};
}

// ---- SendCopy ------------------------------------------------------------------

SendCopy::SendCopy(ConnState* s, std::span<const uint8_t> bytes)
    : SendWaiter(Kind::kCopy), s_(s), bytes_(bytes) {
  if (s_) s_->Ref();
}

SendCopy::SendCopy(SendCopy&& o) noexcept
    : SendWaiter(Kind::kCopy), s_(std::exchange(o.s_, nullptr)), bytes_(o.bytes_) {}

SendCopy::~SendCopy() {
  if (!s_) return;
  Leave();  // before Unref, which may free the wait list
  if (copied_ > 0 && copied_ < bytes_.size() && !error_) s_->AbortTornSend();
  s_->Unref();
}

bool SendCopy::await_ready() {
  if (!s_) {
    error_ = ENOTCONN;
    return true;
  }
  if (s_->TrySendCopy(this)) return true;
  s_->PrepareSendWait(this);
  return false;
}

IoResult SendCopy::await_resume() {
  Resumed();
  if (error_) return IoResult{-error_, 0};
  return IoResult{static_cast<int32_t>(bytes_.size()), 0};
}

// ---- SendOwned -----------------------------------------------------------------

SendOwned::SendOwned(ConnState* s, std::span<const uint8_t> header, Buffers buffers)
    : SendWaiter(Kind::kOwned), s_(s), header_(header), buffers_(std::move(buffers)) {
  if (s_) s_->Ref();
}

SendOwned::SendOwned(SendOwned&& o) noexcept
    : SendWaiter(Kind::kOwned),
      s_(std::exchange(o.s_, nullptr)),
      header_(o.header_),
      buffers_(std::move(o.buffers_)) {}

SendOwned::~SendOwned() {
  if (!s_) return;
  Leave();  // before Unref, which may free the wait list
  s_->ForgetOwned(this);
  s_->Unref();
}

bool SendOwned::await_ready() {
  if (!s_) {
    res_ = -ENOTCONN;
    done_ = true;
    return true;
  }
  s_->TrySendOwned(this);
  if (done_) return true;
  s_->PrepareSendWait(this);
  return false;
}

IoResult SendOwned::TakeResult(Buffers& out) {
  Resumed();
  out = std::move(buffers_);
  return IoResult{res_, 0};
}

namespace {
SendOwned::Buffers One(Buffer b) {
  SendOwned::Buffers v;
  v.push_back(std::move(b));
  return v;
}
}  // namespace

SendOwnedOne::SendOwnedOne(ConnState* s, std::span<const uint8_t> header, Buffer buffer)
    : SendOwned(s, header, One(std::move(buffer))) {}

SendResult SendOwnedOne::await_resume() {
  Buffers b;
  SendResult r{TakeResult(b), {}};
  if (!b.empty()) r.buffer = std::move(b.front());
  return r;
}

SendOwnedVec::SendOwnedVec(ConnState* s, std::span<const uint8_t> header,
                           std::vector<Buffer> buffers)
    : SendOwned(s, header,
                Buffers(std::make_move_iterator(buffers.begin()),
                        std::make_move_iterator(buffers.end()))) {}

SendVecResult SendOwnedVec::await_resume() {
  Buffers b;
  SendVecResult r{TakeResult(b), {}};
  r.buffers.assign(std::make_move_iterator(b.begin()), std::make_move_iterator(b.end()));
  return r;
}

// ---- one-shot awaiters -------------------------------------------------------------

namespace {

// Holds a reference for the duration of an operation.
class StateRef {
 public:
  explicit StateRef(ConnState* s) : s_(s) { s_->Ref(); }
  StateRef(const StateRef&) = delete;
  ~StateRef() { s_->Unref(); }

 private:
  ConnState* s_;
};

Task<> WaitHandshakeTask(ConnState* s) {
  while (s->handshake() == ConnState::Handshake::kRunning) co_await s->handshake_done().Wait();
}

}  // namespace

}  // namespace detail

using detail::ConnState;

Connection::Connection(detail::ConnState* state) : s_(state) {
  if (s_) s_->Ref();
}

ConnId Connection::id() const { return s_ ? s_->id() : ConnId{}; }

const SocketAddress& Connection::peer() const {
  static const SocketAddress kNone;
  return s_ ? s_->peer() : kNone;
}

const SocketAddress& Connection::local() const {
  static const SocketAddress kNone;
  return s_ ? s_->local() : kNone;
}

bool Connection::is_open() const {
  return s_ && s_->open() && !s_->send_error() &&
         s_->receiver().state() == detail::StreamState::kOpen;
}
bool Connection::is_tls() const { return s_ && s_->tls(); }
std::string Connection::tls_version() const {
  return s_ && s_->tls() ? s_->tls()->version() : std::string();
}
std::string Connection::tls_cipher() const {
  return s_ && s_->tls() ? s_->tls()->cipher() : std::string();
}
std::string Connection::peer_certificate_subject() const {
  return s_ && s_->tls() ? s_->tls()->peer_subject() : std::string();
}
std::size_t Connection::queued_bytes() const { return s_ ? s_->queued_bytes() : 0; }

Task<Result<std::size_t>> Connection::read_some(std::span<uint8_t> dst) {
  ConnState* s = s_;
  if (!s) co_return Result<std::size_t>::Error(ENOTCONN);
  detail::RecvClaim claim(s);
  if (claim.error()) co_return Result<std::size_t>::Error(claim.error());
  for (;;) {
    if (s->receiver().buffered() > 0) {
      co_return Result<std::size_t>(s->receiver().Take(dst.data(), dst.size()));
    }
    const detail::StreamState st = co_await detail::RecvWait(s, 1);
    if (st == detail::StreamState::kEnded) co_return Result<std::size_t>::Eof();
    if (st == detail::StreamState::kFailed) {
      co_return Result<std::size_t>::Error(s->receiver().error());
    }
  }
}

detail::ReadExactWait Connection::read_exact(Buffer& buf, std::size_t offset, std::size_t n) {
  if (s_ && (!buf || offset > buf.capacity() || n > buf.capacity() - offset)) {
    return detail::ReadExactWait(s_, nullptr, n, nullptr, 0, EINVAL);
  }
  return detail::ReadExactWait(s_, buf.data() + offset, n, &buf, offset + n);
}

Task<IoResult> Connection::flush() {
  ConnState* s = s_;
  if (!s) co_return IoResult{-ENOTCONN, 0};
  detail::StateRef ref(s);
  while (s->flush_pending()) co_await s->flushed().Wait();
  co_return IoResult{s->send_error() ? -s->send_error() : 0, 0};
}

Task<IoResult> Connection::close() {
  ConnState* s = s_;
  if (!s) co_return IoResult{-ENOTCONN, 0};
  detail::StateRef ref(s);
  const int before = s->send_error();
  s->BeginClose(true);
  while (s->phase() != ConnState::Phase::kClosed) co_await s->closed().Wait();
  int err = before && before != ENOTCONN ? before : s->close_error();
  co_return IoResult{err ? -err : 0, 0};
}

void Connection::abort() {
  if (s_) s_->BeginClose(false);
}

namespace {
Task<IoResult> WaitHandshake(ConnState* s) {
  const auto timeout = s->options().handshake_timeout;
  auto done = co_await Timeout(timeout, detail::WaitHandshakeTask(s));
  if (!done) s->FailHandshake(ETIMEDOUT, "the handshake timed out");
  if (s->handshake() == ConnState::Handshake::kDone) co_return IoResult{0, 0};
  co_return IoResult{-s->handshake_error(), 0};
}
}  // namespace

Task<IoResult> Connection::StartTls(std::shared_ptr<TlsServerContext> ctx) {
  ConnState* s = s_;
  if (!s || !s->open()) co_return IoResult{-ENOTCONN, 0};
  if (s->tls()) co_return IoResult{-EALREADY, 0};
  detail::StateRef ref(s);
  auto tls = detail::TlsSession::NewServer(ctx->raw());
  if (!tls) co_return IoResult{-ENOMEM, 0};
  s->AttachTls(std::move(tls));
  co_return co_await WaitHandshake(s);
}

namespace {
Task<IoResult> StartTlsClientImpl(ConnState* s, std::shared_ptr<TlsClientContext> ctx,
                                  std::unique_ptr<std::string> name) {
  const std::string& server_name = *name;
  if (!s || !s->open()) co_return IoResult{-ENOTCONN, 0};
  if (s->tls()) co_return IoResult{-EALREADY, 0};
  detail::StateRef ref(s);
  auto tls = detail::TlsSession::NewClient(ctx->raw(), server_name, ctx->verify_peer());
  if (!tls) co_return IoResult{-ENOMEM, 0};
  s->AttachTls(std::move(tls));
  co_return co_await WaitHandshake(s);
}
}  // namespace

// Not a coroutine: the name is copied before the caller's expression ends.
Task<IoResult> Connection::StartTlsClient(std::shared_ptr<TlsClientContext> ctx,
                                          std::string_view server_name) {
  return StartTlsClientImpl(s_, std::move(ctx), std::make_unique<std::string>(server_name));
}

namespace detail {
Task<IoResult> AwaitHandshake(ConnState* s) { return WaitHandshake(s); }
}  // namespace detail

}  // namespace ringline::net
