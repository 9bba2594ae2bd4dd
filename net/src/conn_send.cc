// ConnState: the send side. One ordered queue per connection (docs/io_uring-rules.md R2), one send
// operation in flight at a time, MSG_WAITALL plus explicit continuation of short
// sends (R5), zero-copy items released only after their notification
// (R1), and a byte limit that makes senders wait (backpressure).
// Sends are started at the end of the worker's iteration (NetWorker::
// BeforeSubmit), so everything the connection's tasks queued in one iteration
// leaves in one operation: many small replies make one TCP send, not one each.
#include <liburing.h>

#include <cerrno>
#include <cstring>

#include "conn_state.h"
#include "net_worker.h"
#include "ringline/log.h"
#include "ringline/worker.h"
#include "tls_session.h"

#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

namespace ringline::net::detail {
namespace {
// One send operation covers at most this many queued copy chunks.
constexpr std::size_t kMaxIov = 64;
constexpr unsigned kStreamFlags = MSG_WAITALL | MSG_NOSIGNAL;
}  // namespace

int ConnState::SendBlockedError() const {
  if (send_error_) return send_error_;
  if (phase_ != Phase::kOpen) return phase_ == Phase::kInstalling ? EAGAIN : ENOTCONN;
  if (tls_ && hs_ != Handshake::kDone) return hs_ == Handshake::kRunning ? EAGAIN : EPROTO;
  return 0;
}

SendItem* ConnState::NewItem() { return nw_.AllocItem(); }

void ConnState::EnqueueItem(SendItem* it) {
  it->in_queue = true;
  it->next = nullptr;
  if (sq_tail_)
    sq_tail_->next = it;
  else
    sq_head_ = it;
  sq_tail_ = it;
  queued_bytes_ += it->total;
}

// Appends to the tail chunk while it has room (the kernel only ever reads the
// part of a chunk that was queued before its operation was submitted).
void ConnState::AppendCopy(const uint8_t* p, std::size_t n) {
  const std::size_t csz = nw_.chunk_size();
  while (n) {
    SendItem* t = sq_tail_;
    if (!t || t->owned || t->chunk_len == csz) {
      t = NewItem();
      t->chunk = nw_.AllocChunk();
      EnqueueItem(t);
    }
    const std::size_t k = std::min(n, csz - t->chunk_len);
    std::memcpy(t->chunk + t->chunk_len, p, k);
    t->chunk_len += k;
    t->total += k;
    queued_bytes_ += k;
    p += k;
    n -= k;
  }
}

void ConnState::AppendPlain(const uint8_t* p, std::size_t n) {
  if (!tls_) {
    AppendCopy(p, n);
    return;
  }
  if (!tls_->Write(p, n)) {
    RL_LOG_WARN("TLS write to %s failed: %s", peer_.ToString(), tls_->reason());
    FailSends(EPROTO);
    return;
  }
  DrainTlsOutput();
}

void ConnState::DrainTlsOutput() {
  if (!tls_) return;
  const std::size_t csz = nw_.chunk_size();
  while (tls_->Pending() > 0) {
    SendItem* t = sq_tail_;
    if (!t || t->owned || t->chunk_len == csz) {
      t = NewItem();
      t->chunk = nw_.AllocChunk();
      EnqueueItem(t);
    }
    const std::size_t k = tls_->TakeOutput(t->chunk + t->chunk_len, csz - t->chunk_len);
    if (k == 0) break;
    t->chunk_len += k;
    t->total += k;
    queued_bytes_ += k;
  }
  KickSend();
}

bool ConnState::Admit(SendWaiter* w) {
  const std::size_t limit = opts_.send_queue_limit;
  if (w->kind_ == SendWaiter::Kind::kCopy) {
    auto* a = static_cast<SendCopy*>(w);
    while (a->copied_ < a->bytes_.size() && queued_bytes_ < limit && !send_error_) {
      std::size_t k = std::min(a->bytes_.size() - a->copied_, limit - queued_bytes_);
      if (tls_) k = std::min<std::size_t>(k, 16 * 1024);  // one record at a time
      AppendPlain(a->bytes_.data() + a->copied_, k);
      a->copied_ += k;
    }
    KickSend();
    if (send_error_) {
      a->error_ = send_error_;
      return true;
    }
    return a->copied_ == a->bytes_.size();
  }
  auto* a = static_cast<SendOwned*>(w);
  if (queued_bytes_ >= limit) return false;
  a->admitted_ = true;
  std::size_t payload = 0;
  for (const Buffer& b : a->buffers_) payload += b.size();
  const std::size_t total = a->header_.size() + payload;
  if (total == 0) {
    a->res_ = 0;
    a->done_ = true;
    return true;
  }
  if (tls_ || a->header_.size() > nw_.chunk_size()) {
    // Copied (TLS encrypts into the queue): the Buffers come back at once.
    if (payload) nw_.metrics().copy_fallbacks.Add();
    if (!a->header_.empty()) AppendPlain(a->header_.data(), a->header_.size());
    for (const Buffer& b : a->buffers_) {
      if (b.size()) AppendPlain(b.data(), b.size());
    }
    KickSend();
    a->res_ = send_error_ ? -send_error_ : static_cast<int32_t>(total);
    a->done_ = true;
    return true;
  }
  // Sent from the caller's Buffers: zero-copy from the threshold up (they come
  // back after the notification), below it by reference with a copying send
  // (they come back when the send completes). No copy in user space either way.
  SendItem* it = NewItem();
  it->owned = true;
  it->zc = opts_.zero_copy && zc_supported_ && (!peer_is_local_ || opts_.zero_copy_local) &&
           payload > 0 && payload >= opts_.zero_copy_threshold;
  if (!a->header_.empty()) {
    it->chunk = a->header_.size() <= SendItem::kInlineHeader ? it->header : nw_.AllocChunk();
    std::memcpy(it->chunk, a->header_.data(), a->header_.size());
    it->chunk_len = a->header_.size();
  }
  it->buffers = std::move(a->buffers_);
  a->buffers_.clear();
  it->total = total;
  it->waiter = a;
  a->item_ = it;
  EnqueueItem(it);
  KickSend();
  return true;
}

bool ConnState::TrySendCopy(SendCopy* a) {
  if (int e = SendBlockedError()) {
    a->error_ = e;
    return true;
  }
  if (!send_waiters_.empty()) return false;  // FIFO: earlier senders go first
  return Admit(a);
}

bool ConnState::TrySendOwned(SendOwned* a) {
  if (int e = SendBlockedError()) {
    a->res_ = -e;
    a->done_ = true;
    return true;
  }
  if (!send_waiters_.empty()) return false;
  return Admit(a);
}

void ConnState::PrepareSendWait(SendWaiter* w) {
  if (w->kind_ == SendWaiter::Kind::kOwned && static_cast<SendOwned*>(w)->admitted_) {
    // Queued for zero-copy: its item wakes it after the notification.
    w->set_list(&sends_in_kernel_);
    return;
  }
  nw_.metrics().send_waits.Add();
  w->set_list(&send_waiters_);
}

void ConnState::ForgetOwned(SendOwned* a) {
  if (a->item_) {
    a->item_->waiter = nullptr;  // its Buffers are freed when the kernel is done
    a->item_ = nullptr;
  }
}

void ConnState::AbortTornSend() {
  RL_LOG_WARN("connection to %s: a send was abandoned half-queued; aborting the connection",
              peer_.ToString());
  if (!send_error_) send_error_ = ECONNABORTED;
  BeginClose(false);
}

void ConnState::PumpSendWaiters() {
  while (WaitNode* n = send_waiters_.front()) {
    auto* w = static_cast<SendWaiter*>(n);
    if (int e = SendBlockedError()) {
      if (w->kind_ == SendWaiter::Kind::kCopy) {
        static_cast<SendCopy*>(w)->error_ = e;
      } else {
        auto* a = static_cast<SendOwned*>(w);
        a->res_ = -e;
        a->done_ = true;
      }
    } else if (!Admit(w)) {
      return;  // no room yet (a copy may have been admitted in part)
    }
    if (w->kind_ == SendWaiter::Kind::kCopy || static_cast<SendOwned*>(w)->done_) {
      send_waiters_.Wake(*w);
    } else {
      send_waiters_.MoveTo(*w, sends_in_kernel_);  // woken after the notification
    }
  }
}

void ConnState::WakeFlush() {
  if (!flushed_.empty() && !flush_pending()) flushed_.NotifyAll();
}

void ConnState::KickSend() {
  if (send_in_flight_ || send_requested_ || !sq_head_ || send_error_ || fixed_ < 0) return;
  if (phase_ != Phase::kOpen && phase_ != Phase::kDraining) return;
  if (!CanSubmit()) return;
  send_requested_ = true;
  Ref();  // released by the NetWorker after FlushSend()
  nw_.RequestSend(this);
}

void ConnState::FlushSend() {
  send_requested_ = false;
  if (send_in_flight_ || !sq_head_ || send_error_ || fixed_ < 0) return;
  if (phase_ != Phase::kOpen && phase_ != Phase::kDraining) return;
  if (!CanSubmit()) return;
  SubmitSend();
}

// One operation for as much of the queue as kMaxIov iovecs cover, in order.
// With a zero-copy item among them it is a zero-copy send, and every item it
// covers (copy chunks too) stays until its notification.
void ConnState::SubmitSend() {
  send_iov_.reserve(kMaxIov);
  send_iov_.clear();
  op_items_.clear();
  std::size_t bytes = 0;
  bool zc = false;
  const Buffer* last_buffer = nullptr;
  for (SendItem* it = sq_head_; it && op_items_.size() < ZcGroup::kMaxItems; it = it->next) {
    // The item's unsent remainder: header chunk, then each Buffer.
    const std::size_t iov_before = send_iov_.size();
    const Buffer* last_before = last_buffer;
    std::size_t skip = it->sent;
    if (it->chunk_len > skip) {
      send_iov_.push_back({it->chunk + skip, it->chunk_len - skip});
      last_buffer = nullptr;
      skip = 0;
    } else {
      skip -= it->chunk_len;
    }
    for (const Buffer& b : it->buffers) {
      if (b.size() > skip) {
        send_iov_.push_back({const_cast<uint8_t*>(b.data()) + skip, b.size() - skip});
        last_buffer = &b;
        skip = 0;
      } else {
        skip -= b.size();
      }
    }
    if (send_iov_.size() == iov_before) continue;  // nothing left to send of it
    if (send_iov_.size() > kMaxIov && !op_items_.empty()) {
      send_iov_.resize(iov_before);  // does not fit: the next operation takes it
      last_buffer = last_before;
      break;
    }
    it->in_flight = it->total - it->sent;
    bytes += it->in_flight;
    zc |= it->zc;
    op_items_.push_back(it);
  }
  io_uring_sqe* sqe = nullptr;
  OpSlot* slot = nullptr;
  if (zc) {
    ZcGroup* group = nw_.AllocGroup();
    for (SendItem* it : op_items_) {
      ++it->notifs;
      group->items[group->n++] = it;
    }
    const unsigned zc_flags = nw_.zc_report_usage() ? IORING_SEND_ZC_REPORT_USAGE : 0;
    // Fixed only on the ring that holds the registration; a buffer registered
    // on another worker goes as plain memory (SENDMSG_ZC pins its pages).
    if (send_iov_.size() == 1 && last_buffer && last_buffer->fixed_on(nw_.worker())) {
      // A registered buffer on its own: SEND_ZC with the fixed buffer, no page pinning.
      slot = &NewOp(kTagSendZc, &ConnState::OnSend);
      sqe = nw_.worker().internals().ring().GetSqe();
      io_uring_prep_send_zc_fixed(sqe, fixed_, send_iov_[0].iov_base, send_iov_[0].iov_len,
                                  kStreamFlags, zc_flags,
                                  static_cast<unsigned>(last_buffer->registered_index()));
    } else {
      slot = &NewOp(kTagSendMsgZc, &ConnState::OnSend);
      sqe = nw_.worker().internals().ring().GetSqe();
      send_msg_ = msghdr{};
      send_msg_.msg_iov = send_iov_.data();
      send_msg_.msg_iovlen = send_iov_.size();
      io_uring_prep_sendmsg_zc(sqe, fixed_, &send_msg_, kStreamFlags);
      sqe->ioprio |= zc_flags;
    }
    // The notification names its items through the slot.
    std::memcpy(slot->storage.bytes, &group, sizeof group);
    nw_.metrics().zc_sends.Add();
  } else {
    slot = &NewOp(kTagSend, &ConnState::OnSend);
    sqe = nw_.worker().internals().ring().GetSqe();
    if (send_iov_.size() == 1) {
      io_uring_prep_send(sqe, fixed_, send_iov_[0].iov_base, send_iov_[0].iov_len, kStreamFlags);
    } else {
      send_msg_ = msghdr{};
      send_msg_.msg_iov = send_iov_.data();
      send_msg_.msg_iovlen = send_iov_.size();
      io_uring_prep_sendmsg(sqe, fixed_, &send_msg_, kStreamFlags);
    }
    nw_.metrics().send_copies.Add();
  }
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, slot->user_data().raw());
  send_slot_ = slot;
  send_in_flight_ = true;
  op_bytes_ = bytes;
}

void ConnState::OnSend(void* owner, OpSlot& slot, int32_t res, uint32_t flags) {
  auto* self = static_cast<ConnState*>(owner);
  self->Ref();
  const bool final = !(flags & IORING_CQE_F_MORE);
  const bool zc = slot.tag == kTagSendZc || slot.tag == kTagSendMsgZc;
  ZcGroup* group = nullptr;
  if (zc) std::memcpy(&group, slot.storage.bytes, sizeof group);
  if (flags & IORING_CQE_F_NOTIF) {
    // The kernel no longer reads that operation's memory.
    if (self->nw_.zc_report_usage() &&
        (static_cast<uint32_t>(res) & IORING_NOTIF_USAGE_ZC_COPIED)) {
      self->nw_.metrics().zc_copied.Add();
    }
    for (uint32_t i = 0; i < group->n; ++i) --group->items[i]->notifs;
    --self->notif_only_;
  } else {
    if (zc && !final) ++self->notif_only_;  // the send is done; its notification follows
    if (&slot == self->send_slot_) {
      self->send_slot_ = nullptr;
      self->send_in_flight_ = false;
      self->OnSendResult(res);
    }
    if (zc && final) {  // failed before any byte: no notification follows
      for (uint32_t i = 0; i < group->n; ++i) --group->items[i]->notifs;
    }
  }
  if (zc && final) self->nw_.FreeGroup(group);
  self->ReapItems();
  if (final) self->OpDone();
  self->KickSend();
  self->PumpSendWaiters();
  self->WakeFlush();
  self->AfterDrainCheck();
  self->AfterQuiesceCheck();
  self->Unref();
}

void ConnState::OnSendResult(int32_t res) {
  std::size_t n = res > 0 ? static_cast<std::size_t>(res) : 0;
  for (SendItem* it : op_items_) {
    const std::size_t k = std::min(n, it->in_flight);
    n -= k;
    it->in_flight = 0;
    if (it->in_queue) it->sent += k;
  }
  op_items_.clear();
  if (res < 0 || (res == 0 && op_bytes_ > 0)) {
    const int err = res < 0 ? -res : EPIPE;
    if (err != ECANCELED || !send_error_) {
      if (err != ECANCELED && err != EPIPE && err != ECONNRESET) {
        RL_LOG_WARN("send to %s failed: %s", peer_.ToString(), std::strerror(err));
      }
    }
    FailSends(err == ECANCELED ? ECONNABORTED : err);
    return;
  }
  nw_.metrics().bytes_out.Add(static_cast<uint64_t>(res));
  last_activity_ = nw_.worker().now();
  if (static_cast<std::size_t>(res) < op_bytes_) nw_.metrics().partial_sends.Add();
  // Items fully sent leave the queue; a short send leaves the rest at the head
  // and KickSend() continues from there.
  while (sq_head_ && sq_head_->sent == sq_head_->total) FinishItem(sq_head_);
}

void ConnState::FinishItem(SendItem* it) {
  sq_head_ = it->next;
  if (!sq_head_) sq_tail_ = nullptr;
  it->next = nullptr;
  it->in_queue = false;
  if (it->notifs) {
    zc_waiting_.push_back(it);  // completes when its notifications are in
  } else {
    CompleteItem(it);
  }
}

void ConnState::ReleaseItem(SendItem* it) {
  if (it->chunk && it->chunk != it->header) nw_.FreeChunk(it->chunk);
  nw_.FreeItem(it);
}

// Frees detached items the kernel is done with and completes their senders.
void ConnState::ReapItems() {
  for (std::size_t i = 0; i < zc_waiting_.size();) {
    SendItem* it = zc_waiting_[i];
    if (it->in_flight || it->notifs) {
      ++i;
      continue;
    }
    zc_waiting_[i] = zc_waiting_.back();
    zc_waiting_.pop_back();
    CompleteItem(it);
  }
}

// The kernel is done with the item: its sender gets the result and its Buffers.
void ConnState::CompleteItem(SendItem* it) {
  queued_bytes_ -= it->total;
  if (SendOwned* a = it->waiter) {
    a->res_ = it->error ? -it->error : static_cast<int32_t>(it->total);
    a->buffers_ = std::move(it->buffers);
    a->item_ = nullptr;
    a->done_ = true;
    if (a->queued()) sends_in_kernel_.Wake(*a);
  }
  ReleaseItem(it);
}

void ConnState::FailSends(int err) {
  if (!send_error_) send_error_ = err;
  while (SendItem* it = sq_head_) {
    sq_head_ = it->next;
    it->next = nullptr;
    it->in_queue = false;
    it->error = send_error_;
    zc_waiting_.push_back(it);  // freed once no operation covers it
  }
  sq_tail_ = nullptr;
  if (send_in_flight_ && send_slot_) nw_.worker().internals().slab().Cancel(*send_slot_);
  ReapItems();
  PumpSendWaiters();
  WakeFlush();
}

}  // namespace ringline::net::detail
