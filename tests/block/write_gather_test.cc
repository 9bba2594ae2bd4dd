// Target::WriteGather against real files: a header and a payload from two
// Buffers land back to back, on a disk file opened O_DIRECT (IORING_OP_WRITEV),
// through the page cache, and on tmpfs (pwritev2 inline); split into chunks at
// max_transfer_bytes with the boundary inside the header and the payload; the
// refusals name the rule. The one-buffer path NvmeNamespace uses (the header
// copied in front of the payload) is checked on a TargetBase that records what
// it was asked to write.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "ringline/align.h"
#include "ringline/block/direct_file.h"
#include "ringline/block/fault_injection.h"
#include "ringline/block/target_base.h"
#include "ringline/buffer_pool.h"
#include "ringline/unique_fd.h"
#include "ringline/worker.h"
#include "tests/block/fake_target.h"

namespace ringline::block {
namespace {

uint8_t PatternAt(uint64_t seed, std::size_t i) {
  return static_cast<uint8_t>((seed * 131 + i * 7 + (i >> 9)) >> 1);
}
Buffer Filled(std::size_t capacity, std::size_t size, uint64_t seed) {
  Buffer b = Buffer::Allocate(capacity);
  for (std::size_t i = 0; i < size; ++i) b.data()[i] = PatternAt(seed, i);
  b.set_size(size);
  return b;
}

std::string DiskDir() {
  struct statfs fs;
  if (statfs("/var/tmp", &fs) == 0 && fs.f_type != TMPFS_MAGIC) return "/var/tmp";
  char cwd[4096];
  return getcwd(cwd, sizeof cwd) ? cwd : ".";
}

// The bytes of `path` at [offset, offset + n), read with a plain pread.
std::vector<uint8_t> FileBytes(const std::string& path, uint64_t offset, std::size_t n) {
  std::vector<uint8_t> out(n);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_TRUE(fd);
  EXPECT_EQ(::pread(fd.get(), out.data(), n, static_cast<off_t>(offset)), static_cast<ssize_t>(n));
  return out;
}

struct Case {
  const char* name;
  std::string dir;
  CacheMode cache;
};

TEST(WriteGatherFileTest, HeaderAndPayloadLandBackToBack) {
  std::vector<Case> cases{{"disk O_DIRECT", DiskDir(), CacheMode::kDirect},
                          {"disk page cache", DiskDir(), CacheMode::kWriteback},
                          {"tmpfs (pwritev2 inline)", "/dev/shm", CacheMode::kAuto}};
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = c.dir + "/ringline-gather-" + std::to_string(getpid()) + ".img";
    ::unlink(path.c_str());
    for (uint32_t max_transfer : {0u, 8192u}) {
      SCOPED_TRACE(::testing::Message() << "max_transfer_bytes " << max_transfer);
      auto f = DirectFile::Open(**w, path,
                                {.max_transfer_bytes = max_transfer,
                                 .create = true,
                                 .create_size = 1 << 20,
                                 .cache = c.cache});
      if (!f.ok() && c.cache == CacheMode::kDirect) {
        std::printf("SKIPPED: %s: O_DIRECT not available here: %s\n", c.name,
                    std::string(f.status().message()).c_str());
        continue;
      }
      ASSERT_TRUE(f.ok()) << f.status();
      DirectFile& file = **f;
      // A header of 100 bytes padded with zeroes to the memory alignment (512
      // with O_DIRECT), then 20 KiB of payload: with 8 KiB chunks the first
      // chunk ends inside the payload and later ones hold payload only.
      const uint32_t mem_align = std::max<uint32_t>(file.geometry().memory_alignment, 512);
      Buffer header = Filled(4096, 100, 1);
      ASSERT_TRUE(PadToAlignment(header, mem_align));
      Buffer payload = Filled(32768, 20480 - header.size(), 2);
      const std::size_t h = header.size();
      const std::size_t p = payload.size();
      const uint64_t offset = 8192;
      (*w)->BlockOn([](DirectFile& file, Buffer header, Buffer payload, uint64_t offset,
                       std::size_t h, std::size_t p) -> Task<> {
        GatherResult r =
            co_await file.WriteGather(offset, std::move(header), std::move(payload), {.fua = true});
        EXPECT_TRUE(r.ok()) << r.status;
        EXPECT_EQ(r.res, static_cast<int32_t>(h + p));
        EXPECT_TRUE(r.header) << "the header comes back";
        EXPECT_TRUE(r.payload) << "the payload comes back";
        EXPECT_EQ(r.payload.size(), p) << "untouched by a vectored write";
      }(file, std::move(header), std::move(payload), offset, h, p));
      const std::vector<uint8_t> got = FileBytes(path, offset, h + p);
      for (std::size_t i = 0; i < 100; ++i) ASSERT_EQ(got[i], PatternAt(1, i)) << "header " << i;
      for (std::size_t i = 100; i < h; ++i) ASSERT_EQ(got[i], 0) << "pad " << i;
      for (std::size_t i = 0; i < p; ++i) ASSERT_EQ(got[h + i], PatternAt(2, i)) << "payload " << i;
    }
    ::unlink(path.c_str());
  }
}

TEST(WriteGatherFileTest, RefusalsNameTheRule) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  const std::string path = DiskDir() + "/ringline-gather-refuse-" + std::to_string(getpid());
  ::unlink(path.c_str());
  auto f = DirectFile::Open(**w, path,
                            {.create = true, .create_size = 1 << 20, .cache = CacheMode::kDirect});
  if (!f.ok()) {
    std::printf("SKIPPED: O_DIRECT not available on %s: %s\n", DiskDir().c_str(),
                std::string(f.status().message()).c_str());
    return;
  }
  (*w)->BlockOn([](DirectFile& file) -> Task<> {
    const uint32_t align = file.geometry().memory_alignment;
    // An unpadded header.
    GatherResult r = co_await file.WriteGather(0, Filled(4096, 100, 1), Filled(4096, 412, 2));
    EXPECT_EQ(r.res, -EINVAL);
    EXPECT_NE(r.status.message().find("PadToAlignment"), std::string::npos) << r.status;
    EXPECT_TRUE(r.header && r.payload) << "refused buffers come back";
    // A total that is not a multiple of the block size.
    GatherResult odd = co_await file.WriteGather(0, Filled(4096, align, 1), Filled(4096, 100, 2));
    EXPECT_EQ(odd.res, -EINVAL);
    EXPECT_NE(odd.status.message().find("misaligned"), std::string::npos) << odd.status;
    // Beyond the end.
    GatherResult far =
        co_await file.WriteGather((1 << 20) - 512, Filled(4096, 512, 1), Filled(4096, 512, 2));
    EXPECT_EQ(far.res, -EINVAL);
    EXPECT_NE(far.status.message().find("beyond the end"), std::string::npos) << far.status;
  }(**f));
  ::unlink(path.c_str());
}

TEST(WriteGatherFileTest, AWrappingTargetJoinsAndWrites) {
  // Targets that wrap another (here FaultyTarget with no rules) get the
  // default: the header joined in front of the payload, then Write().
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  const std::string path = DiskDir() + "/ringline-gather-wrap-" + std::to_string(getpid());
  ::unlink(path.c_str());
  auto f = DirectFile::Open(
      **w, path, {.create = true, .create_size = 1 << 20, .cache = CacheMode::kWriteback});
  ASSERT_TRUE(f.ok()) << f.status();
  auto plan = FaultPlan::Create({}, 1);
  ASSERT_TRUE(plan.ok()) << plan.status();
  FaultyTarget wrapped(std::move(*f), std::move(*plan));
  (*w)->BlockOn([](Target& t) -> Task<> {
    GatherResult r = co_await t.WriteGather(4096, Filled(4096, 512, 1), Filled(8192, 3584, 2));
    EXPECT_TRUE(r.ok()) << r.status;
    EXPECT_EQ(r.res, 4096);
  }(wrapped));
  const std::vector<uint8_t> got = FileBytes(path, 4096, 4096);
  bool same = true;
  for (std::size_t i = 0; same && i < 512; ++i) same = got[i] == PatternAt(1, i);
  for (std::size_t i = 0; same && i < 3584; ++i) same = got[512 + i] == PatternAt(2, i);
  EXPECT_TRUE(same) << "header then payload on disk";
  ::unlink(path.c_str());
}

// Records the one buffer it is asked to write (the path targets that take one
// contiguous buffer, such as NvmeNamespace, go through).
using RecordingTarget = FakeTarget;

TEST(WriteGatherOneBufferTest, HeaderIsCopiedInFrontOfThePayload) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  Geometry g;
  g.size_bytes = 1 << 20;
  g.logical_block_size = 512;
  g.memory_alignment = 4;  // as NVMe passthrough reports
  auto t = RecordingTarget::Open(**w, g);
  ASSERT_TRUE(t);
  (*w)->BlockOn([](RecordingTarget& t) -> Task<> {
    GatherResult r = co_await t.WriteGather(4096, Filled(4096, 64, 1), Filled(8192, 4096 - 64, 2));
    EXPECT_TRUE(r.ok()) << r.status;
    EXPECT_EQ(r.res, 4096);
    EXPECT_EQ(r.payload.size(), 4096u) << "the payload Buffer comes back holding both";
    EXPECT_EQ(t.written_at, 4096u);
    EXPECT_EQ(t.written.size(), 4096u);
    bool same = t.written.size() == 4096;
    for (std::size_t i = 0; same && i < 64; ++i) same = t.written[i] == PatternAt(1, i);
    for (std::size_t i = 0; same && i < 4096 - 64; ++i) same = t.written[64 + i] == PatternAt(2, i);
    EXPECT_TRUE(same) << "header then payload";
    // No room in the payload's Buffer: refused, naming the capacity needed.
    GatherResult full = co_await t.WriteGather(0, Filled(4096, 512, 1), Filled(4096, 4096, 2));
    EXPECT_EQ(full.res, -EINVAL);
    EXPECT_NE(full.status.message().find("4608"), std::string::npos) << full.status;
  }(*t));
}

}  // namespace
}  // namespace ringline::block
