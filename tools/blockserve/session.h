#pragma once
// Session: one NBD client connection, from the handshake to the close.
//
// The handshake runs the pure Negotiator over the connection. In transmission
// a reader reads request headers and write payloads in stream order and starts
// one task per request, so pipelined requests are served concurrently and
// answered by cookie as they finish; replies are whole units in the
// connection's ordered send queue, and the replies finished in one loop
// iteration leave in one send. Read data goes from the device into a
// registered buffer that is sent from there (zero-copy to remote peers from
// 16 KiB; by reference, copied only by the kernel, below that and to peers on
// this host). A write payload is read into an aligned block buffer with
// read_exact: the connection copies it once from its receive buffers, or for
// large payloads receives it straight into the block buffer (the network
// layer chooses, see ringline/net/connection.h).
//
// A client that did not request block sizes may send any offset and length:
// such requests go through unaligned_io.h (bounce reads, read-modify-writes
// ordered across connections and workers by the export's WriteOrder); aligned
// ones go straight to the target. NBD_CMD_BLOCK_STATUS answers base:allocation
// from block::Target::Extents (block_status_query.h). Refused and failed
// requests are counted per reason and logged through a rate-limited RequestLog.
//
// Fairness. A connection has a budget: at most --max-in-flight requests and
// --max-in-flight-bytes of request buffers (one request alone is always
// admitted, so any request up to --max-request is served). At the budget the
// reader reads no further request from the client, whose requests wait in its
// own socket: it takes no more buffers. Buffers come from the worker's pools
// or, when those are empty, from the server's --buffer-memory
// (request_memory.h). While the server waits on the client -- a write payload
// still arriving, a reply the client is not reading -- an io-timeout watchdog
// runs: no progress for --io-timeout seconds closes the connection, which
// returns its buffers. A WRITE longer than --max-request is answered EINVAL
// and closes the connection without its payload being read.
//
// Ownership: a Session is owned by its worker's WorkerContext (worker_context.h)
// and owns its request tasks; destroying it destroys them first.
// Thread-safety: worker-local.

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "blockserve/export_table.h"
#include "blockserve/nbd/reply.h"
#include "blockserve/nbd/request.h"
#include "blockserve/request_log.h"
#include "blockserve/request_memory.h"
#include "blockserve/unaligned_io.h"
#include "ringline/net/connection.h"
#include "ringline/spawn.h"
#include "ringline/task.h"
#include "ringline/wait_list.h"

namespace blockserve {

struct WorkerContext;
struct ExportStats;

class Session {
 public:
  // Write payloads are read in pieces of at most this many bytes; each piece
  // received is progress for the io-timeout.
  static constexpr uint32_t kPayloadPiece = 1 << 20;

  Session(WorkerContext& ctx, ringline::net::Connection conn);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session();

  // Runs the connection to its end.
  ringline::Task<> Run();
  // Server shutdown: finish what is in flight, read no more requests.
  void BeginShutdown();

 private:
  ringline::Task<bool> Handshake();
  ringline::Task<> ReadLoop();
  // What the reader takes from the stream: a request header and, when it is
  // a write that TryWriteNow() wrote from the receive buffer, its payload.
  struct Incoming {
    nbd::Request req;
    bool written = false;
  };
  // The reader's recv() parser (see ReadLoop).
  ringline::net::ParseResult<Incoming> ParseIncoming(std::span<const uint8_t> bytes);
  // Writes a write request's `payload` now, straight from where it was
  // received (block::Target::WriteNow), when the request is valid and aligned
  // and no read-modify-write holds its export's WriteOrder; counts it. False,
  // with nothing written, when it must take Execute's path instead.
  bool TryWriteNow(const nbd::Request& req, std::span<const uint8_t> payload);
  // Counts a finished request in the export's statistics; `start`: when its
  // header was received (the worker's time then).
  void RecordDone(const nbd::Request& req, ringline::Clock::time_point start);
  // `charge`: the --buffer-memory a write payload cost (empty otherwise);
  // `cost`: the request's BufferCost, returned to the budget by Finish.
  ringline::Task<> Execute(nbd::Request req, ringline::Buffer payload, BudgetCharge charge,
                           uint32_t slot, uint64_t cost);
  // Requests not aligned to the backend (unaligned_io.h); Execute serves
  // aligned ones itself, without this extra coroutine.
  // `charge` receives what a bounce buffer cost (held by Execute's frame).
  ringline::Task<ringline::block::BlockResult> PerformUnaligned(const nbd::Request& req,
                                                                ringline::Buffer payload,
                                                                BudgetCharge& charge);
  ringline::Task<ringline::block::BlockResult> BlockStatus(const nbd::Request& req);
  // The covering aligned range of a request (see unaligned_io.h).
  AlignedSpan SpanOf(const nbd::Request& req) const {
    return AlignSpan(req.offset, req.length, params_.device_alignment, params_.export_size);
  }
  UnalignedIo Unaligned() const;
  // Counts a refused (validation) or failed (backend) request and logs it
  // (rate-limited, request_log.h).
  void RecordRefusal(const nbd::Request& req, const nbd::RequestCheck& check);
  void RecordFailure(const nbd::Request& req, nbd::NbdError error, const std::string& reason);
  ringline::Task<> Reply(const nbd::Request& req, nbd::NbdError error, const char* message);
  // The success reply without data to `req`, encoded into `b`; the span
  // points into `b`. A simple reply (16 bytes), which the protocol allows for
  // every command but READ even with structured replies; a zero-length READ
  // under structured replies gets an NBD_REPLY_TYPE_NONE chunk. Why not the
  // chunk for all: libnbd reads a reply as a simple one first and takes the
  // chunk's last 4 bytes with a second recv(), one system call more per
  // request in every libnbd client (fio's nbd engine, nbdcopy): BENCHMARKS.md,
  // session 11, "Simple replies to writes".
  using OkReplyBytes =
      std::array<uint8_t, std::max(nbd::kSimpleReplySize, nbd::kStructuredChunkHeaderSize)>;
  std::span<const uint8_t> EncodeOkReply(const nbd::Request& req, OkReplyBytes& b) const;
  ringline::Task<bool> Discard(uint32_t length);
  // A request buffer (request_memory.h); `charge` holds what it cost the
  // server's --buffer-memory and must live as long as the buffer.
  ringline::Task<ringline::Buffer> AcquireBuffer(uint32_t length, BudgetCharge& charge);
  // `length` payload bytes into buf at `offset`, in kPayloadPiece pieces.
  ringline::Task<bool> ReadPayload(ringline::Buffer& buf, std::size_t offset, uint32_t length);
  ringline::Task<> SendPending(std::vector<uint8_t> bytes);
  // Request buffer bytes a request holds while in flight (its budget cost).
  uint64_t BufferCost(const nbd::Request& req, const nbd::RequestCheck& check) const;
  // Whether the connection's budget has room for one more request of `cost`.
  bool Admits(uint64_t cost) const;
  void Finish(uint32_t slot, uint64_t cost);

  // While one lives the server waits on the client (a payload piece, a reply
  // send). The first one's start and every one's end are progress. Counted,
  // not allocated.
  class ClientWait {
   public:
    explicit ClientWait(Session& s);
    ClientWait(const ClientWait&) = delete;
    ClientWait& operator=(const ClientWait&) = delete;
    ~ClientWait();

   private:
    Session& s_;
  };
  // --io-timeout: sleeps while nothing is owed; closes the connection when a
  // ClientWait has lasted the timeout with no progress.
  ringline::Task<> Watchdog();

  WorkerContext& ctx_;
  ringline::net::Connection conn_;
  std::string peer_;
  ServedExport* export_ = nullptr;
  ExportStats* stats_ = nullptr;
  nbd::TransmissionParams params_;
  bool structured_ = false;
  bool stopping_ = false;
  bool reading_header_ = false;
  bool in_handshake_ = false;
  bool wrote_ = false;
  bool writes_now_ = false;  // the export's target may take TryWriteNow()

  ringline::JoinHandle<void> reader_;
  ringline::JoinHandle<void> watchdog_;               // while in transmission, if --io-timeout
  std::vector<ringline::JoinHandle<void>> requests_;  // --max-in-flight places
  std::vector<uint32_t> free_slots_;
  uint64_t in_flight_bytes_ = 0;               // BufferCost of the requests in flight
  ringline::WaitList slot_freed_;              // notified when a request finishes
  uint32_t client_waits_ = 0;                  // ClientWaits alive
  ringline::Clock::time_point progress_at_{};  // last progress (see ClientWait)
  ringline::WaitList owed_;                    // the watchdog, while nothing is owed
  std::vector<uint8_t> scratch_;               // discarded payloads land here
  std::unique_ptr<RequestLog> log_;            // from the handshake on (needs the export)
};

}  // namespace blockserve
