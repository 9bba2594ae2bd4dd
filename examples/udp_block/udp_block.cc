// udp_block: reads and writes byte ranges of a file over UDP, one datagram per
// request and one per reply.
//
//   request: magic u32 | op u8 (1 read, 2 write) | 3 zero bytes | id u64 |
//            offset u64 | length u32 | write data (length bytes)
//   reply:   magic u32 | status i32 (0 or -errno) | id u64 | read data
// Little endian; length is 1..kMaxData. The client retries a request whose
// reply does not come (UDP may drop either); a write is acknowledged only
// once it is on stable storage (FUA), so a retried write is idempotent.
//
// Every worker binds its own SO_REUSEPORT socket on the one port (the kernel
// spreads clients over them by their address) and opens its own handle on the
// file. The file goes through the page cache (any offset, any length; FUA is
// RWF_DSYNC), which keeps every worker's reads coherent with every write.
//
// Usage: udp_block --file PATH [--port N] [--workers N] [--size BYTES]
// Creates the file (sparse, --size bytes, default 64 MiB) if it is missing.
// Prints "listening on HOST:PORT" once every worker receives.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "ringline/block/direct_file.h"
#include "ringline/net/net.h"
#include "ringline/ringline.h"

namespace {

using ringline::Buffer;
using ringline::Task;
using ringline::Worker;
namespace net = ringline::net;
namespace block = ringline::block;

constexpr uint32_t kMagic = 0x42554c52;  // "RLUB"
constexpr std::size_t kRequestHeader = 28;
constexpr std::size_t kReplyHeader = 16;
constexpr uint32_t kMaxData = 1024;
constexpr uint32_t kMaxInFlight = 64;  // requests one worker serves at once

struct Shared {
  std::string path;
  uint64_t size = 64 << 20;
  uint32_t workers = 0;            // Config's default: one per CPU this process may use
  std::atomic<uint16_t> port{0};   // chosen by worker 0's bind
  std::atomic<uint32_t> ready{0};  // workers receiving
};

// Per-worker state, worker.EmplaceLocal<WorkerState>(): owned by the worker
// and destroyed after every task of the worker (a request task destroyed at
// the end of the shutdown grace may still hold a buffer of `pool`). The socket
// is not here but in WorkerMain's frame: network objects must go before the
// network layer's own per-worker state, which a local may outlive.
struct WorkerState {
  std::unique_ptr<block::DirectFile> file;
  std::unique_ptr<ringline::BufferPool> pool;
  uint32_t in_flight = 0;
  ringline::WaitList request_done;
};

struct Request {
  uint8_t op = 0;
  uint64_t id = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
};

// [snippet:udp-serve]
// One datagram in, one out. The reply is built on this task's frame and
// copied by send_to; the file's buffer goes back to the pool when `r` dies.
Task<> ServeRequest(WorkerState& w, net::UdpSocket& socket, net::Datagram d) {
  std::array<uint8_t, kReplyHeader + kMaxData> reply{};
  Request q;
  int32_t status = 0;
  uint32_t data_bytes = 0;
  uint32_t magic = 0;
  if (d.data.size() >= kRequestHeader) {
    std::memcpy(&magic, d.data.data(), 4);
    q.op = d.data[4];
    std::memcpy(&q.id, d.data.data() + 8, 8);
    std::memcpy(&q.offset, d.data.data() + 16, 8);
    std::memcpy(&q.length, d.data.data() + 24, 4);
  }
  const std::size_t payload = d.data.size() - std::min(d.data.size(), kRequestHeader);
  if (magic != kMagic || q.length == 0 || q.length > kMaxData || (q.op != 1 && q.op != 2) ||
      (q.op == 2 && payload != q.length)) {
    status = -EINVAL;  // malformed, or a write whose data was cut
  } else {
    Buffer buf = co_await w.pool->Acquire();
    if (q.op == 2) {
      std::memcpy(buf.data(), d.data.data() + kRequestHeader, q.length);
      buf.set_size(q.length);
    }
    block::BlockResult r;
    if (q.op == 1) {
      r = co_await w.file->Read(q.offset, q.length, std::move(buf));
    } else {
      r = co_await w.file->Write(q.offset, std::move(buf), {.fua = true});  // durable, then acked
    }
    status = r.ok() ? 0 : r.res;
    if (r.ok() && q.op == 1) {
      data_bytes = q.length;
      std::memcpy(reply.data() + kReplyHeader, r.buffer.data(), q.length);
    }
  }
  std::memcpy(reply.data(), &kMagic, 4);
  std::memcpy(reply.data() + 4, &status, 4);
  std::memcpy(reply.data() + 8, &q.id, 8);
  // A peer that is gone (ECONNREFUSED from its ICMP) is not our problem.
  co_await socket.send_to(std::span(reply.data(), kReplyHeader + data_bytes), d.peer);
  --w.in_flight;
  w.request_done.NotifyAll();
}
// [/snippet:udp-serve]

Task<absl::Status> WorkerMain(Worker& worker, Shared& shared) {
  block::TargetOptions fo;
  fo.cache = block::CacheMode::kWriteback;
  auto file = block::DirectFile::Open(worker, shared.path, fo);
  if (!file.ok()) co_return file.status();
  auto pool = ringline::BufferPool::Create(worker, {.buffer_size = 4096, .count = kMaxInFlight});
  if (!pool.ok()) co_return pool.status();
  WorkerState& w = worker.EmplaceLocal<WorkerState>();
  w.file = std::move(*file);
  w.pool = std::move(*pool);
  // Worker 0 lets the kernel choose the port; the others bind the same one.
  while (worker.index() > 0 && shared.port.load() == 0) {
    co_await ringline::Sleep(std::chrono::milliseconds(1));
  }
  net::UdpOptions uo;
  uo.reuse_port = true;
  uo.max_datagram = kRequestHeader + kMaxData;
  auto socket = net::UdpSocket::Bind(net::SocketAddress::Loopback4(shared.port.load()), uo);
  if (!socket.ok()) co_return socket.status();
  if (worker.index() == 0) shared.port.store(socket->local_address().port());
  shared.ready.fetch_add(1);

  ringline::CancellationToken stop = worker.stop_token();
  for (;;) {
    while (w.in_flight >= kMaxInFlight) co_await w.request_done.Wait();
    auto d = co_await ringline::WithCancellation(stop, socket->recv_from());
    if (!d) break;  // stop requested: requests in flight still finish
    if (!d->ok()) continue;
    ++w.in_flight;
    ringline::Spawn(ServeRequest(w, *socket, std::move(**d))).Detach();
  }
  while (w.in_flight > 0) co_await w.request_done.Wait();  // they use *socket
  co_return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  Shared shared;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    if (flag == "--file") {
      shared.path = argv[i + 1];
    } else if (flag == "--port") {
      shared.port = static_cast<uint16_t>(std::strtoul(argv[i + 1], nullptr, 10));
    } else if (flag == "--workers") {
      shared.workers = static_cast<uint32_t>(std::strtoul(argv[i + 1], nullptr, 10));
    } else if (flag == "--size") {
      shared.size = std::strtoull(argv[i + 1], nullptr, 10);
    } else {
      shared.path.clear();
      break;
    }
  }
  if (shared.path.empty()) {
    std::fprintf(stderr, "usage: %s --file PATH [--port N] [--workers N] [--size BYTES]\n",
                 argv[0]);
    return 2;
  }
  // Created (sparse) if missing; an existing file is served as it is.
  ringline::UniqueFd fd(::open(shared.path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  struct stat st {};
  if (!fd || ::fstat(fd.get(), &st) != 0 ||
      (st.st_size == 0 && ::ftruncate(fd.get(), static_cast<off_t>(shared.size)) != 0)) {
    std::fprintf(stderr, "udp_block: --file %s: %s\n", shared.path.c_str(), std::strerror(errno));
    return 1;
  }
  fd.Reset();
  auto signals = ringline::SignalShutdown::Install();
  ringline::Config config;
  config.workers = shared.workers;
  auto rt =
      ringline::Runtime::Start(config, [&shared](Worker& w) { return WorkerMain(w, shared); });
  if (!rt.ok()) {
    std::fprintf(stderr, "udp_block: %s\n", rt.status().ToString().c_str());
    return 1;
  }
  signals->Attach((*rt)->shutdown_handle());
  while (shared.ready.load() < (*rt)->worker_count() && !(*rt)->shutdown_handle().requested()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (shared.ready.load() == (*rt)->worker_count()) {
    std::printf("listening on 127.0.0.1:%u\n", shared.port.load());
    std::fflush(stdout);
  }
  if (absl::Status st = (*rt)->Wait(); !st.ok()) {  // a worker could not start
    std::fprintf(stderr, "udp_block: %s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}
