#include "blockserve/session.h"

#include <chrono>
#include <span>

#include "blockserve/block_status_query.h"
#include "blockserve/nbd/negotiation.h"
#include "blockserve/nbd/reply.h"
#include "blockserve/stats.h"
#include "blockserve/worker_context.h"
#include "ringline/combinators.h"
#include "ringline/log.h"
#include "ringline/worker.h"

namespace blockserve {

using ringline::Buffer;
using ringline::Clock;
using ringline::Task;
namespace net = ringline::net;

namespace {

Cmd CmdOf(uint16_t type) {
  switch (type) {
    case nbd::kCmdRead:
      return Cmd::kRead;
    case nbd::kCmdWrite:
      return Cmd::kWrite;
    case nbd::kCmdFlush:
      return Cmd::kFlush;
    case nbd::kCmdTrim:
      return Cmd::kTrim;
    case nbd::kCmdWriteZeroes:
      return Cmd::kWriteZeroes;
    default:
      return Cmd::kOther;  // BLOCK_STATUS, CACHE
  }
}

nbd::TlsMode CodecTlsMode(TlsMode m) {
  switch (m) {
    case TlsMode::kOn:
      return nbd::TlsMode::kOn;
    case TlsMode::kRequire:
      return nbd::TlsMode::kRequire;
    default:
      return nbd::TlsMode::kOff;
  }
}

}  // namespace

// One request header and, for a write whose whole payload arrived with it
// (a client's small write mostly comes in one segment, so it sits behind its
// header in the same receive buffer), the payload too: written from there,
// with no copy into a block buffer and no Execute task. Waits for no payload
// bytes: a payload still to come takes ReadLoop's path, which reads it under
// the io-timeout and finishes it on shutdown.
net::ParseResult<Session::Incoming> Session::ParseIncoming(std::span<const uint8_t> bytes) {
  using Result = net::ParseResult<Incoming>;
  nbd::ParsedRequest p = nbd::ParseRequest(bytes);
  switch (p.status) {
    case nbd::ParseStatus::kOk:
      break;
    case nbd::ParseStatus::kBadMagic:
      return Result::Invalid(EPROTO);
    case nbd::ParseStatus::kNeedMore:
      return Result::NeedMore(nbd::kRequestHeaderSize);
  }
  const nbd::Request& req = p.request;
  const std::span<const uint8_t> rest = bytes.subspan(nbd::kRequestHeaderSize);
  if (writes_now_ && req.type == nbd::kCmdWrite && req.length <= rest.size() &&
      TryWriteNow(req, rest.first(req.length))) {
    return Result::Done({req, true}, nbd::kRequestHeaderSize + req.length);
  }
  return Result::Done({req, false}, nbd::kRequestHeaderSize);
}

bool Session::TryWriteNow(const nbd::Request& req, std::span<const uint8_t> payload) {
  if (nbd::ValidateRequest(req, params_).verdict != nbd::Verdict::kExecute) return false;
  if (!SpanOf(req).aligned(req.offset, req.length)) return false;
  // As Execute orders an aligned write: not while a read-modify-write is pending.
  WriteOrder::Guard order = export_->order->TryAligned();
  if (!order) return false;
  if (!export_->target->WriteNow(req.offset, payload, {.fua = (req.flags & nbd::kCmdFlagFua) != 0}))
    return false;
  stats_->written_in_place.Add();
  wrote_ = true;
  return true;
}

void Session::RecordDone(const nbd::Request& req, Clock::time_point start) {
  const Cmd cmd = CmdOf(req.type);
  const int c = static_cast<int>(cmd);
  ExportStats& st = *stats_;
  st.ops[c].Add();
  if (cmd == Cmd::kRead || cmd == Cmd::kWrite) st.bytes[c].Add(req.length);
  st.latency_ns[c].Record(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count()));
}

Session::Session(WorkerContext& ctx, net::Connection conn)
    : ctx_(ctx),
      conn_(std::move(conn)),
      peer_(conn_.peer().ToString()),
      requests_(ctx.config.max_in_flight) {
  free_slots_.reserve(requests_.size());
  for (auto i = static_cast<uint32_t>(requests_.size()); i-- > 0;) free_slots_.push_back(i);
}

Session::~Session() {
  // Request tasks reference this session: they go first.
  reader_.Abort();
  for (auto& r : requests_) r.Abort();
  watchdog_.Abort();
}

// ---- fairness: the connection's budget and the io-timeout -------------------------

Session::ClientWait::ClientWait(Session& s) : s_(s) {
  // Only the first wait starts the clock: a client that never reads cannot
  // keep resetting it by sending new requests while the old replies sit.
  if (s_.client_waits_++ == 0) {
    s_.progress_at_ = s_.ctx_.worker.now();
    s_.owed_.NotifyOne();
  }
}

Session::ClientWait::~ClientWait() {
  --s_.client_waits_;
  s_.progress_at_ = s_.ctx_.worker.now();
}

Task<> Session::Watchdog() {
  const auto limit = std::chrono::seconds(ctx_.config.io_timeout_s);
  for (;;) {
    // Parked while nothing is owed. Woken by a ClientWait, it sleeps until a
    // timeout after the last progress before it looks again, so a busy
    // connection wakes it about once per timeout, not once per request.
    while (client_waits_ == 0) co_await owed_.Wait();
    while (ctx_.worker.now() < progress_at_ + limit) {
      co_await ringline::SleepUntil(progress_at_ + limit);
    }
    if (client_waits_ == 0) continue;  // all that was owed came: park again
    ctx_.stats->io_timeouts.Add();
    RL_LOG_WARN(
        "%s: closing: no progress for %u s on what the client owes (a write payload still to "
        "arrive, or replies it does not read) (--io-timeout)",
        peer_, ctx_.config.io_timeout_s);
    // Fails the reader's receive and every send: the requests finish, their
    // buffers go back, and Run() closes.
    conn_.abort();
    co_return;
  }
}

uint64_t Session::BufferCost(const nbd::Request& req, const nbd::RequestCheck& check) const {
  if (check.verdict != nbd::Verdict::kExecute) return 0;
  if (req.type != nbd::kCmdRead && req.type != nbd::kCmdWrite) return 0;
  return SpanOf(req).length();
}

bool Session::Admits(uint64_t cost) const {
  if (free_slots_.empty()) return false;
  // Alone, any request is admitted: one up to --max-request always fits.
  return in_flight_bytes_ == 0 || in_flight_bytes_ + cost <= ctx_.config.max_in_flight_bytes;
}

void Session::BeginShutdown() {
  stopping_ = true;
  // A client still negotiating has nothing in flight: close it now (the spec
  // lets a server that is shutting down drop a connection in the handshake).
  if (in_handshake_) {
    conn_.abort();
    return;
  }
  // A reader waiting for the next header is cut short (nothing is consumed);
  // one in the middle of a write payload finishes it first.
  if (reading_header_) reader_.Abort();
}

Task<> Session::SendPending(std::vector<uint8_t> bytes) {
  if (!bytes.empty()) co_await conn_.send(std::span<const uint8_t>(bytes));
}

Task<bool> Session::Handshake() {
  nbd::Negotiator neg(*ctx_.exports, {.tls_mode = CodecTlsMode(ctx_.config.tls)});
  if (ctx_.stopping) neg.BeginShutdown();
  co_await SendPending(neg.TakeOutput());
  for (;;) {
    auto ev = co_await conn_.recv([&neg](std::span<const uint8_t> bytes) {
      nbd::FeedResult r = neg.Feed(bytes);
      // Feed buffers partial messages itself: whatever it consumed is gone from
      // the stream; an event also ends this receive.
      return net::ParseResult<nbd::NegotiationEvent>::Done(std::move(r.event),
                                                           std::max<std::size_t>(r.consumed, 1));
    });
    if (!ev.ok()) {
      if (!ev.eof()) RL_LOG_INFO("%s: handshake ended: %s", peer_, ev.ErrorString());
      co_return false;
    }
    co_await SendPending(neg.TakeOutput());
    if (std::holds_alternative<nbd::NeedInput>(*ev)) continue;
    if (std::holds_alternative<nbd::StartTls>(*ev)) {
      if (!ctx_.tls) co_return false;  // the codec refuses STARTTLS when TLS is off
      auto r = co_await conn_.StartTls(ctx_.tls);
      if (!r.ok()) {
        RL_LOG_WARN("%s: TLS handshake failed (%s)", peer_, ringline::ErrnoName(r.error()));
        co_return false;
      }
      ctx_.stats->tls_connections.Add();
      neg.TlsEstablished();
      continue;
    }
    if (auto* close = std::get_if<nbd::Close>(&*ev)) {
      if (close->reason == nbd::CloseReason::kProtocolError) ctx_.stats->protocol_errors.Add();
      RL_LOG_INFO("%s: handshake closed: %s", peer_, close->message);
      co_return false;
    }
    auto& enter = std::get<nbd::EnterTransmission>(*ev);
    export_ = ctx_.exports->Lookup(enter.selected.name);
    if (!export_) co_return false;
    params_ = enter.params;
    structured_ = params_.structured_replies;
    writes_now_ = export_->target->writes_now();
    for (std::size_t i = 0; i < ctx_.exports->exports().size(); ++i) {
      if (ctx_.exports->exports()[i].get() == export_) stats_ = ctx_.stats->per_export[i].get();
    }
    log_ = std::make_unique<RequestLog>(peer_, export_->nbd.name);
    RL_LOG_INFO("%s: serving export '%s'%s%s%s%s", peer_, export_->nbd.name,
                structured_ ? " (structured replies)" : "",
                params_.base_allocation_context ? " (base:allocation)" : "",
                enter.block_size_requested ? " (block sizes negotiated)" : " (any alignment)",
                conn_.is_tls() ? " over TLS" : "");
    co_return true;
  }
}

Task<> Session::Run() {
  ctx_.stats->connections_total.Add();
  ctx_.stats->connections_active.Inc();
  RL_LOG_INFO("%s: connected", peer_);
  in_handshake_ = true;
  // --handshake-timeout bounds the whole handshake (TLS included) from the
  // accept on; progress does not extend it, so a client trickling options
  // cannot hold its connection slot for ever.
  bool entered = false;
  const uint32_t limit_s = ctx_.config.handshake_timeout_s;
  // (The timed handshake is awaited into a named local, never in a
  // condition: docs/gcc12-coroutines.md.)
  std::optional<bool> timed;
  if (limit_s != 0) timed = co_await ringline::Timeout(std::chrono::seconds(limit_s), Handshake());
  if (limit_s == 0) {
    entered = co_await Handshake();
  } else if (timed) {
    entered = *timed;
  } else {
    ctx_.stats->handshake_timeouts.Add();
    RL_LOG_WARN("%s: dropped: not in transmission %u s after connecting (--handshake-timeout)",
                peer_, limit_s);
  }
  in_handshake_ = false;
  if (!entered || stopping_) {
    ctx_.stats->handshakes_failed.Add();
  } else {
    if (ctx_.config.io_timeout_s > 0) watchdog_ = ringline::Spawn(Watchdog());
    reader_ = ringline::Spawn(ReadLoop());
    co_await reader_;
    // Finish every request in flight (their replies go out, under the
    // watchdog), then close.
    while (free_slots_.size() != requests_.size()) co_await slot_freed_.Wait();
    watchdog_.Abort();
    if (wrote_ && stopping_) co_await export_->target->Flush();
  }
  co_await conn_.close();
  ctx_.stats->connections_active.Dec();
  RL_LOG_INFO("%s: closed", peer_);
}

Task<Buffer> Session::AcquireBuffer(uint32_t length, BudgetCharge& charge) {
  // Not a coroutine itself: one frame per acquisition, as before.
  return AcquireRequestBuffer(ctx_.SourceFor(length), length, charge);
}

Task<bool> Session::ReadPayload(Buffer& buf, std::size_t offset, uint32_t length) {
  for (uint32_t done = 0; done < length;) {
    const uint32_t n = std::min(length - done, kPayloadPiece);
    ClientWait wait(*this);
    auto r = co_await conn_.read_exact(buf, offset + done, n);
    if (!r.ok()) co_return false;
    done += n;
  }
  co_return true;
}

Task<bool> Session::Discard(uint32_t length) {
  if (scratch_.empty()) scratch_.resize(64 * 1024);
  while (length > 0) {
    const uint32_t n = std::min<uint32_t>(length, static_cast<uint32_t>(scratch_.size()));
    ClientWait wait(*this);
    auto r = co_await conn_.read_exact(std::span<uint8_t>(scratch_.data(), n));
    if (!r.ok()) co_return false;
    length -= n;
  }
  co_return true;
}

Task<> Session::ReadLoop() {
  while (!stopping_) {
    reading_header_ = true;
    auto in = co_await conn_.recv(
        [this](std::span<const uint8_t> bytes) { return ParseIncoming(bytes); });
    reading_header_ = false;
    if (!in.ok()) {
      if (in.error() == EPROTO) {
        ctx_.stats->protocol_errors.Add();
        RL_LOG_WARN("%s: bad request magic: closing (the stream is out of sync)", peer_);
      } else if (!in.eof()) {
        RL_LOG_INFO("%s: receive ended: %s", peer_, in.ErrorString());
      }
      co_return;
    }
    const nbd::Request req = in->req;
    if (in->written) {
      // Written by the parser: only the reply is left. The latency starts, as
      // Execute's, at the iteration that received the request.
      const auto start = ctx_.worker.now();
      ClientWait wait(*this);
      OkReplyBytes b;
      co_await conn_.send(EncodeOkReply(req, b));
      RecordDone(req, start);
      continue;
    }
    const nbd::RequestCheck check = nbd::ValidateRequest(req, params_);
    if (check.verdict == nbd::Verdict::kDisconnect) co_return;
    if (check.verdict == nbd::Verdict::kReplyErrorThenClose) {
      ctx_.stats->oversize_writes.Add();
      RL_LOG_WARN(
          "%s: NBD_CMD_WRITE of %u bytes is longer than the maximum block size %u "
          "(--max-request): answered %s, closing (its payload is not read)",
          peer_, req.length, params_.block_size.maximum, nbd::NbdErrorName(check.error));
      RecordRefusal(req, check);
      co_await Reply(req, check.error, check.reason);
      co_return;  // Run() finishes the requests in flight and closes
    }
    // Backpressure: at the connection's budget the next request stays in the
    // client's socket, with no buffer taken, until one in flight finishes.
    const uint64_t cost = BufferCost(req, check);
    if (!Admits(cost)) {
      ctx_.stats->admission_waits.Add();
      do {
        co_await slot_freed_.Wait();
      } while (!Admits(cost));
    }
    const uint32_t slot = free_slots_.back();
    free_slots_.pop_back();
    in_flight_bytes_ += cost;
    if (check.verdict == nbd::Verdict::kExecute) {
      Buffer payload;
      BudgetCharge charge;
      if (req.type == nbd::kCmdWrite) {
        // The payload lands straight in the aligned block buffer; an
        // unaligned one at its place in the covering aligned range, whose
        // edges the read-modify-write fills in (unaligned_io.h).
        const AlignedSpan span = SpanOf(req);
        payload = ctx_.PoolFor(span.length()).TryAcquire();
        if (!payload)
          payload = co_await AcquireBuffer(static_cast<uint32_t>(span.length()), charge);
        bool received;
        if (req.length <= kPayloadPiece) {
          // One piece (every payload up to 1 MiB): read here, without
          // ReadPayload's coroutine frame.
          ClientWait wait(*this);
          const ringline::IoResult r = co_await conn_.read_exact(payload, span.head, req.length);
          received = r.ok();
        } else {
          received = co_await ReadPayload(payload, span.head, req.length);
        }
        if (!received) {  // (awaited into a local: docs/gcc12-coroutines.md)
          RL_LOG_INFO("%s: connection lost inside a write payload", peer_);
          Finish(slot, cost);
          co_return;
        }
      }
      requests_[slot] =
          ringline::Spawn(Execute(req, std::move(payload), std::move(charge), slot, cost));
      continue;
    }
    // Answered without the backend; a rejected write's payload is still read.
    if (check.payload_length > 0) {
      const bool in_sync = co_await Discard(check.payload_length);
      if (!in_sync) {
        Finish(slot, cost);
        co_return;
      }
    }
    if (check.verdict == nbd::Verdict::kReplyError) {
      RecordRefusal(req, check);
      co_await Reply(req, check.error, check.reason);
    } else {
      co_await Reply(req, nbd::NbdError::kOk, "");
    }
    Finish(slot, cost);
  }
}

void Session::Finish(uint32_t slot, uint64_t cost) {
  free_slots_.push_back(slot);
  in_flight_bytes_ -= cost;
  slot_freed_.NotifyOne();
}

std::span<const uint8_t> Session::EncodeOkReply(const nbd::Request& req, OkReplyBytes& b) const {
  if (!structured_ || req.type != nbd::kCmdRead) {
    std::span<uint8_t, nbd::kSimpleReplySize> out(b.data(), nbd::kSimpleReplySize);
    nbd::EncodeSimpleReply(req.cookie, nbd::NbdError::kOk, out);
    return out;
  }
  std::span<uint8_t, nbd::kStructuredChunkHeaderSize> out(b.data(),
                                                          nbd::kStructuredChunkHeaderSize);
  nbd::EncodeNoneChunk(req.cookie, out);
  return out;
}

Task<> Session::Reply(const nbd::Request& req, nbd::NbdError error, const char* message) {
  ClientWait wait(*this);
  if (error == nbd::NbdError::kOk) {
    OkReplyBytes b;
    co_await conn_.send(EncodeOkReply(req, b));
  } else if (!structured_) {
    nbd::SimpleReplyBytes b;
    nbd::EncodeSimpleReply(req.cookie, error, b);
    co_await conn_.send(std::span<const uint8_t>(b));
  } else {
    nbd::ErrorChunkBytes b;
    const std::size_t n = nbd::EncodeErrorChunk(req.cookie, error, message, true, b);
    co_await conn_.send(std::span<const uint8_t>(b.data(), n));
  }
}

void Session::RecordRefusal(const nbd::Request& req, const nbd::RequestCheck& check) {
  stats_->errors[static_cast<int>(CmdOf(req.type))].Add();
  stats_->refused[static_cast<int>(check.refusal)].Add();
  log_->Record("refused", req.type, req.offset, req.length, nbd::NbdErrorName(check.error),
               check.reason);
}

void Session::RecordFailure(const nbd::Request& req, nbd::NbdError error,
                            const std::string& reason) {
  stats_->errors[static_cast<int>(CmdOf(req.type))].Add();
  stats_->failed[FailureIndex(error)].Add();
  log_->Record("failed", req.type, req.offset, req.length, nbd::NbdErrorName(error), reason);
}

UnalignedIo Session::Unaligned() const {
  return UnalignedIo{*export_->target, *export_->order, *ctx_.edges, params_.device_alignment,
                     params_.export_size};
}

Task<ringline::block::BlockResult> Session::BlockStatus(const nbd::Request& req) {
  BlockStatusChunk chunk;  // in this frame until sent (send copies it)
  ringline::block::ExtentResult e = co_await QueryBlockStatus(
      *export_->target, req.cookie, req.offset, req.length, (req.flags & nbd::kCmdFlagReqOne) != 0,
      params_.base_allocation_context, chunk);
  ringline::block::BlockResult r;
  r.res = e.res;
  r.status = std::move(e.status);
  if (r.ok()) {
    ClientWait wait(*this);
    co_await conn_.send(chunk.bytes);
  }
  co_return r;
}

Task<ringline::block::BlockResult> Session::PerformUnaligned(const nbd::Request& req,
                                                             Buffer payload, BudgetCharge& charge) {
  ringline::block::Target& t = *export_->target;
  const bool fua = req.flags & nbd::kCmdFlagFua;
  const AlignedSpan span = SpanOf(req);
  stats_->unaligned.Add();
  switch (req.type) {
    case nbd::kCmdRead: {
      Buffer bounce = co_await AcquireBuffer(static_cast<uint32_t>(span.length()), charge);
      co_return co_await ReadUnaligned(Unaligned(), req.offset, req.length, std::move(bounce));
    }
    case nbd::kCmdWrite:
      co_return co_await WriteUnaligned(Unaligned(), req.offset, req.length, std::move(payload),
                                        fua);
    case nbd::kCmdWriteZeroes:
      // Partial blocks are zeroed by writing data, which FAST_ZERO forbids:
      // the spec's answer is ENOTSUP, and the client writes the zeroes itself.
      if (req.flags & nbd::kCmdFlagFastZero) {
        ringline::block::BlockResult r;
        r.Fail(ENOTSUP);
        r.status = absl::UnimplementedError("fast zero of a range not aligned to the device");
        co_return r;
      }
      co_return co_await ZeroUnaligned(Unaligned(), req.offset, req.length, fua);
    case nbd::kCmdTrim: {
      auto r = co_await TrimUnaligned(Unaligned(), req.offset, req.length);
      if (r.ok() && fua) r = co_await t.Flush();
      co_return r;
    }
    default: {
      ringline::block::BlockResult r;
      r.Fail(EINVAL);
      co_return r;
    }
  }
}

Task<> Session::Execute(nbd::Request req, Buffer payload, BudgetCharge charge, uint32_t slot,
                        uint64_t cost) {
  ExportStats& st = *stats_;
  st.in_flight.Inc();
  // The latency starts at the loop iteration that received the request (the
  // worker's time, read once per iteration and already read by the reader's
  // ClientWait): it includes the wait in the ready queue and saves a clock
  // read per request. It ends with a real clock read below.
  const auto start = ctx_.worker.now();
  ringline::block::Target& t = *export_->target;
  const bool fua = req.flags & nbd::kCmdFlagFua;
  const AlignedSpan span = SpanOf(req);
  const bool writes =
      req.type == nbd::kCmdWrite || req.type == nbd::kCmdTrim || req.type == nbd::kCmdWriteZeroes;
  if (writes) wrote_ = true;
  // Aligned requests go straight to the target; aligned writes are ordered
  // against read-modify-writes by the export's WriteOrder, free while none
  // is pending (write_order.h). The guard is held until the device is done.
  WriteOrder::Guard order;
  ringline::block::BlockResult r;
  if (req.type == nbd::kCmdBlockStatus) {
    r = co_await BlockStatus(req);
  } else if (req.type == nbd::kCmdCache) {
    // Advisory: prefetch the covering aligned range, whatever the alignment.
    r = co_await t.Cache(span.begin, span.length());
  } else if (req.type != nbd::kCmdFlush && !span.aligned(req.offset, req.length)) {
    r = co_await PerformUnaligned(req, std::move(payload), charge);
  } else {
    if (writes) {
      order = export_->order->TryAligned();
      if (!order) order = co_await export_->order->LockAligned(span.begin, span.end);
    }
    switch (req.type) {
      case nbd::kCmdRead: {
        Buffer buf = ctx_.PoolFor(req.length).TryAcquire();
        if (!buf) buf = co_await AcquireBuffer(req.length, charge);
        r = co_await t.Read(req.offset, req.length, std::move(buf));
        break;
      }
      case nbd::kCmdWrite:
        r = co_await t.Write(req.offset, std::move(payload), {.fua = fua});
        break;
      case nbd::kCmdFlush:
        r = co_await t.Flush();
        break;
      case nbd::kCmdTrim:
        r = co_await t.Discard(req.offset, req.length);
        if (r.ok() && fua) r = co_await t.Flush();
        break;
      case nbd::kCmdWriteZeroes:
        r = co_await t.WriteZeroes(req.offset, req.length, {.fua = fua});
        break;
      default:
        r.Fail(EINVAL);
        break;
    }
    order.Release();
  }
  if (!r.ok()) {
    const nbd::NbdError err = nbd::ReplyErrorFor(r.error(), req.type, req.flags);
    std::string msg(r.status.message());
    if (msg.empty()) msg = ringline::ErrnoName(r.error());
    RecordFailure(req, err, msg);
    co_await Reply(req, err, msg.c_str());
  } else if (req.type == nbd::kCmdRead) {
    r.buffer.set_size(req.length);
    ClientWait wait(*this);
    if (structured_) {
      nbd::OffsetDataHeaderBytes h;
      nbd::EncodeOffsetDataHeader(req.cookie, req.offset, req.length, true, h);
      co_await conn_.send_zc(std::span<const uint8_t>(h), std::move(r.buffer));
    } else {
      nbd::SimpleReplyBytes h;
      nbd::EncodeSimpleReply(req.cookie, nbd::NbdError::kOk, h);
      co_await conn_.send_zc(std::span<const uint8_t>(h), std::move(r.buffer));
    }
  } else if (req.type != nbd::kCmdBlockStatus) {
    // The success reply, encoded in this frame (the send copies it) rather
    // than through Reply's coroutine: one frame less per request.
    ClientWait wait(*this);
    OkReplyBytes b;
    co_await conn_.send(EncodeOkReply(req, b));
  }
  RecordDone(req, start);
  st.in_flight.Dec();
  r.buffer.Reset();  // before its charge goes
  Finish(slot, cost);
}

}  // namespace blockserve
