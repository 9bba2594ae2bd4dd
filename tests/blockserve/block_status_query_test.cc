// NBD_CMD_BLOCK_STATUS against a real sparse file (block_status_query.h): the
// extents are asked in batches into the query's own storage, and the reply is
// the one a single unbounded extent list would give; REQ_ONE answers one run;
// and a query allocates nothing once warm (the steady state of a client
// mapping an export with nbdinfo --map or copying it sparsely with nbdcopy).
#include "blockserve/block_status_query.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "blockserve/export_table.h"
#include "blockserve/nbd/block_status.h"
#include "ringline/block/direct_file.h"
#include "ringline/unique_fd.h"
#include "ringline/worker.h"
#include "tests/allocation_counter.h"

namespace blockserve {
namespace {

namespace blk = ringline::block;
using ringline::Task;

// AddressSanitizer builds give every coroutine frame its own heap allocation
// (the frame allocator does not recycle there): gcc says so with
// __SANITIZE_ADDRESS__, clang with __has_feature.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kFramesRecycled = false;
#elif defined(__clang__)
constexpr bool kFramesRecycled = !__has_feature(address_sanitizer);
#else
constexpr bool kFramesRecycled = true;
#endif

constexpr uint64_t kIsland = 64 << 10;   // data
constexpr uint64_t kStride = 256 << 10;  // data then hole
constexpr int kIslands = 300;            // 600 extents: more than one reply holds
constexpr uint64_t kFileSize = kStride * kIslands;

uint32_t Be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

// The descriptors encoded in `chunk`.
std::vector<nbd::BlockStatusDescriptor> Decode(const BlockStatusChunk& chunk) {
  std::vector<nbd::BlockStatusDescriptor> out;
  for (size_t at = nbd::kBlockStatusHeaderSize;
       at + nbd::kBlockStatusDescriptorSize <= chunk.bytes.size();
       at += nbd::kBlockStatusDescriptorSize) {
    out.push_back({Be32(chunk.bytes.data() + at), Be32(chunk.bytes.data() + at + 4)});
  }
  return out;
}

class BlockStatusQueryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = "/var/tmp/blockserve-block-status-" + std::to_string(::getpid()) + ".img";
    ringline::UniqueFd fd(::open(path_.c_str(), O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::ftruncate(fd.get(), kFileSize), 0);
    const std::string data(kIsland, 'x');
    for (int i = 0; i < kIslands; ++i) {
      ASSERT_EQ(::pwrite(fd.get(), data.data(), kIsland, static_cast<off_t>(i * kStride)),
                static_cast<ssize_t>(kIsland));
    }
    ASSERT_EQ(::fsync(fd.get()), 0);
    if (::lseek(fd.get(), 0, SEEK_HOLE) != static_cast<off_t>(kIsland)) {
      std::printf("SKIPPED: /var/tmp does not report holes through SEEK_HOLE\n");
      GTEST_SKIP() << "no holes reported";
    }
    auto w = ringline::Worker::Create(ringline::Config{});
    ASSERT_TRUE(w.ok()) << w.status();
    worker_ = std::move(*w);
    // The target as a worker of the server sees it: HealthCheckedTarget over
    // the file.
    ExportConfig c;
    c.name = "e";
    c.path = path_;
    auto st = ExportState::Create(c);
    ASSERT_TRUE(st.ok()) << st.status();
    state_ = std::move(*st);
    auto f = blk::DirectFile::Open(*worker_, path_, {.cache = blk::CacheMode::kWriteback});
    ASSERT_TRUE(f.ok()) << f.status();
    target_ = std::make_unique<HealthCheckedTarget>(std::move(*f), *state_);
  }
  void TearDown() override {
    target_.reset();
    worker_.reset();
    ::unlink(path_.c_str());
  }

  std::string path_;
  std::unique_ptr<ringline::Worker> worker_;
  std::unique_ptr<ExportState> state_;
  std::unique_ptr<blk::Target> target_;
};

TEST_F(BlockStatusQueryTest, BatchedExtentsGiveTheOneListAnswer) {
  worker_->BlockOn([](blk::Target& t) -> Task<> {
    // The reference: every extent of the file in one list, made into
    // descriptors in one go.
    std::vector<blk::Extent> all(2 * kIslands + 1);
    blk::ExtentResult whole = co_await t.Extents(0, kFileSize, all);
    EXPECT_TRUE(whole.ok()) << whole.status;
    EXPECT_EQ(whole.count, 2u * kIslands) << "data and hole, 300 times";
    for (uint64_t offset : {uint64_t{0}, kIsland / 2, kStride * 7 + kIsland + 4096}) {
      SCOPED_TRACE(offset);
      const auto length = static_cast<uint32_t>(kFileSize - offset);
      std::vector<blk::Extent> from(2 * kIslands + 1);
      blk::ExtentResult listed = co_await t.Extents(offset, length, from);
      std::vector<nbd::BlockStatusDescriptor> want(nbd::kMaxBlockStatusDescriptors);
      want.resize(nbd::ToDescriptors<blk::Extent>(std::span(from).first(listed.count), length,
                                                  false, want));
      BlockStatusChunk chunk;
      blk::ExtentResult r = co_await QueryBlockStatus(t, 7, offset, length, false, 1, chunk);
      EXPECT_TRUE(r.ok()) << r.status;
      const std::vector<nbd::BlockStatusDescriptor> got = Decode(chunk);
      EXPECT_EQ(got.size(), nbd::kMaxBlockStatusDescriptors) << "a full reply, from 4 batches";
      EXPECT_EQ(r.count, got.size());
      EXPECT_EQ(got.size(), want.size());
      for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
        EXPECT_EQ(got[i].length, want[i].length) << i;
        EXPECT_EQ(got[i].flags, want[i].flags) << i;
      }
    }
    // REQ_ONE: one descriptor, the run at the offset.
    BlockStatusChunk one;
    blk::ExtentResult r = co_await QueryBlockStatus(t, 8, kStride + kIsland, kStride, true, 1, one);
    EXPECT_TRUE(r.ok()) << r.status;
    const std::vector<nbd::BlockStatusDescriptor> got = Decode(one);
    EXPECT_EQ(got.size(), 1u);
    if (got.size() == 1) {
      EXPECT_EQ(got[0].length, kStride - kIsland);
      EXPECT_EQ(got[0].flags, nbd::kStateHole | nbd::kStateZero);
    }
    // A short tail is covered whole: 3 extents, one batch.
    BlockStatusChunk tail;
    r = co_await QueryBlockStatus(t, 9, kFileSize - kStride - 4096, kStride, false, 1, tail);
    EXPECT_TRUE(r.ok()) << r.status;
    EXPECT_EQ(Decode(tail).size(), 3u);
  }(*target_));
}

TEST_F(BlockStatusQueryTest, NoAllocationPerQueryOnceWarm) {
  uint64_t mapped = UINT64_MAX;
  uint64_t one = UINT64_MAX;
  worker_->BlockOn([](blk::Target& t, uint64_t& mapped, uint64_t& one) -> Task<> {
    // Pass 0 warms the frame allocator's free lists; pass 1 is counted: 200
    // full replies (256 descriptors from four batches of extents each, as
    // nbdinfo --map asks) and 200 REQ_ONE queries (as qemu and nbdcopy ask).
    for (int pass = 0; pass < 2; ++pass) {
      const int n = pass == 0 ? 2 : 200;
      uint64_t before = g_allocations.load();
      t_counting = pass == 1;
      for (int i = 0; i < n; ++i) {
        BlockStatusChunk chunk;
        const uint64_t offset = (i % 10) * kStride;
        blk::ExtentResult r = co_await QueryBlockStatus(
            t, i, offset, static_cast<uint32_t>(kFileSize - offset), false, 1, chunk);
        if (!r.ok() || r.count != nbd::kMaxBlockStatusDescriptors) ADD_FAILURE() << "query " << i;
      }
      t_counting = false;
      if (pass == 1) mapped = g_allocations.load() - before;
      before = g_allocations.load();
      t_counting = pass == 1;
      for (int i = 0; i < n; ++i) {
        BlockStatusChunk chunk;
        blk::ExtentResult r =
            co_await QueryBlockStatus(t, i, (i % 100) * kStride, 65536, true, 1, chunk);
        if (!r.ok() || r.count != 1) ADD_FAILURE() << "REQ_ONE query " << i;
      }
      t_counting = false;
      if (pass == 1) one = g_allocations.load() - before;
    }
  }(*target_, mapped, one));
  std::printf(
      "steady state: %llu allocations over 200 full block-status queries, %llu over 200 "
      "REQ_ONE queries\n",
      static_cast<unsigned long long>(mapped), static_cast<unsigned long long>(one));
  if (!kFramesRecycled) {
    std::printf(
        "SKIPPED: the zero-allocation check (AddressSanitizer builds give every coroutine "
        "frame its own heap allocation, by design of the frame allocator)\n");
    return;
  }
  EXPECT_EQ(mapped, 0u) << "allocations over 200 full queries";
  EXPECT_EQ(one, 0u) << "allocations over 200 REQ_ONE queries";
}

}  // namespace
}  // namespace blockserve
