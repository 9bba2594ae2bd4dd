#pragma once
// The NOP loops engine_bench and engine_nop_count compare: NOPs awaited by
// tasks through the engine, and the same NOPs on bare liburing, on a ring set
// up the way a worker's is (SQE128|CQE32, SINGLE_ISSUER, DEFER_TASKRUN,
// SUBMIT_ALL, SQ 256, CQ 2048).

#include <liburing.h>

#include <cstdint>
#include <vector>

#include "ringline/ringline.h"

namespace ringline::bench {

class BareNopRing {
 public:
  BareNopRing() {
    io_uring_params p{};
    p.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQE32 | IORING_SETUP_CQSIZE |
              IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL;
    p.cq_entries = 2048;
    error_ = io_uring_queue_init_params(256, &ring_, &p);
  }
  BareNopRing(const BareNopRing&) = delete;
  BareNopRing& operator=(const BareNopRing&) = delete;
  ~BareNopRing() {
    if (error_ == 0) io_uring_queue_exit(&ring_);
  }
  // 0, or the negated errno of io_uring_queue_init_params.
  int error() const { return error_; }

  // `rounds` times: `batch` NOPs (at most 256) submitted in one
  // io_uring_enter that waits for all of them, then reaped. Returns a sum over
  // the completions so that their reads are not optimised away.
  uint64_t Run(unsigned batch, int rounds) {
    uint64_t sum = 0;
    for (int round = 0; round < rounds; ++round) {
      for (unsigned i = 0; i < batch; ++i) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, i);
      }
      io_uring_submit_and_wait(&ring_, batch);
      io_uring_cqe* cqe;
      unsigned head, seen = 0;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        sum += static_cast<uint64_t>(cqe->res) + cqe->user_data;
        ++seen;
      }
      io_uring_cq_advance(&ring_, seen);
    }
    return sum;
  }

 private:
  io_uring ring_{};
  int error_ = 0;
};

// Spawns `n` tasks `make()` on the current worker and waits for all of them.
template <typename Make>
Task<> SpawnAndJoin(int n, Make make) {
  std::vector<JoinHandle<void>> hs;
  hs.reserve(n);
  for (int i = 0; i < n; ++i) hs.push_back(Spawn(make()));
  for (auto& h : hs) co_await h;
}

// `tasks` tasks each awaiting `rounds` NOPs in a loop: every loop iteration of
// the worker submits `tasks` SQEs in one io_uring_enter.
inline Task<> EngineNops(int tasks, int rounds) {
  return SpawnAndJoin(tasks, [rounds]() -> Task<> {
    for (int i = 0; i < rounds; ++i) (void)co_await Nop();
  });
}

}  // namespace ringline::bench
