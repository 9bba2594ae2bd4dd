// WaitBatching (internal/wait_batching.h): the policy driven by simulated
// epochs with fake clocks, then a worker answering a one-request-at-a-time
// client over a real socket pair, which batching must leave alone.
#include "ringline/internal/wait_batching.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <thread>

#include "ringline/operation.h"
#include "ringline/unique_fd.h"
#include "ringline/worker.h"

namespace ringline {
namespace {

using internal::WaitBatching;
using State = WaitBatching::State;

// What each mode costs the simulated worker, per completion.
struct Costs {
  double wall_ns;
  double cpu_ns;
};

// Drives a WaitBatching with iterations of 8 completions of 4 KiB each, every
// one arriving after its wait began (never quiet), charging the fake clocks
// with the costs of the mode the policy is in.
class Simulation {
 public:
  explicit Simulation(uint32_t max_batch) : wb_(max_batch) {}

  void Run(uint32_t iterations, Costs plain, Costs batching) {
    for (uint32_t i = 0; i < iterations; ++i) {
      const bool batched = wb_.target() > 1;
      const Costs c = batched ? batching : plain;
      wall_ns_ += static_cast<int64_t>(c.wall_ns * kPerIteration);
      cpu_ns_ += static_cast<int64_t>(c.cpu_ns * kPerIteration);
      const State before = wb_.state();
      wb_.AfterWait(batched, kPerIteration, kPerIteration * 4096, kPerIteration, true, Now(),
                    Cpu());
      if (before != State::kProbingBatching && wb_.state() == State::kProbingBatching) ++probes_;
    }
  }
  // A batched wait whose whole window (or, with `whole_window` false, an
  // earlier deadline) brought `arrived` completions.
  void Window(uint32_t arrived, bool whole_window) {
    ASSERT_GT(wb_.target(), 1u);
    wb_.AfterWait(true, arrived, arrived * 4096, arrived, whole_window, Now(), Cpu());
  }

  WaitBatching& wb() { return wb_; }
  int probes() const { return probes_; }

  // Iterations per epoch.
  static constexpr uint32_t kPerIteration = 8;
  static constexpr uint32_t kEpoch = WaitBatching::kEpochCompletions / kPerIteration;

 private:
  std::function<int64_t()> Now() {
    return [this] { return wall_ns_; };
  }
  std::function<int64_t()> Cpu() {
    return [this] { return cpu_ns_; };
  }
  WaitBatching wb_;
  int64_t wall_ns_ = 1'000'000;
  int64_t cpu_ns_ = 1'000'000;
  int probes_ = 0;
};

constexpr Costs kPlain{100, 80};
constexpr Costs kCheaperSameRate{100, 40};  // half the CPU, same rate: batching wins
constexpr Costs kSlower{200, 40};           // half the CPU but half the rate: it loses
constexpr Costs kNoGain{100, 79};           // within kSignificant: a tie, plain wins

TEST(WaitBatchingTest, AMaximumOfOneNeverBatches) {
  Simulation s(1);
  s.Run(100 * Simulation::kEpoch, kPlain, kCheaperSameRate);
  EXPECT_EQ(s.wb().state(), State::kDisabled);
  EXPECT_EQ(s.wb().target(), 1u);
  EXPECT_EQ(s.probes(), 0);
}

TEST(WaitBatchingTest, BatchingThatKeepsTheRateForLessCpuIsKept) {
  Simulation s(16);
  EXPECT_EQ(s.wb().state(), State::kPlain);
  EXPECT_EQ(s.wb().target(), 1u);
  s.Run(40 * Simulation::kEpoch, kPlain, kCheaperSameRate);
  EXPECT_EQ(s.wb().state(), State::kBatching);
  EXPECT_EQ(s.wb().target(), 16u);
  // It probes waiting for one now and then, and comes back each time.
  s.Run(2000 * Simulation::kEpoch, kPlain, kCheaperSameRate);
  EXPECT_TRUE(s.wb().batching());
  EXPECT_EQ(s.probes(), 1);
}

TEST(WaitBatchingTest, BatchingThatLowersTheRateIsDropped) {
  Simulation s(16);
  s.Run(40 * Simulation::kEpoch, kPlain, kSlower);
  EXPECT_FALSE(s.wb().batching());
  // Each failed probe doubles the wait before the next: over 3000 epochs,
  // 16 + 32 + ... + 1024 epochs of parking, then 1024 each.
  s.Run(3000 * Simulation::kEpoch, kPlain, kSlower);
  EXPECT_FALSE(s.wb().batching());
  EXPECT_GE(s.probes(), 7);
  EXPECT_LE(s.probes(), 9);
}

TEST(WaitBatchingTest, BatchingForNoGainIsDropped) {
  Simulation s(16);
  s.Run(200 * Simulation::kEpoch, kPlain, kNoGain);
  EXPECT_FALSE(s.wb().batching());
  EXPECT_GE(s.probes(), 2);
}

TEST(WaitBatchingTest, WhenPlainBecomesAsCheapItIsTakenBack) {
  Simulation s(16);
  s.Run(40 * Simulation::kEpoch, kPlain, kCheaperSameRate);
  ASSERT_EQ(s.wb().state(), State::kBatching);
  // Now waiting for one costs no more: the next probe of it keeps it.
  s.Run(100 * Simulation::kEpoch, kCheaperSameRate, kCheaperSameRate);
  EXPECT_FALSE(s.wb().batching());
}

TEST(WaitBatchingTest, QuietWindowsEndBatchingAtOnce) {
  Simulation s(16);
  s.Run(40 * Simulation::kEpoch, kPlain, kCheaperSameRate);
  ASSERT_EQ(s.wb().state(), State::kBatching);
  // Windows that bring two or more are fine, and a quiet one is forgiven.
  for (int i = 0; i < 10; ++i) {
    s.Window(1, true);
    s.Window(2, true);
  }
  EXPECT_EQ(s.wb().state(), State::kBatching);
  // Windows cut short by a timer say nothing about the clients.
  for (uint32_t i = 0; i < 3 * WaitBatching::kQuietWindows; ++i) s.Window(0, false);
  EXPECT_EQ(s.wb().state(), State::kBatching);
  for (uint32_t i = 0; i + 1 < WaitBatching::kQuietWindows; ++i) s.Window(1, true);
  EXPECT_EQ(s.wb().state(), State::kBatching);
  s.Window(0, true);
  EXPECT_EQ(s.wb().state(), State::kPlain);
  EXPECT_EQ(s.wb().target(), 1u);
}

TEST(WaitBatchingTest, AProbeThatFindsClientsWaitingEndsWithinTheQuietWindows) {
  Simulation s(16);
  // Run until the first probe starts.
  while (s.probes() == 0) s.Run(1, kPlain, kCheaperSameRate);
  ASSERT_EQ(s.wb().state(), State::kProbingBatching);
  for (uint32_t i = 0; i < WaitBatching::kQuietWindows; ++i) s.Window(1, true);
  EXPECT_EQ(s.wb().state(), State::kPlain);
}

// A client that sends one request and waits for its reply, 20,000 times, over
// a socket pair whose other end a worker task answers: batching must not
// stay on. Each probe ends after kQuietWindows batched waits; the probes
// come after 16, 32, 64, ... epochs.
TEST(WaitBatchingWorkerTest, OneRequestAtATimeClientIsNotBatched) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  UniqueFd server_end(sv[0]), client_end(sv[1]);
  constexpr int kRoundTrips = 20000;

  Config config;
  config.wait_batch_max = 16;
  auto w = Worker::Create(config, 0);
  ASSERT_TRUE(w.ok()) << w.status();

  std::thread client([fd = client_end.get()] {
    char b = 0;
    for (int i = 0; i < kRoundTrips; ++i) {
      ASSERT_EQ(write(fd, &b, 1), 1);
      ASSERT_EQ(read(fd, &b, 1), 1);
      ++b;
    }
  });
  auto server = [](int fd) -> Task<int> {
    // The byte lives in the slot's storage, not in this frame: the kernel
    // writes it after the frame has suspended (docs/io_uring-rules.md R1).
    int served = 0;
    for (;;) {
      IoResult r = co_await Submit(OpTag::kGeneric, [fd](io_uring_sqe* sqe, OpSlot& slot) {
        io_uring_prep_read(sqe, fd, slot.storage.bytes, 1, 0);
      });
      if (r.res <= 0) co_return served;
      IoResult s = co_await Submit(OpTag::kGeneric, [fd](io_uring_sqe* sqe, OpSlot& slot) {
        slot.storage.bytes[0] = 0;
        io_uring_prep_write(sqe, fd, slot.storage.bytes, 1, 0);
      });
      if (s.res != 1) co_return -1;
      if (++served == kRoundTrips) co_return served;
    }
  };
  auto served = (*w)->BlockOn(server(server_end.get()));
  client.join();
  ASSERT_TRUE(served.has_value());
  EXPECT_EQ(*served, kRoundTrips);
  const WorkerMetrics& m = (*w)->metrics();
  // 40,000 completions are about 78 epochs: probes after 16 and 48 of them.
  EXPECT_LE(m.wait_batches.Get(), 3 * WaitBatching::kQuietWindows);
  EXPECT_EQ(m.workers_batching.Get(), 0u);
  std::printf("batched waits: %llu of %llu loop iterations\n",
              static_cast<unsigned long long>(m.wait_batches.Get()),
              static_cast<unsigned long long>(m.loop_iterations.Get()));
}

}  // namespace
}  // namespace ringline
