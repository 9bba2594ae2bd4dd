// Ring::SubmitAndWait's minimum wait (a ring primitive; the worker loop does
// not use it, docs/architecture.md "The worker"): a wait for more completions than
// will come ends after the minimum wait with what there is, and a wait that
// gets all it asked for ends at once. Needs Linux 6.12 (IORING_FEAT_MIN_TIMEOUT).
#include <gtest/gtest.h>
#include <liburing.h>

#include <chrono>
#include <cstdio>

#include "ringline/internal/ring.h"

namespace ringline {
namespace {

using std::chrono::steady_clock;

std::unique_ptr<Ring> MakeRing() {
  auto ring = Ring::Create(RingOptions{.sq_entries = 8, .cq_entries = 16, .registered_buffers = 0});
  EXPECT_TRUE(ring.ok()) << ring.status();
  return ring.ok() ? std::move(*ring) : nullptr;
}

std::size_t Drain(Ring& ring) {
  return ring.ForEachCompletion([](const Completion&) {});
}

TEST(RingWaitTest, MinWaitEndsWithFewerCompletionsThanAskedFor) {
  auto ring = MakeRing();
  ASSERT_NE(ring, nullptr);
  if (!ring->min_wait_supported()) {
    std::printf("SKIPPED: the kernel has no IORING_FEAT_MIN_TIMEOUT (needs Linux 6.12)\n");
    GTEST_SKIP();
  }
  // One NOP completes inside the submit; the wait asks for three. Without the
  // minimum wait this would last the whole 5 s timeout.
  for (int i = 0; i < 5; ++i) {
    io_uring_prep_nop(ring->GetSqe());
    const auto start = steady_clock::now();
    const int ret = ring->SubmitAndWait(3, 5'000'000'000, 50);
    const auto waited = steady_clock::now() - start;
    EXPECT_EQ(ret, 1);
    EXPECT_EQ(Drain(*ring), 1u);
    EXPECT_LT(waited, std::chrono::seconds(2)) << "the wait outlasted its minimum by far";
  }
}

TEST(RingWaitTest, MinWaitWithoutTimeoutStillEnds) {
  auto ring = MakeRing();
  ASSERT_NE(ring, nullptr);
  if (!ring->min_wait_supported()) {
    std::printf("SKIPPED: the kernel has no IORING_FEAT_MIN_TIMEOUT (needs Linux 6.12)\n");
    GTEST_SKIP();
  }
  // No timeout at all: only the minimum wait can end it (a failure hangs,
  // which ctest's timeout reports).
  io_uring_prep_nop(ring->GetSqe());
  EXPECT_EQ(ring->SubmitAndWait(2, -1, 50), 1);
  EXPECT_EQ(Drain(*ring), 1u);
}

TEST(RingWaitTest, MinWaitReturnsAtOnceWhenTheBatchIsComplete) {
  auto ring = MakeRing();
  ASSERT_NE(ring, nullptr);
  if (!ring->min_wait_supported()) {
    std::printf("SKIPPED: the kernel has no IORING_FEAT_MIN_TIMEOUT (needs Linux 6.12)\n");
    GTEST_SKIP();
  }
  io_uring_prep_nop(ring->GetSqe());
  io_uring_prep_nop(ring->GetSqe());
  EXPECT_EQ(ring->SubmitAndWait(2, 5'000'000'000, 1'000'000), 2);  // a 1 s minimum not waited
  EXPECT_EQ(Drain(*ring), 2u);
}

}  // namespace
}  // namespace ringline
