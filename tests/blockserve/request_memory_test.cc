// Request buffers beyond the pools (blockserve/request_memory.h): the pool
// first, then the server-wide budget, then a wait for the pool; every charge
// is returned when its holder goes.
#include "blockserve/request_memory.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "ringline/ringline.h"

namespace blockserve {
namespace {

using ringline::Buffer;
using ringline::BufferPool;
using ringline::Task;
using ringline::Worker;

TEST(BufferBudgetTest, ChargesUpToTheLimitAndNoFurther) {
  BufferBudget b(10 << 20);
  EXPECT_TRUE(b.TryCharge(4 << 20));
  EXPECT_TRUE(b.TryCharge(6 << 20));
  EXPECT_FALSE(b.TryCharge(1));
  b.Release(6 << 20);
  EXPECT_EQ(b.used(), 4u << 20);
  EXPECT_FALSE(b.TryCharge(uint64_t{1} << 40)) << "more than the limit, even alone";
  BufferBudget none(0);
  EXPECT_FALSE(none.TryCharge(4096));
}

class RequestMemoryTest : public ::testing::Test {
 public:  // the test coroutines reach these through `t`
  void SetUp() override {
    auto w = Worker::Create(ringline::Config{});
    ASSERT_TRUE(w.ok()) << w.status();
    worker_ = std::move(*w);
    auto p = BufferPool::Create(*worker_, {.buffer_size = 64 * 1024, .count = 2});
    ASSERT_TRUE(p.ok()) << p.status();
    pool_ = std::move(*p);
  }
  RequestBufferSource Source(BufferBudget* budget) {
    return {pool_.get(), budget, &allocated_, &waits_};
  }
  // Takes both pool buffers (the pool is empty afterwards).
  Task<std::pair<Buffer, Buffer>> EmptyThePool(BufferBudget* budget, BudgetCharge& c1,
                                               BudgetCharge& c2) {
    Buffer a = co_await AcquireRequestBuffer(Source(budget), 64 * 1024, c1);
    Buffer b = co_await AcquireRequestBuffer(Source(budget), 64 * 1024, c2);
    co_return std::pair<Buffer, Buffer>(std::move(a), std::move(b));
  }
  std::unique_ptr<Worker> worker_;
  std::unique_ptr<BufferPool> pool_;
  ringline::Gauge allocated_;
  ringline::Counter waits_;
};

TEST_F(RequestMemoryTest, PoolFirstThenTheBudgetThenAWaitForThePool) {
  BufferBudget budget(100 * 1024);  // one 64 KiB allocation fits, a second does not
  worker_->BlockOn([](RequestMemoryTest* t, BufferBudget* budget) -> Task<> {
    BudgetCharge c1, c2, c3, c4;
    Buffer a = co_await AcquireRequestBuffer(t->Source(budget), 64 * 1024, c1);
    Buffer b = co_await AcquireRequestBuffer(t->Source(budget), 64 * 1024, c2);
    EXPECT_EQ(c1.bytes() + c2.bytes(), 0u) << "pool buffers cost no budget";
    EXPECT_EQ(t->pool_->available(), 0u);
    // The pool is empty: allocated, page-rounded, against the budget.
    Buffer c = co_await AcquireRequestBuffer(t->Source(budget), 60 * 1024 + 1, c3);
    EXPECT_TRUE(c);
    EXPECT_FALSE(c.registered());
    EXPECT_EQ(c3.bytes(), 64u * 1024);
    EXPECT_EQ(budget->used(), 64u * 1024);
    EXPECT_EQ(t->allocated_.Get(), 64u * 1024);
    // The budget is spent too: it waits for a pool buffer, which `a` returns.
    auto waiter = ringline::Spawn(
        [](RequestMemoryTest* t, BufferBudget* budget, BudgetCharge* charge) -> Task<Buffer> {
          co_return co_await AcquireRequestBuffer(t->Source(budget), 64 * 1024, *charge);
        }(t, budget, &c4));
    co_await ringline::Sleep(std::chrono::milliseconds(5));
    EXPECT_EQ(t->waits_.Get(), 1u);
    EXPECT_EQ(t->pool_->waiting(), 1u);
    a.Reset();
    Buffer d = std::move(*co_await waiter);  // the join handle's optional
    EXPECT_TRUE(d.registered()) << "the pool's buffer";
    EXPECT_EQ(c4.bytes(), 0u);
    // Releasing a charge returns its bytes to the budget and the gauge.
    c.Reset();
    c3.Reset();
    EXPECT_EQ(budget->used(), 0u);
    EXPECT_EQ(t->allocated_.Get(), 0u);
  }(this, &budget));
}

// A request waiting for a pool buffer is also woken by room freed in the
// budget, and allocates then. Without that wake-up it would wait until a pool
// buffer came back (here: never), and the bounded wait below fails.
TEST_F(RequestMemoryTest, RoomFreedInTheBudgetWakesAWaiter) {
  BufferBudget budget(100 * 1024);  // one 64 KiB allocation fits, a second does not
  worker_->BlockOn([](RequestMemoryTest* t, BufferBudget* budget) -> Task<> {
    BudgetCharge c1, c2, c3, c4;
    auto pool_buffers = co_await t->EmptyThePool(budget, c1, c2);
    Buffer c = co_await AcquireRequestBuffer(t->Source(budget), 64 * 1024, c3);
    EXPECT_EQ(c3.bytes(), 64u * 1024);
    // The allocated request finishes while the next one waits: its buffer and
    // its charge go.
    auto finisher = ringline::Spawn(
        [](RequestMemoryTest* t, BufferBudget* budget, Buffer* c, BudgetCharge* c3) -> Task<> {
          for (int i = 0; i < 5000 && budget->waiting() == 0; ++i) {
            co_await ringline::Sleep(std::chrono::milliseconds(1));
          }
          EXPECT_EQ(budget->waiting(), 1u) << "it waits for room in the budget";
          EXPECT_EQ(t->pool_->waiting(), 1u) << "and for the pool";
          c->Reset();
          c3->Reset();
        }(t, budget, &c, &c3));
    std::optional<Buffer> got = co_await ringline::Timeout(
        std::chrono::seconds(5), AcquireRequestBuffer(t->Source(budget), 64 * 1024, c4));
    co_await finisher;
    EXPECT_TRUE(got.has_value()) << "the waiter was not woken by the budget's room";
    if (!got) co_return;  // (the waiter was destroyed: it left the pool's list)
    EXPECT_TRUE(*got);
    EXPECT_FALSE(got->registered()) << "allocated against the budget, not the pool's";
    EXPECT_EQ(c4.bytes(), 64u * 1024);
    EXPECT_EQ(budget->used(), 64u * 1024);
    EXPECT_EQ(budget->waiting(), 0u);
    EXPECT_EQ(t->pool_->waiting(), 0u) << "it left the pool's list";
    EXPECT_EQ(t->pool_->available(), 0u) << "and took no pool buffer";
    EXPECT_EQ(t->waits_.Get(), 1u) << "one wait, counted once";
  }(this, &budget));
}

// The same when the room is freed on another thread (a request of another
// worker): the wake-up is posted to the waiter's worker.
TEST_F(RequestMemoryTest, RoomFreedOnAnotherThreadWakesAWaiter) {
  BufferBudget budget(100 * 1024);
  std::atomic<bool> released{false};
  worker_->BlockOn(
      [](RequestMemoryTest* t, BufferBudget* budget, std::atomic<bool>* released) -> Task<> {
        BudgetCharge c1, c2, c3;
        auto pool_buffers = co_await t->EmptyThePool(budget, c1, c2);
        EXPECT_TRUE(budget->TryCharge(100 * 1024)) << "another worker's requests spend it all";
        std::thread other([budget, released] {
          for (int i = 0; i < 5000 && budget->waiting() == 0; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          }
          budget->Release(100 * 1024);
          released->store(true);
        });
        std::optional<Buffer> got = co_await ringline::Timeout(
            std::chrono::seconds(5), AcquireRequestBuffer(t->Source(budget), 4096, c3));
        other.join();
        EXPECT_TRUE(released->load());
        EXPECT_TRUE(got.has_value()) << "the waiter was not woken from the other thread";
        if (!got) co_return;
        EXPECT_TRUE(*got);
        EXPECT_EQ(c3.bytes(), 4096u);
        EXPECT_EQ(t->pool_->waiting(), 0u);
      }(this, &budget, &released));
}

// A request larger than the whole budget can only get a pool buffer: it does
// not wait for room that could never be enough.
TEST_F(RequestMemoryTest, ARequestLargerThanTheBudgetWaitsForThePoolOnly) {
  BufferBudget budget(16 * 1024);
  worker_->BlockOn([](RequestMemoryTest* t, BufferBudget* budget) -> Task<> {
    BudgetCharge c1, c2, c3;
    auto pool_buffers = co_await t->EmptyThePool(budget, c1, c2);
    auto returner =
        ringline::Spawn([](RequestMemoryTest* t, BufferBudget* budget, Buffer* a) -> Task<> {
          for (int i = 0; i < 5000 && t->pool_->waiting() == 0; ++i) {
            co_await ringline::Sleep(std::chrono::milliseconds(1));
          }
          EXPECT_EQ(budget->waiting(), 0u);
          a->Reset();
        }(t, budget, &pool_buffers.first));
    std::optional<Buffer> got = co_await ringline::Timeout(
        std::chrono::seconds(5), AcquireRequestBuffer(t->Source(budget), 64 * 1024, c3));
    co_await returner;
    EXPECT_TRUE(got.has_value());
    if (got) {
      EXPECT_TRUE(got->registered()) << "the pool's buffer";
    }
    EXPECT_EQ(t->waits_.Get(), 1u);
  }(this, &budget));
}

TEST_F(RequestMemoryTest, WithoutABudgetThePoolIsTheOnlySource) {
  worker_->BlockOn([](RequestMemoryTest* t) -> Task<> {
    BudgetCharge c1, c2, c3;
    Buffer a = co_await AcquireRequestBuffer(t->Source(nullptr), 4096, c1);
    Buffer b = co_await AcquireRequestBuffer(t->Source(nullptr), 4096, c2);
    auto waiter = ringline::Spawn([](RequestMemoryTest* t, BudgetCharge* c) -> Task<Buffer> {
      co_return co_await AcquireRequestBuffer(t->Source(nullptr), 4096, *c);
    }(t, &c3));
    co_await ringline::Sleep(std::chrono::milliseconds(5));
    EXPECT_EQ(t->pool_->waiting(), 1u);
    b.Reset();
    Buffer c = std::move(*co_await waiter);
    EXPECT_TRUE(c);
    EXPECT_EQ(t->allocated_.Get(), 0u);
  }(this));
}

}  // namespace
}  // namespace blockserve
