// ConnState: construction, references, install, timers and the close sequence.
#include "conn_state.h"

#include <liburing.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstring>

#include "net_worker.h"
#include "ringline/log.h"
#include "ringline/worker.h"
#include "tls_session.h"

namespace ringline::net::detail {

ConnState::ConnState(NetWorker& nw, uint32_t index, uint32_t generation)
    : nw_(nw), index_(index), generation_(generation), rx_(*this, nw) {}

ConnState::~ConnState() {
  // Only reached with no operation left (NetWorker frees a state once ops_ is
  // 0, or leaks it), so nothing here is still seen by the kernel.
  while (sq_head_) {
    SendItem* it = sq_head_;
    sq_head_ = it->next;
    ReleaseItem(it);
  }
  for (SendItem* it : zc_waiting_) ReleaseItem(it);
  if (pending_fd_ >= 0) ::close(pending_fd_);
}

bool ConnState::CanSubmit() const { return nw_.can_submit(); }

OpSlot& ConnState::NewOp(OpTag tag, CompletionHandler h, void* owner) {
  ++ops_;
  return nw_.worker().internals().slab().AllocateWithHandler(tag, h, owner);
}

void ConnState::SetPhase(Phase next) {
#ifndef NDEBUG
  bool legal = false;
  switch (phase_) {
    case Phase::kInstalling:
      legal = next == Phase::kOpen || next == Phase::kClosed;  // installed, or failed
      break;
    case Phase::kOpen:
      legal = next == Phase::kDraining || next == Phase::kCancelling;
      break;
    case Phase::kDraining:
      legal = next == Phase::kShutdown || next == Phase::kCancelling;
      break;
    case Phase::kShutdown:
      legal = next == Phase::kCancelling;
      break;
    case Phase::kCancelling:
      legal = next == Phase::kClosing || next == Phase::kClosed;
      break;
    case Phase::kClosing:
      legal = next == Phase::kClosed;
      break;
    case Phase::kClosed:
      break;
  }
  assert(legal && "ConnState: illegal connection phase transition");
#endif
  phase_ = next;
}

namespace {
// io_uring_prep_* overwrite user_data: set it after preparing.
io_uring_sqe* Sqe(NetWorker& nw, OpSlot&) { return nw.worker().internals().ring().GetSqe(); }
}  // namespace

// ---- references -------------------------------------------------------------

void ConnState::Unref() {
  if (--refs_ > 0) return;
  // Nobody can use the connection any more: close it (gracefully if it is open).
  if (phase_ < Phase::kDraining) BeginClose(true);
  MaybeFree();
}

void ConnState::MaybeFree() {
  if (refs_ == 0 && ops_ == 0 && phase_ == Phase::kClosed) nw_.FreeConn(this);  // deletes this
}

void Ref(ConnState* s) { s->Ref(); }
void Unref(ConnState* s) { s->Unref(); }

// ---- install ------------------------------------------------------------------

void ConnState::BeginInstall(int fd, ReadyFn on_ready, void* ctx, bool outbound) {
  pending_fd_ = fd;
  on_ready_ = on_ready;
  ready_ctx_ = ctx;
  outbound_ = outbound;
  assert(phase_ == Phase::kInstalling);
  OpSlot& slot = NewOp(kTagFilesUpdate, &ConnState::OnInstalled);
  // The kernel reads the fd from, and writes the allocated index back into,
  // the slot's storage.
  int* fds = reinterpret_cast<int*>(slot.storage.bytes);
  fds[0] = fd;
  io_uring_sqe* sqe = nw_.worker().internals().ring().GetSqe();
  io_uring_prep_files_update(sqe, fds, 1, static_cast<int>(IORING_FILE_INDEX_ALLOC));
  io_uring_sqe_set_data64(sqe, slot.user_data().raw());
}

void ConnState::OnInstalled(void* owner, OpSlot& slot, int32_t res, uint32_t) {
  auto* self = static_cast<ConnState*>(owner);
  self->Ref();
  self->OpDone();
  // The fixed table holds its own reference to the socket now (or failed to):
  // the plain descriptor is closed either way.
  ::close(self->pending_fd_);
  self->pending_fd_ = -1;
  if (res == 1) {
    self->fixed_ = reinterpret_cast<const int*>(slot.storage.bytes)[0];
    self->SetPhase(Phase::kOpen);
    self->established_ = true;
    self->last_activity_ = self->nw_.worker().now();
    self->nw_.CountEstablished();
  } else {
    // ENFILE: the fixed-file table's allocation range is full.
    self->install_error_ = res < 0 ? -res : EIO;
    self->SetPhase(Phase::kClosed);
  }
  if (ReadyFn fn = std::exchange(self->on_ready_, nullptr)) fn(self->ready_ctx_, self);
  self->install_done_.NotifyAll();
  if (self->phase_ == Phase::kOpen && self->close_requested_) {
    self->BeginClose(self->close_graceful_);
  }
  self->Unref();
}

void ConnState::Start() {
  if (phase_ != Phase::kOpen) return;
  ArmIdle();
  rx_.Update();
  KickSend();
}

// ---- timers ---------------------------------------------------------------------

void ConnState::ArmTimer(OpSlot*& slot_ref, Clock::duration d) {
  if (!CanSubmit()) return;
  OpSlot& slot = NewOp(kTagTimeout, &ConnState::OnTimer);
  const int64_t ns =
      std::max<int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(), 1);
  slot.storage.ts.tv_sec = ns / 1'000'000'000;
  slot.storage.ts.tv_nsec = ns % 1'000'000'000;
  io_uring_sqe* sqe = Sqe(nw_, slot);
  io_uring_prep_timeout(sqe, &slot.storage.ts, 0, 0);
  io_uring_sqe_set_data64(sqe, slot.user_data().raw());
  slot_ref = &slot;
}

void ConnState::ArmIdle() {
  if (opts_.idle_timeout.count() > 0 && !idle_slot_) ArmTimer(idle_slot_, opts_.idle_timeout);
}

void ConnState::OnTimer(void* owner, OpSlot& slot, int32_t res, uint32_t) {
  auto* self = static_cast<ConnState*>(owner);
  self->Ref();
  self->OpDone();
  const bool fired = res == -ETIME;
  if (&slot == self->idle_slot_) {
    self->idle_slot_ = nullptr;
    if (fired) self->OnIdleTimer();
  } else if (&slot == self->linger_slot_) {
    self->linger_slot_ = nullptr;
    if (fired) self->OnLinger();
  }
  self->AfterDrainCheck();
  self->AfterQuiesceCheck();
  self->Unref();
}

void ConnState::OnIdleTimer() {
  if (phase_ != Phase::kOpen) return;
  const auto idle = nw_.worker().now() - last_activity_;
  if (idle < opts_.idle_timeout) {
    // There was activity since the timer was armed: wait for the rest.
    ArmTimer(idle_slot_, opts_.idle_timeout - idle);
    return;
  }
  nw_.metrics().idle_timeouts.Add();
  RL_LOG_INFO("connection to %s idle for %lld ms: closing", peer_.ToString(),
              static_cast<long long>(opts_.idle_timeout.count()));
  rx_.Fail(ETIMEDOUT);
  if (!send_error_) send_error_ = ETIMEDOUT;
  BeginClose(false);
}

void ConnState::OnLinger() {
  if (phase_ != Phase::kDraining && phase_ != Phase::kShutdown) return;
  RL_LOG_WARN(
      "connection to %s: %zu queued bytes not sent within the close linger of %lld ms; "
      "aborting",
      peer_.ToString(), queued_bytes_, static_cast<long long>(opts_.close_linger.count()));
  BeginClose(false);
}

// ---- receive glue -------------------------------------------------------------

void ConnState::Touch() { last_activity_ = nw_.worker().now(); }

void ConnState::AfterReceive() { AfterQuiesceCheck(); }

void ConnState::OnReceiveEnded(int err) {
  if (!tls_ || hs_ != Handshake::kRunning) return;
  if (err == 0) {
    FailHandshake(ECONNRESET, "the peer closed the connection during the handshake");
  } else {
    FailHandshake(err, std::strerror(err));
  }
}

int ConnState::OverflowClose() {
  nw_.metrics().accumulator_overflows.Add();
  RL_LOG_WARN(
      "connection to %s: a message needs more than the accumulator cap of %zu bytes; "
      "closing",
      peer_.ToString(), opts_.accumulator_cap);
  rx_.Fail(EMSGSIZE);
  if (!send_error_) send_error_ = EMSGSIZE;
  BeginClose(false);
  return EMSGSIZE;
}

// ---- close --------------------------------------------------------------------------

void ConnState::BeginClose(bool graceful) {
  switch (phase_) {
    case Phase::kInstalling:
      close_requested_ = true;
      close_graceful_ = close_graceful_ && graceful;
      return;
    case Phase::kOpen:
      break;
    case Phase::kDraining:
    case Phase::kShutdown:
      if (graceful) return;
      break;  // escalate to an abort
    default:
      return;  // already cancelling or closed
  }
  // Local close: tasks still waiting to receive learn it.
  rx_.Fail(ENOTCONN);
  if (graceful && !send_error_ && phase_ == Phase::kOpen) {
    if (tls_ && hs_ == Handshake::kDone && !close_notify_sent_) {
      close_notify_sent_ = true;
      tls_->Shutdown();  // close_notify, through the ordered queue
      DrainTlsOutput();
    }
    SetPhase(Phase::kDraining);
    rx_.Update();       // stop receiving
    PumpSendWaiters();  // waiting sends fail: the connection is closing
    if (opts_.close_linger.count() > 0) ArmTimer(linger_slot_, opts_.close_linger);
    AfterDrainCheck();
    return;
  }
  SetPhase(Phase::kCancelling);
  FailSends(send_error_ ? send_error_ : ECONNABORTED);
  CancelAll();
  AfterQuiesceCheck();
}

void ConnState::AfterDrainCheck() {
  if (phase_ != Phase::kDraining) return;
  if (send_error_) {
    SetPhase(Phase::kCancelling);
    FailSends(send_error_);
    CancelAll();
    AfterQuiesceCheck();
    return;
  }
  if (sq_head_ || send_in_flight_) return;  // bytes still leaving
  SetPhase(Phase::kShutdown);
  if (!CanSubmit()) {
    SetPhase(Phase::kCancelling);
    CancelAll();
    AfterQuiesceCheck();
    return;
  }
  // Everything queued is out: send FIN.
  OpSlot& slot = NewOp(kTagShutdown, &ConnState::OnShutdown);
  io_uring_sqe* sqe = Sqe(nw_, slot);
  io_uring_prep_shutdown(sqe, fixed_, SHUT_WR);
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, slot.user_data().raw());
  shutdown_slot_ = &slot;
}

void ConnState::OnShutdown(void* owner, OpSlot&, int32_t res, uint32_t) {
  auto* self = static_cast<ConnState*>(owner);
  self->Ref();
  self->OpDone();
  self->shutdown_slot_ = nullptr;
  if (res < 0 && res != -ENOTCONN && res != -ECANCELED && !self->close_error_) {
    self->close_error_ = -res;
  }
  if (self->phase_ == Phase::kShutdown) {
    self->SetPhase(Phase::kCancelling);
    self->CancelAll();
  }
  self->AfterQuiesceCheck();
  self->Unref();
}

void ConnState::CancelAll() {
  OpSlab& slab = nw_.worker().internals().slab();
  rx_.CancelAll();
  if (send_in_flight_ && send_slot_) slab.Cancel(*send_slot_);
  if (idle_slot_) slab.Cancel(*idle_slot_);
  if (linger_slot_) slab.Cancel(*linger_slot_);
}

void ConnState::AfterQuiesceCheck() {
  if (phase_ != Phase::kCancelling || ops_ > notif_only_) return;
  // Every operation has returned: the descriptor can go.
  if (fixed_ >= 0) {
    SetPhase(Phase::kClosing);
    OpSlot& slot = NewOp(kTagClose, &ConnState::OnClose);
    io_uring_sqe* sqe = Sqe(nw_, slot);
    io_uring_prep_close_direct(sqe, static_cast<unsigned>(fixed_));
    io_uring_sqe_set_data64(sqe, slot.user_data().raw());
    close_slot_ = &slot;
    return;
  }
  Closed(0);
}

void ConnState::OnClose(void* owner, OpSlot&, int32_t res, uint32_t) {
  auto* self = static_cast<ConnState*>(owner);
  self->Ref();
  self->OpDone();
  self->close_slot_ = nullptr;
  self->fixed_ = -1;
  self->Closed(res < 0 ? -res : 0);
  self->Unref();
}

void ConnState::Closed(int err) {
  SetPhase(Phase::kClosed);
  if (err && !close_error_) close_error_ = err;
  if (established_) {
    established_ = false;
    nw_.CountGone();
  }
  if (!send_error_) send_error_ = ENOTCONN;
  rx_.Fail(ENOTCONN);
  FailSends(send_error_);
  if (hs_ == Handshake::kRunning) FailHandshake(ENOTCONN, "connection closed during the handshake");
  closed_.NotifyAll();
}

}  // namespace ringline::net::detail
