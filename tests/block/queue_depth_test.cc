// QueueDepthLimiter: FIFO admission, the limit is never exceeded, waiters that
// are destroyed leave the queue, and places granted to destroyed waiters are
// passed on.

#include "ringline/block/queue_depth.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "ringline/operation.h"
#include "ringline/sleep.h"
#include "ringline/spawn.h"
#include "ringline/worker.h"

namespace ringline::block {
namespace {

class QueueDepthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto w = Worker::Create(Config{});
    ASSERT_TRUE(w.ok()) << w.status();
    worker_ = std::move(*w);
  }
  std::unique_ptr<Worker> worker_;
};

struct Observed {
  uint32_t in_flight = 0;
  uint32_t max_in_flight = 0;
  std::vector<int> admission_order;  // request index, in order of admission
  std::vector<uint64_t> tickets;     // ticket of request i
};

// One request: waits for a place, holds it across a kernel round trip (a NOP),
// then releases it.
Task<> Request(QueueDepthLimiter* limiter, Observed* obs, int index) {
  QueueDepthLimiter::Permit p = co_await limiter->Acquire();
  obs->admission_order.push_back(index);
  obs->tickets[index] = p.ticket();
  ++obs->in_flight;
  obs->max_in_flight = std::max(obs->max_in_flight, obs->in_flight);
  EXPECT_LE(limiter->in_flight(), limiter->limit());
  // Hold the place for a varying number of kernel round trips so releases
  // interleave with admissions.
  for (int i = 0; i <= index % 3; ++i) co_await Nop();
  --obs->in_flight;
}

TEST_F(QueueDepthTest, ThousandRequestsLimitEightFifoNeverAboveLimit) {
  QueueDepthLimiter limiter(8);
  Observed obs;
  constexpr int kRequests = 1000;
  obs.tickets.resize(kRequests);
  worker_->BlockOn([](QueueDepthLimiter* l, Observed* o) -> Task<> {
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < kRequests; ++i) hs.push_back(Spawn(Request(l, o, i)));
    for (auto& h : hs) co_await h;
  }(&limiter, &obs));
  ASSERT_EQ(obs.admission_order.size(), static_cast<size_t>(kRequests));
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_EQ(obs.admission_order[i], i) << "admitted out of FIFO order at position " << i;
    ASSERT_EQ(obs.tickets[i], static_cast<uint64_t>(i));
  }
  EXPECT_EQ(obs.max_in_flight, 8u);
  EXPECT_EQ(limiter.metrics().max_in_flight.Get(), 8u);
  EXPECT_EQ(limiter.metrics().admitted.Get(), static_cast<uint64_t>(kRequests));
  EXPECT_EQ(limiter.metrics().waited.Get(), static_cast<uint64_t>(kRequests - 8));
  EXPECT_EQ(limiter.metrics().wait_ns.Read().count, static_cast<uint64_t>(kRequests - 8));
  EXPECT_EQ(limiter.in_flight(), 0u);
  EXPECT_EQ(limiter.waiting(), 0u);
  EXPECT_EQ(limiter.metrics().in_flight.Get(), 0u);
  EXPECT_EQ(limiter.metrics().waiting.Get(), 0u);
}

TEST_F(QueueDepthTest, DestroyedWaiterLeavesTheQueue) {
  QueueDepthLimiter limiter(1);
  worker_->BlockOn([](QueueDepthLimiter* l) -> Task<> {
    QueueDepthLimiter::Permit held = co_await l->Acquire();
    std::vector<int> order;
    auto waiter = [](QueueDepthLimiter* l, std::vector<int>* order, int i) -> Task<> {
      QueueDepthLimiter::Permit p = co_await l->Acquire();
      order->push_back(i);
    };
    auto a = Spawn(waiter(l, &order, 1));
    auto b = Spawn(waiter(l, &order, 2));
    auto c = Spawn(waiter(l, &order, 3));
    co_await Sleep(std::chrono::milliseconds(1));
    EXPECT_EQ(l->waiting(), 3u);
    b.Abort();  // destroyed while waiting
    EXPECT_EQ(l->waiting(), 2u);
    held.Release();
    co_await a;
    co_await c;
    EXPECT_EQ(order, (std::vector<int>{1, 3}));
    EXPECT_EQ(l->in_flight(), 0u);
  }(&limiter));
}

TEST_F(QueueDepthTest, PlaceGrantedToADestroyedWaiterIsPassedOn) {
  QueueDepthLimiter limiter(1);
  worker_->BlockOn([](QueueDepthLimiter* l) -> Task<> {
    QueueDepthLimiter::Permit held = co_await l->Acquire();
    bool second_ran = false;
    auto first = Spawn([](QueueDepthLimiter* l) -> Task<> {
      QueueDepthLimiter::Permit p = co_await l->Acquire();
      ADD_FAILURE() << "destroyed before it could run";
    }(l));
    auto second = Spawn([](QueueDepthLimiter* l, bool* ran) -> Task<> {
      QueueDepthLimiter::Permit p = co_await l->Acquire();
      *ran = true;
    }(l, &second_ran));
    co_await Sleep(std::chrono::milliseconds(1));
    held.Release();  // granted to `first`, which is scheduled but has not run
    EXPECT_EQ(l->in_flight(), 1u);
    first.Abort();  // its place goes to `second`
    co_await second;
    EXPECT_TRUE(second_ran);
    EXPECT_EQ(l->in_flight(), 0u);
    EXPECT_EQ(l->waiting(), 0u);
  }(&limiter));
}

TEST_F(QueueDepthTest, TryAcquireNeverOvertakesWaiters) {
  QueueDepthLimiter limiter(2);
  worker_->BlockOn([](QueueDepthLimiter* l) -> Task<> {
    auto p1 = l->TryAcquire();
    auto p2 = l->TryAcquire();
    EXPECT_TRUE(p1);
    EXPECT_TRUE(p2);
    EXPECT_FALSE(l->TryAcquire());
    auto w = Spawn([](QueueDepthLimiter* l) -> Task<> {
      QueueDepthLimiter::Permit p = co_await l->Acquire();
      co_await Sleep(std::chrono::milliseconds(2));
    }(l));
    co_await Sleep(std::chrono::milliseconds(1));
    p1.Release();  // handed to the waiter, not free for TryAcquire
    EXPECT_FALSE(l->TryAcquire());
    co_await w;
    EXPECT_TRUE(l->TryAcquire());
  }(&limiter));
}

TEST_F(QueueDepthTest, RaisingTheLimitAdmitsWaiters) {
  QueueDepthLimiter limiter(1);
  worker_->BlockOn([](QueueDepthLimiter* l) -> Task<> {
    auto held = l->TryAcquire();
    int admitted = 0;
    auto waiter = [](QueueDepthLimiter* l, int* n) -> Task<> {
      QueueDepthLimiter::Permit p = co_await l->Acquire();
      ++*n;
      co_await Sleep(std::chrono::milliseconds(5));
    };
    auto a = Spawn(waiter(l, &admitted));
    auto b = Spawn(waiter(l, &admitted));
    co_await Sleep(std::chrono::milliseconds(1));
    EXPECT_EQ(admitted, 0);
    l->SetLimit(3);
    co_await Sleep(std::chrono::milliseconds(1));
    EXPECT_EQ(admitted, 2);
    EXPECT_EQ(l->in_flight(), 3u);
    held.Release();
    co_await a;
    co_await b;
  }(&limiter));
}

TEST(QueueDepthDeathTest, DestroyingALimiterWithPlacesHeldAbortsWithAReason) {
  EXPECT_DEATH(
      {
        auto* limiter = new QueueDepthLimiter(2);
        auto permit = limiter->TryAcquire();
        delete limiter;
      },
      "destroyed before the tasks using it");
}

}  // namespace
}  // namespace ringline::block
