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
#include <liburing.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "ringline/ringline.h"

namespace {

volatile uint64_t sink;

int RunEngine(int batch, int rounds) {
  auto w = ringline::Worker::Create(ringline::Config{});
  if (!w.ok()) {
    std::fprintf(stderr, "engine_nop_count: %s\n", w.status().ToString().c_str());
    return 1;
  }
  (*w)->BlockOn([](int n, int r) -> ringline::Task<> {
    std::vector<ringline::JoinHandle<void>> hs;
    hs.reserve(n);
    for (int t = 0; t < n; ++t) {
      hs.push_back(ringline::Spawn([](int count) -> ringline::Task<> {
        for (int i = 0; i < count; ++i) (void)co_await ringline::Nop();
      }(r)));
    }
    for (auto& h : hs) co_await h;
  }(batch, rounds));
  return 0;
}

int RunBare(unsigned batch, int rounds) {
  io_uring ring;
  io_uring_params p{};
  p.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQE32 | IORING_SETUP_CQSIZE |
            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL;
  p.cq_entries = 2048;
  if (int r = io_uring_queue_init_params(256, &ring, &p); r < 0) {
    std::fprintf(stderr, "engine_nop_count: io_uring_queue_init_params: %s\n", std::strerror(-r));
    return 1;
  }
  uint64_t sum = 0;
  for (int round = 0; round < rounds; ++round) {
    for (unsigned i = 0; i < batch; ++i) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, i);
    }
    io_uring_submit_and_wait(&ring, batch);
    io_uring_cqe* cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      sum += static_cast<uint64_t>(cqe->res) + cqe->user_data;
      ++seen;
    }
    io_uring_cq_advance(&ring, seen);
  }
  io_uring_queue_exit(&ring);
  sink = sum;  // keeps the completion reads
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
