// ExportState and HealthCheckedTarget (export_table.h) over a FaultyTarget on a
// real file: what poisons an export, what a poisoned export refuses and what it
// still serves, and that poisoning from several threads at once happens once.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <thread>
#include <vector>

#include "blockserve/export_table.h"
#include "ringline/block/open.h"
#include "ringline/worker.h"

namespace blockserve {
namespace {

namespace blk = ringline::block;
using ringline::Buffer;
using ringline::Task;

constexpr uint32_t kBlock = 4096;

Buffer Block(uint8_t fill) {
  Buffer b = Buffer::Allocate(kBlock);
  for (uint32_t i = 0; i < kBlock; ++i) b.data()[i] = fill;
  b.set_size(kBlock);
  return b;
}

class ExportStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = "/var/tmp/blockserve-export-state-" + std::to_string(::getpid()) + ".img";
    const int fd = ::open(path_.c_str(), O_CREAT | O_RDWR | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 1 << 20), 0);
    ::close(fd);
    auto w = ringline::Worker::Create(ringline::Config{});
    ASSERT_TRUE(w.ok()) << w.status();
    worker_ = std::move(*w);
  }
  void TearDown() override {
    target_.reset();
    worker_.reset();
    ::unlink(path_.c_str());
  }
  // The export as a worker opens it: HealthCheckedTarget over FaultyTarget.
  void Open(std::vector<blk::FaultRule> rules) {
    ExportConfig c;
    c.name = "e";
    c.path = path_;
    c.faults = std::move(rules);
    auto st = ExportState::Create(c);
    ASSERT_TRUE(st.ok()) << st.status();
    state_ = std::move(*st);
    auto inner = blk::OpenTarget(*worker_, path_);
    ASSERT_TRUE(inner.ok()) << inner.status();
    target_ = std::make_unique<HealthCheckedTarget>(
        std::make_unique<blk::FaultyTarget>(std::move(*inner), state_->faults()), *state_);
  }

  std::string path_;
  std::unique_ptr<ringline::Worker> worker_;
  std::unique_ptr<ExportState> state_;
  std::unique_ptr<HealthCheckedTarget> target_;
};

TEST_F(ExportStateTest, FailedFlushPoisonsFlushAndFuaButNotReadsAndWrites) {
  Open({{.ops = blk::OpBit(blk::OpKind::kFlush), .skip = 1, .limit = 1, .error = EIO}});
  worker_->BlockOn([](HealthCheckedTarget* t, ExportState* s) -> Task<> {
    EXPECT_EQ((co_await t->Flush()).res, 0);
    EXPECT_FALSE(s->poisoned());
    blk::BlockResult f = co_await t->Flush();
    EXPECT_EQ(f.res, -EIO);
    EXPECT_TRUE(s->poisoned());
    EXPECT_EQ(s->poison_errno(), EIO);
    // The rule fires once; the refusals below come from the state.
    f = co_await t->Flush();
    EXPECT_EQ(f.res, -EIO);
    EXPECT_TRUE(absl::IsDataLoss(f.status)) << f.status;
    EXPECT_NE(f.status.message().find("export 'e' is poisoned"), std::string::npos) << f.status;
    blk::BlockResult w = co_await t->Write(0, Block(1), {.fua = true});
    EXPECT_EQ(w.res, -EIO);
    EXPECT_TRUE(w.buffer) << "a refused FUA write hands its buffer back";
    EXPECT_EQ((co_await t->WriteZeroes(0, kBlock, {.fua = true})).res, -EIO);
    // Plain writes and reads go on.
    EXPECT_EQ((co_await t->Write(0, Block(2))).res, static_cast<int32_t>(kBlock));
    blk::BlockResult r = co_await t->Read(0, kBlock, Buffer::Allocate(kBlock));
    EXPECT_EQ(r.res, static_cast<int32_t>(kBlock));
    EXPECT_EQ(r.ok() ? r.buffer.data()[kBlock - 1] : 0, 2);
    EXPECT_EQ((co_await t->WriteZeroes(0, kBlock)).res, 0);
  }(target_.get(), state_.get()));
  EXPECT_EQ(state_->faults()->matched(0), 2u) << "refused flushes never reached the device";
  EXPECT_EQ(state_->refused(), 3u);
}

TEST_F(ExportStateTest, FuaWriteFailingWithEioPoisonsEnospcDoesNot) {
  Open(
      {{.ops = blk::OpBit(blk::OpKind::kWrite), .offset = 0, .length = kBlock, .error = ENOSPC},
       {.ops = blk::OpBit(blk::OpKind::kWrite), .offset = kBlock, .length = kBlock, .error = EIO}});
  worker_->BlockOn([](HealthCheckedTarget* t, ExportState* s) -> Task<> {
    EXPECT_EQ((co_await t->Write(0, Block(1), {.fua = true})).res, -ENOSPC);
    EXPECT_FALSE(s->poisoned()) << "ENOSPC wrote nothing: no reason to poison";
    EXPECT_EQ((co_await t->Write(kBlock, Block(1))).res, -EIO);
    EXPECT_FALSE(s->poisoned()) << "a plain write's EIO is no sync failure";
    EXPECT_EQ((co_await t->Flush()).res, 0);
    EXPECT_EQ((co_await t->Write(kBlock, Block(1), {.fua = true})).res, -EIO);
    EXPECT_TRUE(s->poisoned()) << "a FUA write's EIO may have consumed a writeback error";
    EXPECT_EQ((co_await t->Flush()).res, -EIO);
  }(target_.get(), state_.get()));
}

// The server opens each export once per worker, each worker on its own thread
// with its own target; the state is shared. A flush failed on one worker's
// target refuses the next flush on another's.
TEST_F(ExportStateTest, PoisonOnOneWorkerRefusesOnAnother) {
  Open({{.ops = blk::OpBit(blk::OpKind::kFlush), .limit = 1, .error = EIO}});
  target_.reset();  // this test runs its own workers
  auto on_worker = [this](bool expect_injected) {
    auto w = ringline::Worker::Create(ringline::Config{});
    ASSERT_TRUE(w.ok()) << w.status();
    auto inner = blk::OpenTarget(**w, path_);
    ASSERT_TRUE(inner.ok()) << inner.status();
    HealthCheckedTarget t(std::make_unique<blk::FaultyTarget>(std::move(*inner), state_->faults()),
                          *state_);
    (*w)->BlockOn([](HealthCheckedTarget* t, bool injected) -> Task<> {
      blk::BlockResult f = co_await t->Flush();
      EXPECT_EQ(f.res, -EIO);
      EXPECT_EQ(f.status.message().find("injected by fault rule 0") != std::string::npos, injected)
          << f.status;
      EXPECT_EQ((co_await t->Write(0, Block(3))).res, static_cast<int32_t>(kBlock));
    }(&t, expect_injected));
  };
  std::thread first(on_worker, true);
  first.join();
  EXPECT_TRUE(state_->poisoned());
  std::thread second(on_worker, false);
  second.join();
  EXPECT_EQ(state_->faults()->matched(0), 1u) << "the second worker's flush never reached it";
  EXPECT_EQ(state_->refused(), 1u);
}

TEST(ExportStatePoisonTest, ManyThreadsPoisonOnce) {
  ExportConfig c;
  c.name = "race";
  c.path = "/dev/null";
  auto st = ExportState::Create(c);
  ASSERT_TRUE(st.ok());
  ExportState& s = **st;
  EXPECT_EQ(s.faults(), nullptr) << "no rules, no plan";
  std::atomic<int> winners{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&s, &winners, i] {
      if (s.Poison(i % 2 ? EIO : ENOSPC, "a flush failed: test")) winners.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(winners.load(), 1);
  EXPECT_TRUE(s.poisoned());
  EXPECT_TRUE(s.poison_errno() == EIO || s.poison_errno() == ENOSPC);
  const std::string text = RenderExportStates({&s});
  EXPECT_NE(text.find("blockserve_export_poisoned{export=\"race\"} 1\n"), std::string::npos)
      << text;
  EXPECT_EQ(text.find("blockserve_faults_injected_total"), std::string::npos)
      << "no fault family without a plan";
}

}  // namespace
}  // namespace blockserve
