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
// this host). A write payload of 4 KiB and up is received straight into an
// aligned block buffer: while such writes flow the connection receives a header
// at a time (AdaptReceive), so payloads stay in the socket until read_exact
// takes them; only payloads that had already arrived with their header when the
// connection switched are copied from the receive buffers.
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
  // Write payloads from this size up are received straight into their block
  // buffer (the listener's direct_read_threshold; see AdaptReceive).
  static constexpr uint32_t kDirectPayloadBytes = 4096;

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
  ringline::Task<> Reply(const nbd::Request& req, nbd::NbdError error, const char* message);
  ringline::Task<bool> Discard(uint32_t length);
  ringline::Task<ringline::Buffer> AcquireBuffer(uint32_t length);
  ringline::Task<> SendPending(std::vector<uint8_t> bytes);
  void Finish(uint32_t slot);
  // Chooses how the connection receives, from the request just parsed.
  void AdaptReceive(const nbd::Request& req);

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
  bool bounded_ = false;               // receiving a header at a time (see AdaptReceive)
  uint32_t requests_since_write_ = 0;  // while bounded_

  ringline::JoinHandle<void> reader_;
  std::array<ringline::JoinHandle<void>, kMaxInFlight> requests_;
  std::vector<uint32_t> free_slots_;
  ringline::WaitList slot_freed_;  // notified when a request slot is freed
  std::vector<uint8_t> scratch_;   // discarded payloads land here
};

}  // namespace blockserve
