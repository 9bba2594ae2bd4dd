// Tasks: values and errors propagate through nested tasks; laziness; spawn,
// join handles and the combinators.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ringline/ringline.h"

namespace ringline {
namespace {

std::unique_ptr<Worker> MakeWorker() {
  Config c;
  auto w = Worker::Create(c);
  EXPECT_TRUE(w.ok()) << w.status();
  return std::move(*w);
}

Task<int> Leaf(int v) { co_return v; }
Task<absl::StatusOr<int>> Fails() { co_return absl::NotFoundError("no such block"); }
Task<absl::StatusOr<int>> Middle(bool fail) {
  if (fail) co_return co_await Fails();
  const int a = co_await Leaf(20);
  const int b = co_await Leaf(22);
  co_return a + b;
}
Task<absl::StatusOr<std::string>> Top(bool fail) {
  auto r = co_await Middle(fail);
  if (!r.ok()) co_return r.status();
  co_return std::to_string(*r);
}

TEST(TaskTest, ValuesAndErrorsPropagateThroughNestedTasks) {
  auto w = MakeWorker();
  auto ok = w->BlockOn(Top(false));
  ASSERT_TRUE(ok.has_value());
  ASSERT_TRUE(ok->ok());
  EXPECT_EQ(**ok, "42");
  auto err = w->BlockOn(Top(true));
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(err->status().message(), "no such block");
}

TEST(TaskTest, TasksAreLazy) {
  auto w = MakeWorker();
  bool started = false;
  auto t = [](bool* s) -> Task<> {
    *s = true;
    co_return;
  }(&started);
  EXPECT_FALSE(started);
  w->BlockOn(std::move(t));
  EXPECT_TRUE(started);
}

TEST(TaskTest, DeepNestingDoesNotOverflowTheStack) {
  auto w = MakeWorker();
  // Symmetric transfer: a 100k-deep chain of awaits resumes without recursion.
  struct Rec {
    static Task<int> Depth(int n) {
      if (n == 0) co_return 0;
      co_return 1 + co_await Depth(n - 1);
    }
  };
  EXPECT_EQ(*w->BlockOn(Rec::Depth(100000)), 100000);
}

TEST(TaskTest, SpawnAndJoin) {
  auto w = MakeWorker();
  auto r = w->BlockOn([]() -> Task<int> {
    auto h1 = Spawn(Leaf(1));
    auto h2 = Spawn([]() -> Task<int> {
      co_await Sleep(std::chrono::milliseconds(2));
      co_return 2;
    }());
    auto a = co_await h1;
    auto b = co_await h2;
    co_return a.value() + b.value();
  }());
  EXPECT_EQ(*r, 3);
}

TEST(TaskTest, AbortedJoinYieldsNullopt) {
  auto w = MakeWorker();
  auto r = w->BlockOn([]() -> Task<bool> {
    auto h = Spawn([]() -> Task<int> {
      co_await Sleep(std::chrono::hours(1));
      co_return 1;
    }());
    co_await Sleep(std::chrono::milliseconds(1));
    EXPECT_FALSE(h.done());
    h.Abort();
    EXPECT_TRUE(h.done());
    auto v = co_await h;
    co_return !v.has_value() && h.aborted();
  }());
  EXPECT_TRUE(*r);
}

TEST(TaskTest, DetachedTaskRunsToCompletion) {
  auto w = MakeWorker();
  int counter = 0;
  w->BlockOn([](int* c) -> Task<> {
    Spawn([](int* c) -> Task<> {
      co_await Sleep(std::chrono::milliseconds(1));
      ++*c;
    }(c))
        .Detach();
    co_await Sleep(std::chrono::milliseconds(20));
  }(&counter));
  EXPECT_EQ(counter, 1);
  EXPECT_EQ(w->task_count(), 0u);
}

TEST(TaskTest, WhenAllCollectsEveryResult) {
  auto w = MakeWorker();
  auto r = w->BlockOn([]() -> Task<int> {
    auto [a, b, c] = co_await WhenAll(Leaf(1), Leaf(2), SleepTask(std::chrono::milliseconds(1)));
    (void)c;
    std::vector<Task<int>> v;
    for (int i = 0; i < 10; ++i) v.push_back(Leaf(i));
    auto all = co_await WhenAll(std::move(v));
    int sum = 0;
    for (int x : all) sum += x;
    co_return a + b + sum;
  }());
  EXPECT_EQ(*r, 3 + 45);
}

TEST(TaskTest, WhenAnyReturnsTheFirstAndDestroysTheRest) {
  auto w = MakeWorker();
  int loser_finished = 0;
  auto r = w->BlockOn([](int* lf) -> Task<std::size_t> {
    auto slow = [](int* lf) -> Task<int> {
      co_await Sleep(std::chrono::seconds(30));
      ++*lf;
      co_return 1;
    };
    auto fast = []() -> Task<std::string> {
      co_await Sleep(std::chrono::milliseconds(1));
      co_return "fast";
    };
    auto v = co_await WhenAny(slow(lf), fast());
    EXPECT_EQ(std::get<1>(v), "fast");
    co_return v.index();
  }(&loser_finished));
  EXPECT_EQ(*r, 1u);
  EXPECT_EQ(loser_finished, 0);
  EXPECT_EQ(w->timers().size(), 0u) << "the loser's sleep must be gone";
}

TEST(TaskTest, TimeoutExpiresAndPasses) {
  auto w = MakeWorker();
  auto r = w->BlockOn([]() -> Task<std::pair<bool, bool>> {
    auto slow = co_await Timeout(std::chrono::milliseconds(5), SleepTask(std::chrono::seconds(10)));
    auto quick = co_await Timeout(std::chrono::seconds(10), Leaf(7));
    co_return std::pair{slow.has_value(), quick.has_value() && *quick == 7};
  }());
  EXPECT_FALSE(r->first);
  EXPECT_TRUE(r->second);
}

TEST(TaskTest, CancellationTokenStopsWork) {
  auto w = MakeWorker();
  auto r = w->BlockOn([]() -> Task<bool> {
    CancellationSource src;
    auto token = src.token();
    auto canceller = Spawn([](CancellationSource* s) -> Task<> {
      co_await Sleep(std::chrono::milliseconds(2));
      s->Cancel();
    }(&src));
    auto res = co_await WithCancellation(token, SleepTask(std::chrono::seconds(30)));
    co_await canceller;
    co_return !res.has_value() && token.cancelled();
  }());
  EXPECT_TRUE(*r);
}

TEST(TaskTest, TaskWokenByAnotherRunsInTheNextIteration) {
  auto w = MakeWorker();
  // A task woken by another waits for the next iteration (after the ring was
  // submitted and reaped), so two tasks that keep waking each other cannot
  // hold the loop away from the ring.
  auto r = w->BlockOn([]() -> Task<bool> {
    Worker& w = Worker::Current();
    WaitList list;
    uint64_t woken_at = 0;
    auto h = Spawn([](WaitList* l, uint64_t* at) -> Task<> {
      co_await l->Wait();
      *at = Worker::Current().metrics().loop_iterations.Get();
    }(&list, &woken_at));
    co_await Sleep(std::chrono::milliseconds(1));  // the waiter is parked
    const uint64_t notified_at = w.metrics().loop_iterations.Get();
    EXPECT_TRUE(list.NotifyOne());
    co_await h;
    EXPECT_GT(woken_at, notified_at);
    co_return woken_at > notified_at;
  }());
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(*r);
}

TEST(TaskTest, TaskThatWakesItselfIsNotLost) {
  auto w = MakeWorker();
  // Yield re-schedules the running task from inside its own poll; it must be
  // resumed in a later iteration, every time.
  auto r = w->BlockOn([]() -> Task<int> {
    int n = 0;
    for (int i = 0; i < 1000; ++i) {
      co_await Worker::Current().Yield();
      ++n;
    }
    co_return n;
  }());
  EXPECT_EQ(*r, 1000);
}

}  // namespace
}  // namespace ringline
