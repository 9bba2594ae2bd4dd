// Operation lifecycles (docs/io_uring-rules.md R1, R3 and R4): destroying a task with an
// operation in flight is safe, the loser of WhenAny has its kernel operation
// cancelled, stale completions are dropped. Run under ASan in CI.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <liburing.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

#include "ringline/ringline.h"

namespace ringline {
namespace {

struct Pipe {
  int fds[2] = {-1, -1};
  Pipe() { EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0); }
  ~Pipe() {
    for (int fd : fds)
      if (fd >= 0) close(fd);
  }
  int rd() const { return fds[0]; }
  int wr() const { return fds[1]; }
};

// A read into a pool buffer held by the operation's slot.
auto ReadInto(int fd, Buffer buf) {
  return Submit(
      OpTag::kGeneric,
      [fd, b = std::move(buf)](io_uring_sqe* sqe, OpSlot& slot) mutable {
        slot.held[0] = std::move(b);
        io_uring_prep_read(sqe, fd, slot.held[0].data(),
                           static_cast<unsigned>(slot.held[0].capacity()), 0);
      },
      [](OpSlot& slot) {
        slot.held[0].set_size(slot.res > 0 ? static_cast<std::size_t>(slot.res) : 0);
        return std::pair<IoResult, Buffer>(IoResult{slot.res, slot.flags}, std::move(slot.held[0]));
      });
}

class LifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto w = Worker::Create(Config{});
    ASSERT_TRUE(w.ok()) << w.status();
    worker_ = std::move(*w);
    auto p = BufferPool::Create(*worker_, {.buffer_size = 4096, .count = 4});
    ASSERT_TRUE(p.ok()) << p.status();
    pool_ = std::move(*p);
    baseline_ = worker_->internals().slab().in_flight();  // the armed eventfd read
  }
  // Runs the loop a little so cancellations complete.
  void Settle() { worker_->BlockOn(SleepTask(std::chrono::milliseconds(20))); }
  // Declared in this order so the pool is destroyed first (normal case).
  std::unique_ptr<Worker> worker_;
  std::unique_ptr<BufferPool> pool_;
  uint32_t baseline_ = 0;
};

TEST_F(LifecycleTest, ReadCompletesAndReturnsItsBuffer) {
  Pipe p;
  ASSERT_EQ(write(p.wr(), "hello", 5), 5);
  auto r = worker_->BlockOn([](BufferPool* pool, int fd) -> Task<std::string> {
    Buffer b = co_await pool->Acquire();
    auto [res, buf] = co_await ReadInto(fd, std::move(b));
    EXPECT_EQ(res.res, 5);
    co_return std::string(reinterpret_cast<char*>(buf.data()), buf.size());
  }(pool_.get(), p.rd()));
  EXPECT_EQ(*r, "hello");
  EXPECT_EQ(pool_->available(), 4u);
}

TEST_F(LifecycleTest, DestroyingTaskWithReadInFlightReleasesOnlyAfterKernel) {
  Pipe p;
  worker_->BlockOn([](BufferPool* pool, int fd, Worker* w, uint32_t base) -> Task<> {
    auto h = Spawn([](BufferPool* pool, int fd) -> Task<> {
      Buffer b = co_await pool->Acquire();
      co_await ReadInto(fd, std::move(b));  // never completes on its own
      ADD_FAILURE() << "the read should have been cancelled";
    }(pool, fd));
    co_await Sleep(std::chrono::milliseconds(5));
    EXPECT_EQ(w->internals().slab().in_flight(), base + 1);
    EXPECT_EQ(pool->available(), 3u) << "the buffer belongs to the operation";
    h.Abort();
    // The slot still holds the buffer until the cancellation's CQE arrives.
    EXPECT_EQ(pool->available(), 3u);
  }(pool_.get(), p.rd(), worker_.get(), baseline_));
  Settle();
  EXPECT_EQ(worker_->internals().slab().in_flight(), baseline_);
  EXPECT_EQ(pool_->available(), 4u);
  // The cancelled read consumed nothing: bytes written now are all still there.
  ASSERT_EQ(write(p.wr(), "abc", 3), 3);
  char buf[8];
  EXPECT_EQ(read(p.rd(), buf, sizeof buf), 3);
}

TEST_F(LifecycleTest, DestroyingTaskWhileSleepingLeavesNoTimer) {
  worker_->BlockOn([](Worker* w) -> Task<> {
    auto h = Spawn(SleepTask(std::chrono::hours(1)));
    co_await Sleep(std::chrono::milliseconds(1));
    EXPECT_EQ(w->timers().size(), 1u);
    h.Abort();
    EXPECT_EQ(w->timers().size(), 0u);
  }(worker_.get()));
}

TEST_F(LifecycleTest, WhenAnyCancelsTheLoserAndItsKernelOperation) {
  Pipe p;
  auto r = worker_->BlockOn([](BufferPool* pool, int fd) -> Task<std::size_t> {
    auto reader = [](BufferPool* pool, int fd) -> Task<int> {
      Buffer b = co_await pool->Acquire();
      auto [res, buf] = co_await ReadInto(fd, std::move(b));
      co_return res.res;
    };
    auto v = co_await WhenAny(reader(pool, fd), SleepTask(std::chrono::milliseconds(5)));
    co_return v.index();
  }(pool_.get(), p.rd()));
  EXPECT_EQ(*r, 1u) << "the sleep wins";
  Settle();
  EXPECT_EQ(worker_->internals().slab().in_flight(), baseline_) << "the loser's read was cancelled";
  EXPECT_EQ(pool_->available(), 4u);
  ASSERT_EQ(write(p.wr(), "xyz", 3), 3);
  char buf[8];
  EXPECT_EQ(read(p.rd(), buf, sizeof buf), 3) << "a cancelled read must not eat data";
}

TEST_F(LifecycleTest, DestroyingTheWorkerWithOperationsInFlightIsSafe) {
  Pipe p;
  worker_->BlockOn([](BufferPool* pool, int fd) -> Task<> {
    for (int i = 0; i < 3; ++i) {
      Spawn([](BufferPool* pool, int fd) -> Task<> {
        Buffer b = co_await pool->Acquire();
        co_await ReadInto(fd, std::move(b));
      }(pool, fd))
          .Detach();
    }
    co_await Sleep(std::chrono::milliseconds(2));
  }(pool_.get(), p.rd()));
  EXPECT_EQ(worker_->task_count(), 3u);
  // Worker destruction destroys the tasks, cancels the reads and waits for the
  // kernel; the pool must outlive the slots that hold its buffers.
  worker_.reset();
  EXPECT_EQ(pool_->available(), 4u);
  pool_.reset();  // after its worker: it must not touch the ring that is gone
}

TEST_F(LifecycleTest, StaleCompletionsAreDropped) {
  OpSlab& slab = worker_->internals().slab();
  OpSlot& s = slab.Allocate(OpTag::kGeneric);
  const uint64_t old = s.user_data().raw();
  slab.Orphan(s);  // not in flight in the kernel: we fake its completion
  EXPECT_TRUE(slab.Dispatch(old, 0, 0, nullptr)) << "the final completion releases it";
  EXPECT_FALSE(slab.Dispatch(old, 0, 0, nullptr)) << "a second one is stale";
  OpSlot& again = slab.Allocate(OpTag::kGeneric);
  EXPECT_EQ(again.index, UserData(old).index()) << "the slot is reused";
  EXPECT_NE(again.user_data().raw(), old) << "with a new generation";
  EXPECT_FALSE(slab.Dispatch(old, 0, 0, nullptr));
  slab.Orphan(again);
  EXPECT_TRUE(slab.Dispatch(again.user_data().raw(), 0, 0, nullptr));
  Settle();  // the two async-cancels we submitted complete
}

TEST_F(LifecycleTest, ZeroCopyStyleCompletionWakesOnlyOnNotification) {
  // A SEND_ZC completes twice: the result with F_MORE, then F_NOTIF. The waiter
  // must see the first result and run only after the notification.
  OpSlab& slab = worker_->internals().slab();
  struct P : PromiseBase {
  } promise;  // unlinks itself from the ready queue when destroyed
  // A tag of a test subsystem's own (the engine does not know net's tags).
  constexpr OpTagBlock kTestTags{"lifecycle_test", 250, 1};
  RegisterOpTags(kTestTags);
  OpSlot& s = slab.Allocate(kTestTags[0]);
  slab.SetWaiter(s, &promise);
  const uint64_t ud = s.user_data().raw();
  ASSERT_TRUE(slab.Dispatch(ud, 4096, IORING_CQE_F_MORE, nullptr));
  EXPECT_FALSE(promise.scheduled());
  EXPECT_FALSE(OpSlab::Done(s));
  ASSERT_TRUE(slab.Dispatch(ud, 0, IORING_CQE_F_NOTIF, nullptr));
  EXPECT_TRUE(promise.scheduled());
  EXPECT_EQ(s.res, 4096);
  slab.Consume(s);
}

TEST_F(LifecycleTest, NopsThroughTheRing) {
  auto r = worker_->BlockOn([]() -> Task<int> {
    int ok = 0;
    for (int i = 0; i < 1000; ++i) ok += (co_await Nop()).res == 0;
    co_return ok;
  }());
  EXPECT_EQ(*r, 1000);
}

TEST_F(LifecycleTest, FullSubmissionQueueIsSubmittedNotFailed) {
  // More concurrent operations than SQ entries (256) and CQ entries (2048).
  auto r = worker_->BlockOn([]() -> Task<int> {
    std::vector<Task<IoResult>> ops;
    for (int i = 0; i < 5000; ++i) ops.push_back(AsTask(Nop()));
    auto results = co_await WhenAll(std::move(ops));
    int ok = 0;
    for (auto& x : results) ok += x.res == 0;
    co_return ok;
  }());
  EXPECT_EQ(*r, 5000);
}

TEST(SqpollTest, FullSubmissionQueueIsSubmittedNotFailed) {
  // With SQPOLL the kernel thread moves the SQ head concurrently: the ring
  // checks for room against the head as last read and reads it again only
  // when the SQ looks full, which must still never hand out an unsubmitted
  // entry nor report a full SQ as a failure.
  Config config;
  config.ring.sqpoll = true;
  config.ring.sq_entries = 16;
  config.ring.cq_entries = 64;
  auto w = Worker::Create(config);
  if (!w.ok()) {
    std::printf("SKIPPED: SQPOLL ring refused here: %s\n", w.status().ToString().c_str());
    GTEST_SKIP();
  }
  auto r = (*w)->BlockOn([]() -> Task<int> {
    int ok = 0;
    for (int round = 0; round < 20; ++round) {
      std::vector<Task<IoResult>> ops;
      for (int i = 0; i < 100; ++i) ops.push_back(AsTask(Nop()));
      auto results = co_await WhenAll(std::move(ops));
      for (auto& x : results) ok += x.res == 0;
    }
    co_return ok;
  }());
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 2000);
}

TEST(UserDataTest, GenerationWrapsWithoutTouchingTagOrIndex) {
  // The slab bumps a slot's generation by adding one generation to its
  // user_data (op_slab.h, Release): at the top of the word, the addition must
  // wrap within the generation's 24 bits and leave the tag and index alone.
  constexpr OpTagBlock kTestTags{"user_data_test", 251, 1};
  RegisterOpTags(kTestTags);
  const uint64_t one = UserData::Encode(OpTag::kNone, 1, 0).raw();
  for (uint32_t index : {0u, 1u, 255u, 256u, 0xfffffffeu}) {
    for (OpTag tag : {OpTag::kNone, OpTag::kNop, kTestTags[0]}) {
      const UserData last = UserData::Encode(tag, UserData::kGenerationMask, index);
      EXPECT_EQ(last.generation(), UserData::kGenerationMask);
      const UserData next(last.raw() + one);
      EXPECT_EQ(next.generation(), 0u);
      EXPECT_EQ(next.tag(), tag);
      EXPECT_EQ(next.index(), index);
      const UserData mid(UserData::Encode(tag, 41, index).raw() + one);
      EXPECT_EQ(mid.generation(), 42u);
      EXPECT_EQ(mid.tag(), tag);
      EXPECT_EQ(mid.index(), index);
    }
  }
}

TEST_F(LifecycleTest, ReusedSlotGetsANewGenerationAndKeepsTagAndIndex) {
  // A slot released and allocated again (the free list is last-in first-out)
  // carries the next generation, its own index and the new operation's tag;
  // a completion of the earlier operation is stale.
  OpSlab& slab = worker_->internals().slab();
  OpSlot& s = slab.Allocate(OpTag::kGeneric);
  const UserData first = s.user_data();
  ASSERT_TRUE(slab.Dispatch(first.raw(), 0, 0, nullptr));
  slab.Consume(s);
  OpSlot& again = slab.Allocate(OpTag::kNop);
  ASSERT_EQ(&again, &s);
  const UserData second = again.user_data();
  EXPECT_EQ(second.generation(), (first.generation() + 1) & UserData::kGenerationMask);
  EXPECT_EQ(second.index(), first.index());
  EXPECT_EQ(second.tag(), OpTag::kNop);
  const uint64_t stale_before = slab.stale_completions();
  EXPECT_FALSE(slab.Dispatch(first.raw(), 0, 0, nullptr));
  EXPECT_EQ(slab.stale_completions(), stale_before + 1);
  ASSERT_TRUE(slab.Dispatch(second.raw(), 7, 0, nullptr));
  EXPECT_EQ(again.res, 7);
  slab.Consume(again);
}

// A completion resumes the task awaiting it inside the completion loop (not via
// the ready queue). The tests below guard what that must not break.

TEST_F(LifecycleTest, WhenAnyLoserCompletingLaterInTheSameBatchIsReleased) {
  // Both NOPs complete in one batch. The winner's completion resumes the
  // winner, which finishes WhenAny, which destroys the loser while the loser's
  // completion still waits further down the same batch: the loser's slot is
  // orphaned (and cancelled), and that completion releases it; it is neither
  // stale nor delivered to the destroyed frame.
  OpSlab& slab = worker_->internals().slab();
  const uint64_t stale_before = slab.stale_completions();
  auto r = worker_->BlockOn([]() -> Task<int> {
    int first = 0;
    for (int i = 0; i < 200; ++i) {
      auto v = co_await WhenAny(AsTask(Nop()), AsTask(Nop()));
      first += v.index() == 0 && std::get<0>(v).res == 0;
    }
    co_return first;
  }());
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 200) << "NOPs complete in submission order: the first child wins";
  Settle();
  EXPECT_EQ(slab.in_flight(), baseline_);
  EXPECT_EQ(slab.stale_completions(), stale_before);
}

TEST_F(LifecycleTest, TaskResumedByACompletionMaySubmitPastBothQueues) {
  // 32 tasks wake in one batch; each, while resumed inside the completion loop,
  // submits 300 NOPs at once (raw SQEs on handler slots): more than the SQ (256)
  // holds, so the SQ is submitted from inside the loop, while the rest of the
  // batch is still in the CQ; 9,600 completions are more than the CQ (2048)
  // holds (the kernel keeps the excess on its overflow list, or pushes back
  // with EBUSY and the ring stashes what the CQ holds). Every NOP must be
  // dispatched exactly once, and every task must finish.
  constexpr int kTasks = 32;
  constexpr int kBurst = 300;
  struct Count {
    int completions = 0;
    static void On(void* owner, OpSlot&, int32_t res, uint32_t) {
      auto* c = static_cast<Count*>(owner);
      c->completions += res == 0;
    }
  } count;
  auto burst = [](Count* c) -> Task<bool> {
    const IoResult first = co_await Nop();
    OpSlab& slab = Worker::Current().internals().slab();
    Ring& ring = Worker::Current().internals().ring();
    for (int i = 0; i < kBurst; ++i) {
      OpSlot& slot = slab.AllocateWithHandler(OpTag::kGeneric, &Count::On, c);
      io_uring_sqe* sqe = ring.GetSqe();
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, slot.user_data().raw());
    }
    const IoResult second = co_await Nop();
    co_return first.res == 0 && second.res == 0;
  };
  const uint64_t stale_before = worker_->internals().slab().stale_completions();
  auto r = worker_->BlockOn([](auto burst, Count* c) -> Task<int> {
    std::vector<Task<bool>> tasks;
    for (int i = 0; i < kTasks; ++i) tasks.push_back(burst(c));
    auto done = co_await WhenAll(std::move(tasks));
    int ok = 0;
    for (bool d : done) ok += d;
    co_return ok;
  }(burst, &count));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, kTasks);
  Settle();
  EXPECT_EQ(count.completions, kTasks * kBurst);
  EXPECT_EQ(worker_->internals().slab().in_flight(), baseline_);
  EXPECT_EQ(worker_->internals().slab().stale_completions(), stale_before);
}

TEST_F(LifecycleTest, TaskResumedByACompletionSeesTheTimeOfItsWakeUp) {
  // Worker::now() is read at the wake-up, before completions resume tasks: a
  // task that waited 20 ms in the kernel must not see the time from before.
  Worker* w = worker_.get();
  auto r = worker_->BlockOn([](Worker* w) -> Task<bool> {
    const Clock::time_point before = Clock::now();
    const IoResult t = co_await KernelTimeout(20'000'000);
    EXPECT_EQ(t.res, -ETIME);
    co_return w->now() >= before + std::chrono::milliseconds(20);
  }(w));
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(*r) << "now() is older than the wake-up that resumed the task";
}

TEST_F(LifecycleTest, KernelTimeoutCancelledByWhenAny) {
  auto r = worker_->BlockOn([]() -> Task<std::size_t> {
    auto v = co_await WhenAny(AsTask(KernelTimeout(60'000'000'000)),
                              SleepTask(std::chrono::milliseconds(2)));
    co_return v.index();
  }());
  EXPECT_EQ(*r, 1u);
  Settle();
  EXPECT_EQ(worker_->internals().slab().in_flight(), baseline_);
}

}  // namespace
}  // namespace ringline

namespace ringline {
namespace {

TEST(BufferPoolTest, RegistersInGroupsNoLargerThanTheLimit) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  // 10 buffers of 128 KiB with at most 3 per registration: 4 registrations.
  auto p = BufferPool::Create(
      **w, {.buffer_size = 128 * 1024, .count = 10, .max_registration_bytes = 3 * 128 * 1024});
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE((*p)->registered());
  std::vector<Buffer> all;
  std::set<int> groups;
  for (int i = 0; i < 10; ++i) {
    all.push_back((*p)->TryAcquire());
    ASSERT_TRUE(all.back());
    ASSERT_TRUE(all.back().registered());
    groups.insert(all.back().registered_index());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(all.back().data()) % 4096, 0u) << "page-aligned";
  }
  EXPECT_EQ(groups.size(), 4u);
  EXPECT_FALSE((*p)->TryAcquire()) << "empty pool";
  all.clear();
  EXPECT_EQ((*p)->available(), 10u);
}

// Resident pages of [p, p + n) (page-aligned p), by mincore().
std::size_t ResidentPages(const uint8_t* p, std::size_t n) {
  std::vector<unsigned char> v(n / 4096);
  if (mincore(const_cast<uint8_t*>(p), n, v.data()) != 0) return SIZE_MAX;
  std::size_t r = 0;
  for (unsigned char c : v) r += c & 1;
  return r;
}

TEST(BufferPoolTest, UnpopulatedPoolBecomesResidentOnlyWhenUsed) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  constexpr std::size_t kSize = 1 << 20;
  auto lazy = BufferPool::Create(
      **w, {.buffer_size = kSize, .count = 2, .register_with_ring = false, .populate = false});
  ASSERT_TRUE(lazy.ok()) << lazy.status();
  Buffer b = (*lazy)->TryAcquire();
  ASSERT_TRUE(b);
  EXPECT_EQ(ResidentPages(b.data(), kSize), 0u) << "nothing faulted in at creation";
  std::memset(b.data(), 1, 8192);
  EXPECT_EQ(ResidentPages(b.data(), kSize), 2u) << "only the pages written";
  // The default populates; a registered pool always does (registration pins).
  auto eager = BufferPool::Create(**w, {.buffer_size = kSize, .count = 1, .populate = false});
  ASSERT_TRUE(eager.ok()) << eager.status();
  Buffer e = (*eager)->TryAcquire();
  ASSERT_TRUE(e);
  EXPECT_EQ(ResidentPages(e.data(), kSize), kSize / 4096);
}

TEST(BufferPoolTest, AcquireWaitsInFifoOrder) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  auto p = BufferPool::Create(**w, {.buffer_size = 4096, .count = 1});
  ASSERT_TRUE(p.ok());
  std::vector<int> order;
  (*w)->BlockOn([](BufferPool* pool, std::vector<int>* order) -> Task<> {
    Buffer held = pool->TryAcquire();
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < 5; ++i) {
      hs.push_back(Spawn([](BufferPool* pool, std::vector<int>* order, int i) -> Task<> {
        Buffer b = co_await pool->Acquire();
        order->push_back(i);
        co_await Sleep(std::chrono::microseconds(100));
      }(pool, order, i)));
    }
    co_await Sleep(std::chrono::milliseconds(1));
    EXPECT_EQ(pool->waiting(), 5u);
    held.Reset();  // hands the buffer to the first waiter
    for (auto& h : hs) co_await h;
  }(p->get(), &order));
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
}

}  // namespace
}  // namespace ringline
