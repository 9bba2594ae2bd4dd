// ConnState: the receive side (multishot recv into the provided buffer ring,
// accumulator, read_exact sinks and direct receives).
#include <liburing.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "conn_state.h"
#include "net_worker.h"
#include "ringline/log.h"
#include "ringline/worker.h"
#include "tls_session.h"

namespace ringline::net::detail {

int ConnState::ClaimRecv() {
  if (receiving_) return EBUSY;
  if (phase_ == Phase::kInstalling) return ENOTCONN;
  receiving_ = true;
  return 0;
}

void ConnState::ReleaseRecv() { receiving_ = false; }

void ConnState::Consume(std::size_t n) {
  acc_.Consume(n);
  UpdateRecv();  // below the cap again: resume receiving
}

int ConnState::RecvStatus() const {
  if (recv_error_) return recv_error_;
  if (eof_) return -1;
  if (phase_ == Phase::kInstalling || phase_ >= Phase::kCancelling) return ENOTCONN;
  return 0;
}

void ConnState::SetRecvError(int err) {
  if (!recv_error_) recv_error_ = err;
  WakeRecv();
}

void ConnState::ParkRecv(RecvWait* w) {
  recv_waiter_ = w;
  UpdateRecv();
}

void ConnState::UnparkRecv(RecvWait* w) {
  if (recv_waiter_ == w) recv_waiter_ = nullptr;
}

void ConnState::WakeRecv() {
  RecvWait* w = recv_waiter_;
  if (!w) return;
  // want_ == 0: the reader wants every receive-side event (read_exact).
  if (w->want_ != 0 && acc_.size() < w->want_ && RecvStatus() == 0) return;
  recv_waiter_ = nullptr;
  PromiseBase* p = std::exchange(w->promise_, nullptr);
  if (p) nw_.worker().internals().Schedule(p);
}

int ConnState::OverflowClose() {
  nw_.metrics().accumulator_overflows.Add();
  RL_LOG_WARN(
      "connection to %s: a message needs more than the accumulator cap of %zu bytes; "
      "closing",
      peer_.ToString(), opts_.accumulator_cap);
  SetRecvError(EMSGSIZE);
  if (!send_error_) send_error_ = EMSGSIZE;
  BeginClose(false);
  return EMSGSIZE;
}

// Arms, keeps or pauses the multishot receive to match what is wanted; in
// bounded mode, submits the single receive a waiting reader needs.
void ConnState::UpdateRecv() {
  const bool sink_wants = sink_ && sink_got_ < sink_want_;
  const bool want = phase_ == Phase::kOpen && !eof_ && !recv_error_ && !direct_ &&
                    (acc_.size() < opts_.accumulator_cap || sink_wants);
  if (bounded()) {
    if (recv_slot_) {
      // Switching from multishot: its final completion follows the cancellation
      // (and may still deliver bytes, in order, before any bounded receive).
      if (recv_multishot_ && !recv_cancel_sent_) {
        nw_.worker().internals().slab().Cancel(*recv_slot_);
        recv_cancel_sent_ = true;
      }
      return;
    }
    if (want && CanSubmit()) {
      if (const std::size_t n = BoundedWant()) SubmitBounded(n);
    }
    return;
  }
  if (want) {
    if (!recv_slot_ && !starved_ && CanSubmit()) ArmRecv();
  } else if (recv_slot_ && !recv_cancel_sent_) {
    // Paused (accumulator full, direct receive, closing): the final completion
    // of the multishot recv follows the cancellation.
    nw_.worker().internals().slab().Cancel(*recv_slot_);
    recv_cancel_sent_ = true;
  }
}

void ConnState::ArmRecv() {
  if (armed_once_) nw_.metrics().recv_rearms.Add();
  armed_once_ = true;
  OpSlot& slot = NewOp(kTagRecvMulti, &ConnState::OnRecv);
  io_uring_sqe* sqe = nw_.worker().internals().ring().GetSqe();
  io_uring_prep_recv_multishot(sqe, fixed_, nullptr, 0, 0);
  sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
  sqe->buf_group = nw_.recv_ring().group();
  io_uring_sqe_set_data64(sqe, slot.user_data().raw());
  recv_slot_ = &slot;
  recv_multishot_ = true;
  recv_cancel_sent_ = false;
}

// ---- bounded mode ------------------------------------------------------------
//
// Nothing is received unless a reader waits, and then no more than it needs:
// recv(parse) gets up to max(its need, read_ahead_) bytes, read_exact its
// remaining bytes plus read_ahead_ (the next message's header). So bytes that
// follow a header stay in the socket until read_exact receives them straight
// into its Buffer.

std::size_t ConnState::BoundedWant() const {
  const std::size_t have = acc_.size();
  const std::size_t ahead = read_ahead_ > have ? read_ahead_ - have : 0;
  if (sink_ && sink_got_ < sink_want_) return sink_want_ - sink_got_ + ahead;
  if (!recv_waiter_) return 0;
  const std::size_t goal = std::max(recv_waiter_->want_, read_ahead_);
  return goal > have ? goal - have : 0;
}

void ConnState::SubmitBounded(std::size_t n) {
  if (!stage_) {
    stage_cap_ = std::max<std::size_t>(4096, read_ahead_);
    stage_ = std::make_unique<uint8_t[]>(stage_cap_);
  }
  OpSlot& slot = NewOp(kTagRecvBounded, &ConnState::OnBoundedRecv);
  io_uring_sqe* sqe = nw_.worker().internals().ring().GetSqe();
  io_uring_prep_recv(sqe, fixed_, stage_.get(), std::min(n, stage_cap_), 0);
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, slot.user_data().raw());
  recv_slot_ = &slot;
  recv_multishot_ = false;
  recv_cancel_sent_ = false;
  nw_.metrics().bounded_recvs.Add();
}

void ConnState::OnBoundedRecv(void* owner, OpSlot&, int32_t res, uint32_t) {
  auto* self = static_cast<ConnState*>(owner);
  self->Ref();
  self->OpDone();
  self->recv_slot_ = nullptr;
  self->recv_cancel_sent_ = false;
  NetWorker& nw = self->nw_;
  if (res > 0) {
    nw.metrics().bytes_in.Add(static_cast<uint64_t>(res));
    self->last_activity_ = nw.worker().now();
    if (self->tls_) {
      self->OnCipher(self->stage_.get(), static_cast<std::size_t>(res));
    } else {
      self->Deliver(self->stage_.get(), static_cast<std::size_t>(res));
    }
  } else if (res == 0) {
    self->eof_ = true;
  } else if (res != -ECANCELED) {  // cancelled: closing, or the payload before it fell short
    self->SetRecvError(-res);
  }
  self->WakeRecv();
  self->UpdateRecv();
  self->AfterQuiesceCheck();
  self->Unref();
}

void ConnState::SetReadAhead(std::size_t bytes) {
  read_ahead_ = bytes;
  UpdateRecv();
}

void ConnState::OnRecv(void* owner, OpSlot&, int32_t res, uint32_t flags) {
  auto* self = static_cast<ConnState*>(owner);
  self->Ref();
  NetWorker& nw = self->nw_;
  const bool final = !(flags & IORING_CQE_F_MORE);
  if (flags & IORING_CQE_F_BUFFER) {
    const auto bid = static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    BufferRing& ring = nw.recv_ring();
    ring.Taken();
    if (res > 0) {
      nw.metrics().bytes_in.Add(static_cast<uint64_t>(res));
      self->last_activity_ = nw.worker().now();
      // Copied out at once, so the buffer goes back in this same batch.
      if (self->tls_) {
        self->OnCipher(ring.Addr(bid), static_cast<std::size_t>(res));
      } else {
        self->Deliver(ring.Addr(bid), static_cast<std::size_t>(res));
      }
    }
    nw.ReturnBuffer(ring, bid);
  }
  if (res == 0) {
    self->eof_ = true;
    if (self->tls_ && self->hs_state_ == 0) {
      self->FailHandshake(ECONNRESET, "the peer closed the connection during the handshake");
    }
  } else if (res == -ENOBUFS) {
    // The ring is empty (rule 6): wait for the end-of-batch publish to re-arm.
    nw.metrics().recv_enobufs.Add();
    if (final && !self->starved_) {
      self->starved_ = true;
      nw.AddStarved(self);
    }
  } else if (res < 0 && res != -ECANCELED) {
    self->SetRecvError(-res);
    if (self->tls_ && self->hs_state_ == 0) self->FailHandshake(-res, std::strerror(-res));
  }
  if (final) {
    self->recv_slot_ = nullptr;
    self->recv_multishot_ = false;
    self->recv_cancel_sent_ = false;
    self->OpDone();
  }
  self->WakeRecv();
  self->UpdateRecv();
  self->AfterQuiesceCheck();
  self->Unref();
}

void ConnState::OnBuffersPublished() {
  starved_ = false;
  UpdateRecv();
}

void ConnState::Deliver(const uint8_t* p, std::size_t n) {
  if (sink_ && sink_got_ < sink_want_) {
    const std::size_t k = std::min(n, sink_want_ - sink_got_);
    std::memcpy(sink_ + sink_got_, p, k);
    nw_.metrics().read_copied_bytes.Add(k);
    sink_got_ += k;
    p += k;
    n -= k;
  }
  if (n) acc_.Append(p, n);
}

// ---- read_exact support --------------------------------------------------------

std::size_t ConnState::TakeAccumulated(uint8_t* dst, std::size_t n) {
  const std::size_t k = acc_.Take(dst, n);
  nw_.metrics().read_copied_bytes.Add(k);
  UpdateRecv();
  return k;
}

void ConnState::SetSink(uint8_t* dst, std::size_t want) {
  sink_ = dst;
  sink_want_ = want;
  sink_got_ = 0;
  UpdateRecv();
}

void ConnState::ClearSink() {
  sink_ = nullptr;
  sink_want_ = sink_got_ = 0;
  UpdateRecv();
}

bool ConnState::ReadProgress() const {
  if (direct_slot_) return false;  // the direct receive must come back first
  if (RecvStatus() != 0) return true;
  if (sink_ && sink_got_ >= sink_want_) return true;
  return direct_ && !recv_slot_ && !direct_slot_;  // ready for (another) direct receive
}

void ConnState::BeginDirect() {
  direct_ = true;
  UpdateRecv();  // cancels the multishot receive; DirectReady() once it has ended
}

void ConnState::SubmitDirect(Buffer* lent) {
  if (!direct_lent_ && lent) {
    // The connection keeps the Buffer while the kernel may write into it; its
    // memory (and so sink_) does not move with the Buffer object.
    direct_buf_ = std::move(*lent);
    direct_lent_ = true;
    nw_.metrics().direct_reads.Add();
  }
  // Bounded mode: the next header is received in the same submission, linked
  // so that it starts only once the payload is complete (a short payload
  // receive cancels it). Both SQEs must go in one submission, or the header
  // receive could run first.
  Ring& ring = nw_.worker().internals().ring();
  const bool read_ahead = bounded() && !recv_slot_ && acc_.empty() && ring.sq_space() >= 2;
  OpSlot& slot = NewOp(kTagRecvDirect, &ConnState::OnDirect);
  io_uring_sqe* sqe = ring.GetSqe();
  io_uring_prep_recv(sqe, fixed_, sink_ + sink_got_, sink_want_ - sink_got_, MSG_WAITALL);
  sqe->flags |= IOSQE_FIXED_FILE | (read_ahead ? IOSQE_IO_LINK : 0);
  io_uring_sqe_set_data64(sqe, slot.user_data().raw());
  direct_slot_ = &slot;
  if (read_ahead) SubmitBounded(read_ahead_);
}

void ConnState::OnDirect(void* owner, OpSlot&, int32_t res, uint32_t) {
  auto* self = static_cast<ConnState*>(owner);
  self->Ref();
  self->OpDone();
  self->direct_slot_ = nullptr;
  NetWorker& nw = self->nw_;
  if (res > 0) {
    nw.metrics().bytes_in.Add(static_cast<uint64_t>(res));
    self->last_activity_ = nw.worker().now();
    if (self->sink_) self->sink_got_ += static_cast<std::size_t>(res);
  } else if (res == 0) {
    self->eof_ = true;
  } else if (res != -ECANCELED) {
    self->SetRecvError(-res);
  }
  if (!self->sink_ && self->direct_lent_) {
    // The reader went away: the kernel is done with the lent buffer now.
    self->direct_buf_.Reset();
    self->direct_lent_ = false;
    self->direct_ = false;
  }
  self->WakeRecv();
  self->UpdateRecv();
  self->AfterQuiesceCheck();
  self->Unref();
}

void ConnState::EndDirect(Buffer* lent) {
  if (direct_lent_) {
    *lent = std::move(direct_buf_);
    direct_lent_ = false;
  }
  direct_ = false;
  UpdateRecv();
}

void ConnState::BreakRecv() {
  if (!recv_error_) recv_error_ = ECONNABORTED;
  sink_ = nullptr;
  sink_want_ = sink_got_ = 0;
  if (direct_slot_) {
    // Keep the lent buffer until the kernel returns the receive.
    nw_.worker().internals().slab().Cancel(*direct_slot_);
  } else {
    direct_buf_.Reset();
    direct_lent_ = false;
    direct_ = false;
  }
  UpdateRecv();
}

}  // namespace ringline::net::detail
