// An outside program built against an installed ringline: the engine runs a
// task, net's readers parse a frame, and (CONSUMER_USES_NVME) the nvme
// component opens a path that is no NVMe namespace and names the reason.
#include <ringline/net/readers.h>
#include <ringline/ringline.h>

#include <cstdio>
#include <cstring>

#ifdef CONSUMER_USES_NVME
#include <ringline/block/nvme_status.h>
#include <ringline/block/open.h>
#endif

ringline::Task<int> Answer() {
  co_await ringline::Sleep(std::chrono::milliseconds(1));
  auto r = co_await ringline::Nop();
  co_return r.ok() ? 42 : -1;
}

int main() {
  auto worker = ringline::Worker::Create(ringline::Config{});
  if (!worker.ok()) {
    std::fprintf(stderr, "%s\n", worker.status().ToString().c_str());
    return 1;
  }
  auto v = (*worker)->BlockOn(Answer());
  std::printf("consumer: %d\n", v.value_or(-1));
  if (v.value_or(-1) != 42) return 1;

  ringline::net::LineReader lines({.max_line = 16});
  const char wire[] = "hello\r\n";
  auto line = lines(std::span(reinterpret_cast<const uint8_t*>(wire), std::strlen(wire)));
  if (!line.done() || line.take() != "hello") {
    std::fprintf(stderr, "consumer: LineReader did not parse the line\n");
    return 1;
  }
#ifdef CONSUMER_USES_NVME
  std::printf("consumer: nvme status 0x2 is %s\n",
              ringline::block::NvmeStatusName(0x2).c_str());
  auto t = ringline::block::OpenTarget(**worker, "/nonexistent-ringline-consumer-path");
  if (t.ok()) return 1;
  std::printf("consumer: OpenTarget refused: %s\n", t.status().ToString().c_str());
#endif
  return 0;
}
