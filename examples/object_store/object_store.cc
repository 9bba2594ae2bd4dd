// object_store: a key-value object store on an O_DIRECT slab file.
//
//   PUT <key> <n>\n<n bytes>  -> OK | ERR full | ERR io | ERR unavailable
//   GET <key>\n               -> VALUE <n>\n<n bytes> | NOTFOUND
//   DEL <key>\n               -> OK | NOTFOUND
// Keys are 1..250 bytes without spaces; a value fits in one slot.
//
// Thread per core, no locks: each key is owned by one worker (OwnerOf), which
// alone holds its index and writes its slots. A connection is served by the
// worker that accepted it; a request for a key another worker owns is
// forwarded to the owner with SubmitTo and answered when the owner is done.
// "OK" is sent only after the object is on stable storage (FUA), so a SIGTERM,
// kill -9 or power loss never loses an acknowledged write (slab.h).
//
// Usage: object_store --slab PATH [--port N] [--workers N] [--slots N]
//                     [--slot-size BYTES] [--grace-ms N]
// Defaults: a port the kernel picks, one worker per CPU the process may use,
// 1024 slots of 16 KiB per worker, a 5 s grace. --workers, --slots and
// --slot-size shape a new slab; an existing slab keeps its own and must be
// served by as many workers as it was made for.
// Prints "listening on HOST:PORT" once every worker has recovered its slots.
#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ringline/net/net.h"
#include "ringline/ringline.h"
#include "ringline/submit_to.h"
#include "shard.h"

namespace object_store {
namespace {

using ringline::Buffer;
using ringline::Task;
using ringline::Worker;
namespace net = ringline::net;

// What every worker reads; set before the workers start.
struct Shared {
  std::string slab_path;
  Superblock slab{};
  net::ListenSocket socket;
  std::atomic<uint32_t> ready{0};  // workers that recovered their shard
};

// [snippet:store-parser]
struct Request {
  enum class Op : uint8_t { kPut, kGet, kDel } op;
  std::string_view key;  // points into the LineReader: valid until its next line
  uint32_t size = 0;     // PUT: the value bytes after the line
};
constexpr std::size_t kMaxLine = 4 + kMaxKey + 1 + 10;  // "PUT " key " " size

// "PUT <key> <size>", "GET <key>" or "DEL <key>"; nullopt when malformed.
std::optional<Request> ParseRequest(std::string_view line) {
  Request req;
  const std::string_view verb = line.substr(0, 4);
  if (verb == "PUT ") {
    req.op = Request::Op::kPut;
  } else if (verb == "GET ") {
    req.op = Request::Op::kGet;
  } else if (verb == "DEL ") {
    req.op = Request::Op::kDel;
  } else {
    return std::nullopt;
  }
  req.key = line.substr(4);
  if (req.op == Request::Op::kPut) {
    const std::size_t space = req.key.rfind(' ');
    if (space == std::string_view::npos) return std::nullopt;
    const std::string_view n = req.key.substr(space + 1);
    const auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), req.size);
    if (ec != std::errc() || end != n.data() + n.size()) return std::nullopt;
    req.key = req.key.substr(0, space);
  }
  if (req.key.empty() || req.key.size() > kMaxKey || req.key.find(' ') != std::string_view::npos) {
    return std::nullopt;
  }
  return req;
}
// [/snippet:store-parser]

Task<bool> Reply(net::Connection& conn, Outcome o) {
  const char* text = o == Outcome::kOk            ? "OK\n"
                     : o == Outcome::kNotFound    ? "NOTFOUND\n"
                     : o == Outcome::kFull        ? "ERR full\n"
                     : o == Outcome::kUnavailable ? "ERR unavailable\n"
                                                  : "ERR io\n";
  auto sent = co_await conn.send(text);
  co_return sent.ok();
}

// [snippet:store-forward]
// These run on the key's owner, as tasks of that worker (SubmitTo). What
// crosses between workers are values: the key and the bytes, copied. A pool
// Buffer belongs to its worker (its pool, its ring registration) and never
// crosses.
Task<Outcome> PutOnOwner(std::string key, std::vector<uint8_t> value) {
  Shard& shard = *Shard::Of(Worker::Current());
  Buffer buf = co_await shard.buffers().Acquire();
  std::copy(value.begin(), value.end(), buf.data());  // (an empty vector has no data())
  buf.set_size(value.size());
  const Outcome o = co_await shard.Put(key, std::move(buf));
  co_return o;
}

struct Value {
  Outcome outcome = Outcome::kNotFound;
  std::vector<uint8_t> bytes;
};
Task<Value> GetOnOwner(std::string key) {
  Shard::Got got = co_await Shard::Of(Worker::Current())->Get(key);
  Value v{got.outcome, {}};
  if (got.outcome == Outcome::kOk)
    v.bytes.assign(got.value.data(), got.value.data() + got.value.size());
  co_return v;
}

Task<Outcome> DeleteOnOwner(std::string key) {
  const Outcome o = co_await Shard::Of(Worker::Current())->Delete(key);
  co_return o;
}
// [/snippet:store-forward]

// [snippet:store-handle]
// Serves one request; false when the connection must close.
Task<bool> Handle(net::Connection& conn, const Request& req) {
  Worker& self = Worker::Current();
  Shard& shard = *Shard::Of(self);
  const std::string_view key = req.key;
  const uint32_t owner = OwnerOf(key, self.worker_count());
  const bool local = owner == self.index();
  Outcome o = Outcome::kUnavailable;  // until an owner answers
  if (req.op == Request::Op::kPut) {
    if (req.size > shard.max_value()) {
      co_await conn.send("ERR too large\n");  // the value is not read: close
      co_return false;
    }
    ringline::IoResult in{};
    if (local) {  // socket -> registered buffer -> disk, no copy
      Buffer buf = co_await shard.buffers().Acquire();
      if (req.size > 0) in = co_await conn.read_exact(buf, req.size);
      if (!in.ok()) co_return false;  // the client left mid-value: nothing stored
      o = co_await shard.Put(key, std::move(buf));
    } else {
      std::vector<uint8_t> value(req.size);
      if (req.size > 0) in = co_await conn.read_exact(std::span<uint8_t>(value));
      if (!in.ok()) co_return false;
      // Named, not built inside the co_await (g++ 12: a temporary holding a
      // std::string there can be copied bitwise).
      auto put = [k = std::string(key), v = std::move(value)]() mutable {
        return PutOnOwner(std::move(k), std::move(v));
      };
      auto r = co_await ringline::SubmitTo(owner, std::move(put));
      if (r.ok()) o = *r;
    }
  } else if (req.op == Request::Op::kDel) {
    if (local) {
      o = co_await shard.Delete(key);
    } else {
      auto del = [k = std::string(key)]() mutable { return DeleteOnOwner(std::move(k)); };
      auto r = co_await ringline::SubmitTo(owner, std::move(del));
      if (r.ok()) o = *r;
    }
  } else if (local) {  // GET: disk -> registered buffer -> socket (zero-copy send)
    Shard::Got got = co_await shard.Get(key);
    o = got.outcome;
    if (o == Outcome::kOk) {
      char line[32];
      const int n = std::snprintf(line, sizeof(line), "VALUE %zu\n", got.value.size());
      auto sent = co_await conn.send_zc(std::span(reinterpret_cast<const uint8_t*>(line), n),
                                        std::move(got.value));
      co_return sent.result.ok();
    }
  } else {
    auto get = [k = std::string(key)]() mutable { return GetOnOwner(std::move(k)); };
    auto r = co_await ringline::SubmitTo(owner, std::move(get));
    if (r.ok()) o = r->outcome;
    if (o == Outcome::kOk) {
      char line[32];
      const int n = std::snprintf(line, sizeof(line), "VALUE %zu\n", r->bytes.size());
      co_await conn.send(std::string_view(line, n));
      auto sent = co_await conn.send(std::span<const uint8_t>(r->bytes));
      co_return sent.ok();
    }
  }
  const bool sent = co_await Reply(conn, o);
  co_return sent;
}
// [/snippet:store-handle]

Task<> ServeConnection(net::Connection conn, ringline::CancellationToken stop) {
  net::LineReader lines({.max_line = kMaxLine});
  while (!stop.cancelled()) {  // a stop ends the connection between requests
    auto got = co_await ringline::WithCancellation(stop, lines.Next(conn));
    if (!got) break;
    net::Result<std::string_view>& line = *got;
    if (!line.ok()) {
      if (line.error() == EMSGSIZE) co_await conn.send("ERR bad request\n");
      break;
    }
    const std::optional<Request> req = ParseRequest(*line);
    if (!req) {
      co_await conn.send("ERR bad request\n");
      break;
    }
    const bool keep_open = co_await Handle(conn, *req);
    if (!keep_open) break;
  }
  co_await conn.close();
}

// [snippet:store-main]
Task<absl::Status> WorkerMain(Worker& worker, Shared& shared) {
  auto shard = Shard::Install(worker, shared.slab_path, shared.slab);
  if (!shard.ok()) co_return shard.status();  // stops every worker; main() reports it
  const absl::Status recovered = co_await (*shard)->Recover();
  if (!recovered.ok()) co_return recovered;
  // Every shard must be ready before a request can be forwarded to it.
  shared.ready.fetch_add(1);
  while (shared.ready.load() < worker.worker_count() && !worker.stop_requested()) {
    co_await ringline::Sleep(std::chrono::milliseconds(1));
  }
  auto listener = net::Listener::Bind(shared.socket);
  if (!listener.ok()) co_return listener.status();
  ringline::TaskGroup connections;
  ringline::CancellationToken stop = worker.stop_token();
  for (;;) {
    auto conn = co_await ringline::WithCancellation(stop, listener->Accept());
    if (!conn) break;
    if (!conn->ok()) continue;
    connections.Spawn(ServeConnection(std::move(**conn), stop));
  }
  listener->Close();
  co_await connections.Wait();
  co_return absl::OkStatus();
}
// [/snippet:store-main]

}  // namespace
}  // namespace object_store

int main(int argc, char** argv) {
  using namespace object_store;
  Shared shared;
  uint32_t workers = 0, slots = 1024, slot_size = 16384;  // 0: one per CPU we may use
  int port = 0, grace_ms = 5000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    const long v = std::strtol(argv[i + 1], nullptr, 10);
    if (flag == "--slab") {
      shared.slab_path = argv[i + 1];
    } else if (flag == "--port") {
      port = static_cast<int>(v);
    } else if (flag == "--workers") {
      workers = static_cast<uint32_t>(v);
    } else if (flag == "--slots") {
      slots = static_cast<uint32_t>(v);
    } else if (flag == "--slot-size") {
      slot_size = static_cast<uint32_t>(v);
    } else if (flag == "--grace-ms") {
      grace_ms = static_cast<int>(v);
    } else {
      shared.slab_path.clear();
      break;
    }
  }
  if (shared.slab_path.empty() || slots == 0) {
    std::fprintf(stderr,
                 "usage: %s --slab PATH [--port N] [--workers N] [--slots N>0] "
                 "[--slot-size BYTES] [--grace-ms N]\n",
                 argv[0]);
    return 2;
  }
  if (workers == 0) workers = static_cast<uint32_t>(ringline::AllowedCpus().size());
  auto sb = PrepareSlab(shared.slab_path, workers, slots, slot_size);
  auto socket = net::ListenSocket::Open(net::SocketAddress::Loopback4(static_cast<uint16_t>(port)));
  if (!sb.ok() || !socket.ok()) {
    std::fprintf(stderr, "object_store: %s\n",
                 (!sb.ok() ? sb.status() : socket.status()).ToString().c_str());
    return 1;
  }
  shared.slab = *sb;
  shared.socket = *socket;
  auto signals = ringline::SignalShutdown::Install();
  ringline::Config config;
  config.workers = workers;
  config.shutdown_grace = std::chrono::milliseconds(grace_ms);
  auto rt =
      ringline::Runtime::Start(config, [&shared](Worker& w) { return WorkerMain(w, shared); });
  if (!rt.ok()) {
    std::fprintf(stderr, "object_store: %s\n", rt.status().ToString().c_str());
    return 1;
  }
  signals->Attach((*rt)->shutdown_handle());
  // Serve once every shard has recovered, or report why a worker could not.
  while (shared.ready.load() < (*rt)->worker_count() && !(*rt)->shutdown_handle().requested()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (shared.ready.load() < (*rt)->worker_count()) {
    const absl::Status st = (*rt)->Wait();
    std::fprintf(stderr, "object_store: %s\n", st.ok() ? "stopped" : st.ToString().c_str());
    return st.ok() ? 0 : 1;
  }
  std::printf("listening on %s\n", shared.socket.address().ToString().c_str());
  std::fflush(stdout);
  if (absl::Status st = (*rt)->Wait(); !st.ok()) {
    std::fprintf(stderr, "object_store: %s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}
