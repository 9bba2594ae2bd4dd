#pragma once
// NetWorker: the network layer's per-worker state, a WorkerService owned by the
// Worker (created on first use, destroyed after the worker has destroyed its
// tasks and drained its ring).
//
// It owns the generation-checked connection table (ConnState objects), the
// listener and UDP socket states, the provided buffer ring all TCP connections
// receive into, the caches of send chunks, send items and zero-copy groups,
// and the end-of-batch work (BeforeSubmit, right before the worker's
// io_uring_enter): accumulate the receive buffers connections still hold,
// publish returned receive buffers in one step, re-arm
// receives that ran out of buffers (ENOBUFS, docs/io_uring-rules.md R6: re-armed once
// buffers are back, never in a loop), and start one send per connection for
// everything its tasks queued during the iteration.
// Thread-safety: worker-local; everything here runs on the worker's thread.

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "buffer_ring.h"
#include "op_tags.h"
#include "ringline/net/connection.h"
#include "ringline/net/net_metrics.h"
#include "ringline/net/options.h"
#include "ringline/worker.h"

namespace ringline::net::detail {

class ConnState;
class ListenerState;
struct SendItem;
struct ZcGroup;
class UdpState;

class NetWorker : public WorkerService {
 public:
  // The current worker's network state, created with its configured (or
  // default) options on first use. Aborts if the set-up fails (e.g. the buffer
  // ring cannot be registered); use GetOrError() where that must be reported.
  static NetWorker& Get();
  static absl::StatusOr<NetWorker*> GetOrError();
  static absl::Status Configure(Worker& worker, const NetOptions& options);
  ~NetWorker() override;

  Worker& worker() { return worker_; }
  const NetOptions& options() const { return options_; }
  NetMetrics& metrics() { return *metrics_; }
  // False once the worker drains its ring: handlers must not start operations.
  bool can_submit() const { return !worker_.draining(); }
  bool zc_report_usage() const { return zc_report_usage_; }

  // ---- connection table ------------------------------------------------------
  // A fresh connection state, or null when max_connections are live.
  ConnState* NewConn();
  void FreeConn(ConnState* s);
  ConnState* Find(ConnId id);
  uint32_t live_connections() const { return live_; }
  void CountEstablished();
  void CountGone();

  // ---- receive buffers ----------------------------------------------------------
  BufferRing& recv_ring() { return *recv_ring_; }
  // Hands a buffer back; it is published at the end of the batch.
  void ReturnBuffer(BufferRing& ring, uint16_t bid);
  void AddStarved(ConnState* s);
  void RemoveStarved(ConnState* s);
  void AddStarved(UdpState* u);
  void RemoveStarved(UdpState* u);
  // `s` holds provided buffers: they are accumulated (Receiver::EndOfBatch)
  // before the end-of-batch publish, so no buffer stays out of the ring for
  // longer than one loop iteration.
  void AddHolding(ConnState* s);
  uint16_t NextBufferGroup() { return next_group_++; }
  void ScheduleFlush() { worker_.RequestBeforeSubmit(this); }
  void BeforeSubmit() override;

  // ---- sends ------------------------------------------------------------------------
  // `s` (referenced by the caller for us) gets FlushSend() before the next submit.
  void RequestSend(ConnState* s);

  // ---- send chunks ----------------------------------------------------------------
  std::size_t chunk_size() const { return options_.send_chunk_size; }
  uint8_t* AllocChunk();
  void FreeChunk(uint8_t* chunk);
  // Pooled: no allocation per send in steady state.
  SendItem* AllocItem();
  void FreeItem(SendItem* item);
  ZcGroup* AllocGroup();
  void FreeGroup(ZcGroup* group);

  // ---- other owned states ------------------------------------------------------------
  ListenerState* Adopt(std::unique_ptr<ListenerState> l);
  void Free(ListenerState* l);
  UdpState* Adopt(std::unique_ptr<UdpState> u);
  void Free(UdpState* u);

  // Scratch memory for TLS decryption (16 KiB + slack), reused by every connection.
  uint8_t* scratch() { return scratch_.get(); }
  static constexpr std::size_t kScratch = 32 * 1024;

 private:
  NetWorker(Worker& worker, const NetOptions& options);
  absl::Status Init();

  Worker& worker_;
  NetOptions options_;
  std::shared_ptr<NetMetrics> metrics_;
  bool zc_report_usage_ = false;

  std::vector<std::unique_ptr<ConnState>> table_;
  std::vector<uint32_t> generations_;
  std::vector<uint32_t> free_slots_;
  uint32_t live_ = 0;
  uint64_t active_ = 0;

  std::unique_ptr<BufferRing> recv_ring_;
  std::vector<BufferRing*> dirty_rings_;
  std::vector<ConnState*> starved_conns_;
  std::vector<ConnState*> holding_conns_;
  std::vector<UdpState*> starved_udp_;
  uint16_t next_group_ = 0;
  std::vector<ConnState*> pending_sends_;  // each holds a reference
  std::vector<ConnState*> sending_;

  std::vector<uint8_t*> free_chunks_;
  std::vector<std::unique_ptr<SendItem>> free_items_;
  std::vector<std::unique_ptr<ZcGroup>> free_groups_;
  std::vector<std::unique_ptr<ListenerState>> listeners_;
  std::vector<std::unique_ptr<UdpState>> udps_;
  std::unique_ptr<uint8_t[]> scratch_;
};

}  // namespace ringline::net::detail
