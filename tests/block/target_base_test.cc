// TargetBase on its own: a target whose submission only counts calls, so the
// shared validation, refusals (one errno-to-status mapping) and metrics are
// checked without a device, for geometries no local device has (no discard,
// no write-zeroes, read-only).

#include "ringline/block/target_base.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "absl/status/status.h"
#include "ringline/unique_fd.h"
#include "ringline/worker.h"
#include "tests/block/fake_target.h"

namespace ringline::block {
namespace {

using CountingTarget = FakeTarget;  // Submit* succeed at once and are counted

Geometry TestGeometry() {
  Geometry g;
  g.size_bytes = 1 << 20;
  g.logical_block_size = 512;
  g.memory_alignment = 512;
  g.supports_discard = false;
  g.supports_write_zeroes = false;
  return g;
}

TEST(TargetBaseTest, UnsupportedDiscardAndZeroesAreRefusedBeforeSubmission) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  auto t = CountingTarget::Open(**w, TestGeometry());
  ASSERT_TRUE(t);
  (*w)->BlockOn([](CountingTarget* t) -> Task<> {
    BlockResult d = co_await t->Discard(0, 4096);
    EXPECT_EQ(d.res, -EOPNOTSUPP);
    EXPECT_TRUE(absl::IsUnimplemented(d.status)) << d.status;
    EXPECT_NE(d.status.message().find("does not support discard"), std::string::npos) << d.status;
    BlockResult z = co_await t->WriteZeroes(0, 4096);
    EXPECT_EQ(z.res, -EOPNOTSUPP);
    EXPECT_NE(z.status.message().find("does not support write-zeroes"), std::string::npos)
        << z.status;
    // Supported operations still reach the implementation.
    EXPECT_EQ((co_await t->Flush()).res, 0);
  }(t.get()));
  EXPECT_EQ(t->submitted, 1) << "only the flush was submitted";
  EXPECT_EQ(t->metrics()->of(OpKind::kDiscard).errors.Get(), 1u);
  EXPECT_EQ(t->metrics()->of(OpKind::kWriteZeroes).errors.Get(), 1u);
  EXPECT_EQ(t->metrics()->of(OpKind::kFlush).ops.Get(), 1u);
}

TEST(TargetBaseTest, RefusalsMapErrnoToStatusOneWay) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  Geometry g = TestGeometry();
  g.read_only = true;
  g.size_bytes = 5000;  // ends mid-block
  auto t = CountingTarget::Open(**w, g);
  ASSERT_TRUE(t);
  (*w)->BlockOn([](CountingTarget* t) -> Task<> {
    Buffer b = Buffer::Allocate(8192);
    b.set_size(512);
    BlockResult wr = co_await t->Write(0, std::move(b));
    EXPECT_EQ(wr.res, -EPERM);
    EXPECT_TRUE(absl::IsPermissionDenied(wr.status)) << wr.status;
    EXPECT_TRUE(wr.buffer) << "a refused request hands its buffer back";
    EXPECT_EQ((co_await t->Discard(0, 512)).res, -EPERM) << "read-only before unsupported";
    BlockResult r = co_await t->Read(1, 512, std::move(wr.buffer));
    EXPECT_EQ(r.res, -EINVAL);
    EXPECT_TRUE(absl::IsInvalidArgument(r.status)) << r.status;
    // A length that is not whole blocks is accepted only when it ends at the end.
    r = co_await t->Read(4608, 392, std::move(r.buffer));
    EXPECT_EQ(r.res, 392) << r.status;
    r = co_await t->Read(4096, 392, std::move(r.buffer));
    EXPECT_EQ(r.res, -EINVAL);
    EXPECT_NE(r.status.message().find("lengths must be multiples of 512"), std::string::npos)
        << r.status;
    r = co_await t->Read(4608, 393, std::move(r.buffer));
    EXPECT_EQ(r.res, -EINVAL);
    EXPECT_NE(r.status.message().find("extend beyond the end"), std::string::npos) << r.status;
  }(t.get()));
  EXPECT_EQ(t->submitted, 1);
}

}  // namespace
}  // namespace ringline::block
