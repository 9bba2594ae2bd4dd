// net_echo_server: echoes every byte back, one handler task per connection on
// the worker that accepted it (SO_REUSEPORT listener per worker).
//
//   net_echo_server --listen 127.0.0.1:7000 --workers 1 --cpus 0 --zero-copy on
//
// --zero-copy on: every echoed chunk is received into an owned Buffer and sent
// back with send(Buffer) (SENDMSG_ZC even for small chunks: threshold 0), up to
// --zc-inflight sends in flight per connection; off: copied sends from one
// buffer. Runs until SIGINT/SIGTERM, then prints its counters as JSON.
#include <cstdio>
#include <deque>

#include "bench_args.h"
#include "ringline/net/net.h"
#include "ringline/ringline.h"

using namespace ringline;
using namespace ringline::net;

namespace {

struct Settings {
  bool zero_copy = false;
  std::size_t chunk = 64 * 1024;
  std::size_t inflight = 16;
};

Task<> EchoCopy(Connection c, std::size_t chunk) {
  std::vector<uint8_t> buf(chunk);
  for (;;) {
    auto n = co_await c.read_some(buf);
    if (!n) co_return;
    const IoResult sent = co_await c.send(std::span<const uint8_t>(buf.data(), *n));
    if (!sent.ok()) co_return;
  }
}

Task<> SendOne(Connection* c, Buffer b) { co_await c->send(std::move(b)); }

Task<> EchoZeroCopy(Connection c, std::size_t chunk, std::size_t inflight) {
  // Spawned send tasks are admitted to the send queue in spawn order (FIFO),
  // so the echo stays in order while several zero-copy sends are in flight.
  std::deque<JoinHandle<void>> sends;
  for (;;) {
    Buffer b = Buffer::Allocate(chunk);
    auto n = co_await c.read_some(b.whole());
    if (!n) break;
    b.set_size(*n);
    sends.push_back(Spawn(SendOne(&c, std::move(b))));
    while (sends.size() >= inflight || (!sends.empty() && sends.front().done())) {
      co_await sends.front();
      sends.pop_front();
    }
  }
  while (!sends.empty()) {
    co_await sends.front();
    sends.pop_front();
  }
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  auto addr = SocketAddress::Parse(args.Str("listen", "127.0.0.1:7000"));
  if (!addr.ok()) {
    std::fprintf(stderr, "%s\n", std::string(addr.status().message()).c_str());
    return 2;
  }
  Settings s;
  s.zero_copy = args.Bool("zero-copy", false);
  s.chunk = static_cast<std::size_t>(args.Int("chunk", 64 * 1024));
  s.inflight = static_cast<std::size_t>(args.Int("zc-inflight", 16));
  Config config;
  config.workers = static_cast<uint32_t>(args.Int("workers", 1));
  config.cpus = args.Cpus("cpus");
  auto signals = SignalShutdown::Install();
  const SocketAddress listen = *addr;
  auto rt = Runtime::Start(config, [listen, s](Worker& w) -> Task<> {
    ServeOptions so;
    so.listen.connection.zero_copy = s.zero_copy;
    so.listen.connection.zero_copy_threshold = 0;
    so.listen.connection.zero_copy_local = true;  // the benchmark runs over loopback
    auto st = co_await Serve(
        listen, so,
        [s](Connection c) -> Task<> {
          if (s.zero_copy) return EchoZeroCopy(std::move(c), s.chunk, s.inflight);
          return EchoCopy(std::move(c), s.chunk);
        },
        w.stop_token(),
        [&w](const SocketAddress& a) {
          if (w.index() == 0) {
            std::fprintf(stderr, "listening on %s\n", a.ToString().c_str());
            std::fflush(stderr);
          }
        });
    if (!st.ok()) std::fprintf(stderr, "serve: %s\n", std::string(st.message()).c_str());
  });
  if (!rt.ok()) {
    std::fprintf(stderr, "%s\n", std::string(rt.status().message()).c_str());
    return 1;
  }
  signals->Attach((*rt)->shutdown_handle());
  (*rt)->Join();
  std::printf("{");
  bool first = true;
  for (const auto& [name, v] : NetMetricsTotals()) {
    std::printf("%s\"%s\": %llu", first ? "" : ", ", name.c_str(),
                static_cast<unsigned long long>(v));
    first = false;
  }
  std::printf("}\n");
  return 0;
}
