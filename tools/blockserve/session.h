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
// Ownership: a Session is owned by its worker's WorkerContext (worker_context.h)
// and owns its request tasks; destroying it destroys them first.
// Thread-safety: worker-local.

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "blockserve/export_table.h"
#include "blockserve/nbd/request.h"
#include "blockserve/request_log.h"
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
  // Requests served concurrently per connection; the reader waits for a free
  // place beyond it (backpressure onto the client).
  static constexpr uint32_t kMaxInFlight = 128;

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
  ringline::Task<> Execute(nbd::Request req, ringline::Buffer payload, uint32_t slot);
  // Requests not aligned to the backend (unaligned_io.h); Execute serves
  // aligned ones itself, without this extra coroutine.
  ringline::Task<ringline::block::BlockResult> PerformUnaligned(const nbd::Request& req,
                                                                ringline::Buffer payload);
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
  ringline::Task<bool> Discard(uint32_t length);
  ringline::Task<ringline::Buffer> AcquireBuffer(uint32_t length);
  ringline::Task<> SendPending(std::vector<uint8_t> bytes);
  void Finish(uint32_t slot);

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

  ringline::JoinHandle<void> reader_;
  std::array<ringline::JoinHandle<void>, kMaxInFlight> requests_;
  std::vector<uint32_t> free_slots_;
  ringline::WaitList slot_freed_;    // notified when a request slot is freed
  std::vector<uint8_t> scratch_;     // discarded payloads land here
  std::unique_ptr<RequestLog> log_;  // from the handshake on (needs the export)
};

}  // namespace blockserve
