// WriteOrder (tools/blockserve/write_order.h) on two real workers: read-modify-
// writes of one block exclude each other and aligned writes across threads,
// aligned writes go free while no read-modify-write is pending, an RMW waits for
// aligned writes already in flight, and a waiter destroyed while queued leaves
// the table consistent.

#include "blockserve/write_order.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>

#include "ringline/ringline.h"

namespace blockserve {
namespace {

using namespace std::chrono_literals;
using ringline::Config;
using ringline::Runtime;
using ringline::Task;
using ringline::Worker;

template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds limit = 20s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

struct Shared {
  WriteOrder order{2};
  std::atomic<int> rmw_inside{0};
  std::atomic<int> aligned_inside{0};
  std::atomic<int> violations{0};
  std::atomic<int> done{0};
  std::atomic<int> fast{0};
};

Task<> Mix(Worker& w, Shared* s) {
  for (int i = 0; i < 400; ++i) {
    // Worker 0 only read-modify-writes; worker 1 alternates.
    if (w.index() == 0 || i % 2 == 0) {
      WriteOrder::Guard g = co_await s->order.ReadModifyWrite(0, 4096);
      if (s->rmw_inside.fetch_add(1) != 0 || s->aligned_inside.load() != 0) s->violations++;
      co_await ringline::Sleep(20us);  // held across a suspension, like device I/O
      s->rmw_inside.fetch_sub(1);
    } else {
      WriteOrder::Guard g = s->order.TryAligned();
      if (g) {
        s->fast++;
      } else {
        g = co_await s->order.LockAligned(0, 4096);
      }
      s->aligned_inside.fetch_add(1);
      if (s->rmw_inside.load() != 0) s->violations++;
      co_await ringline::Sleep(20us);
      s->aligned_inside.fetch_sub(1);
    }
  }
  s->done++;
  co_await w.stop_token().Cancelled();
}

TEST(WriteOrderTest, ReadModifyWritesExcludeEachOtherAndAlignedWritesAcrossWorkers) {
  Shared s;
  Config c;
  c.workers = 2;
  auto rt = Runtime::Start(c, [&s](Worker& w) -> Task<> { return Mix(w, &s); });
  ASSERT_TRUE(rt.ok()) << rt.status();
  EXPECT_TRUE(WaitFor([&] { return s.done.load() == 2; })) << "a worker never finished";
  EXPECT_EQ(s.violations.load(), 0);
  EXPECT_EQ(s.order.held(), 0u);
  EXPECT_EQ(s.order.waiting(), 0u);
  (*rt)->Shutdown();
  (*rt)->Join();
}

TEST(WriteOrderTest, AlignedWritesAreFreeUntilAnRmwWhichWaitsForThem) {
  WriteOrder order(2);
  std::atomic<int> stage{0};
  std::atomic<bool> rmw_granted{false};
  std::atomic<bool> fast_while_pending{true};
  Config c;
  c.workers = 2;
  auto rt = Runtime::Start(c, [&](Worker& w) -> Task<> {
    return [](Worker& w, WriteOrder* o, std::atomic<int>* stage, std::atomic<bool>* granted,
              std::atomic<bool>* fast_while_pending) -> Task<> {
      if (w.index() == 0) {
        WriteOrder::Guard g = o->TryAligned();  // nothing pending: free
        if (!g) *fast_while_pending = false;
        *stage = 1;
        while (stage->load() < 2) co_await ringline::Sleep(1ms);
        co_await ringline::Sleep(30ms);
        // The RMW is pending: a new aligned write must take the lock.
        WriteOrder::Guard second = o->TryAligned();
        *fast_while_pending = static_cast<bool>(second);
        *stage = 3;
        g.Release();  // the RMW may go now
      } else {
        while (stage->load() < 1) co_await ringline::Sleep(1ms);
        *stage = 2;
        WriteOrder::Guard g = co_await o->ReadModifyWrite(0, 4096);
        *granted = stage->load() >= 3;  // only after the aligned write left
        *stage = 4;
      }
      co_await w.stop_token().Cancelled();
    }(w, &order, &stage, &rmw_granted, &fast_while_pending);
  });
  ASSERT_TRUE(rt.ok()) << rt.status();
  EXPECT_TRUE(WaitFor([&] { return stage.load() == 4; }));
  EXPECT_TRUE(rmw_granted.load()) << "the RMW was granted while an aligned write was in flight";
  EXPECT_FALSE(fast_while_pending.load()) << "an aligned write went free with an RMW pending";
  EXPECT_EQ(order.held(), 0u);
  (*rt)->Shutdown();
  (*rt)->Join();
}

TEST(WriteOrderTest, AWaiterDestroyedInTheQueueLeavesItConsistent) {
  WriteOrder order(2);
  std::atomic<int> stage{0};
  Config c;
  c.workers = 2;
  auto rt = Runtime::Start(c, [&](Worker& w) -> Task<> {
    return [](Worker& w, WriteOrder* o, std::atomic<int>* stage) -> Task<> {
      if (w.index() == 0) {
        WriteOrder::Guard g = co_await o->ReadModifyWrite(0, 8192);
        *stage = 1;
        while (stage->load() < 2) co_await ringline::Sleep(1ms);
        g.Release();
        // The abandoned waiter must not hold anything now.
        WriteOrder::Guard again = co_await o->ReadModifyWrite(4096, 8192);
        *stage = 3;
      } else {
        while (stage->load() < 1) co_await ringline::Sleep(1ms);
        auto waiter = ringline::Spawn([](WriteOrder* o) -> Task<> {
          WriteOrder::Guard g = co_await o->ReadModifyWrite(0, 4096);
        }(o));
        co_await ringline::Sleep(10ms);
        waiter.Abort();  // destroyed while queued behind worker 0's lock
        *stage = 2;
      }
      co_await w.stop_token().Cancelled();
    }(w, &order, &stage);
  });
  ASSERT_TRUE(rt.ok()) << rt.status();
  EXPECT_TRUE(WaitFor([&] { return stage.load() == 3; })) << "the lock was never free again";
  EXPECT_TRUE(WaitFor([&] { return order.held() == 0 && order.waiting() == 0; }));
  (*rt)->Shutdown();
  (*rt)->Join();
}

// A grant posted to a worker that is destroyed before it runs the message
// (shutdown) is released all the same: the range does not stay locked for the
// workers still serving the export.
TEST(WriteOrderTest, AGrantToAWorkerDestroyedBeforeItsWakeUpIsReleased) {
  WriteOrder order(2);
  auto holder = Worker::Create(Config{}, 0);
  ASSERT_TRUE(holder.ok()) << holder.status();
  std::optional<WriteOrder::Guard> held =
      (*holder)->BlockOn([](WriteOrder* o) -> Task<WriteOrder::Guard> {
        co_return co_await o->ReadModifyWrite(0, 8192);
      }(&order));
  ASSERT_TRUE(held.has_value() && *held);

  std::atomic<int> stage{0};  // 1: waiter queued; 2: lock released (grant posted)
  std::thread other([&] {
    auto w = Worker::Create(Config{}, 1);
    if (!w.ok()) {
      ADD_FAILURE() << w.status();
      stage = -1;
      return;
    }
    (*w)->BlockOn([](WriteOrder* o) -> Task<> {
      ringline::Spawn([](WriteOrder* o) -> Task<> {
        WriteOrder::Guard g = co_await o->ReadModifyWrite(0, 4096);
      }(o))
          .Detach();
      while (o->waiting() == 0) co_await ringline::Sleep(1ms);
    }(&order));
    stage = 1;
    // The loop does not run again: the grant's message stays queued until the
    // worker (and its waiting task) is destroyed.
    WaitFor([&] { return stage.load() == 2; });
    w->reset();
  });
  ASSERT_TRUE(WaitFor([&] { return stage.load() != 0; }));
  ASSERT_EQ(stage.load(), 1);
  EXPECT_EQ(order.waiting(), 1u);
  held->Release();  // grants worker 1's waiter and posts it the wake-up
  EXPECT_EQ(order.waiting(), 0u);
  EXPECT_EQ(order.held(), 1u) << "granted to the waiter";
  stage = 2;
  other.join();
  EXPECT_EQ(order.held(), 0u) << "the undelivered grant was not released";
  // And the range can be taken again.
  std::optional<WriteOrder::Guard> again =
      (*holder)->BlockOn([](WriteOrder* o) -> Task<WriteOrder::Guard> {
        co_return co_await o->ReadModifyWrite(0, 4096);
      }(&order));
  EXPECT_TRUE(again.has_value() && *again);
}

}  // namespace
}  // namespace blockserve
