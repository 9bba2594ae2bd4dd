// blockserve: an NBD server on ringline. See cli.cc for the command line.
#include <cstdio>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "blockserve/cli.h"
#include "blockserve/export_table.h"
#include "blockserve/metrics_http.h"
#include "blockserve/session.h"
#include "blockserve/stats.h"
#include "blockserve/worker_context.h"
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
  std::vector<std::unique_ptr<WorkerStats>> stats;  // one per worker, outlive them
  std::shared_ptr<net::TlsServerContext> tls;
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

Task<> RunSession(WorkerContext& ctx, uint64_t id) {
  Session* session = ctx.sessions[id]->session.get();
  co_await session->Run();
  // The entry's handle is this very task: detach it before the entry goes.
  auto it = ctx.sessions.find(id);
  it->second->task.Detach();
  ctx.sessions.erase(it);
  ctx.sessions_changed.NotifyAll();
}

Task<> AcceptLoop(WorkerContext& ctx, net::Listener& listener) {
  RL_LOG_DEBUG("worker %u accepting", ctx.worker.index());
  for (;;) {
    auto conn = co_await listener.Accept();
    if (!conn.ok()) {
      if (conn.error() == ECANCELED) co_return;  // closed: shutting down
      RL_LOG_WARN("accept failed: %s", conn.ErrorString());
      co_await ringline::Sleep(std::chrono::milliseconds(10));
      continue;
    }
    RL_LOG_DEBUG("accepted a connection from %s", conn->peer().ToString());
    const uint64_t id = ctx.next_session++;
    auto entry = std::make_unique<WorkerContext::SessionEntry>();
    entry->session = std::make_unique<Session>(ctx, std::move(*conn));
    ctx.sessions.emplace(id, std::move(entry));
    ctx.sessions[id]->task = ringline::Spawn(RunSession(ctx, id));
  }
}

absl::Status SetUp(WorkerContext& ctx, Shared& shared) {
  auto table = ExportTable::Open(ctx.worker, shared.config);
  if (!table.ok()) return table.status();
  ctx.exports = std::move(*table);
  ctx.tls = shared.tls;
  // Registered (pinned, resident) buffers for requests up to 256 KiB: 128 per
  // worker, as many as one connection keeps in flight; beyond that requests
  // wait for a buffer in FIFO order. Larger requests (up to 32 MiB) are rare:
  // unregistered, and resident only once used.
  auto small = ringline::BufferPool::Create(ctx.worker, {.buffer_size = 256 * 1024, .count = 128});
  if (!small.ok()) return small.status();
  ctx.small = std::move(*small);
  auto large = ringline::BufferPool::Create(ctx.worker, {.buffer_size = nbd::kMaxPayloadLength,
                                                         .count = 4,
                                                         .register_with_ring = false,
                                                         .populate = false});
  if (!large.ok()) return large.status();
  ctx.large = std::move(*large);
  return absl::OkStatus();
}

Task<> WorkerMain(ringline::Worker& worker, Shared& shared) {
  WorkerContext ctx(worker, shared.config, shared.stats[worker.index()].get());
  if (auto st = SetUp(ctx, shared); !st.ok()) {
    shared.Fail(st);
    co_return;
  }
  net::ListenOptions lo;
  lo.connection.accumulator_cap = 1 << 20;
  // Write payloads from 4 KiB up are received straight into their aligned
  // block buffer (Session::AdaptReceive).
  lo.connection.direct_read_threshold = Session::kDirectPayloadBytes;
  auto listener = net::Listener::Bind(ListenAddress(shared.config, shared.config.port), lo);
  if (!listener.ok()) {
    shared.Fail(listener.status());
    co_return;
  }
  auto accepting = ringline::Spawn(AcceptLoop(ctx, *listener));
  ringline::JoinHandle<void> metrics;
  if (worker.index() == 0 && shared.config.metrics_port != 0) {
    auto m = net::Listener::Bind(ListenAddress(shared.config, shared.config.metrics_port));
    if (!m.ok()) {
      shared.Fail(m.status());
    } else {
      metrics = ringline::Spawn(ServeMetrics(std::move(*m), [&shared] {
        std::vector<std::string> names;
        for (const auto& e : shared.config.exports) names.push_back(e.name);
        std::vector<const WorkerStats*> ws;
        for (const auto& s : shared.stats) ws.push_back(s.get());
        return RenderPrometheus(names, ws, shared.runtime->Metrics());
      }));
    }
  }
  if (worker.index() == 0) {
    RL_LOG_INFO("blockserve listening on %s:%u with %u workers; exports: %s", shared.config.listen,
                shared.config.port, shared.config.workers, [&] {
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
  accepting.Abort();
  metrics.Abort();
  listener->Close();
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
    to.client_ca_file = shared.config.tls_ca;
    to.require_client_cert = !shared.config.tls_ca.empty();
    auto ctx = ringline::net::TlsServerContext::Create(to);
    if (!ctx.ok()) {
      std::fprintf(stderr, "blockserve: tls: %s\n", std::string(ctx.status().message()).c_str());
      return 1;
    }
    shared.tls = std::move(*ctx);
  }
  for (uint32_t i = 0; i < shared.config.workers; ++i) {
    shared.stats.push_back(std::make_unique<WorkerStats>(shared.config.exports.size()));
  }

  auto signals = ringline::SignalShutdown::Install();
  ringline::Config rc;
  rc.workers = shared.config.workers;
  rc.shutdown_grace = std::chrono::milliseconds(shared.config.shutdown_grace_ms);
  auto rt = ringline::Runtime::Start(
      rc, [&shared](ringline::Worker& w) -> ringline::Task<> { return WorkerMain(w, shared); });
  if (!rt.ok()) {
    std::fprintf(stderr, "blockserve: %s\n", std::string(rt.status().message()).c_str());
    return 1;
  }
  shared.Started(rt->get());
  signals->Attach((*rt)->shutdown_handle());
  (*rt)->Join();
  if (!shared.first_error.ok()) {
    std::fprintf(stderr, "blockserve: %s\n", std::string(shared.first_error.message()).c_str());
    return 1;
  }
  RL_LOG_INFO("blockserve stopped");
  return 0;
}
