// A fixed number of NOPs through the engine or through bare liburing, for
// counting instructions per operation with `perf stat` (a load-independent
// measure of the engine's own cost; wall-clock ratios come from engine_bench).
//
//   engine_nop_count engine|bare BATCH ROUNDS
//
// runs BATCH tasks (engine) or BATCH SQEs per submit (bare), each doing ROUNDS
// NOPs, so BATCH*ROUNDS NOPs in all, on a ring set up the same way in both
// modes (SQE128|CQE32, SINGLE_ISSUER, DEFER_TASKRUN, SUBMIT_ALL, CQ 2048).
// scripts/bench-engine.sh runs it at two ROUNDS values and divides the
// difference in instructions by the difference in NOPs, which cancels start-up.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "bench/engine/nop_loops.h"
#include "ringline/ringline.h"

namespace {

volatile uint64_t sink;

int RunEngine(int batch, int rounds) {
  auto w = ringline::Worker::Create(ringline::Config{});
  if (!w.ok()) {
    std::fprintf(stderr, "engine_nop_count: %s\n", w.status().ToString().c_str());
    return 1;
  }
  (*w)->BlockOn(ringline::bench::EngineNops(batch, rounds));
  return 0;
}

int RunBare(unsigned batch, int rounds) {
  ringline::bench::BareNopRing ring;
  if (ring.error() < 0) {
    std::fprintf(stderr, "engine_nop_count: io_uring_queue_init_params: %s\n",
                 std::strerror(-ring.error()));
    return 1;
  }
  sink = ring.Run(batch, rounds);  // keeps the completion reads
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 || (std::strcmp(argv[1], "engine") != 0 && std::strcmp(argv[1], "bare") != 0)) {
    std::fprintf(stderr, "usage: %s engine|bare BATCH ROUNDS\n", argv[0]);
    return 2;
  }
  const int batch = std::atoi(argv[2]);
  const int rounds = std::atoi(argv[3]);
  if (batch < 1 || batch > 256 || rounds < 1) {
    std::fprintf(stderr, "engine_nop_count: BATCH must be 1..256 and ROUNDS at least 1\n");
    return 2;
  }
  return std::strcmp(argv[1], "engine") == 0 ? RunEngine(batch, rounds)
                                             : RunBare(static_cast<unsigned>(batch), rounds);
}
