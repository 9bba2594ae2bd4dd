// blockserve: an NBD server on ringline. See cli.cc for the command line.
//
// Listening: the NBD sockets are opened in main() before any worker starts
// (or taken over from systemd's socket activation), so a port another process
// holds fails the start with exit status 1, and every worker then accepts on
// each of those sockets (net::Listener::Bind(ListenSocket)): one socket per
// address for the whole process, no SO_REUSEPORT (see ringline/net/listener.h
// for how the workers' accepts share it).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "blockserve/cli.h"
#include "blockserve/export_table.h"
#include "blockserve/metrics_http.h"
#include "blockserve/session.h"
#include "blockserve/stats.h"
#include "blockserve/version.h"
#include "blockserve/worker_context.h"
#include "ringline/block/placement.h"
#include "ringline/combinators.h"
#include "ringline/log.h"
#include "ringline/net/listener.h"
#include "ringline/runtime.h"

namespace blockserve {
namespace {

using ringline::Task;
namespace net = ringline::net;

struct Shared {
  ServerConfig config;
  // The NBD listening sockets; every worker accepts on each. Set before the
  // workers start, read-only afterwards.
  std::vector<net::ListenSocket> sockets;
  net::ListenSocket metrics_socket;  // --metrics-port; worker 0 serves it
  // NBD connections open now, all workers together (--max-connections).
  std::atomic<uint32_t> open_connections{0};
  std::vector<std::unique_ptr<WorkerStats>> stats;  // one per worker, outlive them
  // One per export, shared by the workers (each opens its own target on the
  // same path): orders read-modify-writes across all of them.
  std::vector<std::unique_ptr<WriteOrder>> orders;
  // One per export, shared by the workers: its health (poisoned by a failed
  // flush) and fault plan (export_table.h).
  std::vector<std::unique_ptr<ExportState>> states;
  std::shared_ptr<net::TlsServerContext> tls;
  // --buffer-memory: request buffers beyond the workers' pools (request_memory.h).
  std::unique_ptr<BufferBudget> budget;
  std::mutex mu;
  ringline::Runtime* runtime = nullptr;  // guarded by mu; set once Start returned
  absl::Status first_error;              // guarded by mu: a worker that could not start
  // A worker could not set up: record why and stop every worker (now, or as
  // soon as the runtime handle exists).
  void Fail(const absl::Status& st) {
    std::lock_guard<std::mutex> lock(mu);
    if (first_error.ok()) first_error = st;
    if (runtime) runtime->Shutdown();
  }
  void Started(ringline::Runtime* rt) {
    std::lock_guard<std::mutex> lock(mu);
    runtime = rt;
    if (!first_error.ok()) rt->Shutdown();
  }
};

net::SocketAddress ListenAddress(const ServerConfig& c, uint16_t port) {
  if (c.listen.rfind("unix:", 0) == 0) return net::SocketAddress::Unix(c.listen.substr(5));
  const bool v6 = c.listen.find(':') != std::string::npos;
  auto a = net::SocketAddress::Parse(v6 ? absl::StrCat("[", c.listen, "]:", port)
                                        : absl::StrCat(c.listen, ":", port));
  return a.ok() ? *a : net::SocketAddress::Loopback4(port);  // validated by ServerConfig
}

net::ListenOptions SocketOptions(const ServerConfig& c) {
  net::ListenOptions lo;
  lo.connection.accumulator_cap = 1 << 20;
  lo.keepalive.enabled = c.keepalive;
  lo.keepalive.idle = std::chrono::seconds(c.keepalive_idle_s);
  return lo;
}

// The sockets systemd passed, or else the TCP and Unix sockets the
// configuration asks for.
absl::StatusOr<std::vector<net::ListenSocket>> OpenSockets(const ServerConfig& c) {
  const net::ListenOptions lo = SocketOptions(c);
  auto passed = net::ListenSocket::FromSocketActivation(lo);
  if (!passed.ok()) return passed.status();
  if (!passed->empty()) {
    RL_LOG_INFO(
        "socket activation: serving on the %zu socket(s) passed; listen, port and unix "
        "settings are not used",
        passed->size());
    return passed;
  }
  std::vector<net::ListenSocket> out;
  if (c.ServesTcp()) {
    auto s = net::ListenSocket::Open(ListenAddress(c, c.port), lo);
    if (!s.ok()) return s.status();
    out.push_back(std::move(*s));
  }
  if (!c.unix_socket.empty()) {
    auto s = net::ListenSocket::Open(net::SocketAddress::Unix(c.unix_socket), lo);
    if (!s.ok()) return s.status();
    out.push_back(std::move(*s));
  }
  return out;
}

// --pid-file: written (whole, via a rename) once the sockets listen; removed
// when the server exits.
class PidFile {
 public:
  PidFile() = default;
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;
  ~PidFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  absl::Status Write(const std::string& path) {
    const std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (!f || std::fprintf(f, "%d\n", static_cast<int>(::getpid())) < 0 || std::fclose(f) != 0 ||
        std::rename(tmp.c_str(), path.c_str()) != 0) {
      const int e = errno;
      ::unlink(tmp.c_str());
      return absl::InvalidArgumentError(
          absl::StrCat("pid_file ", path, ": cannot write it: ", std::strerror(e)));
    }
    path_ = path;
    return absl::OkStatus();
  }

 private:
  std::string path_;
};

Task<> RunSession(WorkerContext& ctx, uint64_t id, std::atomic<uint32_t>& open_connections) {
  Session* session = ctx.sessions[id]->session.get();
  co_await session->Run();
  open_connections.fetch_sub(1, std::memory_order_relaxed);
  // The entry's handle is this very task: detach it before the entry goes.
  auto it = ctx.sessions.find(id);
  it->second->task.Detach();
  ctx.sessions.erase(it);
  ctx.sessions_changed.NotifyAll();
}

Task<> AcceptLoop(WorkerContext& ctx, net::Listener& listener, Shared& shared) {
  RL_LOG_DEBUG("worker %u accepting on %s", ctx.worker.index(),
               listener.local_address().ToString());
  uint64_t refused_since_log = 0;
  ringline::Clock::time_point last_refuse_log{};
  for (;;) {
    auto conn = co_await listener.Accept();
    if (!conn.ok()) {
      if (conn.error() == ECANCELED) co_return;  // closed: shutting down
      RL_LOG_WARN("accept failed: %s", conn.ErrorString());
      co_await ringline::Sleep(std::chrono::milliseconds(10));
      continue;
    }
    RL_LOG_DEBUG("accepted a connection from %s", conn->peer().ToString());
    // --max-connections: one count for the whole server. Over it, the
    // connection is closed before a byte is read or written.
    const uint32_t limit = shared.config.max_connections;
    if (shared.open_connections.fetch_add(1, std::memory_order_relaxed) >= limit) {
      shared.open_connections.fetch_sub(1, std::memory_order_relaxed);
      ctx.stats->connections_refused.Add();
      ++refused_since_log;
      if (ctx.worker.now() - last_refuse_log >= std::chrono::seconds(1)) {
        RL_LOG_WARN(
            "refused %llu connection(s), the last from %s: %u connections are open "
            "(--max-connections)",
            static_cast<unsigned long long>(refused_since_log), conn->peer().ToString(), limit);
        refused_since_log = 0;
        last_refuse_log = ctx.worker.now();
      }
      conn->abort();
      continue;
    }
    const uint64_t id = ctx.next_session++;
    auto entry = std::make_unique<WorkerContext::SessionEntry>();
    entry->session = std::make_unique<Session>(ctx, std::move(*conn));
    ctx.sessions.emplace(id, std::move(entry));
    ctx.sessions[id]->task = ringline::Spawn(RunSession(ctx, id, shared.open_connections));
  }
}

absl::Status SetUp(WorkerContext& ctx, Shared& shared) {
  std::vector<WriteOrder*> orders;
  for (auto& o : shared.orders) orders.push_back(o.get());
  std::vector<ExportState*> states;
  for (auto& s : shared.states) states.push_back(s.get());
  auto table = ExportTable::Open(ctx.worker, shared.config, orders, states);
  if (!table.ok()) return table.status();
  ctx.exports = std::move(*table);
  ctx.tls = shared.tls;
  ctx.budget = shared.budget.get();
  // Registered (pinned, resident) buffers for requests up to 256 KiB: 128 per
  // worker, as many as one connection keeps in flight. Larger requests (up to
  // --max-request) are rare: unregistered, and resident only once used. A
  // request's buffer also holds an unaligned request's covering range: up to
  // one alignment unit (at most 64 KiB) more on each side. The worker keeps at
  // most four large ones, fewer for a large limit (at most 512 MiB, or one
  // buffer). The pools are the steady-state cache, not a limit: when one is
  // empty a request's buffer is allocated against --buffer-memory, and only
  // when that is spent too does it wait for a pool buffer (request_memory.h).
  auto small = ringline::BufferPool::Create(ctx.worker, {.buffer_size = 256 * 1024, .count = 128});
  if (!small.ok()) return small.status();
  ctx.small = std::move(*small);
  const std::size_t large_size =
      std::size_t{shared.config.max_request} + 2 * nbd::kMaxMinimumBlockSize;
  const auto large_count =
      static_cast<uint32_t>(std::clamp<std::size_t>((std::size_t{512} << 20) / large_size, 1, 4));
  auto large = ringline::BufferPool::Create(ctx.worker, {.buffer_size = large_size,
                                                         .count = large_count,
                                                         .register_with_ring = false,
                                                         .populate = false});
  if (!large.ok()) return large.status();
  ctx.large = std::move(*large);
  auto edges = ringline::BufferPool::Create(
      ctx.worker, {.buffer_size = nbd::kMaxMinimumBlockSize, .count = 32});
  if (!edges.ok()) return edges.status();
  ctx.edges = std::move(*edges);
  return absl::OkStatus();
}

Task<> WorkerMain(ringline::Worker& worker, Shared& shared) {
  WorkerContext ctx(worker, shared.config, shared.stats[worker.index()].get());
  if (auto st = SetUp(ctx, shared); !st.ok()) {
    shared.Fail(st);
    co_return;
  }
  // The connection table must not refuse before --max-connections does (the
  // metrics endpoint's connections share it).
  net::NetOptions no;
  no.max_connections = std::max(no.max_connections, shared.config.max_connections + 64);
  if (auto st = net::Configure(worker, no); !st.ok()) {
    shared.Fail(st);
    co_return;
  }
  const net::ListenOptions lo = SocketOptions(shared.config);
  std::vector<net::Listener> listeners;
  listeners.reserve(shared.sockets.size());  // AcceptLoop holds references into it
  std::vector<ringline::JoinHandle<void>> accepting;
  for (const net::ListenSocket& socket : shared.sockets) {
    auto listener = net::Listener::Bind(socket, lo);
    if (!listener.ok()) {
      shared.Fail(listener.status());
      co_return;
    }
    listeners.push_back(std::move(*listener));
    accepting.push_back(ringline::Spawn(AcceptLoop(ctx, listeners.back(), shared)));
  }
  ringline::JoinHandle<void> metrics;
  if (worker.index() == 0 && shared.config.metrics_port != 0) {
    auto m = net::Listener::Bind(shared.metrics_socket);
    if (!m.ok()) {
      shared.Fail(m.status());
    } else {
      metrics = ringline::Spawn(ServeMetrics(std::move(*m), [&shared] {
        std::vector<std::string> names;
        for (const auto& e : shared.config.exports) names.push_back(e.name);
        std::vector<const WorkerStats*> ws;
        for (const auto& s : shared.stats) ws.push_back(s.get());
        // The metrics socket listens before Runtime::Start returns: a scrape
        // that early has no engine metrics yet.
        ringline::Runtime* rt = nullptr;
        {
          std::lock_guard<std::mutex> lock(shared.mu);
          rt = shared.runtime;
        }
        std::vector<const WriteOrder*> orders;
        for (const auto& o : shared.orders) orders.push_back(o.get());
        std::vector<const ExportState*> states;
        for (const auto& s : shared.states) states.push_back(s.get());
        return RenderPrometheus(names, ws, rt ? rt->Metrics() : ringline::MetricsSnapshot{},
                                orders) +
               RenderExportStates(states);
      }));
    }
  }
  if (worker.index() == 0) {
    RL_LOG_INFO(
        "blockserve %s listening on %s with %u workers; exports: %s", kBlockserveVersion,
        [&] {
          std::string s;
          for (const auto& l : listeners) {
            absl::StrAppend(&s, s.empty() ? "" : ", ", l.local_address().ToString());
          }
          return s;
        }(),
        shared.config.workers,
        [&] {
          std::string s;
          for (const auto& e : shared.config.exports) {
            absl::StrAppend(&s, s.empty() ? "" : ", ", e.name, "=", e.path,
                            e.read_only ? " (ro)" : "");
          }
          return s;
        }());
  }

  // Shutdown: stop accepting, let sessions finish what is in flight, flush.
  co_await worker.stop_token().Cancelled();
  for (auto& a : accepting) a.Abort();
  metrics.Abort();
  for (auto& l : listeners) l.Close();
  ctx.stopping = true;
  for (auto& [id, entry] : ctx.sessions) entry->session->BeginShutdown();
  while (!ctx.sessions.empty()) co_await ctx.sessions_changed.Wait();
  for (auto& e : ctx.exports->exports()) {
    if (e->config.read_only) continue;
    auto r = co_await e->target->Flush();
    if (!r.ok())
      RL_LOG_ERROR("flushing export '%s' at shutdown failed: %s", e->config.name,
                   std::string(r.status.message()));
  }
}

// Every worker serves every export: put the workers where the exports'
// completions arrive, as far as the CPUs allow (docs/architecture.md
// "Placement"), choosing among --cpus when given; log where each runs, and one
// warning per export that pays cross-CPU wake-ups.
std::vector<int> ChooseWorkerCpus(const ServerConfig& c) {
  namespace block = ringline::block;
  std::vector<block::PlacedTarget> targets;
  for (const ExportConfig& e : c.exports) {
    targets.push_back({absl::StrCat("export '", e.name, "' (", e.path, ")"),
                       block::ProbeCompletionPlacement(e.path)});
  }
  const block::CpuList process_cpus = block::AllowedCpus();
  const block::CpuList& choose_from = c.cpus.empty() ? process_cpus : c.cpus;
  constexpr absl::string_view kFix = "--cpus LIST, with --workers at most that many";
  block::WorkerPlacement plan = block::PlaceWorkers(c.workers, choose_from, {}, targets, kFix);
  if (!c.cpus.empty()) {
    // The fix a warning names must come from every CPU the process may use,
    // not only from --cpus (which may be what excludes the local ones): the
    // same assignment, judged against those.
    plan.warnings =
        block::PlaceWorkers(c.workers, process_cpus, plan.worker_cpus, targets, kFix).warnings;
  }
  for (const block::PlacedTarget& t : targets) {
    RL_LOG_INFO("%s: %s", t.name, t.placement.Describe());
  }
  RL_LOG_INFO("placement: %s", plan.summary);
  if (!choose_from.empty() && c.workers > choose_from.size()) {
    RL_LOG_WARN(
        "placement: %u workers on %zu CPU%s (%s): workers share CPUs; give --workers %zu for one "
        "worker per CPU",
        c.workers, choose_from.size(), choose_from.size() == 1 ? "" : "s",
        block::FormatCpuList(choose_from), choose_from.size());
  }
  for (const std::string& w : plan.warnings) RL_LOG_WARN("%s", w);
  return plan.worker_cpus;
}

}  // namespace
}  // namespace blockserve

int main(int argc, char** argv) {
  using namespace blockserve;
  CliOutcome cli = ParseCommandLine(argc, argv);
  if (!cli.config) return cli.exit_code;
  Shared shared;
  shared.config = std::move(*cli.config);
  ringline::LogLevel level = ringline::LogLevel::kInfo;
  ringline::ParseLogLevel(shared.config.log_level, &level);
  ringline::SetLogLevel(level);

  if (auto st = AddEmbeddedDefault(&shared.config); !st.ok()) {
    std::fprintf(stderr, "blockserve: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  if (shared.config.tls != TlsMode::kOff) {
    ringline::net::TlsServerOptions to;
    to.cert_file = shared.config.tls_cert;
    to.key_file = shared.config.tls_key;
    to.psk_file = shared.config.tls_psk;
    to.client_ca_file = shared.config.tls_ca;
    to.require_client_cert = !shared.config.tls_ca.empty();
    auto ctx = ringline::net::TlsServerContext::Create(to);
    if (!ctx.ok()) {
      std::fprintf(stderr, "blockserve: tls: %s\n", std::string(ctx.status().message()).c_str());
      return 1;
    }
    shared.tls = std::move(*ctx);
    if (!shared.config.tls_psk.empty()) {
      RL_LOG_INFO("TLS: %zu pre-shared key identities from %s", shared.tls->psk_identities(),
                  shared.config.tls_psk);
    }
  }
  // Before any thread starts: socket activation edits the environment.
  auto sockets = OpenSockets(shared.config);
  if (!sockets.ok()) {
    std::fprintf(stderr, "blockserve: %s\n", std::string(sockets.status().message()).c_str());
    return 1;
  }
  shared.sockets = std::move(*sockets);  // never empty: Validate() asked for TCP or Unix
  if (shared.config.metrics_port != 0) {
    auto m =
        ringline::net::ListenSocket::Open(ListenAddress(shared.config, shared.config.metrics_port));
    if (!m.ok()) {
      std::fprintf(stderr, "blockserve: metrics_port: %s\n",
                   std::string(m.status().message()).c_str());
      return 1;
    }
    shared.metrics_socket = std::move(*m);
  }

  for (uint32_t i = 0; i < shared.config.workers; ++i) {
    shared.stats.push_back(std::make_unique<WorkerStats>(shared.config.exports.size()));
  }
  shared.budget = std::make_unique<BufferBudget>(shared.config.buffer_memory);
  for (std::size_t i = 0; i < shared.config.exports.size(); ++i) {
    shared.orders.push_back(std::make_unique<WriteOrder>(shared.config.workers));
    auto state = ExportState::Create(shared.config.exports[i]);
    if (!state.ok()) {
      std::fprintf(stderr, "blockserve: %s\n", std::string(state.status().message()).c_str());
      return 1;
    }
    shared.states.push_back(std::move(*state));
  }

  auto signals = ringline::SignalShutdown::Install();
  ringline::Config rc;
  rc.workers = shared.config.workers;
  rc.cpus = ChooseWorkerCpus(shared.config);
  rc.shutdown_grace = std::chrono::milliseconds(shared.config.shutdown_grace_ms);
  if (shared.config.batch_window_us == 0) {
    rc.wait_batch_max = 1;
  } else {
    rc.wait_batch_window = std::chrono::microseconds(shared.config.batch_window_us);
  }
  auto rt = ringline::Runtime::Start(
      rc, [&shared](ringline::Worker& w) -> ringline::Task<> { return WorkerMain(w, shared); });
  if (!rt.ok()) {
    std::fprintf(stderr, "blockserve: %s\n", std::string(rt.status().message()).c_str());
    return 1;
  }
  shared.Started(rt->get());
  signals->Attach((*rt)->shutdown_handle());
  PidFile pid_file;  // removed when main returns
  if (!shared.config.pid_file.empty()) {
    if (auto st = pid_file.Write(shared.config.pid_file); !st.ok()) shared.Fail(st);
  }
  (*rt)->Join();
  if (!shared.first_error.ok()) {
    std::fprintf(stderr, "blockserve: %s\n", std::string(shared.first_error.message()).c_str());
    return 1;
  }
  // A poisoned export could not be flushed at the stop either: the stop was
  // not clean, and the exit status says so (a supervisor sees a failure).
  bool poisoned = false;
  for (const auto& s : shared.states) {
    if (!s->poisoned()) continue;
    poisoned = true;
    std::fprintf(stderr,
                 "blockserve: export '%s' is poisoned (a flush failed with %s): writes "
                 "acknowledged before that failure may not be durable\n",
                 s->name().c_str(), ringline::ErrnoName(s->poison_errno()));
  }
  if (poisoned) return 1;
  RL_LOG_INFO("blockserve stopped");
  return 0;
}
