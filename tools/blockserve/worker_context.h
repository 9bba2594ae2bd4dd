#pragma once
// Everything blockserve keeps per worker: the exports it opened, its buffer
// pools, its sessions and its metrics. Owned by the worker's main task; its
// destructor destroys the sessions (and their request tasks) before the
// exports they use.

#include <memory>
#include <unordered_map>

#include "blockserve/export_table.h"
#include "blockserve/request_memory.h"
#include "blockserve/server_config.h"
#include "blockserve/session.h"
#include "blockserve/stats.h"
#include "ringline/buffer_pool.h"
#include "ringline/net/tls.h"
#include "ringline/wait_list.h"
#include "ringline/worker.h"

namespace blockserve {

struct WorkerContext {
  WorkerContext(ringline::Worker& w, const ServerConfig& c, WorkerStats* s)
      : worker(w), config(c), stats(s) {}
  WorkerContext(const WorkerContext&) = delete;
  WorkerContext& operator=(const WorkerContext&) = delete;
  ~WorkerContext() {
    sessions.clear();  // aborts session tasks, which abort their requests
  }

  ringline::Worker& worker;
  const ServerConfig& config;
  WorkerStats* stats;
  std::shared_ptr<ringline::net::TlsServerContext> tls;  // null when TLS is off
  std::unique_ptr<ExportTable> exports;
  // Buffers for requests up to small->buffer_size(); larger ones (up to the
  // request limit plus two alignment units, for an unaligned request's
  // covering range) come from `large`.
  std::unique_ptr<ringline::BufferPool> small;
  std::unique_ptr<ringline::BufferPool> large;
  // One backend block each (up to the largest minimum block size, 64 KiB):
  // the edge blocks of read-modify-writes (unaligned_io.h). Separate from the
  // request pools, whose holders may wait for one of these.
  std::unique_ptr<ringline::BufferPool> edges;
  // The pool a request of `length` bytes takes its buffer from.
  ringline::BufferPool& PoolFor(std::size_t length) {
    return length <= small->buffer_size() ? *small : *large;
  }
  // --buffer-memory, shared by every worker (owned by main; outlives them):
  // request buffers beyond the pools (request_memory.h). Null: pools only.
  BufferBudget* budget = nullptr;
  // Where a request of `length` bytes gets its buffer (AcquireRequestBuffer).
  RequestBufferSource SourceFor(std::size_t length) {
    return {&PoolFor(length), budget, &stats->buffer_memory_bytes, &stats->buffer_memory_waits};
  }

  struct SessionEntry {
    std::unique_ptr<Session> session;
    ringline::JoinHandle<void> task;
    ~SessionEntry() {
      task.Abort();  // before `session` goes
    }
  };
  std::unordered_map<uint64_t, std::unique_ptr<SessionEntry>> sessions;
  uint64_t next_session = 0;
  ringline::WaitList sessions_changed;
  bool stopping = false;
};

}  // namespace blockserve
