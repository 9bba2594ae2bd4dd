// SubmitTo: a task run on another worker returns its value and its errors, from
// a worker and from a thread that is not one; the trip's own failures are named;
// destroying the caller at every point of the trip is safe (run under ASan in CI).
#include "ringline/submit_to.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "ringline/ringline.h"

namespace ringline {
namespace {

using std::chrono::milliseconds;

// Counts live instances, so a dropped result is seen to be destroyed exactly once.
std::atomic<int> g_live{0};
struct Tracked {
  explicit Tracked(int v) : value(v) { g_live.fetch_add(1); }
  Tracked(Tracked&& o) noexcept : value(o.value) { g_live.fetch_add(1); }
  Tracked& operator=(Tracked&&) = delete;
  ~Tracked() { g_live.fetch_sub(1); }
  int value;
};

// One PASS/FAIL line per test, for the logs.
void Report(const char* what) {
  std::printf("%s %s\n", ::testing::Test::HasFailure() ? "FAIL" : "PASS", what);
}

std::unique_ptr<Runtime> StartIdle(uint32_t workers, Config c = Config{}) {
  c.workers = workers;
  auto rt = Runtime::Start(c, [](Worker& w) -> Task<> {
    return [](Worker& w) -> Task<> { co_await w.stop_token().Cancelled(); }(w);
  });
  EXPECT_TRUE(rt.ok()) << rt.status();
  return rt.ok() ? std::move(*rt) : nullptr;
}

TEST(SubmitToTest, TaskOnAnotherWorkerReturnsItsValue) {
  auto rt = StartIdle(2);
  ASSERT_TRUE(rt);
  // The outer call runs on worker 0 (from this thread); it awaits worker 1.
  Result<std::pair<uint32_t, uint32_t>> r =
      SubmitTo(*rt, 0, []() -> Task<Result<std::pair<uint32_t, uint32_t>>> {
        const uint32_t here = Worker::Current().index();
        Result<uint32_t> there = co_await SubmitTo(1, []() -> Task<uint32_t> {
          co_await Sleep(milliseconds(1));  // really suspends on the target
          co_return Worker::Current().index();
        });
        if (!there) co_return Result<std::pair<uint32_t, uint32_t>>::Error(there.error());
        co_return std::pair<uint32_t, uint32_t>(here, *there);
      });
  ASSERT_TRUE(r.ok()) << r.ErrorString();
  EXPECT_EQ(r->first, 0u);
  EXPECT_EQ(r->second, 1u);
  Report("value from worker 1 seen on worker 0");
}

TEST(SubmitToTest, ErrorsOfTheRemoteTaskPropagate) {
  auto rt = StartIdle(2);
  ASSERT_TRUE(rt);
  absl::Status st = SubmitTo(*rt, 0, []() -> Task<absl::Status> {
    Result<int> r = co_await SubmitTo(1, []() -> Task<Result<int>> {
      co_return Result<int>::Error(ENOENT, absl::NotFoundError("key 42 is not on worker 1"));
    });
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.error(), ENOENT);
    EXPECT_EQ(r.status().message(), "key 42 is not on worker 1");
    absl::Status s = co_await SubmitTo(
        1, []() -> Task<absl::Status> { co_return absl::DataLossError("checksum mismatch"); });
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
    absl::StatusOr<std::string> so = co_await SubmitTo(
        1, []() -> Task<absl::StatusOr<std::string>> { co_return std::string("value"); });
    EXPECT_TRUE(so.ok());
    if (so.ok()) {
      EXPECT_EQ(*so, "value");
    }
    Result<Unit> v = co_await SubmitTo(1, []() -> Task<> { co_return; });
    EXPECT_TRUE(v.ok());
    co_return absl::OkStatus();
  });
  EXPECT_TRUE(st.ok()) << st;
  Report("Result, Status, StatusOr and void outcomes");
}

TEST(SubmitToTest, FromAThreadThatIsNotAWorker) {
  auto rt = StartIdle(2);
  ASSERT_TRUE(rt);
  for (uint32_t w = 0; w < 2; ++w) {
    Result<uint32_t> r = SubmitTo(*rt, w, []() -> Task<uint32_t> {
      co_await Worker::Current().Yield();
      co_return Worker::Current().index();
    });
    ASSERT_TRUE(r.ok()) << r.ErrorString();
    EXPECT_EQ(*r, w);
  }
  Result<int> err =
      SubmitTo(*rt, 1, []() -> Task<Result<int>> { co_return Result<int>::Error(EIO); });
  EXPECT_EQ(err.error(), EIO);
  // Many threads at once.
  std::atomic<int> sum{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        Result<int> r =
            SubmitTo(*rt, static_cast<uint32_t>(i % 2), [i]() -> Task<int> { co_return i; });
        if (r.ok()) sum.fetch_add(*r);
      }
      (void)t;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(sum.load(), 4 * (199 * 200 / 2));
  Report("blocking SubmitTo from 5 threads");
}

TEST(SubmitToTest, TripFailuresAreNamed) {
  auto rt = StartIdle(2);
  ASSERT_TRUE(rt);
  Result<int> bad = SubmitTo(*rt, 7, []() -> Task<int> { co_return 1; });
  EXPECT_EQ(bad.error(), EINVAL);
  EXPECT_NE(bad.ErrorString().find("no worker 7 (the runtime has 2"), std::string::npos)
      << bad.ErrorString();
  // The blocking form on a worker thread would stall that worker: refused.
  Result<int> nested = SubmitTo(*rt, 0, [&rt]() -> Task<Result<int>> {
    co_return SubmitTo(*rt, 1, []() -> Task<int> { co_return 1; });
  });
  EXPECT_EQ(nested.error(), EDEADLK);
  EXPECT_NE(nested.ErrorString().find("co_await SubmitTo(1"), std::string::npos)
      << nested.ErrorString();
  rt->Shutdown();
  rt->Join();
  Result<int> gone = SubmitTo(*rt, 1, []() -> Task<int> { co_return 1; });
  EXPECT_EQ(gone.error(), ESHUTDOWN);
  EXPECT_NE(gone.ErrorString().find("worker 1 has stopped"), std::string::npos);
  Report("EINVAL, EDEADLK and ESHUTDOWN name the worker");
}

TEST(SubmitToTest, FullQueueIsEagainAndTheCallDidNothing) {
  Config c;
  c.message_queue_capacity = 1;
  auto rt = StartIdle(2, c);
  ASSERT_TRUE(rt);
  // Park worker 1's thread inside a message, so its queue fills.
  std::atomic<bool> entered{false}, release{false};
  ASSERT_TRUE(rt->Post(1, [&] {
    entered.store(true);
    while (!release.load()) std::this_thread::sleep_for(milliseconds(1));
  }));
  while (!entered.load()) std::this_thread::sleep_for(milliseconds(1));
  ASSERT_TRUE(rt->Post(1, [] {}));  // the one place in the queue
  std::atomic<int> ran{0};
  Result<int> full = SubmitTo(*rt, 1, [&ran]() -> Task<int> {
    ran.fetch_add(1);
    co_return 1;
  });
  EXPECT_EQ(full.error(), EAGAIN);
  EXPECT_NE(full.ErrorString().find("config.message_queue_capacity = 1"), std::string::npos)
      << full.ErrorString();
  release.store(true);
  Result<int> later = Result<int>::Error(EAGAIN);
  while (later.error() == EAGAIN) {  // until worker 1 has drained its queue
    later = SubmitTo(*rt, 1, [&ran]() -> Task<int> {
      ran.fetch_add(1);
      co_return 2;
    });
  }
  EXPECT_EQ(*later, 2);
  EXPECT_EQ(ran.load(), 1);  // the refused call never ran
  Report("full queue is EAGAIN naming the capacity");
}

TEST(SubmitToTest, TargetStoppingBeforeTheTaskEndsIsEcanceled) {
  Config c;
  c.shutdown_grace = milliseconds(0);  // the task ignores the stop token
  auto rt = StartIdle(2, c);
  ASSERT_TRUE(rt);
  std::atomic<bool> started{false};
  Result<int> r = Result<int>::Error(EINVAL);
  std::thread caller([&] {
    r = SubmitTo(*rt, 1, [&started]() -> Task<int> {
      started.store(true);
      co_await CancellationToken().Cancelled();  // never cancelled: only shutdown ends it
      co_return 1;
    });
  });
  while (!started.load()) std::this_thread::sleep_for(milliseconds(1));
  rt->Shutdown();
  rt->Join();
  caller.join();
  EXPECT_EQ(r.error(), ECANCELED);
  EXPECT_NE(r.ErrorString().find("worker 1 stopped before the task finished"), std::string::npos)
      << r.ErrorString();
  Report("ECANCELED when the target shuts down under the task");
}

// Destroys the caller after `delay` yields of its worker, for a range of delays
// that covers every point of the trip: before the request was posted (awaiter
// never awaited), request queued, remote task running, reply queued, reply run.
TEST(SubmitToTest, CancellingTheCallerAtEveryPointIsSafe) {
  auto rt = StartIdle(2);
  ASSERT_TRUE(rt);
  std::atomic<int> finished_remote{0};
  absl::Status st = SubmitTo(*rt, 0, [&finished_remote]() -> Task<absl::Status> {
    Worker& w = Worker::Current();
    // Never awaited.
    {
      auto unused = SubmitTo(1, []() -> Task<int> { co_return 0; });
    }
    int completed = 0;
    for (int delay = 0; delay < 40; ++delay) {
      auto caller = Spawn([](std::atomic<int>* fin, int* completed) -> Task<> {
        Result<Tracked> r = co_await SubmitTo(1, [fin]() -> Task<Tracked> {
          co_await Worker::Current().Yield();
          co_await Worker::Current().Yield();
          fin->fetch_add(1);
          co_return Tracked(7);
        });
        if (r.ok() && r->value == 7) ++*completed;
      }(&finished_remote, &completed));
      for (int i = 0; i < delay; ++i) co_await w.Yield();
      caller.Abort();
    }
    // Let every remote task end and every reply arrive.
    co_await Sleep(milliseconds(50));
    std::printf("callers that completed before their abort: %d of 40\n", completed);
    co_return absl::OkStatus();
  });
  EXPECT_TRUE(st.ok()) << st;
  // Delay 0 aborts the caller before it first ran (nothing posted): 39 trips.
  EXPECT_EQ(finished_remote.load(), 39);
  // Every result, delivered or dropped, was destroyed.
  EXPECT_EQ(g_live.load(), 0);
  // The cancelled calls' replies were all run on worker 0 (none left to leak).
  rt->Shutdown();
  rt->Join();
  EXPECT_EQ(g_live.load(), 0);
  Report("caller destroyed at 40 points of the trip, results destroyed once");
}

TEST(SubmitToTest, CallerWorkerGoneBeforeTheReplyIsSafe) {
  // Worker 0's caller awaits a task on worker 1 that only shutdown ends: the
  // task's ECANCELED reply either reaches worker 0 before it stops, or finds it
  // gone (or its queue closed) and is dropped where it was made.
  Config c;
  c.shutdown_grace = milliseconds(0);  // the task ignores the stop token
  auto rt = StartIdle(2, c);
  ASSERT_TRUE(rt);
  std::atomic<bool> awaiting{false};
  ASSERT_TRUE(rt->Post(0, [&awaiting] {
    Spawn([](std::atomic<bool>* awaiting) -> Task<> {
      awaiting->store(true);
      Result<Tracked> r = co_await SubmitTo(1, []() -> Task<Tracked> {
        co_await CancellationToken().Cancelled();
        co_return Tracked(1);
      });
      // Resumed only if worker 1's ECANCELED reply beat worker 0's own stop.
      EXPECT_EQ(r.error(), ECANCELED);
    }(&awaiting))
        .Detach();
  }));
  while (!awaiting.load()) std::this_thread::sleep_for(milliseconds(1));
  std::this_thread::sleep_for(milliseconds(10));
  rt->Shutdown();
  rt->Join();
  EXPECT_EQ(g_live.load(), 0);
  Report("shutdown with calls in flight both ways");
}

TEST(SubmitToTest, StandaloneWorkerReachesOnlyItself) {
  auto w = Worker::Create(Config{}, 3);
  ASSERT_TRUE(w.ok()) << w.status();
  auto r = (*w)->BlockOn([]() -> Task<std::pair<Result<int>, Result<int>>> {
    Result<int> self = co_await SubmitTo(3, []() -> Task<int> { co_return 5; });
    Result<int> other = co_await SubmitTo(0, []() -> Task<int> { co_return 6; });
    co_return std::pair<Result<int>, Result<int>>(std::move(self), std::move(other));
  }());
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r->first, 5);
  EXPECT_EQ(r->second.error(), EINVAL);
  EXPECT_EQ((*w)->worker_count(), 1u);
  Report("standalone worker");
}

}  // namespace
}  // namespace ringline
