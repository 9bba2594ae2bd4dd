#pragma once
// Connection: the handle a task uses to talk over one TCP or Unix stream.
//
//   Task<> Serve(Connection conn) {
//     for (;;) {
//       auto req = co_await conn.recv(ParseRequest);     // parser sees contiguous bytes
//       if (!req) co_return;                             // peer closed (or error)
//       Buffer payload = co_await pool.Acquire();
//       IoResult got = co_await conn.read_exact(payload, req->length);
//       if (!got.ok()) co_return;
//       auto sent = co_await conn.send_zc(ReplyHeader(*req), std::move(payload));
//       // sent.buffer is ours again: the kernel no longer reads it.
//     }
//   }                                                    // handle dropped: graceful close
//
// Ownership. The connection's state (socket, accumulator, send queue, TLS
// session) lives in the worker's connection table, not in the handle. The handle
// and every operation in progress hold references; when the last one goes the
// connection closes gracefully (queued bytes are sent, TLS close_notify, FIN,
// bounded by ConnectionOptions::close_linger), and its table slot is freed only
// after the kernel's last completion for it (docs/io_uring-rules.md R1).
//
// Receiving. Bytes arrive by multishot recv into the worker's provided buffer
// ring; recv(parse) runs the parser over them in place (they are copied into
// the connection's accumulator only when a message spans two receive buffers
// or nobody consumed them within the loop iteration). read_exact copies a
// payload that already arrived straight from the receive buffer into the
// caller's memory, once; for a Buffer and a remainder of at least
// ConnectionOptions::direct_read_threshold bytes it receives the rest straight
// into the Buffer with a plain RECV (MSG_WAITALL), after stopping the multishot
// recv, and then keeps receiving only what readers ask for (the next header
// linked behind each payload) until readers stop asking for such payloads.
// The connection decides all of this from the sizes readers ask for.
// One task receives at a time (a second gets EBUSY).
//
// Sending. Every send goes through one ordered queue per connection
// (docs/io_uring-rules.md R2); one send operation is in flight at a time, short
// sends are continued (R5), and what the connection's tasks queue during one loop iteration
// leaves in one operation at the end of it. A send completes when the caller's
// memory is free again:
//   send(bytes)            copies the bytes into the queue: done when copied.
//   send(Buffer), send_zc  keep the Buffer(s) until the kernel is done with them
//                          (zero-copy: its notification; below the zero-copy
//                          threshold or to a peer on this host: the send's
//                          completion), then hand them back in the result.
// When more than ConnectionOptions::send_queue_limit bytes are queued, sends wait
// (in FIFO order) until the kernel has taken enough. Errors of bytes already
// handed over surface on later sends, flush() and close().
//
// Thread-safety: a connection belongs to the worker that accepted or connected
// it; use and destroy its handle only on that worker's thread, and before the
// worker is destroyed.

#include <algorithm>
#include <cerrno>
#include <concepts>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "ringline/buffer.h"
#include "ringline/internal/promise_base.h"
#include "ringline/io_result.h"
#include "ringline/net/result.h"
#include "ringline/net/socket_address.h"
#include "ringline/task.h"
#include "ringline/wait_list.h"

namespace ringline::net {

class TlsServerContext;
class TlsClientContext;

// A connection's key in its worker's table; `generation` changes every time the
// slot is reused, so a stale id never names a newer connection.
struct ConnId {
  uint32_t index = 0;
  uint32_t generation = 0;
  friend bool operator==(ConnId, ConnId) = default;
};

// What a parser says about the bytes it was shown (all unconsumed bytes, contiguous).
template <typename T>
class ParseResult {
 public:
  using value_type = T;
  // A complete message: consume `consumed` bytes (at least 1) and yield `value`.
  static ParseResult Done(T value, std::size_t consumed) {
    ParseResult r;
    r.value_.emplace(std::move(value));
    r.consumed_ = consumed;
    return r;
  }
  // Not enough bytes yet; `total` (optional) is how many the message needs in all.
  static ParseResult NeedMore(std::size_t total = 0) {
    ParseResult r;
    r.need_ = total;
    return r;
  }
  // Malformed input: recv() returns this errno; nothing is consumed.
  static ParseResult Invalid(int errnum = EPROTO) {
    ParseResult r;
    r.error_ = errnum;
    return r;
  }

  bool done() const { return value_.has_value(); }
  bool failed() const { return error_ != 0; }
  std::size_t consumed() const { return consumed_; }
  std::size_t need() const { return need_; }
  int error() const { return error_; }
  T take() { return std::move(*value_); }

 private:
  ParseResult() = default;
  std::optional<T> value_;
  std::size_t consumed_ = 0;
  std::size_t need_ = 0;
  int error_ = 0;
};

namespace detail {
template <typename R>
struct IsParseResult : std::false_type {};
template <typename T>
struct IsParseResult<ParseResult<T>> : std::true_type {};
}  // namespace detail

// A parser Connection::recv() can run: called with the unconsumed bytes
// (std::span<const uint8_t>), returns ParseResult<T>. A callable that is not one
// fails at the recv() call with one error naming this concept.
template <typename P>
concept RecvParser = std::invocable<P&, std::span<const uint8_t>> &&
    detail::IsParseResult<std::invoke_result_t<P&, std::span<const uint8_t>>>::value;

namespace detail {
// Defined for every type (void for what is not a parser), so that the
// signature of recv() substitutes cleanly and the RecvParser constraint is
// what rejects a wrong parser, on every compiler.
template <typename R>
struct ParseValueOf {
  using type = void;
};
template <typename T>
struct ParseValueOf<ParseResult<T>> {
  using type = T;
};
template <typename P, typename = void>
struct ParserValue {
  using type = void;
};
template <typename P>
struct ParserValue<P, std::enable_if_t<std::is_invocable_v<P&, std::span<const uint8_t>>>> {
  using type = typename ParseValueOf<std::invoke_result_t<P&, std::span<const uint8_t>>>::type;
};
}  // namespace detail

// The message type T of a RecvParser returning ParseResult<T>.
template <typename P>
using ParsedValue = typename detail::ParserValue<P>::type;

// The result of a send that owned Buffers: they come back once the kernel is done.
struct SendResult {
  IoResult result;  // bytes sent (header + payload) or -errno
  Buffer buffer;
};
struct SendVecResult {
  IoResult result;
  std::vector<Buffer> buffers;
};

namespace detail {

class ConnState;
struct SendItem;

// Reference counting on a connection's state (a handle or an operation in progress).
void Ref(ConnState* s);
void Unref(ConnState* s);  // may start a graceful close and free the state

// recv() machinery (non-template parts; the connection's Receiver, in
// net/src/receiver.h, does the work).
// What the receive side can still give.
enum class StreamState : uint8_t {
  kOpen,    // more bytes may come
  kEnded,   // the peer closed (FIN, TLS close_notify)
  kFailed,  // an error (RecvError), or the connection closed locally
};
int ClaimRecv(ConnState* s);  // 0, or EBUSY / ENOTCONN
void ReleaseRecv(ConnState* s);
// The unconsumed bytes from the front, contiguous, at least `want` of them when
// that many have been received.
std::span<const uint8_t> Contiguous(ConnState* s, std::size_t want);
// recv(parse) consumed a message of `n` bytes.
void ConsumeMessage(ConnState* s, std::size_t n);
std::size_t AccumulatorCap(ConnState* s);
int OverflowClose(ConnState* s);  // logs, counts, aborts the connection; EMSGSIZE
int RecvError(ConnState* s);      // the errno of a kFailed stream

// Waits until at least `want` bytes are received or the stream can give no
// more; resumes with the stream's state (kOpen: look again).
class RecvWait {
 public:
  RecvWait(ConnState* s, std::size_t want) : s_(s), want_(want) {}
  RecvWait(const RecvWait&) = delete;
  RecvWait& operator=(const RecvWait&) = delete;
  ~RecvWait();
  bool await_ready();
  template <EnginePromise P>
  void await_suspend(std::coroutine_handle<P> h) {
    Park(&h.promise());
  }
  StreamState await_resume();

 private:
  void Park(PromiseBase* p);
  ConnState* s_;
  std::size_t want_;
  PromiseBase* promise_ = nullptr;
};

// read_exact: `n` bytes into `dst` (the memory of *lent when given, which the
// connection may then receive into directly and keeps while the kernel may
// write into it; on success *lent's size becomes `lent_size`). Holds a
// reference and the receive claim; destroyed mid-read it leaves the stream out
// of sync (later receives fail with ECONNABORTED). Awaited directly (no
// coroutine frame of its own); `s` null or `preset_error` set: it completes at
// once with that error.
class ReadExactWait {
 public:
  ReadExactWait(ConnState* s, uint8_t* dst, std::size_t n, Buffer* lent, std::size_t lent_size = 0,
                int preset_error = 0);
  ReadExactWait(const ReadExactWait&) = delete;
  ReadExactWait& operator=(const ReadExactWait&) = delete;
  ~ReadExactWait();
  bool await_ready();
  template <EnginePromise P>
  void await_suspend(std::coroutine_handle<P> h) {
    Park(&h.promise());
  }
  IoResult await_resume();  // n or -errno (-ENODATA: the peer closed first)

 private:
  enum class Stage : uint8_t { kNew, kReading, kOver };
  void Park(PromiseBase* p);
  ConnState* s_;
  uint8_t* dst_;
  std::size_t n_;
  Buffer* lent_;
  std::size_t lent_size_;
  PromiseBase* promise_ = nullptr;
  int error_ = 0;
  bool claimed_ = false;
  Stage stage_ = Stage::kNew;
};

// A send waiting for room in the connection's send queue (one FIFO wait list
// for both kinds), or, once admitted for zero-copy, for the kernel to finish
// with its buffers. await_ready chooses the list; WaitNode parks the task.
class SendWaiter : public WaitNode {
 protected:
  friend class ConnState;
  enum class Kind : uint8_t { kCopy, kOwned };
  explicit SendWaiter(Kind k) : WaitNode(nullptr), kind_(k) {}
  ~SendWaiter() = default;
  Kind kind_;
};

// Copies `bytes` into the send queue, waiting for space (backpressure).
// [[nodiscard]]: a send that is not co_awaited sends nothing.
class [[nodiscard]] SendCopy : public SendWaiter {
 public:
  SendCopy(ConnState* s, std::span<const uint8_t> bytes);
  SendCopy(SendCopy&& o) noexcept;
  ~SendCopy();
  bool await_ready();
  IoResult await_resume();

 private:
  friend class ConnState;
  ConnState* s_;
  std::span<const uint8_t> bytes_;
  std::size_t copied_ = 0;
  int error_ = 0;
};

// Queues header (copied) + owned Buffers and completes after the zero-copy
// notification (or at once when the payload is copied instead). Holds up to
// two Buffers without allocating.
class [[nodiscard]] SendOwned : public SendWaiter {
 public:
  using Buffers = absl::InlinedVector<Buffer, 2>;
  SendOwned(ConnState* s, std::span<const uint8_t> header, Buffers buffers);
  SendOwned(SendOwned&& o) noexcept;
  ~SendOwned();
  bool await_ready();

 protected:
  IoResult TakeResult(Buffers& out);

 private:
  friend class ConnState;
  ConnState* s_;
  std::span<const uint8_t> header_;
  Buffers buffers_;
  SendItem* item_ = nullptr;  // while the kernel has the buffers
  int32_t res_ = 0;
  bool admitted_ = false;
  bool done_ = false;
};

// send(Buffer) and send_zc(header, Buffer): the Buffer comes back in the result.
class [[nodiscard]] SendOwnedOne : public SendOwned {
 public:
  SendOwnedOne(ConnState* s, std::span<const uint8_t> header, Buffer buffer);
  SendOwnedOne(SendOwnedOne&& o) noexcept : SendOwned(std::move(o)) {}
  SendResult await_resume();
};

// send_zc(header, vector of Buffers).
class [[nodiscard]] SendOwnedVec : public SendOwned {
 public:
  SendOwnedVec(ConnState* s, std::span<const uint8_t> header, std::vector<Buffer> buffers);
  SendOwnedVec(SendOwnedVec&& o) noexcept : SendOwned(std::move(o)) {}
  SendVecResult await_resume();
};

}  // namespace detail

class Connection {
 public:
  Connection() = default;
  // Takes one reference to `state` (used by the listener and Connect).
  explicit Connection(detail::ConnState* state);
  Connection(Connection&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Connection& operator=(Connection&& o) noexcept {
    if (this != &o) {
      Reset();
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() { Reset(); }

  bool valid() const { return s_ != nullptr; }
  explicit operator bool() const { return valid(); }
  ConnId id() const;
  const SocketAddress& peer() const;
  const SocketAddress& local() const;
  // True while the connection is open (not closing or closed) and not failed.
  bool is_open() const;
  bool is_tls() const;
  std::string tls_version() const;  // "TLSv1.3", or empty
  std::string tls_cipher() const;
  std::string peer_certificate_subject() const;  // verified client/server cert, or empty

  // ---- receive -----------------------------------------------------------
  // Runs `parse` (ParseResult<T>(std::span<const uint8_t>)) over the accumulated
  // bytes until it returns Done, waiting for more as needed. Returns the value,
  // eof() when the peer closed at a message boundary, ENODATA if it closed inside
  // one, the parser's errno for Invalid, EMSGSIZE (connection closed) when the
  // message would exceed the accumulator cap, or the socket's error. Cancelling
  // (destroying) a recv consumes nothing.
  template <RecvParser Parser>
  Task<Result<ParsedValue<Parser>>> recv(Parser parse);

  // Up to dst.size() bytes, waiting for at least one. eof() at end of stream.
  Task<Result<std::size_t>> read_some(std::span<uint8_t> dst);

  // Exactly `n` bytes into buf.data()[0, n) (n <= capacity); sets buf.size() to
  // n on success. The Buffer is lent to the connection while bytes may land in
  // it: if this task is destroyed mid-way, the connection keeps the Buffer until
  // the kernel is done and then frees it, and the stream (now out of sync) fails
  // later receives with ECONNABORTED. Returns n or -errno (-ENODATA: the peer
  // closed first).
  // (An awaitable, not a Task: co_await it where it is made; it has no frame.)
  detail::ReadExactWait read_exact(Buffer& buf, std::size_t n) { return read_exact(buf, 0, n); }
  // The same into buf.data()[offset, offset + n) (offset + n <= capacity); sets
  // buf.size() to offset + n. For payloads assembled in several reads.
  detail::ReadExactWait read_exact(Buffer& buf, std::size_t offset, std::size_t n);
  // The same into caller memory, always by copy (it must stay valid until the
  // call completes or is destroyed).
  detail::ReadExactWait read_exact(std::span<uint8_t> dst) {
    return detail::ReadExactWait(s_, dst.data(), dst.size(), nullptr);
  }

  // ---- send ---------------------------------------------------------------
  // Copies `bytes` into the ordered send queue; completes once copied (waiting
  // while the queue is over its limit). Result: bytes.size() or -errno.
  detail::SendCopy send(std::span<const uint8_t> bytes) { return detail::SendCopy(s_, bytes); }
  detail::SendCopy send(std::string_view text) {
    return detail::SendCopy(
        s_, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  }
  // Sends buf.span() (its size() bytes) from the Buffer itself: zero-copy from
  // ConnectionOptions::zero_copy_threshold up (to a remote peer), else by a
  // copying send; on TLS the bytes are encrypted into the queue instead.
  detail::SendOwnedOne send(Buffer buf) { return detail::SendOwnedOne(s_, {}, std::move(buf)); }
  // `header` (copied) followed by `payload.span()`, as one ordered unit.
  detail::SendOwnedOne send_zc(std::span<const uint8_t> header, Buffer payload) {
    return detail::SendOwnedOne(s_, header, std::move(payload));
  }
  // Scatter/gather: header then every buffer's span(), one SENDMSG_ZC.
  detail::SendOwnedVec send_zc(std::span<const uint8_t> header, std::vector<Buffer> payloads) {
    return detail::SendOwnedVec(s_, header, std::move(payloads));
  }
  // Waits until every byte queued so far has been taken by the kernel. Returns 0
  // or the first send error.
  Task<IoResult> flush();
  std::size_t queued_bytes() const;

  // ---- TLS ------------------------------------------------------------------
  // Upgrades this accepted plaintext connection to TLS (server side), e.g. after
  // NBD_OPT_STARTTLS was answered: bytes queued so far go out in plaintext, every
  // byte after them is TLS; bytes the peer sent after its request are treated as
  // the start of its handshake. Completes when the handshake has (0 or -errno;
  // the connection is closed on failure).
  Task<IoResult> StartTls(std::shared_ptr<TlsServerContext> ctx);
  // The same, client side; `server_name` is sent as SNI and, with a verifying
  // context, must match the server's certificate.
  Task<IoResult> StartTlsClient(std::shared_ptr<TlsClientContext> ctx,
                                std::string_view server_name);

  // ---- close ------------------------------------------------------------------
  // Graceful: sends what is queued, TLS close_notify, FIN, cancels the receive,
  // closes the socket; completes when the kernel has returned every operation.
  // Returns 0 or the first error met on the way.
  Task<IoResult> close();
  // Immediate: cancels everything in flight and closes; queued bytes are dropped.
  void abort();

  detail::ConnState* state() const { return s_; }

 private:
  void Reset() {
    if (s_) detail::Unref(std::exchange(s_, nullptr));
  }
  detail::ConnState* s_ = nullptr;
};

// ---- template implementation ----------------------------------------------

namespace detail {
// Holds a reference and the single receive slot for the duration of a receive.
class RecvClaim {
 public:
  explicit RecvClaim(ConnState* s) : s_(s) {
    Ref(s_);
    error_ = ClaimRecv(s_);
  }
  RecvClaim(const RecvClaim&) = delete;
  RecvClaim& operator=(const RecvClaim&) = delete;
  ~RecvClaim() {
    if (error_ == 0) ReleaseRecv(s_);
    Unref(s_);
  }
  int error() const { return error_; }

 private:
  ConnState* s_;
  int error_;
};
}  // namespace detail

template <RecvParser Parser>
Task<Result<ParsedValue<Parser>>> Connection::recv(Parser parse) {
  using T = ParsedValue<Parser>;
  using R = ParseResult<T>;
  detail::ConnState* s = s_;
  if (!s) co_return Result<T>::Error(ENOTCONN);
  detail::RecvClaim claim(s);
  if (claim.error()) co_return Result<T>::Error(claim.error());
  std::size_t want = 1;
  for (;;) {
    std::span<const uint8_t> bytes = detail::Contiguous(s, want);
    if (bytes.size() >= want) {
      R r = parse(bytes);
      if (r.done()) {
        detail::ConsumeMessage(s, r.consumed());
        co_return Result<T>(r.take());
      }
      if (r.failed()) co_return Result<T>::Error(r.error());
      want = std::max(bytes.size() + 1, r.need());
      if (want > detail::AccumulatorCap(s)) co_return Result<T>::Error(detail::OverflowClose(s));
    }
    const detail::StreamState st = co_await detail::RecvWait(s, want);
    if (st == detail::StreamState::kOpen) continue;
    if (st == detail::StreamState::kFailed) co_return Result<T>::Error(detail::RecvError(s));
    if (detail::Contiguous(s, 1).empty()) co_return Result<T>::Eof();
    co_return Result<T>::Error(ENODATA);
  }
}

}  // namespace ringline::net
