// Receiver: the receive side of a connection (see receiver.h).
#include "receiver.h"

#include <liburing.h>
#include <sys/socket.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>

#include "conn_state.h"
#include "net_worker.h"
#include "op_tags.h"
#include "ringline/worker.h"

namespace ringline::net::detail {

Receiver::Receiver(ConnState& conn, NetWorker& nw) : conn_(conn), nw_(nw) {}

Receiver::~Receiver() {
  // Only destroyed with no operation left (the ConnState is freed after its
  // last completion): held buffers go straight back to the ring.
  while (held_head_ != BufferRing::kNoBuffer) ReturnHead();
}

// ---- the mode ------------------------------------------------------------------

void Receiver::SetMode(Mode next) {
#ifndef NDEBUG
  bool legal = false;
  switch (mode_) {
    case Mode::kIdle:
      legal = next == Mode::kMultishot || next == Mode::kBounded || next == Mode::kDirect ||
              next == Mode::kClosed;
      break;
    case Mode::kMultishot:
      legal = next == Mode::kStopping || next == Mode::kIdle;
      break;
    case Mode::kStopping:
    case Mode::kBounded:
      legal = next == Mode::kIdle;
      break;
    case Mode::kDirect:
      legal = next == Mode::kIdle || next == Mode::kBounded;
      break;
    case Mode::kClosed:
      break;
  }
  assert(legal && "Receiver: illegal receive mode transition");
#endif
  mode_ = next;
  // An operation is in the kernel exactly in the modes that name one.
  assert((op_ != nullptr) == (mode_ != Mode::kIdle && mode_ != Mode::kClosed));
  assert(linked_ == nullptr || mode_ == Mode::kDirect);
}

bool Receiver::paced() const { return pace_ == Pace::kPaced && !conn_.tls(); }

void Receiver::Update() {
  if (mode_ == Mode::kClosed) return;
  const ConnState::Phase phase = conn_.phase();
  if (phase != ConnState::Phase::kOpen || state_ != StreamState::kOpen) {
    if (mode_ == Mode::kMultishot) {
      StopMultishot();
    } else if (mode_ == Mode::kIdle && phase != ConnState::Phase::kInstalling) {
      SetMode(Mode::kClosed);
    }
    return;
  }
  const bool sink_wants = sink_.wants();
  const bool full = buffered() >= conn_.options().accumulator_cap;
  switch (mode_) {
    case Mode::kIdle:
      if (!conn_.CanSubmit()) return;
      if (sink_wants && sink_.direct) {
        SubmitDirect();
      } else if (paced()) {
        if (const std::size_t n = PacedWant()) {
          op_ = PrepBounded(n);
          SetMode(Mode::kBounded);
        }
      } else if ((!full || sink_wants) && !starved_) {
        ArmMultishot();
      }
      return;
    case Mode::kMultishot:
      // A direct receive needs the multishot one ended first (its final
      // completion may still carry bytes, which go into the sink in order).
      if ((sink_wants && sink_.direct) || paced() || (full && !sink_wants)) StopMultishot();
      return;
    default:
      return;  // an operation is in the kernel: its completion calls back
  }
}

void Receiver::ArmMultishot() {
  if (armed_once_) nw_.metrics().recv_rearms.Add();
  armed_once_ = true;
  OpSlot& slot = conn_.NewOp(kTagRecvMulti, &Receiver::OnMultishot, this);
  io_uring_sqe* sqe = nw_.worker().internals().ring().GetSqe();
  io_uring_prep_recv_multishot(sqe, conn_.fixed(), nullptr, 0, 0);
  sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
  sqe->buf_group = nw_.recv_ring().group();
  io_uring_sqe_set_data64(sqe, slot.user_data().raw());
  op_ = &slot;
  SetMode(Mode::kMultishot);
}

void Receiver::StopMultishot() {
  nw_.worker().internals().slab().Cancel(*op_);
  SetMode(Mode::kStopping);
}

// Paced: nothing is received unless a reader waits, and then no more than it
// needs plus the size of the last message header, so a payload behind a
// header stays in the socket until read_exact receives it into its Buffer.
std::size_t Receiver::PacedWant() const {
  const std::size_t have = buffered();
  const std::size_t ahead = header_bytes_ > have ? header_bytes_ - have : 0;
  if (sink_.wants()) return sink_.want - sink_.got + ahead;
  if (wait_ != Wait::kMessage) return 0;
  const std::size_t goal = std::max(want_, header_bytes_);
  return goal > have ? goal - have : 0;
}

OpSlot* Receiver::PrepBounded(std::size_t n) {
  if (!stage_) {
    stage_cap_ = std::max<std::size_t>(4096, header_bytes_);
    stage_ = std::make_unique<uint8_t[]>(stage_cap_);
  }
  OpSlot& slot = conn_.NewOp(kTagRecvBounded, &Receiver::OnBounded, this);
  io_uring_sqe* sqe = nw_.worker().internals().ring().GetSqe();
  io_uring_prep_recv(sqe, conn_.fixed(), stage_.get(), std::min(n, stage_cap_), 0);
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, slot.user_data().raw());
  nw_.metrics().bounded_recvs.Add();
  return &slot;
}

void Receiver::SubmitDirect() {
  assert(buffered() == 0 && sink_.lender != nullptr);
  if (!lent_) {
    // The receiver keeps the Buffer while the kernel may write into it; its
    // memory (and so sink_.dst) does not move with the Buffer object.
    lent_ = std::move(*sink_.lender);
    nw_.metrics().direct_reads.Add();
  }
  // Paced: the next header is received in the same submission, linked so that
  // it starts only once the payload is complete (a short payload receive
  // cancels it). Both SQEs must go in one submission, or the header receive
  // could run first.
  Ring& ring = nw_.worker().internals().ring();
  const bool link = paced() && header_bytes_ > 0 && ring.sq_space() >= 2;
  OpSlot& slot = conn_.NewOp(kTagRecvDirect, &Receiver::OnDirect, this);
  io_uring_sqe* sqe = ring.GetSqe();
  io_uring_prep_recv(sqe, conn_.fixed(), sink_.dst + sink_.got, sink_.want - sink_.got,
                     MSG_WAITALL);
  sqe->flags |= IOSQE_FIXED_FILE | (link ? IOSQE_IO_LINK : 0);
  io_uring_sqe_set_data64(sqe, slot.user_data().raw());
  op_ = &slot;
  if (link) linked_ = PrepBounded(header_bytes_);
  SetMode(Mode::kDirect);
}

void Receiver::CancelAll() {
  OpSlab& slab = nw_.worker().internals().slab();
  if (mode_ == Mode::kMultishot) {
    StopMultishot();
  } else if (mode_ == Mode::kBounded || mode_ == Mode::kDirect) {
    slab.Cancel(*op_);
  }
  if (linked_) slab.Cancel(*linked_);
  if (starved_) {
    nw_.RemoveStarved(&conn_);
    starved_ = false;
  }
}

void Receiver::OnBuffersPublished() {
  starved_ = false;
  Update();
}

// ---- completions -------------------------------------------------------------------

PromiseBase* Receiver::AfterEvent() {
  PromiseBase* reader = TakeReadyReader();
  Update();
  conn_.AfterReceive();
  return reader;
}

void Receiver::OnMultishot(void* owner, OpSlot&, int32_t res, uint32_t flags) {
  auto* self = static_cast<Receiver*>(owner);
  ConnState& c = self->conn_;
  NetWorker& nw = self->nw_;
  c.Ref();
  if (!(flags & IORING_CQE_F_MORE)) {
    self->op_ = nullptr;
    self->SetMode(Mode::kIdle);
    c.OpDone();
  }
  if (flags & IORING_CQE_F_BUFFER) {
    const auto bid = static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    BufferRing& ring = nw.recv_ring();
    ring.Taken();
    if (res > 0) {
      nw.metrics().bytes_in.Add(static_cast<uint64_t>(res));
      c.Touch();
      if (c.tls()) {
        c.OnCipher(ring.Addr(bid), static_cast<std::size_t>(res));  // decrypted: a copy anyway
        nw.ReturnBuffer(ring, bid);
      } else {
        self->Accept(bid, ring.Addr(bid), static_cast<std::size_t>(res));
      }
    } else {
      nw.ReturnBuffer(ring, bid);
    }
  }
  if (res == 0) {
    self->SetEnded();
    c.OnReceiveEnded(0);
  } else if (res == -ENOBUFS) {
    // The ring is empty (docs/io_uring-rules.md R6): re-armed by the
    // end-of-batch publish, never in a loop.
    nw.metrics().recv_enobufs.Add();
    if (self->mode_ == Mode::kIdle && !self->starved_) {
      self->starved_ = true;
      nw.AddStarved(&c);
    }
  } else if (res < 0 && res != -ECANCELED) {
    self->SetFailed(-res);
    c.OnReceiveEnded(-res);
  }
  if (PromiseBase* reader = self->AfterEvent()) reader->self().resume();
  c.Unref();
}

template <typename SettleFn, typename TakeFn>
void Receiver::CompleteSingle(Mode mode, int32_t res, SettleFn settle, TakeFn take) {
  ConnState& c = conn_;
  c.Ref();  // the reader or AfterEvent may drop the last other reference
  c.OpDone();
  assert(mode_ == mode);
  (void)mode;
  settle();
  if (res > 0) {
    nw_.metrics().bytes_in.Add(static_cast<uint64_t>(res));
    c.Touch();
    take(static_cast<std::size_t>(res));
  } else if (res == 0) {
    SetEnded();
  } else if (res != -ECANCELED) {  // cancelled: closing, or the payload before it fell short
    SetFailed(-res);
  }
  if (PromiseBase* reader = AfterEvent()) reader->self().resume();
  c.Unref();  // may destroy this receiver: nothing after it
}

void Receiver::OnBounded(void* owner, OpSlot&, int32_t res, uint32_t) {
  auto* self = static_cast<Receiver*>(owner);
  self->CompleteSingle(
      Mode::kBounded, res,
      [self] {
        self->op_ = nullptr;
        self->SetMode(Mode::kIdle);
      },
      [self](std::size_t n) {
        if (self->conn_.tls()) {
          self->conn_.OnCipher(self->stage_.get(), n);
        } else {
          self->Deliver(self->stage_.get(), n);
        }
      });
}

void Receiver::OnDirect(void* owner, OpSlot&, int32_t res, uint32_t) {
  auto* self = static_cast<Receiver*>(owner);
  self->CompleteSingle(
      Mode::kDirect, res,
      [self] {
        // The reader went away: the kernel is done with the lent Buffer now.
        if (!self->sink_.active) self->lent_.Reset();
        self->op_ = std::exchange(self->linked_, nullptr);
        self->SetMode(self->op_ ? Mode::kBounded : Mode::kIdle);
      },
      [self](std::size_t n) {
        if (self->sink_.active) self->sink_.got += n;
      });
}

// ---- bytes ---------------------------------------------------------------------------

void Receiver::Accept(uint16_t bid, const uint8_t* p, std::size_t n) {
  BufferRing& ring = nw_.recv_ring();
  if (sink_.wants()) {
    // A read_exact in progress has taken every buffered byte: these follow.
    assert(buffered() == 0);
    FillSink(p, n);
  }
  if (n == 0) {
    nw_.ReturnBuffer(ring, bid);
    return;
  }
  ring.held(bid) = {static_cast<uint32_t>(p - ring.Addr(bid)), static_cast<uint32_t>(n),
                    BufferRing::kNoBuffer};
  if (held_tail_ != BufferRing::kNoBuffer) {
    ring.held(held_tail_).next = bid;
  } else {
    held_head_ = bid;
  }
  held_tail_ = bid;
  held_bytes_ += n;
  if (!listed_) {
    listed_ = true;
    nw_.AddHolding(&conn_);
  }
}

void Receiver::FillSink(const uint8_t*& p, std::size_t& n) {
  const std::size_t k = std::min(n, sink_.want - sink_.got);
  std::memcpy(sink_.dst + sink_.got, p, k);
  nw_.metrics().read_copied_bytes.Add(k);
  sink_.got += k;
  p += k;
  n -= k;
}

void Receiver::Deliver(const uint8_t* p, std::size_t n) {
  if (sink_.wants()) FillSink(p, n);
  if (n == 0) return;
  AccumulateHeld(kAllHeld);  // held bytes come first
  acc_.Append(p, n);
}

void Receiver::ReturnHead() {
  BufferRing& ring = nw_.recv_ring();
  const uint16_t bid = held_head_;
  BufferRing::Held& h = ring.held(bid);
  held_bytes_ -= h.len;
  held_head_ = h.next;
  if (held_head_ == BufferRing::kNoBuffer) held_tail_ = BufferRing::kNoBuffer;
  nw_.ReturnBuffer(ring, bid);
}

void Receiver::AccumulateHeld(std::size_t up_to) {
  BufferRing& ring = nw_.recv_ring();
  while (up_to > 0 && held_head_ != BufferRing::kNoBuffer) {
    BufferRing::Held& h = ring.held(held_head_);
    const std::size_t k = std::min<std::size_t>(up_to, h.len);
    acc_.Append(ring.Addr(held_head_) + h.off, k);
    h.off += static_cast<uint32_t>(k);
    h.len -= static_cast<uint32_t>(k);
    held_bytes_ -= k;
    up_to -= k;
    if (h.len == 0) ReturnHead();
  }
}

void Receiver::EndOfBatch() {
  listed_ = false;
  AccumulateHeld(kAllHeld);
}

std::span<const uint8_t> Receiver::Contiguous(std::size_t want) {
  if (acc_.empty()) {
    if (held_head_ == BufferRing::kNoBuffer) return {};
    BufferRing& ring = nw_.recv_ring();
    const BufferRing::Held& h = ring.held(held_head_);
    // In place: the parser reads the provided buffer itself.
    if (h.len >= want || h.next == BufferRing::kNoBuffer) {
      return {ring.Addr(held_head_) + h.off, h.len};
    }
  }
  // A message spans buffers: only the bytes it needs are accumulated.
  if (acc_.size() < want) AccumulateHeld(want - acc_.size());
  return acc_.data();
}

void Receiver::ConsumeBytes(std::size_t n) {
  assert(n <= buffered());
  const std::size_t a = std::min(n, acc_.size());
  acc_.Consume(a);
  n -= a;
  BufferRing& ring = nw_.recv_ring();
  while (n > 0 && held_head_ != BufferRing::kNoBuffer) {
    BufferRing::Held& h = ring.held(held_head_);
    const std::size_t k = std::min<std::size_t>(n, h.len);
    h.off += static_cast<uint32_t>(k);
    h.len -= static_cast<uint32_t>(k);
    held_bytes_ -= k;
    n -= k;
    if (h.len == 0) ReturnHead();
  }
}

std::size_t Receiver::CopyBuffered(uint8_t* dst, std::size_t n) {
  std::size_t done = acc_.Take(dst, n);
  // These bytes were copied into the accumulator first (a message spanning
  // buffers, a reader that was not ready within the batch, TLS plaintext).
  nw_.metrics().read_recopied_bytes.Add(done);
  BufferRing& ring = nw_.recv_ring();
  while (done < n && held_head_ != BufferRing::kNoBuffer) {
    BufferRing::Held& h = ring.held(held_head_);
    const std::size_t k = std::min<std::size_t>(n - done, h.len);
    std::memcpy(dst + done, ring.Addr(held_head_) + h.off, k);
    nw_.metrics().read_copied_bytes.Add(k);
    h.off += static_cast<uint32_t>(k);
    h.len -= static_cast<uint32_t>(k);
    held_bytes_ -= k;
    done += k;
    if (h.len == 0) ReturnHead();
  }
  return done;
}

// ---- the reader ------------------------------------------------------------------------

int Receiver::Claim() {
  if (claimed_) return EBUSY;
  if (conn_.phase() == ConnState::Phase::kInstalling) return ENOTCONN;
  claimed_ = true;
  return 0;
}

void Receiver::Release() {
  assert(claimed_ && !sink_.active);
  claimed_ = false;
}

void Receiver::ConsumeMessage(std::size_t n) {
  ConsumeBytes(n);
  header_bytes_ = n;
  if (pace_ == Pace::kPaced && ++since_direct_ >= kGreedyAfter) pace_ = Pace::kGreedy;
  Update();  // below the cap again, or back to the multishot receive
}

std::size_t Receiver::Take(uint8_t* dst, std::size_t n) {
  const std::size_t k = CopyBuffered(dst, n);
  Update();
  return k;
}

void Receiver::ParkMessage(PromiseBase* p, std::size_t want) {
  assert(reader_ == nullptr && claimed_);
  reader_ = p;
  wait_ = Wait::kMessage;
  want_ = want;
  Update();  // paced: the receive this reader needs
}

void Receiver::Unpark(PromiseBase* p) {
  if (reader_ != p) return;
  reader_ = nullptr;
  wait_ = Wait::kNone;
}

bool Receiver::StartRead(uint8_t* dst, std::size_t n, Buffer* lent) {
  assert(claimed_ && !sink_.active && !lent_);
  sink_.active = true;
  sink_.dst = dst;
  sink_.want = n;
  sink_.got = CopyBuffered(dst, n);
  sink_.lender = lent;
  if (sink_.got < n && lent && !conn_.tls() &&
      n - sink_.got >= conn_.options().direct_read_threshold) {
    sink_.direct = true;
    pace_ = Pace::kPaced;
    since_direct_ = 0;
  }
  Update();
  return ReadOver();
}

bool Receiver::ReadOver() const {
  if (!sink_.wants()) return true;
  // The stream ended: over once no receive into the sink is in the kernel.
  return state_ != StreamState::kOpen && mode_ != Mode::kDirect;
}

void Receiver::ParkRead(PromiseBase* p) {
  assert(reader_ == nullptr && sink_.active);
  reader_ = p;
  wait_ = Wait::kRead;
}

int Receiver::FinishRead(Buffer* lent) {
  assert(sink_.active && mode_ != Mode::kDirect);
  int err = 0;
  if (sink_.got < sink_.want) {
    err = state_ == StreamState::kFailed ? error_ : ENODATA;
    Desync();  // part of a payload is gone
  }
  if (lent_) *lent = std::move(lent_);
  sink_ = {};
  Update();
  return err;
}

void Receiver::Desync() {
  // The stream is out of sync from here on: later receives fail (an error
  // that ended it already stays the reason).
  if (state_ != StreamState::kFailed) {
    state_ = StreamState::kFailed;
    error_ = ECONNABORTED;
  }
}

void Receiver::AbandonRead() {
  Desync();
  sink_ = {};
  if (wait_ == Wait::kRead) {
    reader_ = nullptr;
    wait_ = Wait::kNone;
  }
  if (mode_ == Mode::kDirect) {
    // The lent Buffer stays until the kernel returns the receive (OnDirect).
    nw_.worker().internals().slab().Cancel(*op_);
  } else {
    lent_.Reset();
  }
  Update();
}

void Receiver::SetEnded() {
  if (state_ == StreamState::kOpen) state_ = StreamState::kEnded;
}

void Receiver::SetFailed(int err) {
  if (state_ == StreamState::kOpen) {
    state_ = StreamState::kFailed;
    error_ = err;
  }
}

void Receiver::End() {
  SetEnded();
  Notify();
}

void Receiver::Fail(int err) {
  SetFailed(err);
  Notify();
}

void Receiver::Notify() {
  WakeReader();
  Update();
}

PromiseBase* Receiver::TakeReadyReader() {
  if (!reader_) return nullptr;
  const bool ready = wait_ == Wait::kRead ? ReadOver() : MessageReady(want_);
  if (!ready) return nullptr;
  wait_ = Wait::kNone;
  return std::exchange(reader_, nullptr);
}

void Receiver::WakeReader() {
  if (PromiseBase* p = TakeReadyReader()) nw_.worker().internals().Schedule(p);
}

}  // namespace ringline::net::detail
