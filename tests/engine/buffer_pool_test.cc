// BufferPool deadlines and SizeClassPool: class selection, falling back to a
// larger class, FIFO waiters, deadline expiry (and expired waiters skipped by
// returned buffers), cancellation while waiting, configuration errors naming
// the field. Run under ASan in CI.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "ringline/align.h"
#include "ringline/ringline.h"
#include "tests/allocation_counter.h"

namespace ringline {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<Worker> NewWorker() {
  auto w = Worker::Create(Config{});
  EXPECT_TRUE(w.ok()) << w.status();
  return w.ok() ? std::move(*w) : nullptr;
}

TEST(SizeClassPoolTest, AcquireGivesTheSmallestClassThatFits) {
  auto w = NewWorker();
  ASSERT_NE(w, nullptr);
  auto p = SizeClassPool::Create(*w, SizeClassPool::Options::PowersOfTwo(4096, 65536, 2));
  ASSERT_TRUE(p.ok()) << p.status();
  SizeClassPool& pool = **p;
  ASSERT_EQ(pool.class_count(), 5u);  // 4K 8K 16K 32K 64K
  EXPECT_EQ(pool.ClassFor(1), 0);
  EXPECT_EQ(pool.ClassFor(4096), 0);
  EXPECT_EQ(pool.ClassFor(4097), 1);
  EXPECT_EQ(pool.ClassFor(65536), 4);
  EXPECT_EQ(pool.ClassFor(65537), -1);
  w->BlockOn([](SizeClassPool& pool) -> Task<> {
    for (auto [want, cap] : std::vector<std::pair<std::size_t, std::size_t>>{
             {1, 4096}, {4096, 4096}, {4097, 8192}, {20000, 32768}, {65536, 65536}}) {
      Result<Buffer> b = co_await pool.Acquire(want);
      EXPECT_TRUE(b.ok()) << want;
      if (!b.ok()) continue;
      EXPECT_EQ(b->capacity(), cap) << "Acquire(" << want << ")";
      EXPECT_TRUE(IsAligned(b->data(), 4096u));
      EXPECT_TRUE(b->registered()) << "registered like a BufferPool's";
    }
    Result<Buffer> big = co_await pool.Acquire(65537);
    EXPECT_FALSE(big.ok());
    EXPECT_EQ(big.error(), EMSGSIZE);
    EXPECT_NE(big.ErrorString().find("65536"), std::string::npos) << big.ErrorString();
  }(pool));
  for (std::size_t k = 0; k < pool.class_count(); ++k) EXPECT_EQ(pool.pool(k).available(), 2u);
}

TEST(SizeClassPoolTest, TakesALargerClassWhenTheFittingOneIsEmpty) {
  auto w = NewWorker();
  ASSERT_NE(w, nullptr);
  auto p = SizeClassPool::Create(
      *w, {.classes = {{.buffer_size = 8192, .count = 1}, {.buffer_size = 4096, .count = 1}}});
  ASSERT_TRUE(p.ok()) << p.status();
  SizeClassPool& pool = **p;
  EXPECT_EQ(pool.pool(0).buffer_size(), 4096u) << "classes are sorted";
  Buffer a = pool.TryAcquire(100);
  ASSERT_TRUE(a);
  EXPECT_EQ(a.capacity(), 4096u);
  Buffer b = pool.TryAcquire(100);
  ASSERT_TRUE(b);
  EXPECT_EQ(b.capacity(), 8192u) << "the 4K class is empty: the next larger free one";
  EXPECT_FALSE(pool.TryAcquire(100)) << "nothing free anywhere";
  b.Reset();
  EXPECT_EQ(pool.pool(1).available(), 1u) << "a buffer goes back to its own class";
}

TEST(SizeClassPoolTest, ConfigurationErrorsNameTheField) {
  auto w = NewWorker();
  ASSERT_NE(w, nullptr);
  auto empty = SizeClassPool::Create(*w, {});
  EXPECT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("classes"), std::string::npos) << empty.status();
  auto dup = SizeClassPool::Create(
      *w, {.classes = {{.buffer_size = 4000, .count = 1}, {.buffer_size = 4096, .count = 1}}});
  EXPECT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("4096"), std::string::npos) << dup.status();
  auto zero = SizeClassPool::Create(*w, {.classes = {{.buffer_size = 4096, .count = 0}}});
  EXPECT_FALSE(zero.ok());
  EXPECT_NE(zero.status().message().find("count"), std::string::npos) << zero.status();
}

TEST(SizeClassPoolTest, WaitersAreServedInFifoOrder) {
  auto w = NewWorker();
  ASSERT_NE(w, nullptr);
  auto p = SizeClassPool::Create(*w, {.classes = {{.buffer_size = 4096, .count = 1}}});
  ASSERT_TRUE(p.ok()) << p.status();
  std::vector<int> order;
  w->BlockOn([](SizeClassPool& pool, std::vector<int>& order) -> Task<> {
    Buffer held = pool.TryAcquire(1);
    EXPECT_TRUE(held);
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < 5; ++i) {
      hs.push_back(Spawn([](SizeClassPool& pool, std::vector<int>& order, int i) -> Task<> {
        Result<Buffer> b = co_await pool.Acquire(100 * (i + 1));
        EXPECT_TRUE(b.ok());
        order.push_back(i);
        co_await Sleep(100us);
      }(pool, order, i)));
    }
    co_await Sleep(1ms);
    EXPECT_EQ(pool.pool(0).waiting(), 5u);
    held.Reset();  // hands the buffer to the first waiter, and so on
    for (auto& h : hs) co_await h;
  }(**p, order));
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(BufferPoolDeadlineTest, TimesOutWhenNothingFreesInTime) {
  auto w = NewWorker();
  ASSERT_NE(w, nullptr);
  auto p = BufferPool::Create(*w, {.buffer_size = 4096, .count = 1});
  ASSERT_TRUE(p.ok()) << p.status();
  BufferPool& pool = **p;
  const std::size_t timers_before = w->timers().size();
  w->BlockOn([](BufferPool& pool) -> Task<> {
    Buffer held = pool.TryAcquire();
    const auto start = Clock::now();
    Result<Buffer> late = co_await pool.AcquireFor(5ms);
    EXPECT_GE(Clock::now() - start, 5ms) << "never early";
    EXPECT_FALSE(late.ok());
    EXPECT_EQ(late.error(), ETIMEDOUT);
    EXPECT_NE(late.ErrorString().find("4096-byte"), std::string::npos) << late.ErrorString();
    EXPECT_EQ(pool.waiting(), 0u) << "a timed-out waiter leaves the list";
    // A deadline already past times out without waiting.
    Result<Buffer> past = co_await pool.AcquireUntil(Clock::now() - 1ms);
    EXPECT_EQ(past.error(), ETIMEDOUT);
    // A buffer returned before the deadline is handed over, and the timer goes.
    auto h = Spawn([](BufferPool& pool) -> Task<> {
      Result<Buffer> b = co_await pool.AcquireFor(10s);
      EXPECT_TRUE(b.ok());
    }(pool));
    co_await Sleep(1ms);
    held.Reset();
    co_await h;
  }(pool));
  EXPECT_EQ(w->timers().size(), timers_before) << "no timer left armed";
  EXPECT_EQ(pool.available(), 1u);
}

TEST(BufferPoolDeadlineTest, AnExpiredWaiterIsSkippedByAReturnedBuffer) {
  auto w = NewWorker();
  ASSERT_NE(w, nullptr);
  auto p = BufferPool::Create(*w, {.buffer_size = 4096, .count = 1});
  ASSERT_TRUE(p.ok()) << p.status();
  BufferPool& pool = **p;
  w->BlockOn([](BufferPool& pool) -> Task<> {
    Buffer held = pool.TryAcquire();
    const auto t = Clock::now() + 5ms;
    int got = -1;
    // The releaser's sleep is armed first with the same deadline as the timed
    // waiter's, so at t it runs first: it returns the buffer while the timed
    // waiter has expired but not yet resumed. The buffer must go past it to
    // the untimed waiter behind it.
    auto releaser = Spawn([](Buffer held, Clock::time_point t) -> Task<> {
      co_await SleepUntil(t);
      held.Reset();
    }(std::move(held), t));
    auto timed = Spawn([](BufferPool& pool, Clock::time_point t) -> Task<> {
      Result<Buffer> b = co_await pool.AcquireUntil(t);
      EXPECT_EQ(b.error(), ETIMEDOUT);
    }(pool, t));
    auto patient = Spawn([](BufferPool& pool, int& got) -> Task<> {
      Buffer b = co_await pool.Acquire();
      got = b ? 1 : 0;
    }(pool, got));
    co_await releaser;
    co_await timed;
    co_await patient;
    EXPECT_EQ(got, 1);
  }(pool));
  EXPECT_EQ(pool.available(), 1u);
  EXPECT_EQ(pool.waiting(), 0u);
}

TEST(BufferPoolDeadlineTest, CancelledWhileWaitingLeavesNothingBehind) {
  auto w = NewWorker();
  ASSERT_NE(w, nullptr);
  auto p = SizeClassPool::Create(*w, {.classes = {{.buffer_size = 4096, .count = 1}}});
  ASSERT_TRUE(p.ok()) << p.status();
  SizeClassPool& pool = **p;
  const std::size_t timers_before = w->timers().size();
  w->BlockOn([](SizeClassPool& pool) -> Task<> {
    Buffer held = pool.TryAcquire(1);
    // Timeout cancels (destroys) the waiting acquires: one timed, one not.
    auto a = co_await Timeout(2ms, pool.AcquireFor(1, 10s));
    EXPECT_FALSE(a.has_value());
    auto b = co_await Timeout(2ms, pool.Acquire(1));
    EXPECT_FALSE(b.has_value());
    EXPECT_EQ(pool.pool(0).waiting(), 0u);
    // A buffer handed to a waiter that is destroyed before it resumed goes
    // back to the pool (here: to the next waiter).
    auto first = Spawn([](SizeClassPool& pool) -> Task<> {
      Result<Buffer> r = co_await pool.AcquireFor(1, 10s);
      ADD_FAILURE() << "the cancelled waiter ran";
    }(pool));
    auto second = Spawn([](SizeClassPool& pool) -> Task<> {
      Result<Buffer> r = co_await pool.Acquire(1);
      EXPECT_TRUE(r.ok());
    }(pool));
    co_await Sleep(1ms);
    held.Reset();   // hands the buffer to `first` (scheduled, not yet resumed)
    first.Abort();  // destroyed before it resumes
    co_await second;
  }(pool));
  EXPECT_EQ(w->timers().size(), timers_before);
  EXPECT_EQ(pool.pool(0).available(), 1u);
}

TEST(SizeClassPoolTest, NoAllocationPerAcquireInSteadyState) {
  auto w = NewWorker();
  ASSERT_NE(w, nullptr);
  auto p = SizeClassPool::Create(*w, SizeClassPool::Options::PowersOfTwo(4096, 65536, 2));
  ASSERT_TRUE(p.ok()) << p.status();
  uint64_t served = UINT64_MAX;
  uint64_t timed_out = UINT64_MAX;
  w->BlockOn([](SizeClassPool& pool, uint64_t& served, uint64_t& timed_out) -> Task<> {
    // One warm-up round (the timer heap's first insert), then 1000 counted
    // rounds of acquires that are served: by size, with a deadline, and from
    // a larger class when the fitting one is empty.
    for (int pass = 0; pass < 2; ++pass) {
      const uint64_t before = g_allocations.load();
      t_counting = pass == 1;
      for (int i = 0; i < (pass == 0 ? 1 : 1000); ++i) {
        Result<Buffer> a = co_await pool.Acquire(static_cast<std::size_t>(1 + (i * 4099) % 65536));
        Result<Buffer> b = co_await pool.AcquireFor(1, std::chrono::seconds(1));
        Buffer c = pool.TryAcquire(1);
        Buffer d = pool.TryAcquire(1);  // the 4K class is empty now: an 8K one
        if (!a.ok() || !b.ok() || !c || !d) ADD_FAILURE() << "round " << i;
      }
      t_counting = false;
      if (pass == 1) served = g_allocations.load() - before;
    }
    // Timeouts (the error path): the ETIMEDOUT result carries a message.
    Buffer e = pool.TryAcquire(65536);
    Buffer f = pool.TryAcquire(65536);
    const uint64_t before = g_allocations.load();
    t_counting = true;
    for (int i = 0; i < 100; ++i) {
      Result<Buffer> late = co_await pool.AcquireFor(65536, std::chrono::microseconds(1));
      if (late.error() != ETIMEDOUT) ADD_FAILURE() << "timeout " << i;
    }
    t_counting = false;
    timed_out = g_allocations.load() - before;
  }(**p, served, timed_out));
  EXPECT_EQ(served, 0u) << "allocations over 1000 rounds of served acquires";
  EXPECT_LE(timed_out, 100u * 4) << "allocations over 100 timeouts (their messages)";
  std::printf("1000 served rounds: %llu allocations; 100 timeouts: %llu\n",
              static_cast<unsigned long long>(served), static_cast<unsigned long long>(timed_out));
}

TEST(AlignTest, RoundsAndPads) {
  static_assert(AlignUp(0u, 512u) == 0u && AlignUp(1u, 512u) == 512u &&
                AlignUp(512u, 512u) == 512u);
  static_assert(AlignDown(1023ull, 512u) == 512ull && IsAligned(4096u, 4096u) &&
                !IsAligned(4095u, 4096u));
  static_assert(IsPowerOfTwo(1u) && IsPowerOfTwo(4096u) && !IsPowerOfTwo(0u) && !IsPowerOfTwo(12u));
  Buffer b = Buffer::Allocate(8192);
  ASSERT_TRUE(b);
  std::memset(b.data(), 0xAA, 8192);
  b.set_size(1000);
  ASSERT_TRUE(PadToAlignment(b, 512));
  EXPECT_EQ(b.size(), 1024u);
  for (std::size_t i = 1000; i < 1024; ++i) ASSERT_EQ(b.data()[i], 0) << i;
  EXPECT_EQ(b.data()[999], 0xAA) << "the data is kept";
  EXPECT_EQ(b.data()[1024], 0xAA) << "nothing past the pad is written";
  b.set_size(8000);
  EXPECT_FALSE(PadToAlignment(b, 16384)) << "capacity too small";
  EXPECT_EQ(b.size(), 8000u);
}

}  // namespace
}  // namespace ringline
