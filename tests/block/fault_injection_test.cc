// FaultyTarget over a real file (DirectFile on /var/tmp, or the build
// directory where /var/tmp is tmpfs): each rule field is proven on requests
// that reach the file, the file's bytes are checked with plain pread, and data
// passes through unchanged when no rule hits. Cancellation of a delayed request
// is here for the ASan build.

#include "ringline/block/fault_injection.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "ringline/block/open.h"
#include "ringline/block/queue_depth.h"
#include "ringline/sleep.h"
#include "ringline/spawn.h"
#include "ringline/worker.h"

namespace ringline::block {
namespace {

using std::chrono::milliseconds;

constexpr uint64_t kFileSize = 4 << 20;
constexpr uint32_t kBlock = 4096;

std::string TestDir() {
  struct statfs fs;
  if (statfs("/var/tmp", &fs) == 0 && fs.f_type != TMPFS_MAGIC) return "/var/tmp";
  char cwd[4096];
  return getcwd(cwd, sizeof cwd) ? cwd : ".";
}

Buffer Pattern(uint64_t seed, uint32_t n = kBlock) {
  Buffer b = Buffer::Allocate(n);
  for (uint32_t i = 0; i < n; ++i) b.data()[i] = static_cast<uint8_t>(seed * 37 + i * 13 + 1);
  b.set_size(n);
  return b;
}
bool IsPattern(const uint8_t* p, uint64_t seed, uint32_t n = kBlock) {
  for (uint32_t i = 0; i < n; ++i) {
    if (p[i] != static_cast<uint8_t>(seed * 37 + i * 13 + 1)) return false;
  }
  return true;
}

class FaultInjectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = TestDir() + "/ringline-fault-" + std::to_string(::getpid()) + ".img";
    const int fd = ::open(path_.c_str(), O_CREAT | O_RDWR | O_TRUNC, 0644);
    ASSERT_GE(fd, 0) << path_ << ": " << std::strerror(errno);
    ASSERT_EQ(::ftruncate(fd, kFileSize), 0);
    ::close(fd);
    auto w = Worker::Create(Config{});
    ASSERT_TRUE(w.ok()) << w.status();
    worker_ = std::move(*w);
  }
  void TearDown() override {
    worker_.reset();
    ::unlink(path_.c_str());
  }
  // A FaultyTarget over the file with `rules`.
  std::unique_ptr<FaultyTarget> Open(std::vector<FaultRule> rules, uint64_t seed = 1) {
    auto plan = FaultPlan::Create(std::move(rules), seed);
    EXPECT_TRUE(plan.ok()) << plan.status();
    if (!plan.ok()) return nullptr;
    return OpenWith(*plan);
  }
  std::unique_ptr<FaultyTarget> OpenWith(std::shared_ptr<FaultPlan> plan) {
    auto inner = OpenTarget(*worker_, path_, {.queue_depth = 16});
    EXPECT_TRUE(inner.ok()) << inner.status();
    if (!inner.ok()) return nullptr;
    return std::make_unique<FaultyTarget>(std::move(*inner), std::move(plan));
  }
  // The file's bytes, read with plain pread.
  std::vector<uint8_t> FileBytes(uint64_t offset, uint32_t n) {
    std::vector<uint8_t> out(n);
    const int fd = ::open(path_.c_str(), O_RDONLY);
    EXPECT_EQ(::pread(fd, out.data(), n, static_cast<off_t>(offset)), static_cast<ssize_t>(n));
    ::close(fd);
    return out;
  }

  std::string path_;
  std::unique_ptr<Worker> worker_;
};

TEST_F(FaultInjectionTest, DataPassesThroughUnchangedWhenNoRuleHits) {
  // Rules that match nothing these requests do: another range, another kind,
  // and one that matches but never hits (probability 0).
  auto t = Open({{.ops = OpBit(OpKind::kWrite),
                  .offset = (3 << 20) + 2 * kBlock,
                  .length = kBlock,
                  .error = EIO},
                 {.ops = OpBit(OpKind::kDiscard), .error = EIO},
                 {.ops = OpBit(OpKind::kRead), .probability = 0.0, .error = EIO}});
  ASSERT_TRUE(t);
  EXPECT_EQ(t->name(), path_);
  EXPECT_EQ(t->geometry().size_bytes, kFileSize);
  worker_->BlockOn([](FaultyTarget* t) -> Task<> {
    for (uint64_t i = 0; i < 16; ++i) {
      BlockResult w = co_await t->Write(i * 64 * kBlock, Pattern(i), {.fua = i % 4 == 0});
      EXPECT_EQ(w.res, static_cast<int32_t>(kBlock)) << w.status;
    }
    EXPECT_EQ((co_await t->Flush()).res, 0);
    for (uint64_t i = 0; i < 16; ++i) {
      BlockResult r = co_await t->Read(i * 64 * kBlock, kBlock, Buffer::Allocate(kBlock));
      EXPECT_EQ(r.res, static_cast<int32_t>(kBlock)) << r.status;
      EXPECT_TRUE(r.ok() && IsPattern(r.buffer.data(), i)) << "block " << i;
    }
  }(t.get()));
  for (uint64_t i = 0; i < 16; ++i) {
    EXPECT_TRUE(IsPattern(FileBytes(i * 64 * kBlock, kBlock).data(), i)) << "file block " << i;
  }
  FaultPlan& plan = *t->plan();
  EXPECT_EQ(plan.matched(0), 0u) << "no write overlapped [3 MiB + 8 KiB, +4 KiB)";
  EXPECT_EQ(plan.matched(1), 0u);
  EXPECT_EQ(plan.matched(2), 16u);
  EXPECT_EQ(plan.hits(2), 0u);
  EXPECT_EQ(plan.errors_injected(), 0u);
  EXPECT_EQ(t->metrics()->of(OpKind::kWrite).ops.Get(), 16u) << "the inner target's metrics";
}

TEST_F(FaultInjectionTest, ErrorInsteadFailsOnlyTheChosenKindAndRangeAndWritesNothing) {
  constexpr uint64_t kBad = 64 * kBlock;
  auto t = Open({{.ops = OpBit(OpKind::kWrite) | OpBit(OpKind::kWriteZeroes),
                  .offset = kBad + 512,
                  .length = 1,
                  .error = EIO}});
  ASSERT_TRUE(t);
  worker_->BlockOn([](FaultyTarget* t) -> Task<> {
    BlockResult w = co_await t->Write(kBad, Pattern(1));
    EXPECT_EQ(w.res, -EIO);
    EXPECT_EQ(w.error(), EIO);
    EXPECT_NE(w.status.message().find("injected by fault rule 0"), std::string::npos) << w.status;
    EXPECT_NE(w.status.message().find("write of 4096 bytes at offset 262144"), std::string::npos)
        << w.status;
    EXPECT_TRUE(w.buffer) << "an injected failure hands the buffer back";
    EXPECT_TRUE(w.buffer && IsPattern(w.buffer.data(), 1)) << "and leaves its bytes alone";
    // Neighbours and other kinds in the range are untouched.
    EXPECT_EQ((co_await t->Write(kBad - kBlock, Pattern(2))).res, static_cast<int32_t>(kBlock));
    EXPECT_EQ((co_await t->Write(kBad + kBlock, Pattern(3))).res, static_cast<int32_t>(kBlock));
    EXPECT_EQ((co_await t->Read(kBad, kBlock, Buffer::Allocate(kBlock))).res,
              static_cast<int32_t>(kBlock));
    EXPECT_EQ((co_await t->Flush()).res, 0);
    EXPECT_EQ((co_await t->WriteZeroes(kBad, 2 * kBlock)).res, -EIO) << "overlaps the range";
  }(t.get()));
  const std::vector<uint8_t> bad = FileBytes(kBad, kBlock);
  EXPECT_EQ(std::vector<uint8_t>(kBlock, 0), bad) << "kInstead: the write never reached the file";
  EXPECT_TRUE(IsPattern(FileBytes(kBad - kBlock, kBlock).data(), 2));
  EXPECT_TRUE(IsPattern(FileBytes(kBad + kBlock, kBlock).data(), 3));
  EXPECT_EQ(t->plan()->matched(0), 2u);
  EXPECT_EQ(t->plan()->hits(0), 2u);
  EXPECT_EQ(t->plan()->errors_injected(), 2u);
  EXPECT_EQ(t->metrics()->of(OpKind::kWrite).ops.Get(), 2u) << "injected failures never reach it";
}

TEST_F(FaultInjectionTest, ErrorAfterRunsTheRequestThenReportsTheError) {
  auto t = Open({{.ops = OpBit(OpKind::kWrite), .error = ENOSPC, .timing = FaultTiming::kAfter}});
  ASSERT_TRUE(t);
  worker_->BlockOn([](FaultyTarget* t) -> Task<> {
    BlockResult w = co_await t->Write(8 * kBlock, Pattern(9));
    EXPECT_EQ(w.res, -ENOSPC);
    EXPECT_TRUE(absl::IsResourceExhausted(w.status)) << w.status;
    EXPECT_NE(w.status.message().find("after the request ran"), std::string::npos) << w.status;
    EXPECT_TRUE(w.buffer);
    // A failure of the inner request itself is returned as it is.
    BlockResult bad = co_await t->Write(kFileSize, Pattern(1));
    EXPECT_EQ(bad.res, -EINVAL) << bad.status;
  }(t.get()));
  EXPECT_TRUE(IsPattern(FileBytes(8 * kBlock, kBlock).data(), 9)) << "the write did land";
  // The inner target saw both writes and failed only the one past the end.
  EXPECT_EQ(t->metrics()->of(OpKind::kWrite).ops.Get(), 2u);
  EXPECT_EQ(t->metrics()->of(OpKind::kWrite).errors.Get(), 1u);
}

TEST_F(FaultInjectionTest, SkipAndLimitHitTheNthMatchingRequest) {
  // The third flush (match #2) and only it.
  auto t = Open({{.ops = OpBit(OpKind::kFlush), .skip = 2, .limit = 1, .error = EIO}});
  ASSERT_TRUE(t);
  std::vector<int32_t> results;
  worker_->BlockOn([](FaultyTarget* t, std::vector<int32_t>* out) -> Task<> {
    for (int i = 0; i < 5; ++i) {
      out->push_back((co_await t->Flush()).res);
      // Reads are not flushes: they do not count.
      EXPECT_EQ((co_await t->Read(0, kBlock, Buffer::Allocate(kBlock))).res,
                static_cast<int32_t>(kBlock));
    }
  }(t.get(), &results));
  EXPECT_EQ(results, (std::vector<int32_t>{0, 0, -EIO, 0, 0}));
  EXPECT_EQ(t->plan()->matched(0), 5u);
  EXPECT_EQ(t->plan()->hits(0), 1u);
  EXPECT_EQ(t->plan()->Describe(0), "flush from match #2, at most 1: EIO instead");
}

TEST_F(FaultInjectionTest, RangeRulesNeverMatchFlushes) {
  auto t = Open({{.offset = 0, .length = kFileSize, .error = EIO}});
  ASSERT_TRUE(t);
  worker_->BlockOn([](FaultyTarget* t) -> Task<> {
    EXPECT_EQ((co_await t->Flush()).res, 0);
    EXPECT_EQ((co_await t->Discard(0, kBlock)).res, -EIO);
  }(t.get()));
}

TEST_F(FaultInjectionTest, ProbabilityIsSeededAndDeterministic) {
  // Through the target: the same seed gives the same hits on the same requests.
  auto run = [this](uint64_t seed) {
    auto t = Open({{.ops = OpBit(OpKind::kRead), .probability = 0.3, .error = EIO}}, seed);
    std::vector<bool> failed;
    worker_->BlockOn([](FaultyTarget* t, std::vector<bool>* out) -> Task<> {
      for (int i = 0; i < 64; ++i) {
        BlockResult r = co_await t->Read(i * kBlock, kBlock, Buffer::Allocate(kBlock));
        EXPECT_TRUE(r.res == static_cast<int32_t>(kBlock) || r.res == -EIO) << r.status;
        out->push_back(!r.ok());
      }
    }(t.get(), &failed));
    return failed;
  };
  const std::vector<bool> a = run(42);
  EXPECT_EQ(a, run(42));
  EXPECT_NE(a, run(43));
  // The rate, on the plan alone (no I/O): 4000 draws at p = 0.3 give 1200 hits
  // on average with a standard deviation of 29; [1000, 1400] is 7 of them.
  auto plan = FaultPlan::Create({{.probability = 0.3, .error = EIO}}, 7);
  ASSERT_TRUE(plan.ok());
  for (int i = 0; i < 4000; ++i) (*plan)->Decide(OpKind::kRead, 0, kBlock);
  EXPECT_EQ((*plan)->matched(0), 4000u);
  EXPECT_GE((*plan)->hits(0), 1000u);
  EXPECT_LE((*plan)->hits(0), 1400u);
}

TEST_F(FaultInjectionTest, AddedLatencyWaitsOnTheTimerWithoutBlockingTheWorker) {
  auto t = Open(
      {{.ops = OpBit(OpKind::kRead), .offset = 0, .length = kBlock, .latency = milliseconds(40)}});
  ASSERT_TRUE(t);
  std::vector<int> order;
  worker_->BlockOn([](FaultyTarget* t, std::vector<int>* order) -> Task<> {
    const auto start = Clock::now();
    // The delayed read starts first; an undelayed one started after it must
    // finish first, which it can only if the worker is not blocked.
    JoinHandle<void> slow = Spawn([](FaultyTarget* t, std::vector<int>* order) -> Task<> {
      BlockResult r = co_await t->Read(0, kBlock, Buffer::Allocate(kBlock));
      EXPECT_EQ(r.res, static_cast<int32_t>(kBlock)) << "latency only: the read succeeds";
      order->push_back(1);
    }(t, order));
    co_await Sleep(milliseconds(1));
    BlockResult fast = co_await t->Read(kBlock, kBlock, Buffer::Allocate(kBlock));
    EXPECT_EQ(fast.res, static_cast<int32_t>(kBlock));
    order->push_back(2);
    co_await slow;
    EXPECT_GE(Clock::now() - start, milliseconds(40)) << "the delay was not added";
  }(t.get(), &order));
  EXPECT_EQ(order, (std::vector<int>{2, 1}));
  EXPECT_EQ(t->plan()->delays_injected(), 1u);
}

TEST_F(FaultInjectionTest, LatencyAndErrorCombineAcrossRules) {
  auto t = Open({{.ops = OpBit(OpKind::kWrite), .latency = milliseconds(5)},
                 {.ops = OpBit(OpKind::kWrite), .error = ENOSPC},
                 {.ops = OpBit(OpKind::kWrite), .error = EIO, .latency = milliseconds(5)}});
  ASSERT_TRUE(t);
  worker_->BlockOn([](FaultyTarget* t) -> Task<> {
    const auto start = Clock::now();
    BlockResult w = co_await t->Write(0, Pattern(1));
    EXPECT_EQ(w.res, -ENOSPC) << "the first rule with an error decides";
    EXPECT_NE(w.status.message().find("fault rule 1"), std::string::npos) << w.status;
    EXPECT_GE(Clock::now() - start, milliseconds(10)) << "latencies of every hit add up";
  }(t.get()));
}

TEST_F(FaultInjectionTest, DestroyingADelayedRequestIsSafe) {
  // Delayed for far longer than the test: aborted while on the timer heap, and
  // (kAfter with a short delay) while in the inner target or just after. ASan
  // checks the buffers and frames.
  auto t = Open({{.ops = OpBit(OpKind::kWrite),
                  .offset = 0,
                  .length = kBlock,
                  .latency = std::chrono::seconds(30)},
                 {.ops = OpBit(OpKind::kWrite),
                  .offset = kBlock,
                  .length = kBlock,
                  .error = EIO,
                  .timing = FaultTiming::kAfter,
                  .latency = std::chrono::microseconds(200)}});
  ASSERT_TRUE(t);
  worker_->BlockOn([](FaultyTarget* t) -> Task<> {
    const auto start = Clock::now();
    JoinHandle<void> parked = Spawn([](FaultyTarget* t) -> Task<> {
      co_await t->Write(0, Pattern(1));
      ADD_FAILURE() << "the parked write should never finish";
    }(t));
    co_await Sleep(milliseconds(2));
    parked.Abort();
    for (int i = 0; i < 20; ++i) {
      JoinHandle<void> h =
          Spawn([](FaultyTarget* t) -> Task<> { co_await t->Write(kBlock, Pattern(2)); }(t));
      co_await Sleep(std::chrono::microseconds(50 * i));
      h.Abort();
    }
    // The target is still usable, and nothing waited for the 30 s timer.
    EXPECT_EQ((co_await t->Write(2 * kBlock, Pattern(3))).res, static_cast<int32_t>(kBlock));
    EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
  }(t.get()));
  EXPECT_EQ(t->plan()->hits(0), 1u);
  EXPECT_EQ(t->plan()->matched(1), 20u);
}

TEST_F(FaultInjectionTest, OnePlanCountsAcrossTargets) {
  // Two targets on the same file share a plan (a server opens one per worker):
  // the second matching request is the one hit, whichever target it is on.
  auto plan =
      FaultPlan::Create({{.ops = OpBit(OpKind::kFlush), .skip = 1, .limit = 1, .error = EIO}});
  ASSERT_TRUE(plan.ok());
  auto a = OpenWith(*plan);
  auto b = OpenWith(*plan);
  ASSERT_TRUE(a && b);
  worker_->BlockOn([](FaultyTarget* a, FaultyTarget* b) -> Task<> {
    EXPECT_EQ((co_await a->Flush()).res, 0);
    EXPECT_EQ((co_await b->Flush()).res, -EIO);
    EXPECT_EQ((co_await a->Flush()).res, 0);
  }(a.get(), b.get()));
  EXPECT_EQ((*plan)->matched(0), 3u);
}

TEST_F(FaultInjectionTest, SetPlanChangesLaterRequestsOnly) {
  auto t = Open({});
  ASSERT_TRUE(t);
  auto eio = FaultPlan::Create({{.ops = OpBit(OpKind::kRead), .error = EIO}});
  ASSERT_TRUE(eio.ok());
  worker_->BlockOn([](FaultyTarget* t, std::shared_ptr<FaultPlan> eio) -> Task<> {
    EXPECT_EQ((co_await t->Read(0, kBlock, Buffer::Allocate(kBlock))).res,
              static_cast<int32_t>(kBlock));
    t->set_plan(eio);
    EXPECT_EQ((co_await t->Read(0, kBlock, Buffer::Allocate(kBlock))).res, -EIO);
    t->set_plan(nullptr);
    EXPECT_EQ((co_await t->Read(0, kBlock, Buffer::Allocate(kBlock))).res,
              static_cast<int32_t>(kBlock));
  }(t.get(), *eio));
}

TEST(FaultPlanTest, InvalidRulesAreRefusedNamingTheRuleAndField) {
  auto p = FaultPlan::Create({{.error = EIO}, {.probability = 1.5}});
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("fault rule 1: probability 1.5"), std::string::npos)
      << p.status();
  p = FaultPlan::Create({{.ops = 0}});
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("ops"), std::string::npos) << p.status();
  p = FaultPlan::Create({{.error = -5}});
  EXPECT_FALSE(p.ok());
  p = FaultPlan::Create({{.offset = UINT64_MAX, .length = 2}});
  EXPECT_FALSE(p.ok());
  p = FaultPlan::Create({});
  EXPECT_TRUE(p.ok()) << "an empty plan injects nothing";
}

}  // namespace
}  // namespace ringline::block
