// Runtime: workers start and stop, cross-thread messages arrive in order,
// shutdown with operations in flight returns promptly, signals stop it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <mutex>
#include <thread>
#include <vector>

#include "ringline/ringline.h"

namespace ringline {
namespace {

TEST(RuntimeTest, EveryWorkerRunsItsMain) {
  std::atomic<int> ran{0};
  std::atomic<uint32_t> seen_mask{0};
  Config c;
  c.workers = 2;
  auto rt = Runtime::Start(c, [&](Worker& w) -> Task<> {
    return [](Worker& w, std::atomic<int>* ran, std::atomic<uint32_t>* mask) -> Task<> {
      ran->fetch_add(1);
      mask->fetch_or(1u << w.index());
      co_await w.stop_token().Cancelled();
    }(w, &ran, &seen_mask);
  });
  ASSERT_TRUE(rt.ok()) << rt.status();
  for (int i = 0; i < 200 && ran.load() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(ran.load(), 2);
  EXPECT_EQ(seen_mask.load(), 3u);
  (*rt)->Shutdown();
  (*rt)->Join();
  EXPECT_GT((*rt)->Metrics().Total("loop_iterations"), 0u);
}

TEST(RuntimeTest, CrossThreadMessagesArriveInOrder) {
  Config c;
  c.workers = 2;
  c.message_queue_capacity = 64;              // small, so producers meet backpressure
  std::vector<std::vector<int>> received(2);  // per producer, appended on worker 0 only
  auto rt = Runtime::Start(c, [](Worker& w) -> Task<> {
    return [](Worker& w) -> Task<> { co_await w.stop_token().Cancelled(); }(w);
  });
  ASSERT_TRUE(rt.ok()) << rt.status();
  constexpr int kPerProducer = 20000;
  auto produce = [&](int id) {
    for (int i = 0; i < kPerProducer; ++i) {
      while (!(*rt)->Post(0, [&received, id, i] { received[id].push_back(i); })) {
        std::this_thread::yield();  // full: the worker drains it
      }
    }
  };
  std::thread a(produce, 0), b(produce, 1);
  a.join();
  b.join();
  std::atomic<bool> done{false};
  while (!(*rt)->Post(0, [&] { done = true; })) std::this_thread::yield();
  for (int i = 0; i < 1000 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(done.load());
  (*rt)->Shutdown();
  (*rt)->Join();
  for (int id = 0; id < 2; ++id) {
    ASSERT_EQ(received[id].size(), static_cast<std::size_t>(kPerProducer));
    for (int i = 0; i < kPerProducer; ++i) ASSERT_EQ(received[id][i], i) << "producer " << id;
  }
}

TEST(RuntimeTest, ShutdownWithOperationsInFlightReturnsPromptly) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  Config c;
  c.workers = 2;
  c.shutdown_grace = std::chrono::milliseconds(0);  // the tasks ignore the stop token
  std::atomic<int> armed{0};
  auto rt = Runtime::Start(c, [&](Worker&) -> Task<> {
    return [](int fd, std::atomic<int>* armed) -> Task<> {
      // Reads that never complete, a long sleep, and a long kernel timeout.
      for (int i = 0; i < 8; ++i) {
        Spawn([](int fd) -> Task<> {
          co_await Submit(OpTag::kGeneric, [fd](io_uring_sqe* sqe, OpSlot& slot) {
            io_uring_prep_read(sqe, fd, slot.storage.bytes, sizeof slot.storage.bytes, 0);
          });
        }(fd))
            .Detach();
      }
      Spawn(SleepTask(std::chrono::hours(1))).Detach();
      armed->fetch_add(1);
      co_await KernelTimeout(3600'000'000'000);
    }(fds[0], &armed);
  });
  ASSERT_TRUE(rt.ok()) << rt.status();
  for (int i = 0; i < 200 && armed.load() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(armed.load(), 2);
  const auto t0 = std::chrono::steady_clock::now();
  (*rt)->Shutdown();
  (*rt)->Join();
  const auto took = std::chrono::steady_clock::now() - t0;
  // Liveness, not speed: without cancellation this would hang for an hour.
  EXPECT_LT(took, std::chrono::seconds(10));
  close(fds[0]);
  close(fds[1]);
}

TEST(RuntimeTest, GracePeriodLetsTasksFinish) {
  Config c;
  c.workers = 1;
  c.shutdown_grace = std::chrono::milliseconds(5000);
  std::atomic<bool> finished{false};
  auto rt = Runtime::Start(c, [&](Worker& w) -> Task<> {
    return [](Worker& w, std::atomic<bool>* fin) -> Task<> {
      co_await w.stop_token().Cancelled();
      co_await Sleep(std::chrono::milliseconds(20));  // wind down
      fin->store(true);
    }(w, &finished);
  });
  ASSERT_TRUE(rt.ok()) << rt.status();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  (*rt)->Shutdown();
  (*rt)->Join();
  EXPECT_TRUE(finished.load());
}

TEST(RuntimeTest, SigtermStopsTheRuntime) {
  auto guard = SignalShutdown::Install();
  Config c;
  c.workers = 1;
  auto rt = Runtime::Start(c, [](Worker& w) -> Task<> {
    return [](Worker& w) -> Task<> { co_await w.stop_token().Cancelled(); }(w);
  });
  ASSERT_TRUE(rt.ok()) << rt.status();
  guard->Attach((*rt)->shutdown_handle());
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  (*rt)->Join();
  EXPECT_EQ(guard->received(), SIGTERM);
  EXPECT_TRUE((*rt)->shutdown_handle().requested());
}

TEST(RuntimeTest, BadConfigFailsStartNamingTheField) {
  Config c;
  c.ring.sq_entries = 100;
  auto rt = Runtime::Start(c, [](Worker&) -> Task<> { co_return; });
  ASSERT_FALSE(rt.ok());
  EXPECT_NE(rt.status().message().find("config.ring.sq_entries = 100"), std::string::npos)
      << rt.status();
}

TEST(RuntimeTest, ProbeSaysThisKernelCanRunTheEngine) {
  FeatureReport r = ProbeKernel();
  EXPECT_TRUE(r.setup_permitted) << r.setup_error;
  EXPECT_TRUE(r.kernel.AtLeast(6, 1)) << r.kernel.release;
  EXPECT_TRUE(r.Verdict().ok()) << r.Verdict();
  bool saw_defer = false;
  for (const auto& f : r.setup_flags) saw_defer |= f.name == "DEFER_TASKRUN" && f.supported;
  EXPECT_TRUE(saw_defer);
  // An old kernel is named with the version needed.
  FeatureReport old = r;
  old.kernel = ParseKernelVersion("5.15.0-91-generic");
  EXPECT_NE(old.Verdict().ToString().find("needs Linux 6.1"), std::string::npos) << old.Verdict();
  FeatureReport denied = r;
  denied.setup_permitted = false;
  denied.setup_error = "io_uring_setup: EPERM";
  EXPECT_NE(denied.Verdict().ToString().find("seccomp"), std::string::npos);
  FeatureReport disabled = r;
  disabled.io_uring_disabled = 2;
  EXPECT_NE(disabled.Verdict().ToString().find("io_uring_disabled"), std::string::npos);
}

}  // namespace
}  // namespace ringline
