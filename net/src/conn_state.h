#pragma once
// ConnState: everything about one TCP/Unix connection, owned by the worker's
// connection table (NetWorker), driven by completion handlers.
//
// Every kernel operation of a connection is a handler operation whose owner is
// the ConnState (multishot recv, direct recv, sends, timers, shutdown, close),
// and every pointer such an operation hands the kernel points into the OpSlot
// or into this object (iovecs, msghdr, send chunks, a lent Buffer). A ConnState
// is freed only when no reference (handle, operation in progress) is left and
// the kernel has returned its last completion, so that memory provably outlives
// every operation (docs/io_uring-rules.md R1). Tasks wait on it through awaiters that
// unlink themselves when destroyed.
//
// Life: kInstalling (a plain fd is being put into the fixed-file table) ->
// kOpen -> kDraining (graceful close: queued bytes leave) -> kShutdown (FIN) ->
// kCancelling (every operation cancelled, waiting for their final completions)
// -> kClosing (close of the direct descriptor) -> kClosed; SetPhase asserts
// these edges. A ConnState keeps the lifecycle and the send side; its Receiver
// (receiver.h) owns the receive side.
// Thread-safety: worker-local.

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "receiver.h"
#include "ringline/buffer.h"
#include "ringline/internal/op_slab.h"
#include "ringline/net/connection.h"
#include "ringline/net/options.h"
#include "ringline/net/socket_address.h"
#include "ringline/timer_queue.h"

namespace ringline::net::detail {

class NetWorker;
class TlsSession;
class ListenerState;

// A run of bytes in the send queue. Copy items own one send chunk; owned items
// hold a copied header (inline, or in a chunk when larger) and the caller's
// Buffers for zero-copy. Items come from and go back to the NetWorker's pool.
struct SendItem {
  static constexpr std::size_t kInlineHeader = 64;

  SendItem* next = nullptr;
  uint8_t* chunk = nullptr;   // NetWorker send chunk, `header`, or null
  std::size_t chunk_len = 0;  // bytes used in the chunk
  absl::InlinedVector<Buffer, 2> buffers;
  bool owned = false;
  bool zc = false;  // owned and sent zero-copy: held until the notification
  bool in_queue = false;
  std::size_t total = 0;      // bytes of this item
  std::size_t sent = 0;       // confirmed by the kernel
  std::size_t in_flight = 0;  // covered by the send operation in flight
  uint32_t notifs = 0;        // zero-copy operations whose notification is pending
  SendOwned* waiter = nullptr;
  int error = 0;
  // A small header of an owned item; the kernel may read it until the item's
  // last notification, and the item lives until then.
  uint8_t header[kInlineHeader];
};

// The items one zero-copy send operation covers: its notification releases
// them all. Pooled by the NetWorker; the operation's slot names it, and it goes
// back to the pool with the operation's last CQE.
struct ZcGroup {
  static constexpr std::size_t kMaxItems = 64;
  std::array<SendItem*, kMaxItems> items;
  uint32_t n = 0;
};

class ConnState {
 public:
  enum class Phase : uint8_t {
    kInstalling,
    kOpen,
    kDraining,
    kShutdown,
    kCancelling,
    kClosing,
    kClosed
  };

  ConnState(NetWorker& nw, uint32_t index, uint32_t generation);
  ConnState(const ConnState&) = delete;
  ConnState& operator=(const ConnState&) = delete;
  ~ConnState();

  NetWorker& net() { return nw_; }
  ConnId id() const { return {index_, generation_}; }
  uint32_t index() const { return index_; }
  Phase phase() const { return phase_; }
  bool open() const { return phase_ == Phase::kOpen; }
  int fixed() const { return fixed_; }

  // ---- set-up -------------------------------------------------------------
  void SetAddresses(const SocketAddress& local, const SocketAddress& peer) {
    local_ = local;
    peer_ = peer;
    // Zero-copy sends exist for TCP only (AF_UNIX rejects them with EOPNOTSUPP).
    zc_supported_ = local.is_ip() || peer.is_ip();
    // A peer on this host receives a copy anyway (the kernel copies zero-copy
    // pages on local delivery), after pinning and a notification for nothing.
    peer_is_local_ = peer.is_loopback() || peer.SameHost(local);
  }
  const SocketAddress& local() const { return local_; }
  const SocketAddress& peer() const { return peer_; }
  void SetOptions(const ConnectionOptions& o) { opts_ = o; }
  const ConnectionOptions& options() const { return opts_; }
  // Installs plain socket `fd` (ownership taken) as a direct descriptor;
  // `on_ready` runs when that is done (ok or not): see InstallResult().
  using ReadyFn = void (*)(void* ctx, ConnState* s);
  void BeginInstall(int fd, ReadyFn on_ready, void* ctx, bool outbound);
  int install_error() const { return install_error_; }
  // Woken when the install is done (phase() leaves kInstalling): Connect
  // waits on it.
  WaitList& install_done() { return install_done_; }

  // Called by the NetWorker before the worker's next submit after KickSend():
  // one send operation for everything queued since (the NetWorker holds a
  // reference until it returns).
  void FlushSend();
  // Starts receiving (after install, or after a TLS session is attached).
  void Start();

  // ---- references -----------------------------------------------------------
  void Ref() { ++refs_; }
  void Unref();  // may close and free this

  // ---- receive (the Receiver owns it) ----------------------------------------
  Receiver& receiver() { return rx_; }
  const Receiver& receiver() const { return rx_; }
  // A message needs more than the accumulator cap: logs, counts, aborts the
  // connection; returns EMSGSIZE.
  int OverflowClose();
  // For the Receiver: its operations are the connection's (counted in ops_,
  // so the connection outlives them), and its events reach the lifecycle.
  OpSlot& NewOp(OpTag tag, CompletionHandler h, void* owner);
  void OpDone() { --ops_; }
  bool CanSubmit() const;
  void Touch();                  // bytes came in: not idle
  void AfterReceive();           // a receive completed: maybe the close can go on
  void OnReceiveEnded(int err);  // end of stream (0) or an errno: TLS handshake fails
  // TLS: ciphertext the Receiver got; the plaintext goes back to it
  // (Receiver::Deliver, conn_tls.cc).
  void OnCipher(const uint8_t* p, std::size_t n);

  // ---- send -------------------------------------------------------------------
  // Admission: true when the send is done (copied / queued or failed); false
  // when it must wait for room (then Park it).
  bool TrySendCopy(SendCopy* a);
  bool TrySendOwned(SendOwned* a);
  // The send could not finish in await_ready: choose the wait list it parks in.
  void PrepareSendWait(SendWaiter* w);
  // A SendOwned whose task went away: its item completes without it.
  void ForgetOwned(SendOwned* a);
  // A copying send went away after part of its bytes were queued: the peer
  // would see a torn message, so the connection is aborted.
  void AbortTornSend();
  std::size_t queued_bytes() const { return queued_bytes_; }
  int send_error() const { return send_error_; }
  // flush() waits on flushed() while flush_pending(): bytes queued or in
  // flight, and no send error.
  bool flush_pending() const { return (sq_head_ || send_in_flight_) && !send_error_; }
  WaitList& flushed() { return flushed_; }

  // ---- TLS ----------------------------------------------------------------------
  TlsSession* tls() const { return tls_.get(); }
  // Attaches a session; bytes already accumulated become its first input.
  void AttachTls(std::unique_ptr<TlsSession> tls);
  // kDone also without TLS; kFailed: handshake_error() says why.
  enum class Handshake : uint8_t { kRunning, kDone, kFailed };
  Handshake handshake() const { return hs_; }
  int handshake_error() const { return hs_error_; }
  // Woken when handshake() leaves kRunning.
  WaitList& handshake_done() { return handshake_done_; }
  void FailHandshake(int err, const char* why);

  // ---- close ------------------------------------------------------------------
  void BeginClose(bool graceful);
  // Woken when phase() becomes kClosed.
  WaitList& closed() { return closed_; }
  int close_error() const { return close_error_; }

  // Buffers came back to the ring after an ENOBUFS: arm again.
  void OnBuffersPublished() { rx_.OnBuffersPublished(); }
  bool starved() const { return rx_.starved(); }

 private:
  friend class NetWorker;
  static void OnInstalled(void* owner, OpSlot& slot, int32_t res, uint32_t flags);
  static void OnSend(void* owner, OpSlot& slot, int32_t res, uint32_t flags);
  static void OnTimer(void* owner, OpSlot& slot, int32_t res, uint32_t flags);
  static void OnShutdown(void* owner, OpSlot& slot, int32_t res, uint32_t flags);
  static void OnClose(void* owner, OpSlot& slot, int32_t res, uint32_t flags);

  OpSlot& NewOp(OpTag tag, CompletionHandler h) { return NewOp(tag, h, this); }
  void SetPhase(Phase next);  // asserts the lifecycle edge
  void MaybeFree();           // the last action of every entry point that may free this

  // TLS
  void DriveTls();

  // send
  int SendBlockedError() const;
  void AppendCopy(const uint8_t* p, std::size_t n);
  void AppendPlain(const uint8_t* p, std::size_t n);  // through TLS when attached
  void DrainTlsOutput();
  SendItem* NewItem();
  void EnqueueItem(SendItem* item);
  void KickSend();  // asks the NetWorker to send what is queued before the next submit
  void SubmitSend();
  void OnSendResult(int32_t res);
  void FinishItem(SendItem* item);
  void CompleteItem(SendItem* item);
  void ReleaseItem(SendItem* item);  // back to the NetWorker (chunk included)
  void ReapItems();
  void FailSends(int err);
  void PumpSendWaiters();
  void WakeFlush();
  bool Admit(SendWaiter* w);  // admits as much as fits; true when done

  // timers
  void ArmTimer(OpSlot*& slot, Clock::duration d);
  void ArmIdle();
  void OnIdleTimer();
  void OnLinger();

  // close
  void AfterDrainCheck();
  void CancelAll();
  void AfterQuiesceCheck();
  void Closed(int err);

  NetWorker& nw_;
  uint32_t index_;
  uint32_t generation_;
  Phase phase_ = Phase::kInstalling;
  int fixed_ = -1;
  bool outbound_ = false;
  bool zc_supported_ = false;
  bool peer_is_local_ = false;
  bool established_ = false;  // counted in accepted/active
  SocketAddress local_;
  SocketAddress peer_;
  ConnectionOptions opts_;
  uint32_t refs_ = 0;
  uint32_t ops_ = 0;  // handler operations not yet finally completed
  // Of those, zero-copy sends that only wait for their notification. They do
  // not hold up closing the descriptor: on a real network the notification may
  // only come once the socket is gone (its queued packets freed).
  uint32_t notif_only_ = 0;

  int pending_fd_ = -1;  // plain fd while installing
  ReadyFn on_ready_ = nullptr;
  void* ready_ctx_ = nullptr;
  int install_error_ = 0;
  WaitList install_done_;
  bool close_requested_ = false;
  bool close_graceful_ = true;

  Receiver rx_;

  // send
  SendItem* sq_head_ = nullptr;
  SendItem* sq_tail_ = nullptr;
  std::size_t queued_bytes_ = 0;
  bool send_in_flight_ = false;
  bool send_requested_ = false;        // KickSend() asked the NetWorker for a FlushSend()
  OpSlot* send_slot_ = nullptr;        // the data operation in flight
  std::vector<SendItem*> zc_waiting_;  // sent, waiting for notifications
  int send_error_ = 0;
  WaitList send_waiters_;     // sends waiting for room in the send queue, FIFO
  WaitList sends_in_kernel_;  // admitted owned sends waiting for their items to complete
  WaitList flushed_;          // flush() callers, woken when the queue is empty
  // Read by the kernel until the send operation's first completion.
  msghdr send_msg_{};
  std::vector<iovec> send_iov_;
  std::vector<SendItem*> op_items_;  // items the operation in flight covers, in order
  std::size_t op_bytes_ = 0;

  // timers
  OpSlot* idle_slot_ = nullptr;
  OpSlot* linger_slot_ = nullptr;
  Clock::time_point last_activity_{};

  // TLS
  std::unique_ptr<TlsSession> tls_;
  Handshake hs_ = Handshake::kDone;
  int hs_error_ = 0;  // kFailed
  WaitList handshake_done_;
  bool close_notify_sent_ = false;

  // close
  WaitList closed_;
  int close_error_ = 0;
  OpSlot* shutdown_slot_ = nullptr;
  OpSlot* close_slot_ = nullptr;
};

}  // namespace ringline::net::detail
