// WaitList: FIFO wake-ups, no stored notifications, and cancellation at every
// point of a wait (queued, woken by NotifyOne, woken by NotifyAll) without a
// lost wake-up or a dangling waiter (run under ASan in the sanitizer build).
#include "ringline/wait_list.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "ringline/buffer_pool.h"
#include "ringline/spawn.h"
#include "ringline/worker.h"

namespace ringline {
namespace {

class WaitListTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto w = Worker::Create(Config{});
    ASSERT_TRUE(w.ok()) << w.status();
    worker_ = std::move(*w);
  }
  // Lets every ready task run (two yields: a woken task runs in the next turn).
  void Settle() {
    worker_->BlockOn([]() -> Task<> {
      co_await Worker::Current().Yield();
      co_await Worker::Current().Yield();
    }());
  }
  std::unique_ptr<Worker> worker_;
};

Task<> WaitOnce(WaitList* list, std::vector<int>* woken, int index) {
  co_await list->Wait();
  woken->push_back(index);
}

TEST_F(WaitListTest, NotifyOneWakesWaitersInArrivalOrder) {
  WaitList list;
  std::vector<int> woken;
  std::vector<JoinHandle<void>> tasks;
  for (int i = 0; i < 5; ++i) tasks.push_back(Spawn(WaitOnce(&list, &woken, i)));
  Settle();
  EXPECT_EQ(list.size(), 5u);
  EXPECT_TRUE(woken.empty());
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(list.NotifyOne());
    Settle();
    EXPECT_EQ(woken.size(), static_cast<std::size_t>(i + 1));
  }
  EXPECT_EQ(woken, (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_TRUE(list.empty());
  EXPECT_FALSE(list.NotifyOne());
}

TEST_F(WaitListTest, NotifyAllWakesEveryWaiterInOrderAndNotLaterOnes) {
  WaitList list;
  std::vector<int> woken;
  std::vector<JoinHandle<void>> tasks;
  for (int i = 0; i < 3; ++i) tasks.push_back(Spawn(WaitOnce(&list, &woken, i)));
  Settle();
  EXPECT_EQ(list.NotifyAll(), 3u);
  // A task that starts waiting after the notification is not woken by it.
  tasks.push_back(Spawn(WaitOnce(&list, &woken, 3)));
  Settle();
  EXPECT_EQ(woken, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(list.size(), 1u);
  list.NotifyAll();
  Settle();
  EXPECT_EQ(woken, (std::vector<int>{0, 1, 2, 3}));
}

TEST_F(WaitListTest, ANotificationWithNobodyWaitingIsNotStored) {
  WaitList list;
  std::vector<int> woken;
  EXPECT_FALSE(list.NotifyOne());
  EXPECT_EQ(list.NotifyAll(), 0u);
  auto t = Spawn(WaitOnce(&list, &woken, 7));
  Settle();
  EXPECT_TRUE(woken.empty());  // the earlier notifications did not count
  EXPECT_FALSE(t.done());
  list.NotifyOne();
  Settle();
  EXPECT_EQ(woken, (std::vector<int>{7}));
  EXPECT_TRUE(t.done());
}

TEST_F(WaitListTest, TheConditionLoopSeesANotificationThatCameFirst) {
  WaitList list;
  bool ready = false;
  bool done = false;
  ready = true;  // the state change, and its notification, come before the wait
  list.NotifyOne();
  auto t = Spawn([](WaitList* l, bool* r, bool* d) -> Task<> {
    while (!*r) co_await l->Wait();
    *d = true;
  }(&list, &ready, &done));
  Settle();
  EXPECT_TRUE(done);
  EXPECT_TRUE(list.empty());
}

TEST_F(WaitListTest, AWaiterDestroyedWhileQueuedLeavesTheList) {
  WaitList list;
  std::vector<int> woken;
  auto a = Spawn(WaitOnce(&list, &woken, 0));
  auto b = Spawn(WaitOnce(&list, &woken, 1));
  auto c = Spawn(WaitOnce(&list, &woken, 2));
  Settle();
  ASSERT_EQ(list.size(), 3u);
  b.Abort();
  EXPECT_TRUE(b.aborted());
  EXPECT_EQ(list.size(), 2u);
  a.Abort();  // the head
  c.Abort();  // the tail, now the only one
  EXPECT_TRUE(list.empty());
  EXPECT_FALSE(list.NotifyOne());
  Settle();
  EXPECT_TRUE(woken.empty());
}

TEST_F(WaitListTest, AWakeUpHandedToADestroyedWaiterIsPassedOn) {
  WaitList list;
  std::vector<int> woken;
  auto a = Spawn(WaitOnce(&list, &woken, 0));
  auto b = Spawn(WaitOnce(&list, &woken, 1));
  Settle();
  ASSERT_TRUE(list.NotifyOne());  // a is woken, not yet resumed
  EXPECT_EQ(list.size(), 1u);
  a.Abort();                  // ... and destroyed before it runs
  EXPECT_TRUE(list.empty());  // the wake-up went to b
  Settle();
  EXPECT_EQ(woken, (std::vector<int>{1}));
  EXPECT_TRUE(b.done());
}

TEST_F(WaitListTest, APassedOnWakeUpWithNobodyLeftIsDropped) {
  WaitList list;
  std::vector<int> woken;
  auto a = Spawn(WaitOnce(&list, &woken, 0));
  Settle();
  list.NotifyOne();
  a.Abort();
  EXPECT_TRUE(list.empty());
  auto b = Spawn(WaitOnce(&list, &woken, 1));
  Settle();
  EXPECT_TRUE(woken.empty());  // not stored for a later waiter
  EXPECT_EQ(list.size(), 1u);
  b.Abort();
}

TEST_F(WaitListTest, NotifyAllIsNotPassedOnByADestroyedWaiter) {
  WaitList list;
  std::vector<int> woken;
  auto a = Spawn(WaitOnce(&list, &woken, 0));
  auto b = Spawn(WaitOnce(&list, &woken, 1));
  Settle();
  list.NotifyAll();
  a.Abort();  // woken by NotifyAll: b was woken too, nothing to pass on
  auto c = Spawn(WaitOnce(&list, &woken, 2));
  Settle();
  EXPECT_EQ(woken, (std::vector<int>{1}));
  EXPECT_EQ(list.size(), 1u);  // c still waits
  c.Abort();
}

TEST_F(WaitListTest, AWaiterDestroyedAfterItResumedDoesNothing) {
  WaitList list;
  int resumed = 0;
  auto t = Spawn([](WaitList* l, int* n) -> Task<> {
    co_await l->Wait();
    ++*n;
    co_await Worker::Current().Yield();  // suspended elsewhere
    ++*n;
  }(&list, &resumed));
  Settle();
  list.NotifyOne();
  worker_->BlockOn([]() -> Task<> { co_await Worker::Current().Yield(); }());
  EXPECT_GE(resumed, 1);
  t.Abort();
  EXPECT_TRUE(list.empty());
  EXPECT_FALSE(list.NotifyOne());
}

// Join handles wait in a WaitList: an awaiting task destroyed mid-wait leaves
// it, and an aborted task wakes its awaiters with nullopt.
TEST_F(WaitListTest, JoinHandleAwaitersCanBeCancelledAndSeeAborts) {
  WaitList gate;
  auto target = Spawn([](WaitList* g) -> Task<int> {
    co_await g->Wait();
    co_return 5;
  }(&gate));
  std::vector<std::optional<int>> seen;
  auto join = [](JoinHandle<int>* h, std::vector<std::optional<int>>* out) -> Task<> {
    out->push_back(co_await *h);
  };
  auto j1 = Spawn(join(&target, &seen));
  Settle();
  j1.Abort();  // destroyed while waiting on the handle
  auto j2 = Spawn(join(&target, &seen));
  Settle();
  EXPECT_TRUE(seen.empty());
  gate.NotifyOne();
  Settle();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], 5);

  auto stuck = Spawn([](WaitList* g) -> Task<int> {
    co_await g->Wait();
    co_return 6;
  }(&gate));
  auto j3 = Spawn(join(&stuck, &seen));
  Settle();
  stuck.Abort();
  Settle();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1], std::nullopt);
}

// The buffer pool's waiters: a buffer handed to a waiter that is destroyed
// before it resumes goes to the next waiter.
TEST_F(WaitListTest, PoolBufferHandedToADestroyedWaiterGoesToTheNextOne) {
  auto pool =
      BufferPool::Create(*worker_, {.buffer_size = 4096, .count = 1, .register_with_ring = false});
  ASSERT_TRUE(pool.ok()) << pool.status();
  Buffer held = (*pool)->TryAcquire();
  ASSERT_TRUE(held);
  std::vector<int> got;
  auto take = [](BufferPool* p, std::vector<int>* out, int i) -> Task<> {
    Buffer b = co_await p->Acquire();
    if (b) out->push_back(i);
  };
  auto a = Spawn(take(pool->get(), &got, 0));
  auto b = Spawn(take(pool->get(), &got, 1));
  Settle();
  EXPECT_EQ((*pool)->waiting(), 2u);
  held = Buffer();  // handed to a, which has not run yet
  EXPECT_EQ((*pool)->waiting(), 1u);
  a.Abort();  // a's buffer returns to the pool and so to b
  EXPECT_EQ((*pool)->waiting(), 0u);
  Settle();
  EXPECT_EQ(got, (std::vector<int>{1}));
  EXPECT_EQ((*pool)->available(), 1u);
}

}  // namespace
}  // namespace ringline
