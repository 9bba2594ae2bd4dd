#include "net_worker.h"

#include <sys/utsname.h>

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "conn_state.h"
#include "listener_state.h"
#include "metrics_registry.h"
#include "ringline/log.h"
#include "udp_state.h"

namespace ringline::net {

absl::Status NetOptions::Validate() const {
  if (max_connections == 0) return absl::InvalidArgumentError("NetOptions.max_connections is 0");
  if (recv_buffer_count == 0 || recv_buffer_count > 32768 ||
      (recv_buffer_count & (recv_buffer_count - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("NetOptions.recv_buffer_count = ", recv_buffer_count,
                     ": must be a power of two in [1, 32768]"));
  }
  if (recv_buffer_size < 64 || recv_buffer_size > (1u << 24)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "NetOptions.recv_buffer_size = ", recv_buffer_size, ": must be in [64, 16 MiB]"));
  }
  if (send_chunk_size < 256 || send_chunk_size > (1u << 24)) {
    return absl::InvalidArgumentError(absl::StrCat("NetOptions.send_chunk_size = ", send_chunk_size,
                                                   ": must be in [256, 16 MiB]"));
  }
  return absl::OkStatus();
}

absl::Status Configure(Worker& worker, const NetOptions& options) {
  return detail::NetWorker::Configure(worker, options);
}

namespace detail {
namespace {

// Key of the NetWorker service and of the options set before it exists.
char kServiceKey;
char kOptionsKey;

class PendingOptions : public WorkerService {
 public:
  explicit PendingOptions(const NetOptions& o) : options(o) {}
  NetOptions options;
};

// IORING_SEND_ZC_REPORT_USAGE (Linux 6.2) lets the notification say whether the
// kernel had to copy; on 6.1 the flag is rejected, so it is used only on 6.2+.
bool KernelReportsZcUsage() {
  utsname u{};
  if (uname(&u) != 0) return false;
  int major = 0, minor = 0;
  if (std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return false;
  return major > 6 || (major == 6 && minor >= 2);
}

}  // namespace

NetWorker::NetWorker(Worker& worker, const NetOptions& options)
    : worker_(worker),
      options_(options),
      metrics_(std::make_shared<NetMetrics>()),
      zc_report_usage_(KernelReportsZcUsage()),
      next_group_(options.buffer_group_base) {
  RegisterOpTags(kNetTags);
}

absl::Status NetWorker::Configure(Worker& worker, const NetOptions& options) {
  if (auto st = options.Validate(); !st.ok()) return st;
  if (worker.Service(&kServiceKey)) {
    return absl::FailedPreconditionError(
        "net::Configure: the network layer is already in use on this worker");
  }
  worker.SetService(&kOptionsKey, std::make_unique<PendingOptions>(options));
  return absl::OkStatus();
}

absl::StatusOr<NetWorker*> NetWorker::GetOrError() {
  Worker& w = Worker::Current();
  if (auto* s = w.Service(&kServiceKey)) return static_cast<NetWorker*>(s);
  NetOptions options;
  if (auto* p = w.Service(&kOptionsKey)) options = static_cast<PendingOptions*>(p)->options;
  std::unique_ptr<NetWorker> nw(new NetWorker(w, options));
  if (auto st = nw->Init(); !st.ok()) return st;
  NetWorker* raw = nw.get();
  w.SetService(&kServiceKey, std::move(nw));
  return raw;
}

NetWorker& NetWorker::Get() {
  auto nw = GetOrError();
  if (!nw.ok()) {
    RL_LOG_ERROR("network layer set-up failed: %s", nw.status().ToString());
    std::abort();
  }
  return **nw;
}

absl::Status NetWorker::Init() {
  auto ring = BufferRing::Create(worker_.internals().ring(), NextBufferGroup(),
                                 options_.recv_buffer_count, options_.recv_buffer_size);
  if (!ring.ok()) return ring.status();
  recv_ring_ = std::move(*ring);
  scratch_ = std::make_unique<uint8_t[]>(kScratch);
  RegisterMetrics(metrics_);
  return absl::OkStatus();
}

NetWorker::~NetWorker() {
  // The worker has destroyed every task and drained the ring, so normally no
  // operation references the states below any more. If the drain gave up (the
  // engine then leaks its slots), the memory those operations point into is
  // leaked too rather than freed under the kernel.
  // Held receive buffers go back first, while the ring is certainly there.
  for (ConnState* c : holding_conns_) c->receiver().EndOfBatch();
  holding_conns_.clear();
  bool leaked = false;
  for (auto& c : table_) {
    if (c && c->ops_ > 0) {
      (void)c.release();
      leaked = true;
    }
  }
  for (auto& l : listeners_) {
    if (l->ops() > 0) {
      (void)l.release();
      leaked = true;
    }
  }
  for (auto& u : udps_) {
    if (u->ops() > 0) {
      (void)u.release();
      leaked = true;
    }
  }
  if (leaked) {
    RL_LOG_ERROR("network layer: operations still in flight at shutdown; leaking their memory");
    (void)recv_ring_.release();
  }
  table_.clear();
  listeners_.clear();
  udps_.clear();
  recv_ring_.reset();
  for (uint8_t* c : free_chunks_) delete[] c;
  metrics_->active.Set(0);
  RetireMetrics(metrics_);
}

void NetWorker::BeforeSubmit() {
  // Buffers a reader did not consume within the iteration: their bytes move
  // into the connections' accumulators and the buffers go back to the ring.
  for (ConnState* c : holding_conns_) c->receiver().EndOfBatch();
  holding_conns_.clear();
  for (BufferRing* r : dirty_rings_) r->Publish();
  dirty_rings_.clear();
  sending_.swap(pending_sends_);
  if (can_submit()) {
    // Re-arm what ran dry, now that buffers are back. A receive that finds the
    // ring empty again ends with ENOBUFS and waits for the next publish: at most
    // one re-arm per starved receive per loop iteration.
    if (!starved_conns_.empty()) {
      std::vector<ConnState*> conns;
      conns.swap(starved_conns_);
      for (ConnState* c : conns) c->OnBuffersPublished();
    }
    if (!starved_udp_.empty()) {
      std::vector<UdpState*> udps;
      udps.swap(starved_udp_);
      for (UdpState* u : udps) u->OnBuffersPublished();
    }
    for (ConnState* c : sending_) c->FlushSend();
  }
  for (ConnState* c : sending_) c->Unref();  // may free c
  sending_.clear();
}

void NetWorker::RequestSend(ConnState* s) {
  pending_sends_.push_back(s);
  ScheduleFlush();
}

SendItem* NetWorker::AllocItem() {
  if (free_items_.empty()) return new SendItem();
  SendItem* it = free_items_.back().release();
  free_items_.pop_back();
  return it;
}

void NetWorker::FreeItem(SendItem* it) {
  it->buffers.clear();  // Buffers go back to their pools now
  if (free_items_.size() >= options_.send_chunk_cache) {
    delete it;
    return;
  }
  it->next = nullptr;
  it->chunk = nullptr;
  it->chunk_len = 0;
  it->owned = it->zc = it->in_queue = false;
  it->total = it->sent = it->in_flight = 0;
  it->notifs = 0;
  it->waiter = nullptr;
  it->error = 0;
  free_items_.emplace_back(it);
}

ZcGroup* NetWorker::AllocGroup() {
  if (free_groups_.empty()) return new ZcGroup();
  ZcGroup* g = free_groups_.back().release();
  free_groups_.pop_back();
  g->n = 0;
  return g;
}

void NetWorker::FreeGroup(ZcGroup* g) {
  if (free_groups_.size() >= options_.send_chunk_cache) {
    delete g;
    return;
  }
  free_groups_.emplace_back(g);
}

void NetWorker::ReturnBuffer(BufferRing& ring, uint16_t bid) {
  if (ring.pending() == 0) dirty_rings_.push_back(&ring);
  ring.Return(bid);
  ScheduleFlush();
}

void NetWorker::AddStarved(ConnState* s) {
  starved_conns_.push_back(s);
  ScheduleFlush();
}
void NetWorker::RemoveStarved(ConnState* s) { std::erase(starved_conns_, s); }
void NetWorker::AddHolding(ConnState* s) {
  holding_conns_.push_back(s);
  ScheduleFlush();
}
void NetWorker::AddStarved(UdpState* u) {
  starved_udp_.push_back(u);
  ScheduleFlush();
}
void NetWorker::RemoveStarved(UdpState* u) { std::erase(starved_udp_, u); }

ConnState* NetWorker::NewConn() {
  if (live_ >= options_.max_connections) return nullptr;
  uint32_t index;
  if (!free_slots_.empty()) {
    index = free_slots_.back();
    free_slots_.pop_back();
  } else {
    index = static_cast<uint32_t>(table_.size());
    table_.emplace_back();
    generations_.push_back(0);
  }
  const uint32_t gen = generations_[index];
  table_[index] = std::make_unique<ConnState>(*this, index, gen);
  ++live_;
  return table_[index].get();
}

void NetWorker::FreeConn(ConnState* s) {
  const uint32_t index = s->index();
  if (s->starved()) RemoveStarved(s);
  if (s->receiver().listed()) std::erase(holding_conns_, s);
  table_[index].reset();
  generations_[index] = (generations_[index] + 1) & UserData::kGenerationMask;
  free_slots_.push_back(index);
  --live_;
}

ConnState* NetWorker::Find(ConnId id) {
  if (id.index >= table_.size() || generations_[id.index] != id.generation) return nullptr;
  return table_[id.index].get();
}

void NetWorker::CountEstablished() { metrics_->active.Set(++active_); }
void NetWorker::CountGone() {
  if (active_) --active_;
  metrics_->active.Set(active_);
  metrics_->closed.Add();
}

uint8_t* NetWorker::AllocChunk() {
  if (!free_chunks_.empty()) {
    uint8_t* c = free_chunks_.back();
    free_chunks_.pop_back();
    return c;
  }
  return new uint8_t[options_.send_chunk_size];
}

void NetWorker::FreeChunk(uint8_t* chunk) {
  if (free_chunks_.size() < options_.send_chunk_cache) {
    free_chunks_.push_back(chunk);
  } else {
    delete[] chunk;
  }
}

ListenerState* NetWorker::Adopt(std::unique_ptr<ListenerState> l) {
  listeners_.push_back(std::move(l));
  return listeners_.back().get();
}
void NetWorker::Free(ListenerState* l) {
  std::erase_if(listeners_, [l](const auto& p) { return p.get() == l; });
}
UdpState* NetWorker::Adopt(std::unique_ptr<UdpState> u) {
  udps_.push_back(std::move(u));
  return udps_.back().get();
}
void NetWorker::Free(UdpState* u) {
  if (u->starved()) RemoveStarved(u);
  std::erase_if(udps_, [u](const auto& p) { return p.get() == u; });
}

}  // namespace detail
}  // namespace ringline::net
