// Lifecycle left to the library, not the application: a worker main's error
// stops the runtime and comes out of Runtime::Wait(); per-worker state (Worker::Local)
// outlives the tasks and the kernel's last completion; a TaskGroup is waited
// for; the defaults (workers, shutdown grace) are what the docs say.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "ringline/ringline.h"

namespace ringline {
namespace {

using std::chrono::milliseconds;

void Report(const char* what) {
  std::printf("%s %s\n", ::testing::Test::HasFailure() ? "FAIL" : "PASS", what);
}

TEST(WorkerLifecycleTest, MainErrorStopsTheRuntimeAndComesOutOfJoin) {
  Config c;
  c.workers = 2;
  std::atomic<bool> other_saw_stop{false};
  auto rt = Runtime::Start(c, [&](Worker& w) -> Task<absl::Status> {
    return [](Worker& w, std::atomic<bool>* saw) -> Task<absl::Status> {
      if (w.index() == 1) {
        co_await Sleep(milliseconds(5));
        co_return absl::DataLossError("the index file is corrupt");
      }
      co_await w.stop_token().Cancelled();
      saw->store(true);
      co_return absl::OkStatus();
    }(w, &other_saw_stop);
  });
  ASSERT_TRUE(rt.ok()) << rt.status();
  absl::Status st = (*rt)->Wait();  // returns without anyone calling Shutdown()
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(st.message(), "worker 1: the index file is corrupt");
  EXPECT_TRUE(other_saw_stop.load());
  EXPECT_EQ((*rt)->Wait(), st);  // again: the same
  Report("a main's error stops every worker and is Wait()'s result");
}

TEST(WorkerLifecycleTest, AnyTaskCanStopTheRuntime) {
  Config c;
  c.workers = 2;
  auto rt = Runtime::Start(c, [](Worker& w) -> Task<> {
    return [](Worker& w) -> Task<> {
      if (w.index() == 0) {
        Spawn([]() -> Task<> {
          co_await Sleep(milliseconds(2));
          Worker::Current().StopRuntime();  // OK status: a clean stop
        }())
            .Detach();
      }
      co_await w.stop_token().Cancelled();
    }(w);
  });
  ASSERT_TRUE(rt.ok()) << rt.status();
  EXPECT_TRUE((*rt)->Wait().ok());
  EXPECT_TRUE((*rt)->shutdown_handle().requested());
  Report("StopRuntime() from a spawned task, Wait() OK");
}

TEST(WorkerLifecycleTest, OkMainsLeaveTheRuntimeRunning) {
  Config c;
  c.workers = 1;
  std::atomic<bool> spawned_ran{false};
  auto rt = Runtime::Start(c, [&](Worker&) -> Task<absl::Status> {
    return [](std::atomic<bool>* ran) -> Task<absl::Status> {
      Spawn([](std::atomic<bool>* ran) -> Task<> {
        co_await Sleep(milliseconds(20));
        ran->store(true);
      }(ran))
          .Detach();
      co_return absl::OkStatus();
    }(&spawned_ran);
  });
  ASSERT_TRUE(rt.ok()) << rt.status();
  for (int i = 0; i < 400 && !spawned_ran.load(); ++i) std::this_thread::sleep_for(milliseconds(5));
  EXPECT_TRUE(spawned_ran.load());
  EXPECT_FALSE((*rt)->shutdown_handle().requested());
  (*rt)->Shutdown();
  EXPECT_TRUE((*rt)->Wait().ok());
  Report("an OK main ends; its spawned tasks keep the worker busy");
}

// A read into a pool buffer held by the operation's slot. (A function, not a
// lambda in the co_await expression: g++ 12 may copy such a temporary bitwise,
// see task.h.)
auto ReadInto(int fd, Buffer buf) {
  return Submit(
      OpTag::kGeneric,
      [fd, b = std::move(buf)](io_uring_sqe* sqe, OpSlot& slot) mutable {
        slot.held[0] = std::move(b);
        io_uring_prep_read(sqe, fd, slot.held[0].data(), 4096, 0);
      },
      [](OpSlot& slot) {
        return std::pair<IoResult, Buffer>(IoResult{slot.res, slot.flags}, std::move(slot.held[0]));
      });
}

// Per-worker state holding a buffer pool: destroyed after every task and after
// the kernel has returned the buffer an abandoned read held.
struct PoolHolder {
  std::unique_ptr<BufferPool> pool;
  std::atomic<int>* tasks_left_at_destruction;
  std::atomic<int>* available_at_destruction;  // buffers still lent
  ~PoolHolder() {
    tasks_left_at_destruction->store(static_cast<int>(Worker::Current().task_count()));
    // Every buffer back: available() == count().
    available_at_destruction->store(pool ? static_cast<int>(pool->count() - pool->available())
                                         : -1);
  }
};

TEST(WorkerLifecycleTest, LocalStateOutlivesTasksAndTheKernelsLastCompletion) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  std::atomic<int> tasks_left{-1}, available{-1};
  std::atomic<int> reading{0};
  Config c;
  c.workers = 1;
  c.shutdown_grace = milliseconds(0);  // the read never completes
  auto rt = Runtime::Start(c, [&](Worker& w) -> Task<absl::Status> {
    auto pool = BufferPool::Create(w, {.buffer_size = 4096, .count = 2});
    if (!pool.ok())
      return [](absl::Status st) -> Task<absl::Status> { co_return st; }(pool.status());
    PoolHolder& h = w.EmplaceLocal<PoolHolder>(std::move(*pool), &tasks_left, &available);
    EXPECT_EQ(w.FindLocal<PoolHolder>(), &h);
    return [](BufferPool* pool, int fd, std::atomic<int>* reading) -> Task<absl::Status> {
      Buffer b = co_await pool->Acquire();
      reading->store(1);
      // A read that only shutdown ends: its slot holds the buffer until the
      // kernel's cancellation completion.
      auto [res, buf] = co_await ReadInto(fd, std::move(b));
      co_return absl::OkStatus();
    }(h.pool.get(), fds[0], &reading);
  });
  ASSERT_TRUE(rt.ok()) << rt.status();
  for (int i = 0; i < 400 && !reading.load(); ++i) std::this_thread::sleep_for(milliseconds(5));
  ASSERT_EQ(reading.load(), 1);
  (*rt)->Shutdown();
  EXPECT_TRUE((*rt)->Wait().ok());
  EXPECT_EQ(tasks_left.load(), 0);
  EXPECT_EQ(available.load(), 0) << "buffers still lent when the local was destroyed";
  close(fds[0]);
  close(fds[1]);
  Report("Worker::Local destroyed after the tasks and the drain");
}

TEST(WorkerLifecycleTest, TaskGroupWaitsForItsMembers) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  auto r = (*w)->BlockOn([]() -> Task<int> {
    TaskGroup group;
    int ended = 0;
    for (int i = 0; i < 5; ++i) {
      group.Spawn([](int i, int* ended) -> Task<> {
        co_await Sleep(milliseconds(1 + i));
        ++*ended;
      }(i, &ended));
    }
    EXPECT_EQ(group.running(), 5u);
    // A member cancelled through the group's token, one aborted by its end.
    group.Spawn([](CancellationToken t, int* ended) -> Task<> {
      co_await t.Cancelled();
      ++*ended;
    }(group.token(), &ended));
    group.Cancel();
    co_await group.Wait();
    EXPECT_EQ(group.running(), 0u);
    co_await group.Wait();  // at once when empty
    co_return ended;
  }());
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 6);
  Report("TaskGroup::Wait returns after every member ended");
}

TEST(WorkerLifecycleTest, DefaultsAreWhatTheDocsSay) {
  Config c;
  EXPECT_EQ(c.shutdown_grace, milliseconds(5000));
  EXPECT_EQ(c.workers, 0u);
  auto rt = Runtime::Start(c, [](Worker& w) -> Task<> {
    return [](Worker& w) -> Task<> { co_await w.stop_token().Cancelled(); }(w);
  });
  ASSERT_TRUE(rt.ok()) << rt.status();
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_EQ((*rt)->worker_count(), static_cast<uint32_t>(CPU_COUNT(&set)));
  EXPECT_EQ(AllowedCpus().size(), static_cast<std::size_t>(CPU_COUNT(&set)));
  std::printf("workers with Config{}: %u (CPUs this process may run on: %d)\n",
              (*rt)->worker_count(), CPU_COUNT(&set));
  (*rt)->Shutdown();
  EXPECT_TRUE((*rt)->Wait().ok());
  Report("Config{} = one worker per allowed CPU, 5 s grace");
}

}  // namespace
}  // namespace ringline
