#pragma once
// Receiver: the receive side of one TCP/Unix connection, the single owner of
// every receive operation the connection has in the kernel and of the bytes
// received but not yet consumed.
//
// Where bytes land. The multishot RECV picks provided buffers from the
// worker's ring. A buffer whose bytes are not consumed at once is *held* (a
// FIFO linked through BufferRing::held) rather than copied: a parser sees the
// first held buffer in place, and read_exact copies a payload straight from it
// into the caller's memory, so a payload that arrived behind its header is
// copied exactly once. Whatever is still held when the loop iteration ends is
// moved into the accumulator (NetWorker::BeforeSubmit calls EndOfBatch, before
// it publishes returned buffers), so a provided buffer is out of the ring no
// longer than before: returned buffers become visible to the kernel only at
// that publish anyway. Bytes also move into the accumulator when a message
// spans two buffers (only the bytes the parser needs).
//
// How bytes are received (Mode, changed only by SetMode, driven only by
// Update and the completion handlers next to it):
//   kIdle       nothing in the kernel.
//   kMultishot  a multishot RECV into the provided ring ("greedy": everything
//               the peer sends is taken in, a burst of pipelined messages is
//               parsed in one iteration).
//   kStopping   its cancellation was sent; the final completion, which may
//               still carry bytes (delivered in order), is to come.
//   kBounded    one RECV into stage_ of what the waiting reader needs plus the
//               size of the last message header ("paced").
//   kDirect     RECV(MSG_WAITALL) straight into the reader's Buffer, possibly
//               with a header-sized bounded RECV linked behind it.
//   kClosed     nothing in the kernel and nothing more will be received.
// The choice is made here from the sizes readers ask for: a read_exact whose
// remaining bytes reach ConnectionOptions::direct_read_threshold goes direct
// (the multishot RECV is stopped and its final completion seen first, so byte
// order is kept) and the connection turns paced, so the next payloads stay in
// the socket until read_exact takes them; after kGreedyAfter messages without
// such a payload it goes back to the multishot RECV, which reads need.
//
// Memory named by an SQE (docs/io_uring-rules.md R1): stage_ lives with this
// object; a direct RECV writes into a Buffer the reader lends to the receiver
// (lent_) from its submission until its completion, even if the reader goes
// away. The Receiver lives in its ConnState, which outlives every operation.
// Thread-safety: worker-local.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>

#include "accumulator.h"
#include "buffer_ring.h"
#include "ringline/buffer.h"
#include "ringline/internal/op_slab.h"
#include "ringline/net/connection.h"

namespace ringline {
class PromiseBase;
}

namespace ringline::net::detail {

class ConnState;
class NetWorker;

class Receiver {
 public:
  enum class Mode : uint8_t { kIdle, kMultishot, kStopping, kBounded, kDirect, kClosed };
  // Receiving policy: the multishot RECV, or receives sized by the reader.
  enum class Pace : uint8_t { kGreedy, kPaced };
  // Messages (recv(parse) results) without a direct payload after which a
  // paced connection returns to the multishot RECV.
  static constexpr uint32_t kGreedyAfter = 64;

  Receiver(ConnState& conn, NetWorker& nw);
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;
  ~Receiver();  // returns held provided buffers; no operation may be in flight

  Mode mode() const { return mode_; }
  StreamState state() const { return state_; }
  int error() const { return error_; }
  // Bytes received and not consumed (accumulated + held).
  std::size_t buffered() const { return acc_.size() + held_bytes_; }
  // Waiting for EndOfBatch in the NetWorker's list.
  bool listed() const { return listed_; }
  bool starved() const { return starved_; }

  // ---- the one reader ---------------------------------------------------------
  int Claim();  // 0, or EBUSY / ENOTCONN
  void Release();
  // The buffered bytes from the front, contiguous, at least `want` of them when
  // that many are buffered (held buffers are accumulated only as needed).
  std::span<const uint8_t> Contiguous(std::size_t want);
  // recv(parse) consumed a message of `n` bytes.
  void ConsumeMessage(std::size_t n);
  // Copies up to `n` buffered bytes to `dst` (read_some).
  std::size_t Take(uint8_t* dst, std::size_t n);
  // recv(parse)/read_some: `p` resumes once `want` bytes are buffered or the
  // stream can give no more.
  bool MessageReady(std::size_t want) const {
    return buffered() >= want || state_ != StreamState::kOpen;
  }
  void ParkMessage(PromiseBase* p, std::size_t want);
  void Unpark(PromiseBase* p);

  // read_exact: `n` bytes into dst (memory of *lent when given, which may then
  // be received into directly). StartRead copies what is buffered and returns
  // true when the read is over (done or failed); otherwise the completion
  // handlers fill the rest and resume the reader parked with ParkRead.
  bool StartRead(uint8_t* dst, std::size_t n, Buffer* lent);
  bool ReadOver() const;
  void ParkRead(PromiseBase* p);
  // Ends the read: 0 or the errno; gives the lent Buffer back.
  int FinishRead(Buffer* lent);
  // The reader went away mid-read: the stream is out of sync from now on
  // (ECONNABORTED); a lent Buffer is kept until the kernel is done with it.
  void AbandonRead();

  // ---- from the connection -------------------------------------------------------
  // The one transition function: arms, stops or submits what the current
  // demand needs. Called after every event.
  void Update();
  // Plaintext (TLS) or staged bytes, in stream order: into a read_exact sink
  // first, the rest accumulated.
  void Deliver(const uint8_t* p, std::size_t n);
  void End();          // clean end of stream (FIN, TLS close_notify)
  void Fail(int err);  // the stream failed (first error wins)
  // TLS is attached: every buffered byte goes to `feed` (its first input).
  template <typename Fn>
  void TakeAllBuffered(Fn&& feed) {
    AccumulateHeld(kAllHeld);
    if (!acc_.empty()) feed(acc_.data().data(), acc_.size());
    acc_.Clear();
  }
  // Wakes the reader if what it waits for happened, then Update().
  void Notify();
  void CancelAll();  // closing: every receive operation is cancelled
  void OnBuffersPublished();
  // End of the loop iteration (NetWorker::BeforeSubmit, for connections that
  // asked with AddHolding): held buffers are accumulated and go back.
  void EndOfBatch();

 private:
  enum class Wait : uint8_t { kNone, kMessage, kRead };
  static constexpr std::size_t kAllHeld = std::numeric_limits<std::size_t>::max();
  // read_exact's destination.
  struct Sink {
    uint8_t* dst = nullptr;
    std::size_t want = 0;
    std::size_t got = 0;
    Buffer* lender = nullptr;  // the reader's Buffer behind dst (may be lent)
    bool direct = false;       // the rest is received with direct RECVs
    bool active = false;       // a read_exact is in progress
    bool wants() const { return active && got < want; }
  };

  static void OnMultishot(void* owner, OpSlot& slot, int32_t res, uint32_t flags);
  static void OnBounded(void* owner, OpSlot& slot, int32_t res, uint32_t flags);
  static void OnDirect(void* owner, OpSlot& slot, int32_t res, uint32_t flags);
  // The part OnBounded and OnDirect share: keeps the connection alive while
  // the completion runs, retires the operation, `settle()` puts the
  // receiver's operation state right (before the bytes are looked at),
  // `take(n)` gets the n > 0 bytes received, then the end or a failure is
  // recorded (a cancel is neither) and the reader and the policy see it.
  template <typename SettleFn, typename TakeFn>
  void CompleteSingle(Mode mode, int32_t res, SettleFn settle, TakeFn take);
  // Copies the front of [p, p + n) into the waiting read_exact's buffer (as
  // much as it still wants) and advances p and n past it.
  void FillSink(const uint8_t*& p, std::size_t& n);

  void SetMode(Mode next);
  bool paced() const;
  std::size_t PacedWant() const;
  void ArmMultishot();
  void StopMultishot();
  void SubmitDirect();
  OpSlot* PrepBounded(std::size_t n);  // prepares a bounded RECV into stage_
  void Accept(uint16_t bid, const uint8_t* p, std::size_t n);
  void ReturnHead();
  void AccumulateHeld(std::size_t up_to);                 // moves held bytes into acc_, in order
  std::size_t CopyBuffered(uint8_t* dst, std::size_t n);  // copies and consumes
  void ConsumeBytes(std::size_t n);
  void SetEnded();
  void SetFailed(int err);
  void Desync();  // a read lost bytes: ECONNABORTED from now on
  // The reader, if what it waits for is there: taken from reader_ (nullptr
  // otherwise). WakeReader puts it on the worker's ready queue.
  PromiseBase* TakeReadyReader();
  void WakeReader();
  // After a completion of ours: update, let the connection check its close,
  // and return the reader to resume, which the completion handler resumes
  // last, before it drops its reference (one level deep, as the worker
  // resumes the task of an awaited operation): the reader runs in this loop
  // iteration, and what it starts (an NBD request's task) in the next one,
  // not one iteration later.
  [[nodiscard]] PromiseBase* AfterEvent();

  ConnState& conn_;
  NetWorker& nw_;
  Mode mode_ = Mode::kIdle;
  Pace pace_ = Pace::kGreedy;
  StreamState state_ = StreamState::kOpen;
  int error_ = 0;
  bool starved_ = false;  // ENOBUFS: re-armed when buffers are published
  bool armed_once_ = false;
  bool claimed_ = false;
  bool listed_ = false;           // in the NetWorker's end-of-batch list
  OpSlot* op_ = nullptr;          // the receive in the kernel (mode kMultishot..kDirect)
  OpSlot* linked_ = nullptr;      // kDirect: the bounded RECV linked behind it
  uint32_t since_direct_ = 0;     // messages since the last direct payload (paced)
  std::size_t header_bytes_ = 0;  // size of the last message recv(parse) consumed

  Accumulator acc_;
  uint16_t held_head_ = BufferRing::kNoBuffer;  // oldest held buffer
  uint16_t held_tail_ = BufferRing::kNoBuffer;
  std::size_t held_bytes_ = 0;

  Wait wait_ = Wait::kNone;
  PromiseBase* reader_ = nullptr;
  std::size_t want_ = 0;
  Sink sink_;
  // Lent by read_exact while a direct RECV may write into it (from the first
  // direct submission until FinishRead or, if the reader went away, the
  // RECV's completion).
  Buffer lent_;
  // Bounded receives land here (never in the accumulator, whose memory moves).
  // Written by the kernel until the receive's completion.
  std::unique_ptr<uint8_t[]> stage_;
  std::size_t stage_cap_ = 0;
};

}  // namespace ringline::net::detail
