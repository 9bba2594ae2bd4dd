// net_load_client: opens --connections to an echo server, keeps --depth
// messages of --size bytes in flight on each, for --duration seconds, and
// prints one JSON object: throughput, latency percentiles (send to echo fully
// received) and CPU per message for itself and, with --server-pid, the server.
//
//   net_load_client --connect 127.0.0.1:7000 --connections 16 --size 4096
//       --depth 4 --duration 3 --workers 1 --cpus 1 --server-pid 1234
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <deque>
#include <fstream>
#include <mutex>
#include <thread>

#include "bench_args.h"
#include "ringline/net/net.h"
#include "ringline/ringline.h"

using namespace ringline;
using namespace ringline::net;
using namespace std::chrono_literals;

namespace {

struct Shared {
  std::mutex mu;
  Histogram::Snapshot latency;
  uint64_t messages = 0;
  uint64_t errors = 0;
  std::atomic<uint32_t> workers_done{0};
};

struct Params {
  SocketAddress server;
  uint32_t connections = 1;
  std::size_t size = 64;
  uint32_t depth = 1;
  Clock::time_point start;
  Clock::time_point end;
};

Task<> OneConnection(const Params& p, Histogram& hist, uint64_t& messages, uint64_t& errors) {
  auto c = co_await Connect(p.server, 5s);
  if (!c) {
    ++errors;
    co_return;
  }
  std::vector<uint8_t> msg(p.size, 'm');
  std::vector<uint8_t> back(p.size);
  std::deque<Clock::time_point> sent;
  while (Clock::now() < p.start) co_await Sleep(1ms);
  for (uint32_t i = 0; i < p.depth; ++i) {
    sent.push_back(Clock::now());
    co_await c->send(msg);
  }
  while (!sent.empty()) {
    IoResult r = co_await c->read_exact(std::span<uint8_t>(back));
    if (!r.ok()) {
      ++errors;
      co_return;
    }
    const auto now = Clock::now();
    hist.Record(static_cast<uint64_t>((now - sent.front()).count()));
    sent.pop_front();
    ++messages;
    if (now < p.end) {
      sent.push_back(now);
      co_await c->send(msg);
    }
  }
  co_await c->close();
}

uint64_t ProcCpuNs(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto rp = s.rfind(')');
  if (rp == std::string::npos) return 0;
  // Fields after the command: state(3) ... utime(14) stime(15).
  std::vector<std::string> fields;
  std::size_t pos = rp + 2;
  while (pos < s.size()) {
    const auto sp = s.find(' ', pos);
    fields.push_back(s.substr(pos, sp - pos));
    if (sp == std::string::npos) break;
    pos = sp + 1;
  }
  if (fields.size() < 13) return 0;
  const uint64_t ticks = std::stoull(fields[11]) + std::stoull(fields[12]);
  return ticks * (1'000'000'000ull / static_cast<uint64_t>(sysconf(_SC_CLK_TCK)));
}

uint64_t SelfCpuNs() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1'000'000'000ull +
         static_cast<uint64_t>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  auto addr = SocketAddress::Parse(args.Str("connect", "127.0.0.1:7000"));
  if (!addr.ok()) {
    std::fprintf(stderr, "%s\n", std::string(addr.status().message()).c_str());
    return 2;
  }
  Params p;
  p.server = *addr;
  p.connections = static_cast<uint32_t>(args.Int("connections", 1));
  p.size = static_cast<std::size_t>(args.Int("size", 64));
  p.depth = static_cast<uint32_t>(args.Int("depth", 1));
  const double duration = args.Num("duration", 3);
  const pid_t server_pid = static_cast<pid_t>(args.Int("server-pid", 0));
  Config config;
  config.workers = static_cast<uint32_t>(args.Int("workers", 1));
  config.cpus = args.Cpus("cpus");
  const uint32_t workers = config.workers;
  // Connections are established during the first 0.5 s; measurement starts after.
  p.start = Clock::now() + 500ms;
  p.end = p.start +
          std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration));

  Shared shared;
  auto rt = Runtime::Start(config, [&shared, p, workers](Worker& w) -> Task<> {
    Histogram hist;
    uint64_t messages = 0, errors = 0;
    std::vector<Task<>> conns;
    for (uint32_t i = w.index(); i < p.connections; i += workers) {
      conns.push_back(OneConnection(p, hist, messages, errors));
    }
    co_await WhenAll(std::move(conns));
    {
      std::lock_guard<std::mutex> lock(shared.mu);
      shared.latency.Merge(hist.Read());
      shared.messages += messages;
      shared.errors += errors;
    }
    shared.workers_done.fetch_add(1);
  });
  if (!rt.ok()) {
    std::fprintf(stderr, "%s\n", std::string(rt.status().message()).c_str());
    return 1;
  }
  while (Clock::now() < p.start) std::this_thread::sleep_for(1ms);
  const uint64_t cpu0 = SelfCpuNs();
  const uint64_t scpu0 = server_pid ? ProcCpuNs(server_pid) : 0;
  const auto t0 = Clock::now();
  while (shared.workers_done.load() < workers) std::this_thread::sleep_for(1ms);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  const uint64_t cpu = SelfCpuNs() - cpu0;
  const uint64_t scpu = server_pid ? ProcCpuNs(server_pid) - scpu0 : 0;
  (*rt)->Shutdown();
  (*rt)->Join();

  const double msgs = static_cast<double>(shared.messages);
  const Histogram::Snapshot& h = shared.latency;
  std::printf(
      "{\"connections\": %u, \"size\": %zu, \"depth\": %u, \"duration_s\": %.2f, "
      "\"zero_copy\": \"%s\", \"messages\": %" PRIu64 ", \"errors\": %" PRIu64
      ", \"msgs_per_s\": %.0f, \"mib_per_s\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
      "\"p999_us\": %.1f, \"client_cpu_ns_per_msg\": %.0f, \"server_cpu_ns_per_msg\": %.0f}\n",
      p.connections, p.size, p.depth, secs, args.Str("zero-copy", "n/a").c_str(), shared.messages,
      shared.errors, msgs / secs, msgs * static_cast<double>(p.size) / secs / (1 << 20),
      static_cast<double>(h.Quantile(0.5)) / 1e3, static_cast<double>(h.Quantile(0.99)) / 1e3,
      static_cast<double>(h.Quantile(0.999)) / 1e3, msgs ? static_cast<double>(cpu) / msgs : 0,
      msgs && server_pid ? static_cast<double>(scpu) / msgs : 0);
  return shared.errors ? 1 : 0;
}
