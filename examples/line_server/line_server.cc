// line_server: a command server over TCP, one request per line.
//
//   PING            -> PONG
//   ECHO <text>     -> <text>
//   SUM <n> <n> ... -> the sum (signed 64-bit), or ERR
//   WORKER          -> the index of the worker serving this connection
//   STATS           -> requests this worker has served
//   QUIT            -> BYE, then the server closes the connection
// Lines end with LF or CRLF. Anything else gets "ERR ...". A line longer than
// kMaxLine gets "ERR line too long" and the connection is closed (the stream
// cannot be resynchronised).
//
// Usage: line_server [--port N] [--workers N] [--grace-ms N]
// (defaults: a port the kernel picks, one worker per CPU, a 5 s grace).
// Prints "listening on HOST:PORT" once the socket listens. SIGTERM/SIGINT:
// stop accepting, answer the requests already being served, close every
// connection at a reply boundary, exit 0.
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "ringline/net/net.h"
#include "ringline/ringline.h"

namespace {

using ringline::Task;
using ringline::Worker;
namespace net = ringline::net;

constexpr std::size_t kMaxLine = 512;

// [snippet:line-worker-state]
// Per-worker state: one instance per worker, worker.Local<WorkerState>(),
// created on first use and owned by the worker, which destroys it after every
// one of its tasks. Only the worker's own thread touches it: no lock.
struct WorkerState {
  uint64_t requests = 0;  // served by this worker
};
// [/snippet:line-worker-state]

// Appends the reply to `line` to `out`; false when the connection must close.
bool Execute(std::string_view line, WorkerState& state, std::string& out) {
  ++state.requests;
  const std::size_t space = line.find(' ');
  const std::string_view cmd = line.substr(0, space);
  const std::string_view args = space == std::string_view::npos ? "" : line.substr(space + 1);
  if (cmd == "PING") {
    out += "PONG\n";
  } else if (cmd == "ECHO") {
    out.append(args).append("\n");
  } else if (cmd == "SUM") {
    int64_t sum = 0;
    for (std::string_view rest = args; !rest.empty();) {
      const std::size_t end = std::min(rest.find(' '), rest.size());
      int64_t v = 0;
      const auto [p, ec] = std::from_chars(rest.data(), rest.data() + end, v);
      if (ec != std::errc() || p != rest.data() + end || __builtin_add_overflow(sum, v, &sum)) {
        out.append("ERR bad number '").append(rest.substr(0, end)).append("'\n");
        return true;
      }
      rest.remove_prefix(std::min(end + 1, rest.size()));
    }
    out.append(std::to_string(sum)).append("\n");
  } else if (cmd == "WORKER") {
    out.append(std::to_string(Worker::Current().index())).append("\n");
  } else if (cmd == "STATS") {
    out.append("requests ").append(std::to_string(state.requests)).append("\n");
  } else if (cmd == "QUIT") {
    out += "BYE\n";
    return false;
  } else {
    out.append("ERR unknown command '").append(cmd).append("'\n");
  }
  return true;
}

// [snippet:line-serve]
Task<> ServeConnection(net::Connection conn, WorkerState& state, ringline::CancellationToken stop) {
  // A LineReader is a parser for conn.recv: it finds each line in the bytes
  // received so far and copies it once into its own storage (at most kMaxLine
  // bytes, reused), so nothing is allocated per request.
  net::LineReader lines({.max_line = kMaxLine});
  std::string reply;           // reused: grows to the largest reply once
  while (!stop.cancelled()) {  // a stop ends the connection at a reply boundary
    // Racing the receive against the stop token: a stop that comes while we
    // wait for a line ends it too (an abandoned receive consumes nothing).
    auto got = co_await ringline::WithCancellation(stop, lines.Next(conn));
    if (!got) break;                             // shutting down
    net::Result<std::string_view>& line = *got;  // g++ 12: name results before testing them
    if (!line.ok()) {
      if (line.error() == EMSGSIZE) co_await conn.send("ERR line too long\n");
      break;  // end of stream, a truncated line, or a socket error
    }
    reply.clear();
    const bool keep_open = Execute(*line, state, reply);  // *line is valid until the next Next
    auto sent = co_await conn.send(reply);
    if (!sent.ok() || !keep_open) break;
  }
  co_await conn.close();  // graceful: queued replies leave first, then FIN
}
// [/snippet:line-serve]

struct Options {
  uint16_t port = 0;
  uint32_t workers = 0;  // Config's default: one per CPU this process may use
  int grace_ms = 5000;   // Config's default
};

// [snippet:line-main]
// A main that can fail: an error stops every worker, and Runtime::Wait()
// returns it.
Task<absl::Status> WorkerMain(Worker& worker, const net::ListenSocket& socket) {
  auto listener = net::Listener::Bind(socket);
  if (!listener.ok()) co_return listener.status();
  WorkerState& state = worker.Local<WorkerState>();
  ringline::TaskGroup connections;  // one task per connection
  ringline::CancellationToken stop = worker.stop_token();
  for (;;) {
    auto conn = co_await ringline::WithCancellation(stop, listener->Accept());
    if (!conn) break;  // stop requested
    if (!conn->ok()) continue;
    connections.Spawn(ServeConnection(std::move(**conn), state, stop));
  }
  listener->Close();
  co_await connections.Wait();  // each ends at a reply boundary (or at the grace's end)
  co_return absl::OkStatus();
}
// [/snippet:line-main]

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    const long v = std::strtol(argv[i + 1], nullptr, 10);
    if (flag == "--port") {
      opt.port = static_cast<uint16_t>(v);
    } else if (flag == "--workers") {
      opt.workers = static_cast<uint32_t>(v);
    } else if (flag == "--grace-ms") {
      opt.grace_ms = static_cast<int>(v);
    } else {
      std::fprintf(stderr, "usage: %s [--port N] [--workers N] [--grace-ms N]\n", argv[0]);
      return 2;
    }
  }
  // One listening socket for the process, opened before the workers start, so
  // a port in use fails here and every worker accepts on the same socket.
  auto socket = net::ListenSocket::Open(net::SocketAddress::Loopback4(opt.port));
  if (!socket.ok()) {
    std::fprintf(stderr, "line_server: %s\n", socket.status().ToString().c_str());
    return 1;
  }
  auto signals = ringline::SignalShutdown::Install();  // before the threads start
  ringline::Config config;
  config.workers = opt.workers;
  config.shutdown_grace = std::chrono::milliseconds(opt.grace_ms);
  const net::ListenSocket& listen = *socket;
  auto rt =
      ringline::Runtime::Start(config, [&listen](Worker& w) { return WorkerMain(w, listen); });
  if (!rt.ok()) {
    std::fprintf(stderr, "line_server: %s\n", rt.status().ToString().c_str());
    return 1;
  }
  signals->Attach((*rt)->shutdown_handle());
  std::printf("listening on %s\n", listen.address().ToString().c_str());
  std::fflush(stdout);
  if (absl::Status st = (*rt)->Wait(); !st.ok()) {
    std::fprintf(stderr, "line_server: %s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}
