// DirectFile against the real thing: a file on the local disk and a loop
// device (losetup --direct-io=on; SKIPPED with the reason where loop set-up is
// not allowed), each opened O_DIRECT (cache=direct) and through the page cache
// (cache=writeback) and tested alike; cache=auto on ramfs, which refuses
// O_DIRECT.

#include "ringline/block/direct_file.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "ringline/block/open.h"
#include "ringline/buffer_pool.h"
#include "ringline/operation.h"
#include "ringline/sleep.h"
#include "ringline/spawn.h"
#include "ringline/unique_fd.h"
#include "ringline/worker.h"

namespace ringline::block {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kSize = 64ull << 20;

// A directory on a real disk filesystem: /var/tmp unless it is tmpfs, else the
// current (build) directory.
std::string DiskDir() {
  struct statfs fs;
  if (statfs("/var/tmp", &fs) == 0 && fs.f_type != TMPFS_MAGIC) return "/var/tmp";
  char cwd[4096];
  return getcwd(cwd, sizeof cwd) ? cwd : ".";
}

// Runs a shell command; returns its trimmed stdout, `ok` tells whether it exited 0.
std::string RunCommand(const std::string& cmd, bool* ok) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) {
    *ok = false;
    return "popen failed";
  }
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  *ok = pclose(p) == 0;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

void Fill(Buffer& b, std::size_t n, uint64_t seed) {
  for (std::size_t i = 0; i < n; ++i) b.data()[i] = static_cast<uint8_t>((seed * 131 + i * 7) >> 1);
  b.set_size(n);
}
bool Matches(const Buffer& b, std::size_t n, uint64_t seed) {
  for (std::size_t i = 0; i < n; ++i) {
    if (b.data()[i] != static_cast<uint8_t>((seed * 131 + i * 7) >> 1)) return false;
  }
  return true;
}
bool AllZero(const Buffer& b, std::size_t n) {
  return std::all_of(b.data(), b.data() + n, [](uint8_t c) { return c == 0; });
}

enum class Backend { kFile, kLoop };

class DirectFileTest : public ::testing::TestWithParam<std::tuple<Backend, CacheMode>> {
 protected:
  static Backend backend() { return std::get<0>(GetParam()); }
  static CacheMode cache() { return std::get<1>(GetParam()); }

  void SetUp() override {
    std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(test.begin(), test.end(), '/', '_');
    backing_ = DiskDir() + "/ringline_direct_file_test." + std::to_string(getpid()) + "." + test;
    ASSERT_EQ(truncate_or_create(backing_, kSize), 0) << strerror(errno);
    path_ = backing_;
    if (backend() == Backend::kLoop) {
      bool ok = false;
      std::string out = RunCommand("losetup --direct-io=on --find --show " + backing_, &ok);
      if (!ok || out.rfind("/dev/loop", 0) != 0) {
        std::printf("SKIPPED: loop device set-up is not allowed here (losetup: %s)\n", out.c_str());
        GTEST_SKIP() << "loop device set-up is not allowed here (losetup: " << out << ")";
      }
      loop_ = out;
      path_ = loop_;
    }
    auto w = Worker::Create(Config{});
    ASSERT_TRUE(w.ok()) << w.status();
    worker_ = std::move(*w);
    auto p = BufferPool::Create(*worker_, {.buffer_size = 1 << 20, .count = 4});
    ASSERT_TRUE(p.ok()) << p.status();
    pool_ = std::move(*p);
  }
  void TearDown() override {
    pool_.reset();
    worker_.reset();
    if (!loop_.empty()) {
      bool ok = false;
      std::string out = RunCommand("losetup -d " + loop_, &ok);
      EXPECT_TRUE(ok) << "losetup -d " << loop_ << ": " << out;
    }
    if (!backing_.empty()) unlink(backing_.c_str());
  }
  static int truncate_or_create(const std::string& path, uint64_t size) {
    int fd = open(path.c_str(), O_CREAT | O_RDWR | O_TRUNC, 0644);
    if (fd < 0) return -1;
    int r = ftruncate(fd, static_cast<off_t>(size));
    close(fd);
    return r;
  }

  // Opens the target in the test's cache mode.
  std::unique_ptr<DirectFile> OpenFile(TargetOptions o = {}) {
    o.cache = cache();
    auto f = DirectFile::Open(*worker_, path_, o);
    EXPECT_TRUE(f.ok()) << f.status();
    return f.ok() ? std::move(*f) : nullptr;
  }

  std::string backing_;
  std::string loop_;
  std::string path_;
  std::unique_ptr<Worker> worker_;
  std::unique_ptr<BufferPool> pool_;
};

TEST_P(DirectFileTest, GeometryIsDiscoveredAtOpen) {
  auto f = OpenFile();
  ASSERT_TRUE(f);
  const Geometry& g = f->geometry();
  EXPECT_EQ(g.size_bytes, kSize);
  EXPECT_EQ(f->cache_mode(), cache());
  if (cache() == CacheMode::kDirect) {
    EXPECT_GE(g.logical_block_size, 512u);
    EXPECT_EQ(g.logical_block_size & (g.logical_block_size - 1), 0u);
    EXPECT_GE(g.memory_alignment, 1u);
  } else {
    if (backend() == Backend::kFile) {
      EXPECT_EQ(g.logical_block_size, 1u) << "the page cache takes any offset and length";
    } else {
      EXPECT_GE(g.logical_block_size, 512u) << "block devices discard and zero whole sectors";
    }
    EXPECT_EQ(g.memory_alignment, 1u);
  }
  EXPECT_FALSE(g.read_only);
  EXPECT_EQ(f->is_block_device(), backend() == Backend::kLoop);
  EXPECT_GE(f->fixed_file(), 0);
  EXPECT_EQ(f->name(), path_);
}

// Patterns of several sizes at several offsets, through registered pool buffers
// (WRITE_FIXED/READ_FIXED) and unregistered heap buffers (WRITE/READ).
TEST_P(DirectFileTest, PatternsWrittenAndReadBack) {
  auto f = OpenFile();
  ASSERT_TRUE(f);
  worker_->BlockOn([](DirectFile* f, BufferPool* pool) -> Task<> {
    struct Case {
      uint64_t offset;
      uint32_t len;
      bool registered;
    };
    const std::vector<Case> cases = {{0, 4096, true},          {4096, 512, true},
                                     {1 << 20, 131072, true},  {kSize - 4096, 4096, true},
                                     {8 << 20, 1 << 20, true}, {12345 * 512, 3 * 512, false},
                                     {32 << 20, 65536, false}};
    uint64_t seed = 1;
    for (const Case& c : cases) {
      // (No co_await inside a conditional expression: GCC 12 miscompiles it.)
      Buffer b;
      if (c.registered) {
        b = co_await pool->Acquire();
      } else {
        b = Buffer::Allocate(c.len);
      }
      EXPECT_EQ(b.registered(), c.registered && pool->registered());
      Fill(b, c.len, seed);
      BlockResult w = co_await f->Write(c.offset, std::move(b));
      EXPECT_EQ(w.res, static_cast<int32_t>(c.len)) << w.status;
      EXPECT_TRUE(w.buffer) << "the buffer comes back";
      Buffer r = std::move(w.buffer);
      std::memset(r.data(), 0xee, c.len);
      BlockResult rd = co_await f->Read(c.offset, c.len, std::move(r));
      EXPECT_EQ(rd.res, static_cast<int32_t>(c.len)) << rd.status;
      EXPECT_EQ(rd.buffer.size(), c.len);
      EXPECT_TRUE(Matches(rd.buffer, c.len, seed)) << "offset " << c.offset;
      ++seed;
    }
  }(f.get(), pool_.get()));
  const TargetMetrics* m = f->metrics();
  EXPECT_EQ(m->of(OpKind::kWrite).ops.Get(), 7u);
  EXPECT_EQ(m->of(OpKind::kRead).ops.Get(), 7u);
  EXPECT_EQ(m->of(OpKind::kRead).errors.Get(), 0u);
  EXPECT_EQ(m->of(OpKind::kWrite).bytes.Get(),
            4096u + 512 + 131072 + 4096 + (1 << 20) + 1536 + 65536);
  EXPECT_EQ(m->of(OpKind::kRead).latency_ns.Read().count, 7u);
  EXPECT_EQ(pool_->available(), pool_->count());
}

TEST_P(DirectFileTest, FuaWriteAndFlush) {
  auto f = OpenFile();
  ASSERT_TRUE(f);
  worker_->BlockOn([](DirectFile* f, BufferPool* pool) -> Task<> {
    Buffer b = co_await pool->Acquire();
    Fill(b, 8192, 42);
    BlockResult w = co_await f->Write(65536, std::move(b), {.fua = true});
    EXPECT_EQ(w.res, 8192) << w.status;
    BlockResult fl = co_await f->Flush();
    EXPECT_EQ(fl.res, 0) << fl.status;
    BlockResult r = co_await f->Read(65536, 8192, std::move(w.buffer));
    EXPECT_EQ(r.res, 8192);
    EXPECT_TRUE(Matches(r.buffer, 8192, 42));
  }(f.get(), pool_.get()));
  EXPECT_EQ(f->metrics()->of(OpKind::kFlush).ops.Get(), 1u);
  EXPECT_EQ(f->metrics()->of(OpKind::kFlush).errors.Get(), 0u);
}

TEST_P(DirectFileTest, DiscardThenZeroesReadBack) {
  auto f = OpenFile();
  ASSERT_TRUE(f);
  worker_->BlockOn([](DirectFile* f, BufferPool* pool) -> Task<> {
    const uint64_t off = 4 << 20;
    const uint32_t len = 1 << 20;
    Buffer b = co_await pool->Acquire();
    Fill(b, len, 7);
    BlockResult w = co_await f->Write(off, std::move(b));
    EXPECT_EQ(w.res, static_cast<int32_t>(len));
    BlockResult d = co_await f->Discard(off, len);
    EXPECT_EQ(d.res, 0) << d.status;
    // Files: a punched hole reads as zeroes. Loop devices: discard punches a
    // hole in the backing file, so it reads as zeroes too.
    BlockResult r = co_await f->Read(off, len, std::move(w.buffer));
    EXPECT_EQ(r.res, static_cast<int32_t>(len));
    EXPECT_TRUE(AllZero(r.buffer, len));
    // Discarding nothing succeeds without the kernel.
    EXPECT_EQ((co_await f->Discard(0, 0)).res, 0);
  }(f.get(), pool_.get()));
  EXPECT_EQ(f->metrics()->of(OpKind::kDiscard).errors.Get(), 0u);
}

TEST_P(DirectFileTest, WriteZeroes) {
  auto f = OpenFile();
  ASSERT_TRUE(f);
  worker_->BlockOn([](DirectFile* f, BufferPool* pool) -> Task<> {
    for (bool fua : {false, true}) {
      const uint64_t off = fua ? (6 << 20) : (5 << 20);
      const uint32_t len = 256 << 10;
      Buffer b = co_await pool->Acquire();
      Fill(b, len, 9);
      BlockResult w = co_await f->Write(off, std::move(b));
      EXPECT_EQ(w.res, static_cast<int32_t>(len));
      // Zero the middle half only.
      BlockResult z = co_await f->WriteZeroes(off + len / 4, len / 2, {.fua = fua});
      EXPECT_EQ(z.res, 0) << z.status;
      BlockResult r = co_await f->Read(off, len, std::move(w.buffer));
      EXPECT_EQ(r.res, static_cast<int32_t>(len));
      Buffer& rb = r.buffer;
      bool head_ok = true, tail_ok = true;
      for (uint32_t i = 0; i < len / 4; ++i) {
        head_ok &= rb.data()[i] == static_cast<uint8_t>((9 * 131 + i * 7) >> 1);
        const uint32_t j = 3 * len / 4 + i;
        tail_ok &= rb.data()[j] == static_cast<uint8_t>((9 * 131 + j * 7) >> 1);
      }
      EXPECT_TRUE(head_ok && tail_ok) << "bytes outside the zeroed range changed";
      EXPECT_TRUE(std::all_of(rb.data() + len / 4, rb.data() + 3 * len / 4,
                              [](uint8_t c) { return c == 0; }));
    }
  }(f.get(), pool_.get()));
}

// A buffer whose address is not a multiple of `align` (heap allocations with a
// small alignment land on one sooner or later).
Buffer MisalignedBuffer(uint32_t align, std::vector<Buffer>& keep) {
  for (int i = 0; i < 256; ++i) {
    Buffer b = Buffer::Allocate(8192, 16);
    if (reinterpret_cast<uintptr_t>(b.data()) % align != 0) return b;
    keep.push_back(std::move(b));
  }
  return Buffer();
}

TEST_P(DirectFileTest, MisalignedRequestsFailAtOnceWithoutTheKernel) {
  if (cache() != CacheMode::kDirect) {
    GTEST_SKIP() << "buffered targets have no alignment (UnalignedRequestsWorkWhenBuffered)";
  }
  auto f = OpenFile();
  ASSERT_TRUE(f);
  const uint32_t lbs = f->geometry().logical_block_size;
  const uint32_t mem = f->geometry().memory_alignment;
  std::vector<Buffer> keep;
  Buffer odd = MisalignedBuffer(mem, keep);
  ASSERT_TRUE(odd) << "could not get a misaligned heap buffer";
  // Let the worker submit what it queued at start-up (its eventfd read).
  worker_->BlockOn([]() -> Task<> { co_await Nop(); }());
  const uint64_t sqes_before = worker_->internals().ring().sqes_submitted();
  const uint64_t metric_before = worker_->metrics().sqes_submitted.Get();
  const unsigned queued_before = io_uring_sq_ready(worker_->internals().ring().raw());

  worker_->BlockOn(
      [](DirectFile* f, BufferPool* pool, Buffer odd, uint32_t lbs, uint32_t mem) -> Task<> {
        const std::string lbs_s = std::to_string(lbs);
        Buffer b = pool->TryAcquire();
        // Misaligned offset.
        BlockResult r = co_await f->Read(lbs / 2, 4096, std::move(b));
        EXPECT_EQ(r.res, -EINVAL);
        EXPECT_THAT(std::string(r.status.message()),
                    HasSubstr("offsets must be multiples of " + lbs_s + " bytes"));
        EXPECT_TRUE(r.buffer) << "a refused request hands its buffer back";
        // Misaligned length.
        r = co_await f->Read(0, 4096 + lbs / 2, std::move(r.buffer));
        EXPECT_EQ(r.res, -EINVAL);
        EXPECT_THAT(std::string(r.status.message()),
                    HasSubstr("lengths must be multiples of " + lbs_s + " bytes"));
        Fill(r.buffer, 1000, 1);
        r = co_await f->Write(0, std::move(r.buffer));
        EXPECT_EQ(r.res, -EINVAL);
        EXPECT_THAT(std::string(r.status.message()), HasSubstr("lengths must be multiples of"));
        // Misaligned buffer address.
        BlockResult o = co_await f->Read(0, 4096, std::move(odd));
        EXPECT_EQ(o.res, -EINVAL);
        EXPECT_THAT(std::string(o.status.message()),
                    HasSubstr("buffers must be aligned to " + std::to_string(mem) + " bytes"));
        Fill(o.buffer, 4096, 1);
        o = co_await f->Write(0, std::move(o.buffer));
        EXPECT_EQ(o.res, -EINVAL);
        EXPECT_THAT(std::string(o.status.message()), HasSubstr("buffers must be aligned to"));
        // Buffer too small for the read.
        BlockResult s = co_await f->Read(0, 2 << 20, std::move(r.buffer));
        EXPECT_EQ(s.res, -EINVAL);
        EXPECT_THAT(std::string(s.status.message()), HasSubstr("smaller than the length"));
        // Discard and write-zeroes alignment.
        BlockResult d = co_await f->Discard(lbs / 2, lbs);
        EXPECT_EQ(d.res, -EINVAL);
        EXPECT_THAT(std::string(d.status.message()), HasSubstr("offsets must be multiples of"));
        d = co_await f->WriteZeroes(0, lbs + 1);
        EXPECT_EQ(d.res, -EINVAL);
        EXPECT_THAT(std::string(d.status.message()), HasSubstr("lengths must be multiples of"));
      }(f.get(), pool_.get(), std::move(odd), lbs, mem));

  EXPECT_EQ(worker_->internals().ring().sqes_submitted(), sqes_before)
      << "a refused request reached the kernel";
  EXPECT_EQ(worker_->metrics().sqes_submitted.Get(), metric_before);
  EXPECT_EQ(io_uring_sq_ready(worker_->internals().ring().raw()), queued_before)
      << "an SQE was queued";
  EXPECT_EQ(f->metrics()->of(OpKind::kRead).errors.Get(), 4u);
  EXPECT_EQ(f->metrics()->of(OpKind::kWrite).errors.Get(), 2u);
}

TEST_P(DirectFileTest, BeyondTheEndFails) {
  auto f = OpenFile();
  ASSERT_TRUE(f);
  worker_->BlockOn([](DirectFile* f, BufferPool* pool) -> Task<> {
    Buffer b = co_await pool->Acquire();
    BlockResult r = co_await f->Read(kSize, 4096, std::move(b));
    EXPECT_EQ(r.res, -EINVAL);
    EXPECT_THAT(std::string(r.status.message()),
                HasSubstr("extend beyond the end of " + f->name() + " (size " +
                          std::to_string(kSize) + " bytes)"));
    Fill(r.buffer, 8192, 3);
    r = co_await f->Write(kSize - 4096, std::move(r.buffer));
    EXPECT_EQ(r.res, -EINVAL);
    EXPECT_THAT(std::string(r.status.message()), HasSubstr("extend beyond the end"));
    BlockResult d = co_await f->Discard(kSize - 4096, 8192);
    EXPECT_EQ(d.res, -EINVAL);
    d = co_await f->WriteZeroes(UINT64_MAX - 511, 1024);  // offset + length overflows
    EXPECT_EQ(d.res, -EINVAL);
    EXPECT_THAT(std::string(d.status.message()), HasSubstr("extend beyond the end"));
    // The last block itself is fine.
    Fill(r.buffer, 4096, 3);
    r = co_await f->Write(kSize - 4096, std::move(r.buffer));
    EXPECT_EQ(r.res, 4096) << r.status;
  }(f.get(), pool_.get()));
}

TEST_P(DirectFileTest, ReadOnlyTargetRefusesWrites) {
  {
    auto rw = OpenFile();
    ASSERT_TRUE(rw);
    worker_->BlockOn([](DirectFile* f, BufferPool* pool) -> Task<> {
      Buffer b = co_await pool->Acquire();
      Fill(b, 4096, 11);
      EXPECT_EQ((co_await f->Write(0, std::move(b))).res, 4096);
    }(rw.get(), pool_.get()));
  }
  auto f = OpenFile({.read_only = true});
  ASSERT_TRUE(f);
  EXPECT_TRUE(f->geometry().read_only);
  worker_->BlockOn([](DirectFile* f, BufferPool* pool) -> Task<> {
    Buffer b = co_await pool->Acquire();
    Fill(b, 4096, 12);
    BlockResult w = co_await f->Write(0, std::move(b));
    EXPECT_EQ(w.res, -EPERM);
    EXPECT_TRUE(absl::IsPermissionDenied(w.status)) << w.status;
    EXPECT_THAT(std::string(w.status.message()), HasSubstr("read-only"));
    EXPECT_EQ((co_await f->Discard(0, 4096)).res, -EPERM);
    EXPECT_EQ((co_await f->WriteZeroes(0, 4096)).res, -EPERM);
    BlockResult r = co_await f->Read(0, 4096, std::move(w.buffer));
    EXPECT_EQ(r.res, 4096);
    EXPECT_TRUE(Matches(r.buffer, 4096, 11)) << "the refused write changed nothing";
    EXPECT_EQ((co_await f->Flush()).res, 0);
  }(f.get(), pool_.get()));
}

// 1,000 reads against a queue-depth limit of 8: never more than 8 operations in
// the kernel (sampled every loop iteration from the op slab), none rejected,
// and FIFO admission: request j is admitted only after j-7 completions, so it
// cannot complete before position j-7 (a LIFO or unordered limiter would let
// late requests finish early).
TEST_P(DirectFileTest, ThousandRequestsQueueDepthEight) {
  auto f = OpenFile({.queue_depth = 8});
  ASSERT_TRUE(f);
  constexpr int kRequests = 1000;
  struct State {
    std::vector<int> completion_order;
    uint32_t max_kernel = 0;
    uint32_t max_limiter = 0;
    bool done = false;
    int errors = 0;
  } st;
  worker_->BlockOn([](Worker* w, DirectFile* f, State* st) -> Task<> {
    const uint32_t base = w->internals().slab().in_flight();  // the worker's own eventfd read
    auto monitor = Spawn([](Worker* w, DirectFile* f, State* st, uint32_t base) -> Task<> {
      while (!st->done) {
        st->max_kernel = std::max(st->max_kernel, w->internals().slab().in_flight() - base);
        st->max_limiter = std::max(st->max_limiter, f->queue()->in_flight());
        co_await w->Yield();
      }
    }(w, f, st, base));
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < kRequests; ++i) {
      hs.push_back(Spawn([](DirectFile* f, State* st, int i) -> Task<> {
        Buffer b = Buffer::Allocate(4096);
        BlockResult r =
            co_await f->Read(static_cast<uint64_t>(i % 4096) * 4096, 4096, std::move(b));
        if (r.res != 4096) ++st->errors;
        st->completion_order.push_back(i);
      }(f, st, i)));
    }
    for (auto& h : hs) co_await h;
    st->done = true;
    co_await monitor;
  }(worker_.get(), f.get(), &st));
  EXPECT_EQ(st.errors, 0);
  ASSERT_EQ(st.completion_order.size(), static_cast<size_t>(kRequests));
  EXPECT_LE(st.max_kernel, 8u);
  EXPECT_GE(st.max_kernel, 2u) << "requests should overlap";
  EXPECT_LE(st.max_limiter, 8u);
  EXPECT_EQ(f->queue()->metrics().max_in_flight.Get(), 8u);
  EXPECT_EQ(f->queue()->metrics().admitted.Get(), static_cast<uint64_t>(kRequests));
  EXPECT_GE(f->queue()->metrics().waited.Get(), static_cast<uint64_t>(kRequests - 8));
  EXPECT_EQ(f->queue()->metrics().wait_ns.Read().count, f->queue()->metrics().waited.Get());
  std::vector<int> position(kRequests);
  for (int p = 0; p < kRequests; ++p) position[st.completion_order[p]] = p;
  for (int j = 8; j < kRequests; ++j) {
    ASSERT_GE(position[j], j - 7) << "request " << j << " overtook earlier requests";
  }
}

// Aborting tasks with block I/O in flight: every buffer stays with its
// operation until the kernel's final completion, then returns to the pool.
// Under ASan this also proves no frame memory is touched after destruction.
TEST_P(DirectFileTest, DestroyingTasksWithIoInFlightIsSafe) {
  auto f = OpenFile({.queue_depth = 4});
  ASSERT_TRUE(f);
  auto p = BufferPool::Create(*worker_, {.buffer_size = 256 << 10, .count = 12});
  ASSERT_TRUE(p.ok()) << p.status();
  std::unique_ptr<BufferPool> pool = std::move(*p);
  const uint32_t base = worker_->internals().slab().in_flight();
  worker_->BlockOn([](Worker* w, DirectFile* f, BufferPool* pool, uint32_t base) -> Task<> {
    std::vector<JoinHandle<void>> hs;
    // A discard (a helper-thread ioctl on the loop device) and a flush take the
    // first two places, reads and writes the other two; the rest wait.
    hs.push_back(Spawn([](DirectFile* f) -> Task<> { co_await f->Discard(0, 32 << 20); }(f)));
    hs.push_back(Spawn([](DirectFile* f) -> Task<> { co_await f->Flush(); }(f)));
    for (int i = 0; i < 12; ++i) {
      hs.push_back(Spawn([](DirectFile* f, BufferPool* pool, int i) -> Task<> {
        Buffer b = co_await pool->Acquire();
        if (i % 2) {
          Fill(b, b.capacity(), i);
          co_await f->Write(static_cast<uint64_t>(i) << 20, std::move(b), {.fua = true});
        } else {
          co_await f->Read(static_cast<uint64_t>(i) << 20, static_cast<uint32_t>(b.capacity()),
                           std::move(b));
        }
      }(f, pool, i)));
    }
    co_await Nop();  // the tasks run and their SQEs are submitted
    co_await Nop();
    EXPECT_EQ(f->queue()->in_flight(), 4u);
    EXPECT_GT(f->queue()->waiting(), 0u) << "the rest wait for a place";
    for (auto& h : hs) h.Abort();
    // Nobody waits any more; operations still in the kernel keep their buffers.
    EXPECT_EQ(f->queue()->waiting(), 0u);
    EXPECT_EQ(f->queue()->in_flight(), 0u);
    const uint32_t kernel_ops = w->internals().slab().in_flight() - base;
    std::printf("aborted 14 tasks with %u operations still in the kernel, %u of %u buffers back\n",
                kernel_ops, pool->available(), pool->count());
    EXPECT_LE(pool->available(), pool->count());
    EXPECT_GE(pool->available() + kernel_ops, pool->count())
        << "each buffer is either back or held by an in-flight operation";
  }(worker_.get(), f.get(), pool.get(), base));
  // Let the cancellations and completions arrive.
  for (int i = 0;
       i < 200 && (worker_->internals().slab().in_flight() > base || pool->available() < 12); ++i) {
    worker_->BlockOn([]() -> Task<> { co_await Sleep(std::chrono::milliseconds(5)); }());
  }
  EXPECT_EQ(worker_->internals().slab().in_flight(), base);
  EXPECT_EQ(pool->available(), pool->count());
  // The target still works afterwards.
  worker_->BlockOn([](DirectFile* f, BufferPool* pool) -> Task<> {
    Buffer b = co_await pool->Acquire();
    Fill(b, 4096, 5);
    BlockResult w = co_await f->Write(0, std::move(b));
    EXPECT_EQ(w.res, 4096) << w.status;
  }(f.get(), pool.get()));
  f.reset();  // joins the discard helper if it is still busy
}

// Requests above max_transfer_bytes are split into chunks and joined.
TEST_P(DirectFileTest, LargeRequestsAreSplitAndJoined) {
  auto f = OpenFile({.max_transfer_bytes = 64 << 10});
  ASSERT_TRUE(f);
  EXPECT_EQ(f->geometry().max_transfer_bytes, 64u << 10);
  worker_->BlockOn([](Worker* w, DirectFile* f, BufferPool* pool) -> Task<> {
    co_await Nop();
    const uint64_t before = w->internals().ring().sqes_submitted();
    Buffer b = co_await pool->Acquire();
    Fill(b, 1 << 20, 77);
    BlockResult wr = co_await f->Write(3 << 20, std::move(b));
    EXPECT_EQ(wr.res, 1 << 20) << wr.status;
    std::memset(wr.buffer.data(), 0, 1 << 20);
    BlockResult r = co_await f->Read(3 << 20, 1 << 20, std::move(wr.buffer));
    EXPECT_EQ(r.res, 1 << 20) << r.status;
    EXPECT_TRUE(Matches(r.buffer, 1 << 20, 77));
    co_await Nop();
    EXPECT_GE(w->internals().ring().sqes_submitted() - before, 32u) << "16 chunks each way";
  }(worker_.get(), f.get(), pool_.get()));
  EXPECT_EQ(f->metrics()->of(OpKind::kWrite).ops.Get(), 1u) << "one request, many chunks";
}

// TargetOptions::submit_batch decides when a read reaches the kernel: with 1
// (the default) while its task suspends, before the loop's io_uring_enter;
// with 0 only with the loop's io_uring_enter; with 3 once three entries wait.
// Four reads are issued in one pass of the ready tasks, each followed by a
// task that records how many entries wait in the submission queue.
TEST_P(DirectFileTest, SubmitBatchDecidesWhenRequestsReachTheKernel) {
  const std::vector<std::pair<uint32_t, std::vector<unsigned>>> cases = {
      {1, {0, 0, 0, 0}}, {0, {1, 2, 3, 4}}, {3, {1, 2, 0, 1}}};
  for (const auto& [batch, expected] : cases) {
    auto f = OpenFile({.submit_batch = batch});
    ASSERT_TRUE(f);
    std::vector<unsigned> waiting(4, 99);
    worker_->BlockOn(
        [](Worker* w, DirectFile* f, BufferPool* pool, std::vector<unsigned>* waiting) -> Task<> {
          std::vector<Buffer> bufs;
          for (int i = 0; i < 4; ++i) bufs.push_back(co_await pool->Acquire());
          co_await Nop();  // the loop submitted everything queued before
          std::vector<JoinHandle<BlockResult>> reads;
          std::vector<JoinHandle<void>> probes;
          for (int i = 0; i < 4; ++i) {
            reads.push_back(Spawn(f->Read(uint64_t(i) << 20, 4096, std::move(bufs[i]))));
            probes.push_back(Spawn([](Worker* w, unsigned* out) -> Task<> {
              *out = io_uring_sq_ready(w->internals().ring().raw());
              co_return;
            }(w, &(*waiting)[i])));
          }
          for (auto& r : reads) {
            std::optional<BlockResult> res = co_await r;
            EXPECT_TRUE(res && res->res == 4096) << (res ? res->status.ToString() : "aborted");
          }
          for (auto& p : probes) co_await p;
        }(worker_.get(), f.get(), pool_.get(), &waiting));
    EXPECT_EQ(waiting, expected) << "submit_batch=" << batch;
  }
}

TEST_P(DirectFileTest, OpenTargetDispatchesToDirectFile) {
  auto t = OpenTarget(*worker_, path_, {.queue_depth = 16});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->geometry().size_bytes, kSize);
  EXPECT_EQ((*t)->queue()->limit(), 16u);
}

// Buffered files (cache=writeback): any offset, length and buffer address, read
// back byte-exactly, and the bytes around an unaligned write are untouched.
TEST_P(DirectFileTest, UnalignedRequestsWorkWhenBuffered) {
  if (cache() != CacheMode::kWriteback || backend() != Backend::kFile) {
    GTEST_SKIP() << "O_DIRECT targets and block devices need alignment";
  }
  auto f = OpenFile();
  ASSERT_TRUE(f);
  worker_->BlockOn([](DirectFile* f, BufferPool* pool) -> Task<> {
    Buffer b = co_await pool->Acquire();
    Fill(b, 8192, 5);
    EXPECT_EQ((co_await f->Write(0, std::move(b))).res, 8192);
    // 1,000 bytes at offset 333 from a heap buffer whose address O_DIRECT
    // would refuse (not a multiple of 512; Buffer's heap memory is 16-aligned).
    std::vector<Buffer> keep;
    Buffer w = MisalignedBuffer(512, keep);
    EXPECT_TRUE(w) << "could not get a misaligned heap buffer";
    if (!w) co_return;
    Fill(w, 1000, 77);
    BlockResult wr = co_await f->Write(333, std::move(w), {.fua = true});
    EXPECT_EQ(wr.res, 1000) << wr.status;
    BlockResult r = co_await f->Read(0, 8192, co_await pool->Acquire());
    EXPECT_EQ(r.res, 8192) << r.status;
    bool ok = true;
    for (uint32_t i = 0; i < 8192; ++i) {
      const uint8_t want = (i >= 333 && i < 1333)
                               ? static_cast<uint8_t>((77 * 131 + (i - 333) * 7) >> 1)
                               : static_cast<uint8_t>((5 * 131 + i * 7) >> 1);
      ok &= r.buffer.data()[i] == want;
    }
    EXPECT_TRUE(ok) << "an unaligned write changed bytes outside its range or lost its own";
    BlockResult small = co_await f->Read(1000, 7, MisalignedBuffer(512, keep));
    EXPECT_EQ(small.res, 7) << small.status;
    EXPECT_EQ(std::memcmp(small.buffer.data(), r.buffer.data() + 1000, 7), 0);
    EXPECT_EQ((co_await f->WriteZeroes(10, 3)).res, 0);
    EXPECT_EQ((co_await f->Discard(20, 5)).res, 0);
    EXPECT_EQ((co_await f->Flush()).res, 0);
  }(f.get(), pool_.get()));
}

// max_offloaded_copies applies where a read or write completes on the
// worker's CPU (the page cache: cache=writeback) and not where the device does
// the work (O_DIRECT); either way the data round-trips.
TEST_P(DirectFileTest, OffloadAppliesWhereCopiesRunOnTheWorker) {
  auto f = OpenFile({.queue_depth = 8, .max_offloaded_copies = 2});
  ASSERT_TRUE(f);
  const bool page_cache = cache() == CacheMode::kWriteback;
  EXPECT_EQ(f->max_offloaded_copies(), page_cache ? 2u : 0u);
  worker_->BlockOn([](DirectFile* f, BufferPool* pool) -> Task<> {
    std::vector<JoinHandle<void>> hs;
    for (uint32_t i = 0; i < 4; ++i) {
      hs.push_back(Spawn([](DirectFile* f, BufferPool* pool, uint32_t i) -> Task<> {
        Buffer b = co_await pool->Acquire();
        Fill(b, 1 << 20, 40 + i);
        BlockResult w = co_await f->Write(uint64_t{i} << 20, std::move(b));
        EXPECT_EQ(w.res, 1 << 20) << w.status;
        std::memset(w.buffer.data(), 0, 1 << 20);
        BlockResult r = co_await f->Read(uint64_t{i} << 20, 1 << 20, std::move(w.buffer));
        EXPECT_EQ(r.res, 1 << 20) << r.status;
        EXPECT_TRUE(Matches(r.buffer, 1 << 20, 40 + i));
      }(f, pool, i)));
    }
    for (auto& h : hs) co_await h;
  }(f.get(), pool_.get()));
  EXPECT_EQ(f->offloaded_in_flight(), 0u);
  if (page_cache) {
    EXPECT_GT(f->offloaded_requests(), 0u);
  } else {
    EXPECT_EQ(f->offloaded_requests(), 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Backends, DirectFileTest,
    ::testing::Combine(::testing::Values(Backend::kFile, Backend::kLoop),
                       ::testing::Values(CacheMode::kDirect, CacheMode::kWriteback)),
    [](const auto& info) {
      return std::string(std::get<0>(info.param) == Backend::kFile ? "File" : "LoopDevice") +
             (std::get<1>(info.param) == CacheMode::kDirect ? "Direct" : "Writeback");
    });

// Opening errors are actionable.
TEST(DirectFileOpenTest, ErrorsNameThePathAndTheCause) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  auto missing = DirectFile::Open(**w, "/nonexistent/ringline");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/nonexistent/ringline"));
  auto dir = DirectFile::Open(**w, "/var/tmp", {.read_only = true});
  ASSERT_FALSE(dir.ok());
  auto chr = OpenTarget(**w, "/dev/null");
  ASSERT_FALSE(chr.ok());
}

// A scratch file system of type `fstype` (mount options `options`) in a fresh
// temporary directory, unmounted and removed with this object: ramfs (a real
// file system that refuses O_DIRECT: it has no direct I/O at all, where tmpfs
// takes it on Linux 6.6+) or a small tmpfs (to run a file system out of
// space). Mounting needs root (CAP_SYS_ADMIN): error() says why not.
class ScratchMount {
 public:
  ScratchMount(const std::string& fstype, const std::string& options) {
    char dir[] = "/tmp/ringline_mount.XXXXXX";
    if (mkdtemp(dir) == nullptr) {
      error_ = std::string("mkdtemp: ") + strerror(errno);
      return;
    }
    dir_ = dir;
    if (::mount("ringline-test", dir_.c_str(), fstype.c_str(), 0,
                options.empty() ? nullptr : options.c_str()) != 0) {
      error_ = "mount -t " + fstype + ": " + strerror(errno);
      return;
    }
    mounted_ = true;
  }
  ~ScratchMount() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
    if (!dir_.empty()) ::rmdir(dir_.c_str());
  }
  ScratchMount(const ScratchMount&) = delete;
  ScratchMount& operator=(const ScratchMount&) = delete;
  const std::string& dir() const { return dir_; }
  const std::string& error() const { return error_; }  // empty when mounted

 private:
  std::string dir_;
  std::string error_;
  bool mounted_ = false;
};

// Sends this process's stderr (fd 2) to a temporary file while alive; Take()
// returns what was written.
class CapturedStderr {
 public:
  CapturedStderr() : saved_(::dup(2)) {
    std::fflush(stderr);
    file_ = std::tmpfile();
    ::dup2(fileno(file_), 2);
  }
  ~CapturedStderr() { Restore(); }
  std::string Take() {
    Restore();
    std::string out;
    std::rewind(file_);
    char buf[512];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0) out.append(buf, n);
    return out;
  }

 private:
  void Restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  int saved_;
  FILE* file_;
};

std::size_t CountOf(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

// cache=auto where the filesystem refuses O_DIRECT (ramfs): the file is served
// through the page cache after one warning naming the reason, with the same
// data, FUA and flush behaviour; cache=direct refuses it, naming the way out.
TEST(CacheModeTest, AutoFallsBackToThePageCacheWhereODirectIsRefused) {
  ScratchMount ramfs("ramfs", "");
  if (!ramfs.error().empty()) {
    std::printf("SKIPPED: no filesystem without O_DIRECT to test on (%s)\n", ramfs.error().c_str());
    GTEST_SKIP() << ramfs.error();
  }
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  const std::string path = ramfs.dir() + "/disk.img";

  auto direct = DirectFile::Open(
      **w, path, {.create = true, .create_size = 1 << 20, .cache = CacheMode::kDirect});
  ASSERT_FALSE(direct.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(direct.status())) << direct.status();
  EXPECT_THAT(std::string(direct.status().message()), HasSubstr("O_DIRECT is not supported"));
  EXPECT_THAT(std::string(direct.status().message()), HasSubstr("cache=writeback"));
  EXPECT_NE(access(path.c_str(), F_OK), 0) << "the refused open left a file behind";

  std::string log;
  absl::StatusOr<std::unique_ptr<DirectFile>> f;
  {
    CapturedStderr captured;
    f = DirectFile::Open(**w, path, {.create = true, .create_size = 1 << 20});
    log = captured.Take();
  }
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->cache_mode(), CacheMode::kWriteback);
  EXPECT_EQ(CountOf(log, "serving through the page cache"), 1u) << log;
  EXPECT_THAT(log, HasSubstr("refuses O_DIRECT")) << "the warning names the reason";
  const Geometry& g = (*f)->geometry();
  EXPECT_EQ(g.size_bytes, 1u << 20);
  EXPECT_EQ(g.logical_block_size, 1u);
  EXPECT_EQ(g.memory_alignment, 1u);
  (*w)->BlockOn([](DirectFile* f) -> Task<> {
    Buffer b = Buffer::Allocate(5000);
    Fill(b, 5000, 31);
    BlockResult wr = co_await f->Write(777, std::move(b), {.fua = true});
    EXPECT_EQ(wr.res, 5000) << wr.status;
    EXPECT_EQ((co_await f->Flush()).res, 0);
    BlockResult r = co_await f->Read(777, 5000, Buffer::Allocate(5000));
    EXPECT_EQ(r.res, 5000) << r.status;
    EXPECT_TRUE(Matches(r.buffer, 5000, 31));
  }(f->get()));
  EXPECT_EQ((*f)->metrics()->of(OpKind::kFlush).errors.Get(), 0u);
  (*f).reset();
  // The bytes are in the file (read back with plain I/O).
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(bytes.size(), 1u << 20);
  Buffer expect = Buffer::Allocate(5000);
  Fill(expect, 5000, 31);
  EXPECT_EQ(std::memcmp(bytes.data() + 777, expect.data(), 5000), 0);
  unlink(path.c_str());
}

// A 5,000-byte file is exported whole in both cache modes: the size is exact,
// requests that end at the end may end mid-block, writes there never grow the
// file, and the bytes read back (through the target and with plain I/O).
TEST(ExactSizeTest, FileEndingMidBlockIsServedWhole) {
  constexpr uint32_t kFileSize = 5000;
  for (CacheMode mode : {CacheMode::kDirect, CacheMode::kWriteback}) {
    SCOPED_TRACE(CacheModeName(mode));
    auto w = Worker::Create(Config{});
    ASSERT_TRUE(w.ok()) << w.status();
    const std::string path =
        DiskDir() + "/ringline_exact_size_test." + std::to_string(getpid()) + ".img";
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      Buffer init = Buffer::Allocate(kFileSize);
      Fill(init, kFileSize, 1);
      out.write(reinterpret_cast<const char*>(init.data()), kFileSize);
    }
    auto f = DirectFile::Open(**w, path, {.cache = mode});
    ASSERT_TRUE(f.ok()) << f.status();
    ASSERT_EQ((*f)->cache_mode(), mode);
    const Geometry& g = (*f)->geometry();
    EXPECT_EQ(g.size_bytes, kFileSize) << "every byte is exported";
    // The target's block (O_DIRECT: 512 or 4096), or 512 where it has none.
    const uint32_t unit = std::max({g.logical_block_size, g.memory_alignment, 512u});
    const uint64_t last_block = kFileSize / unit * unit;  // 4096 or 4608
    (*w)->BlockOn([](DirectFile* f, uint32_t unit, uint64_t last_block, bool direct) -> Task<> {
      // The whole file, in one read that crosses into the tail.
      BlockResult r = co_await f->Read(0, kFileSize, Buffer::Allocate(8192));
      EXPECT_EQ(r.res, static_cast<int32_t>(kFileSize)) << r.status;
      EXPECT_TRUE(Matches(r.buffer, kFileSize, 1));
      // Overwrite from the last whole block to the end, with FUA.
      const auto tail_len = static_cast<uint32_t>(kFileSize - last_block);
      Buffer b = Buffer::Allocate(8192);
      Fill(b, tail_len, 2);
      BlockResult wr = co_await f->Write(last_block, std::move(b), {.fua = true});
      EXPECT_EQ(wr.res, static_cast<int32_t>(tail_len)) << wr.status;
      // A write of the block before, across the tail, through O_DIRECT too.
      {
        Buffer c = Buffer::Allocate(8192);
        Fill(c, unit + tail_len, 3);
        wr = co_await f->Write(last_block - unit, std::move(c));
        EXPECT_EQ(wr.res, static_cast<int32_t>(unit + tail_len)) << wr.status;
        r = co_await f->Read(last_block - unit, unit + tail_len, std::move(r.buffer));
        EXPECT_EQ(r.res, static_cast<int32_t>(unit + tail_len)) << r.status;
        EXPECT_TRUE(Matches(r.buffer, unit + tail_len, 3));
      }
      EXPECT_EQ((co_await f->Flush()).res, 0);
      // Past the end, or a misaligned length that does not end at the end.
      EXPECT_EQ((co_await f->Read(last_block, tail_len + 1, Buffer::Allocate(8192))).res, -EINVAL);
      if (direct) {
        EXPECT_EQ((co_await f->Read(0, 1000, Buffer::Allocate(8192))).res, -EINVAL);
      }
      // Zeroing the tail keeps the size.
      EXPECT_EQ((co_await f->WriteZeroes(last_block, tail_len)).res, 0);
    }(f->get(), unit, last_block, mode == CacheMode::kDirect));
    (*f).reset();
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_size, kFileSize) << "the file grew";
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_EQ(bytes.size(), kFileSize);
    // The block before the tail holds pattern 3; the tail was zeroed.
    Buffer expect = Buffer::Allocate(8192);
    Fill(expect, unit, 3);
    EXPECT_EQ(std::memcmp(bytes.data() + last_block - unit, expect.data(), unit), 0);
    EXPECT_TRUE(std::all_of(bytes.begin() + static_cast<std::ptrdiff_t>(last_block), bytes.end(),
                            [](char c) { return c == 0; }));
    Fill(expect, kFileSize, 1);
    EXPECT_EQ(std::memcmp(bytes.data(), expect.data(), last_block - unit), 0);
    unlink(path.c_str());
  }
}

// Extents of a real sparse file: holes (kExtentHole | kExtentZero) and data
// where SEEK_DATA/SEEK_HOLE put them, contiguous from the queried offset, at
// most as many as the caller's span holds; Cache() prefetches only where it means something.
constexpr uint64_t kSparseSize = 16 << 20;
constexpr uint64_t kData1 = 1 << 20, kData2 = 8 << 20, kDataLen = 64 << 10;

TEST(ExtentsTest, SparseFileReportsItsHoles) {
  const std::string path =
      DiskDir() + "/ringline_extents_test." + std::to_string(getpid()) + ".img";
  {
    UniqueFd fd(open(path.c_str(), O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd) << strerror(errno);
    ASSERT_EQ(ftruncate(fd.get(), kSparseSize), 0);
    std::string data(kDataLen, 'x');
    ASSERT_EQ(pwrite(fd.get(), data.data(), kDataLen, kData1), static_cast<ssize_t>(kDataLen));
    ASSERT_EQ(pwrite(fd.get(), data.data(), kDataLen, kData2), static_cast<ssize_t>(kDataLen));
    ASSERT_EQ(fsync(fd.get()), 0);
    if (lseek(fd.get(), 0, SEEK_DATA) != static_cast<off_t>(kData1)) {
      unlink(path.c_str());
      std::printf("SKIPPED: %s does not report holes through SEEK_DATA\n", DiskDir().c_str());
      GTEST_SKIP() << DiskDir() << " does not report holes";
    }
  }
  for (CacheMode mode : {CacheMode::kDirect, CacheMode::kWriteback}) {
    SCOPED_TRACE(CacheModeName(mode));
    auto w = Worker::Create(Config{});
    ASSERT_TRUE(w.ok()) << w.status();
    auto f = DirectFile::Open(**w, path, {.cache = mode});
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ((*f)->geometry().supports_cache, mode == CacheMode::kWriteback);
    (*w)->BlockOn([](DirectFile* f) -> Task<> {
      constexpr uint32_t kHoleZero = kExtentHole | kExtentZero;
      // The extents land in the caller's array; the result counts them.
      std::array<Extent, 100> out;
      ExtentResult all = co_await f->Extents(0, kSparseSize, out);
      EXPECT_TRUE(all.ok()) << all.status;
      const std::vector<std::pair<uint64_t, uint32_t>> want = {
          {kData1, kHoleZero},
          {kDataLen, 0},
          {kData2 - kData1 - kDataLen, kHoleZero},
          {kDataLen, 0},
          {kSparseSize - kData2 - kDataLen, kHoleZero}};
      std::vector<std::pair<uint64_t, uint32_t>> got;
      for (const Extent& e : std::span(out).first(all.count)) got.emplace_back(e.length, e.flags);
      EXPECT_EQ(got, want);
      // Bounded by the span: two extents from inside the first hole.
      ExtentResult two = co_await f->Extents(4096, kSparseSize - 4096, std::span(out).first(2));
      EXPECT_EQ(two.count, 2u);
      if (two.count != 2u) co_return;
      EXPECT_EQ(out[0].length, kData1 - 4096);
      EXPECT_EQ(out[0].flags, kHoleZero);
      EXPECT_EQ(out[1].length, kDataLen);
      EXPECT_EQ(out[1].flags, 0u);
      // Clipped to the query, and to the end of the file.
      ExtentResult in_data = co_await f->Extents(kData1 + 100, 50, std::span(out).first(10));
      EXPECT_EQ(in_data.count, 1u);
      if (in_data.count != 1u) co_return;
      EXPECT_EQ(out[0].length, 50u);
      EXPECT_EQ(out[0].flags, 0u);
      EXPECT_EQ((co_await f->Extents(kSparseSize, 4096, std::span(out).first(10))).res, -EINVAL);
      EXPECT_EQ((co_await f->Extents(0, 4096, std::span<Extent>())).res, -EINVAL)
          << "no room for an extent";
      // A write fills a hole; a discard makes one.
      Buffer b = Buffer::Allocate(4096);
      Fill(b, 4096, 8);
      EXPECT_EQ((co_await f->Write(4 << 20, std::move(b))).res, 4096);
      ExtentResult filled = co_await f->Extents(4 << 20, 4096, std::span(out).first(1));
      EXPECT_EQ(filled.count, 1u);
      if (filled.count != 1u) co_return;
      EXPECT_EQ(out[0].flags, 0u) << "the written block is data";
      EXPECT_EQ((co_await f->Discard(4 << 20, 4096)).res, 0);
      ExtentResult punched = co_await f->Extents(4 << 20, 4096, std::span(out).first(1));
      EXPECT_EQ(punched.count, 1u);
      if (punched.count != 1u) co_return;
      EXPECT_EQ(out[0].flags, kHoleZero) << "the discarded block is a hole";
      // Prefetch: accepted in both modes (a no-op where it means nothing).
      EXPECT_EQ((co_await f->Cache(kData1, kDataLen)).res, 0);
      EXPECT_EQ((co_await f->Cache(kSparseSize - 4096, 8192)).res,
                f->geometry().supports_cache ? -EINVAL : 0);
    }(f->get()));
  }
  unlink(path.c_str());
}

TEST(CacheModeTest, NamesParseAndRoundTrip) {
  for (CacheMode m : {CacheMode::kAuto, CacheMode::kDirect, CacheMode::kWriteback}) {
    CacheMode parsed = CacheMode::kAuto;
    EXPECT_TRUE(ParseCacheMode(CacheModeName(m), &parsed));
    EXPECT_EQ(parsed, m);
  }
  CacheMode m = CacheMode::kDirect;
  EXPECT_FALSE(ParseCacheMode("none", &m));
  EXPECT_FALSE(ParseCacheMode("", &m));
  EXPECT_EQ(m, CacheMode::kDirect) << "a bad spelling leaves the value alone";
}

// Thread ids of this process's io-wq workers ("iou-wrk-N").
std::set<std::string> IoWqThreads() {
  std::set<std::string> ids;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(e.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name.rfind("iou-wrk", 0) == 0) ids.insert(e.path().filename());
  }
  return ids;
}

// tmpfs reports no STATX_DIOALIGN: the fallback alignment applies. Reads and
// writes are copied on the worker's thread (copy_memory_inline) or, when that
// is off, go through the ring to io-wq; the data is the same either way.
class TmpfsTest : public ::testing::TestWithParam<bool> {};

void TmpfsRoundTrip(bool inline_copy) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  const std::string path = "/dev/shm/ringline_direct_file_test." + std::to_string(getpid());
  auto f = DirectFile::Open(
      **w, path, {.copy_memory_inline = inline_copy, .create = true, .create_size = 1 << 20});
  if (!f.ok()) {
    unlink(path.c_str());
    std::printf("SKIPPED: O_DIRECT on tmpfs is not supported by this kernel: %s\n",
                f.status().ToString().c_str());
    GTEST_SKIP() << f.status();
  }
  EXPECT_EQ((*f)->geometry().size_bytes, 1u << 20);
  EXPECT_EQ((*f)->geometry().logical_block_size, 4096u);
  EXPECT_EQ((*f)->geometry().memory_alignment, 4096u);
  auto pool = BufferPool::Create(**w, {.buffer_size = 4096, .count = 2});
  ASSERT_TRUE(pool.ok()) << pool.status();
  const std::set<std::string> before = IoWqThreads();
  std::set<std::string> after_rw;
  (*w)->BlockOn([](DirectFile* f, BufferPool* pool, std::set<std::string>* after) -> Task<> {
    Buffer b = Buffer::Allocate(8192);
    Fill(b, 8192, 21);
    BlockResult wr = co_await f->Write(4096, std::move(b), {.fua = true});
    EXPECT_EQ(wr.res, 8192) << wr.status;
    std::memset(wr.buffer.data(), 0, 8192);
    BlockResult r = co_await f->Read(4096, 8192, std::move(wr.buffer));
    EXPECT_EQ(r.res, 8192) << r.status;
    EXPECT_TRUE(Matches(r.buffer, 8192, 21));
    // A registered buffer (READ_FIXED through the ring when not inline).
    Buffer reg = co_await pool->Acquire();
    BlockResult rr = co_await f->Read(8192, 4096, std::move(reg));
    EXPECT_EQ(rr.res, 4096) << rr.status;
    EXPECT_EQ(std::memcmp(rr.buffer.data(), r.buffer.data() + 4096, 4096), 0);
    // A hole reads as zeroes; the last block of the file reads in full.
    BlockResult hole = co_await f->Read((1 << 20) - 4096, 4096, std::move(rr.buffer));
    EXPECT_EQ(hole.res, 4096) << hole.status;
    EXPECT_TRUE(AllZero(hole.buffer, 4096));
    *after = IoWqThreads();
    EXPECT_EQ((co_await f->WriteZeroes(4096, 4096)).res, 0) << "PUNCH_HOLE fallback";
    r = co_await f->Read(4096, 4096, std::move(r.buffer));
    EXPECT_TRUE(AllZero(r.buffer, 4096));
  }(f->get(), pool->get(), &after_rw));
  std::vector<std::string> started;
  std::set_difference(after_rw.begin(), after_rw.end(), before.begin(), before.end(),
                      std::back_inserter(started));
  if (inline_copy) {
    EXPECT_TRUE(started.empty()) << "reads and writes on tmpfs started " << started.size()
                                 << " io-wq thread(s)";
  } else {
    EXPECT_FALSE(started.empty()) << "tmpfs I/O through the ring is expected on io-wq";
  }
  (*f).reset();
  (*pool).reset();
  unlink(path.c_str());
}

// io-wq workers belong to the thread that submits (shared by its rings): a
// fresh thread starts with none, so any new one came from this test.
TEST_P(TmpfsTest, FallsBackToPageAlignmentAndRoundTrips) {
  std::thread t(TmpfsRoundTrip, GetParam());
  t.join();
}

INSTANTIATE_TEST_SUITE_P(CopyMemoryInline, TmpfsTest, ::testing::Bool(), [](const auto& info) {
  return info.param ? std::string("Inline") : std::string("ThroughTheRing");
});

// ---- TargetOptions::max_offloaded_copies ------------------------------------------

std::string ShmPath(const std::string& what) {
  return "/dev/shm/ringline_offload_test." + what + "." + std::to_string(getpid());
}

// 256 requests of 64 KiB at queue depth 16 with 4 of them offloaded: every
// block written (a quarter of them as gathered writes) reads back, some
// requests went to io-wq and the others were copied on the worker, and io-wq
// used no more threads than offload_threads().
void OffloadRoundTrip() {
  static constexpr uint32_t kQd = 16, kOffload = 4, kBlock = 64 << 10, kBlocks = 256;
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  const std::string path = ShmPath("roundtrip");
  auto f = DirectFile::Open(**w, path,
                            {.queue_depth = kQd,
                             .max_offloaded_copies = kOffload,
                             .create = true,
                             .create_size = uint64_t{kBlocks} * kBlock});
  ASSERT_TRUE(f.ok()) << f.status();
  DirectFile* file = f->get();
  EXPECT_EQ(file->max_offloaded_copies(), kOffload);
  EXPECT_GE(file->offload_threads(), 1u);
  auto pool = BufferPool::Create(**w, {.buffer_size = kBlock, .count = kQd});
  ASSERT_TRUE(pool.ok()) << pool.status();
  const std::set<std::string> before = IoWqThreads();
  uint32_t mismatches = 0, failures = 0;
  for (const bool write : {true, false}) {
    (*w)->BlockOn([](DirectFile* f, BufferPool* pool, bool write, uint32_t* mismatches,
                     uint32_t* failures) -> Task<> {
      std::vector<JoinHandle<void>> lanes;
      for (uint32_t lane = 0; lane < kQd; ++lane) {
        lanes.push_back(Spawn([](DirectFile* f, BufferPool* pool, bool write, uint32_t lane,
                                 uint32_t* mismatches, uint32_t* failures) -> Task<> {
          for (uint32_t i = lane; i < kBlocks; i += kQd) {
            const uint64_t offset = uint64_t{i} * kBlock;
            Buffer b = co_await pool->Acquire();
            BlockResult r;
            if (!write) {
              r = co_await f->Read(offset, kBlock, std::move(b));
              if (r.ok() && !Matches(r.buffer, kBlock, i)) ++*mismatches;
            } else if (i % 4 == 3) {
              // [header | payload] = the block's pattern, split at 4 KiB.
              Buffer whole = Buffer::Allocate(kBlock);
              Fill(whole, kBlock, i);
              Buffer header = Buffer::Allocate(4096);
              std::memcpy(header.data(), whole.data(), 4096);
              header.set_size(4096);
              std::memcpy(b.data(), whole.data() + 4096, kBlock - 4096);
              b.set_size(kBlock - 4096);
              GatherResult g = co_await f->WriteGather(offset, std::move(header), std::move(b));
              r.res = g.res;
              r.status = g.status;
            } else {
              Fill(b, kBlock, i);
              r = co_await f->Write(offset, std::move(b));
            }
            if (!r.ok()) {
              ++*failures;
              ADD_FAILURE() << r.status;
            }
          }
        }(f, pool, write, lane, mismatches, failures)));
      }
      for (auto& h : lanes) co_await h;
    }(file, pool->get(), write, &mismatches, &failures));
    EXPECT_EQ(file->offloaded_in_flight(), 0u) << "every place is released";
  }
  EXPECT_EQ(failures, 0u);
  EXPECT_EQ(mismatches, 0u) << "blocks that did not read back as written";
  const uint64_t offloaded = file->offloaded_requests();
  std::printf("%llu of %u requests went to io-wq (at most %u at once, %u io-wq thread(s))\n",
              static_cast<unsigned long long>(offloaded), 2 * kBlocks, kOffload,
              file->offload_threads());
  EXPECT_GT(offloaded, 0u) << "no request was offloaded";
  EXPECT_LT(offloaded, 2u * kBlocks) << "no request was copied on the worker";
  std::vector<std::string> started;
  const std::set<std::string> after = IoWqThreads();
  std::set_difference(after.begin(), after.end(), before.begin(), before.end(),
                      std::back_inserter(started));
  EXPECT_GE(started.size(), 1u) << "offloaded requests are expected on io-wq";
  EXPECT_LE(started.size(), file->offload_threads()) << "io-wq threads beyond the cap";
  EXPECT_LE(started.size(), kOffload) << "more io-wq threads than requests offloaded at once";
  (*f).reset();
  (*pool).reset();
  unlink(path.c_str());
}

// A fresh thread starts with no io-wq threads (see TmpfsTest), so the ones
// counted are this test's.
TEST(OffloadTest, DataWrittenReadsBackAndIoWqStaysCapped) {
  std::thread t(OffloadRoundTrip);
  t.join();
}

// A task that issues request after request, each copied on the worker, must
// not keep an offloaded request from completing: every inline copy made while
// one is in io-wq yields to the loop, which reaps it. Without the yield the
// copier would run its whole budget first.
TEST(OffloadTest, InlineCopiesLetOffloadedRequestsComplete) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  const std::string path = ShmPath("progress");
  auto f = DirectFile::Open(
      **w, path,
      {.queue_depth = 2, .max_offloaded_copies = 1, .create = true, .create_size = 1 << 20});
  ASSERT_TRUE(f.ok()) << f.status();
  struct State {
    bool offloaded_done = false;
    uint32_t inline_reads = 0;  // before the offloaded read completed
  } state;
  static constexpr uint32_t kBudget = 100000;
  (*w)->BlockOn([](DirectFile* f, State* st) -> Task<> {
    JoinHandle<void> offloaded = Spawn([](DirectFile* f, State* st) -> Task<> {
      BlockResult r = co_await f->Read(0, 4096, Buffer::Allocate(4096));
      EXPECT_EQ(r.res, 4096) << r.status;
      st->offloaded_done = true;
    }(f, st));
    JoinHandle<void> copier = Spawn([](DirectFile* f, State* st) -> Task<> {
      Buffer b = Buffer::Allocate(4096);
      while (!st->offloaded_done && st->inline_reads < kBudget) {
        BlockResult r = co_await f->Read(4096, 4096, std::move(b));
        EXPECT_EQ(r.res, 4096) << r.status;
        b = std::move(r.buffer);
        ++st->inline_reads;
      }
    }(f, st));
    co_await offloaded;
    co_await copier;
  }(f->get(), &state));
  std::printf("%u inline reads ran while the offloaded read was in io-wq\n", state.inline_reads);
  EXPECT_TRUE(state.offloaded_done);
  EXPECT_LT(state.inline_reads, kBudget) << "the inline copies starved the offloaded read";
  EXPECT_EQ((*f)->offloaded_requests(), 1u);
  (*f).reset();
  unlink(path.c_str());
}

// An error in io-wq reaches the request as it does on the worker: writes to a
// 1 MiB tmpfs fill it and fail with ENOSPC, offloaded or copied inline.
TEST(OffloadTest, ErrorsFromIoWqArePropagated) {
  ScratchMount fs("tmpfs", "size=1m");
  if (!fs.error().empty()) {
    std::printf("SKIPPED: no small tmpfs to fill (%s)\n", fs.error().c_str());
    GTEST_SKIP() << fs.error();
  }
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  const std::string path = fs.dir() + "/full";
  // Every request is offloaded: one at a time, with four places.
  auto offloaded = DirectFile::Open(
      **w, path,
      {.queue_depth = 4, .max_offloaded_copies = 4, .create = true, .create_size = 8 << 20});
  ASSERT_TRUE(offloaded.ok()) << offloaded.status();
  auto on_worker = DirectFile::Open(**w, path, {.queue_depth = 4});
  ASSERT_TRUE(on_worker.ok()) << on_worker.status();
  (*w)->BlockOn([](DirectFile* offloaded, DirectFile* on_worker) -> Task<> {
    constexpr uint32_t kBlock = 64 << 10;
    uint64_t offset = 0;
    BlockResult r;
    Buffer b = Buffer::Allocate(kBlock);
    for (; offset < (8u << 20); offset += kBlock) {
      Fill(b, kBlock, offset);
      r = co_await offloaded->Write(offset, std::move(b));
      b = std::move(r.buffer);
      if (!r.ok()) break;
    }
    EXPECT_EQ(r.res, -ENOSPC) << r.status;
    EXPECT_TRUE(absl::IsResourceExhausted(r.status)) << r.status;
    EXPECT_THAT(std::string(r.status.message()), HasSubstr("ENOSPC"));
    EXPECT_THAT(std::string(r.status.message()), HasSubstr("write of 65536 bytes"));
    EXPECT_GT(offset, 0u) << "the first write already failed";
    EXPECT_EQ(offloaded->offloaded_requests(), offset / kBlock + 1) << "all went to io-wq";
    EXPECT_NE(b.data(), nullptr) << "the buffer comes back with the error";
    // The same write copied on the worker fails alike.
    Fill(b, kBlock, offset);
    BlockResult inline_r = co_await on_worker->Write(offset, std::move(b));
    EXPECT_EQ(inline_r.res, -ENOSPC) << inline_r.status;
    EXPECT_EQ(on_worker->offloaded_requests(), 0u);
    // What was written before the error reads back (offloaded reads).
    BlockResult back = co_await offloaded->Read(0, kBlock, std::move(inline_r.buffer));
    EXPECT_EQ(back.res, static_cast<int32_t>(kBlock)) << back.status;
    EXPECT_TRUE(Matches(back.buffer, kBlock, 0));
  }(offloaded->get(), on_worker->get()));
  (*offloaded).reset();
  (*on_worker).reset();
}

// Shutdown with requests waiting in io-wq: 16 tasks keep 4 MiB reads and
// writes going, all offloaded, when the worker stops (no grace period). The
// tasks are destroyed with their requests in io-wq (queued behind the one
// io-wq thread, or running), which the drain cancels or waits for: every
// offload place and buffer comes back, nothing is used after it was freed
// (run under ASan), and the target is destroyed after its tasks.
TEST(OffloadTest, ShutdownWithRequestsInIoWqReleasesEverything) {
  static constexpr uint32_t kQd = 16, kBlock = 4 << 20;
  Config config;
  config.shutdown_grace = std::chrono::milliseconds(0);
  auto w = Worker::Create(config);
  ASSERT_TRUE(w.ok()) << w.status();
  const std::string path = ShmPath("shutdown");
  auto f = DirectFile::Open(**w, path,
                            {.queue_depth = kQd,
                             .max_offloaded_copies = kQd,
                             .create = true,
                             .create_size = uint64_t{kQd} * kBlock});
  ASSERT_TRUE(f.ok()) << f.status();
  DirectFile* file = f->get();
  auto pool = BufferPool::Create(**w, {.buffer_size = kBlock, .count = kQd});
  ASSERT_TRUE(pool.ok()) << pool.status();
  const uint32_t base = (*w)->internals().slab().in_flight();
  (*w)->BlockOn([](DirectFile* f, BufferPool* pool) -> Task<> {
    for (uint32_t i = 0; i < kQd; ++i) {
      // Not joined: they run until the worker destroys them.
      (void)Spawn([](DirectFile* f, BufferPool* pool, uint32_t i) -> Task<> {
        for (uint64_t n = 0;; ++n) {
          Buffer b = co_await pool->Acquire();
          const uint64_t offset = uint64_t{i} * kBlock;
          if (n % 2 == 0) {
            Fill(b, kBlock, i);
            co_await f->Write(offset, std::move(b));
          } else {
            co_await f->Read(offset, kBlock, std::move(b));
          }
        }
      }(f, pool, i));
    }
    co_await Nop();  // the tasks run and their requests are submitted
    co_await Nop();
    EXPECT_EQ(f->offloaded_in_flight(), kQd) << "every request is in io-wq";
  }(file, pool->get()));
  const uint32_t in_kernel = (*w)->internals().slab().in_flight() - base;
  EXPECT_GT(in_kernel, 0u);
  (*w)->RequestStop();
  (*w)->RunUntilStopped();  // destroys the tasks, then drains the ring
  std::printf("stopped with %u requests in io-wq; %u of %u buffers back after the drain\n",
              in_kernel, (*pool)->available(), (*pool)->count());
  EXPECT_EQ(file->offloaded_in_flight(), 0u) << "destroyed tasks release their places";
  EXPECT_EQ((*w)->internals().slab().in_flight(), 0u) << "the drain leaves nothing in the kernel";
  EXPECT_EQ((*pool)->available(), (*pool)->count());
  (*f).reset();
  (*w).reset();
  (*pool).reset();
  unlink(path.c_str());
}

// ---- TargetOptions::map_memory_files ------------------------------------------------

// Bytes the file system has allocated to `path` (st_blocks).
uint64_t AllocatedBytes(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? uint64_t(st.st_blocks) * 512 : ~uint64_t{0};
}

// Writes `length` bytes of `seed`'s pattern at `offset` with pwrite on a
// descriptor of its own (another process's view of the file).
void PwritePattern(const std::string& path, uint64_t offset, uint32_t length, uint64_t seed) {
  UniqueFd fd(::open(path.c_str(), O_RDWR));
  ASSERT_TRUE(fd) << strerror(errno);
  Buffer b = Buffer::Allocate(length);
  Fill(b, length, seed);
  ASSERT_EQ(::pwrite(fd.get(), b.data(), length, static_cast<off_t>(offset)), ssize_t(length));
}

// On tmpfs, pages written once are copied through the mapping from then on,
// by this target and by every other target on the same file (one mapping per
// process); holes are read with pread and stay holes; a discard frees its
// pages and later reads do not allocate them again.
TEST(MappedTmpfsTest, WrittenPagesAreCopiedThroughOneSharedMapping) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  const std::string path = ShmPath("mapped");
  static constexpr uint32_t kRegion = 256 << 10;
  auto a = DirectFile::Open(**w, path, {.create = true, .create_size = 4 << 20});
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = DirectFile::Open(**w, path, {});
  ASSERT_TRUE(b.ok()) << b.status();
  auto unmapped = DirectFile::Open(**w, path, {.map_memory_files = false});
  ASSERT_TRUE(unmapped.ok()) << unmapped.status();
  ASSERT_TRUE((*a)->memory_mapped());
  ASSERT_TRUE((*b)->memory_mapped());
  EXPECT_FALSE((*unmapped)->memory_mapped());
  (*w)->BlockOn(
      [](DirectFile* a, DirectFile* b, DirectFile* unmapped, const std::string& path) -> Task<> {
        Buffer buf = Buffer::Allocate(kRegion);
        // A hole: read with pread (zeroes), and the file stays empty.
        BlockResult r = co_await a->Read(0, kRegion, std::move(buf));
        EXPECT_EQ(r.res, int32_t(kRegion)) << r.status;
        EXPECT_TRUE(AllZero(r.buffer, kRegion));
        EXPECT_EQ(a->memory_mapped_copies(), 0u);
        EXPECT_EQ(AllocatedBytes(path), 0u) << "reading a hole allocated pages";
        // The first write allocates with pwrite; the second goes through the mapping.
        Fill(r.buffer, kRegion, 1);
        r = co_await a->Write(0, std::move(r.buffer));
        EXPECT_EQ(r.res, int32_t(kRegion)) << r.status;
        EXPECT_EQ(a->memory_mapped_copies(), 0u);
        Fill(r.buffer, kRegion, 2);
        r = co_await a->Write(0, std::move(r.buffer), {.fua = true});
        EXPECT_EQ(r.res, int32_t(kRegion)) << r.status;
        EXPECT_EQ(a->memory_mapped_copies(), 1u);
        // Another target reads it through the same mapping, and so does a target
        // without the mapping, with pread.
        std::memset(r.buffer.data(), 0, kRegion);
        r = co_await b->Read(0, kRegion, std::move(r.buffer));
        EXPECT_EQ(r.res, int32_t(kRegion)) << r.status;
        EXPECT_TRUE(Matches(r.buffer, kRegion, 2));
        EXPECT_EQ(b->memory_mapped_copies(), 1u);
        std::memset(r.buffer.data(), 0, kRegion);
        r = co_await unmapped->Read(0, kRegion, std::move(r.buffer));
        EXPECT_TRUE(Matches(r.buffer, kRegion, 2));
        // A gathered write of [header, payload] through the mapping.
        Buffer header = Buffer::Allocate(4096);
        Fill(header, 4096, 3);
        Buffer payload = Buffer::Allocate(kRegion - 4096);
        Fill(payload, kRegion - 4096, 4);
        GatherResult g = co_await b->WriteGather(0, std::move(header), std::move(payload));
        EXPECT_EQ(g.res, int32_t(kRegion)) << g.status;
        EXPECT_EQ(b->memory_mapped_copies(), 2u);
        r = co_await unmapped->Read(0, 4096, std::move(r.buffer));
        EXPECT_TRUE(Matches(r.buffer, 4096, 3));
        r = co_await unmapped->Read(4096, kRegion - 4096, std::move(r.buffer));
        EXPECT_TRUE(Matches(r.buffer, kRegion - 4096, 4));
        // Discard frees the pages; neither target's reads allocate them again.
        const uint64_t written = AllocatedBytes(path);
        EXPECT_GE(written, kRegion);
        EXPECT_EQ((co_await a->Discard(0, kRegion)).res, 0);
        EXPECT_EQ(AllocatedBytes(path), written - kRegion);
        for (DirectFile* t : {a, b}) {
          const uint64_t mapped_before = t->memory_mapped_copies();
          r = co_await t->Read(0, kRegion, std::move(r.buffer));
          EXPECT_EQ(r.res, int32_t(kRegion)) << r.status;
          EXPECT_TRUE(AllZero(r.buffer, kRegion));
          EXPECT_EQ(t->memory_mapped_copies(), mapped_before) << "read a discarded page mapped";
        }
        EXPECT_EQ(AllocatedBytes(path), written - kRegion) << "reads allocated discarded pages";
      }(a->get(), b->get(), unmapped->get(), path));
  (*a).reset();
  (*b).reset();
  (*unmapped).reset();
  unlink(path.c_str());
}

// WriteNow copies caller memory straight into the mapping, at any address
// (a receive buffer is not aligned), but only to pages the file holds: a
// hole, a range Write would refuse, a read-only target, a target without the
// mapping and one that offloads copies all say no and write nothing, and the
// caller's Write() then does the work. Counted like a Write.
TEST(MappedTmpfsTest, WriteNowCopiesOnlyToHeldPages) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  const std::string path = ShmPath("write-now");
  static constexpr uint32_t kBlock = 4096;
  auto t = DirectFile::Open(**w, path, {.create = true, .create_size = 1 << 20});
  ASSERT_TRUE(t.ok()) << t.status();
  auto read_only = DirectFile::Open(**w, path, {.read_only = true});
  ASSERT_TRUE(read_only.ok()) << read_only.status();
  auto unmapped = DirectFile::Open(**w, path, {.map_memory_files = false});
  ASSERT_TRUE(unmapped.ok()) << unmapped.status();
  auto offloading = DirectFile::Open(**w, path, {.max_offloaded_copies = 4});
  ASSERT_TRUE(offloading.ok()) << offloading.status();
  EXPECT_TRUE((*t)->writes_now());
  EXPECT_FALSE((*unmapped)->writes_now());
  EXPECT_FALSE((*offloading)->writes_now());
  // The payload one byte into a buffer, as behind a header in a receive buffer.
  std::vector<uint8_t> memory(kBlock + 1);
  const std::span<const uint8_t> payload(memory.data() + 1, kBlock);
  auto fill = [&](uint64_t seed) {
    Buffer b = Buffer::Allocate(kBlock);
    Fill(b, kBlock, seed);
    std::memcpy(memory.data() + 1, b.data(), kBlock);
  };
  fill(1);
  EXPECT_FALSE((*t)->WriteNow(0, payload)) << "wrote to a hole through the mapping";
  EXPECT_EQ(AllocatedBytes(path), 0u);
  // The first two pages are held now, and the target knows (its own write;
  // one by another process would be seen only by a target opened after it).
  (*w)->BlockOn([](DirectFile* t) -> Task<> {
    Buffer b = Buffer::Allocate(2 * kBlock);
    Fill(b, 2 * kBlock, 9);
    BlockResult r = co_await t->Write(0, std::move(b));
    EXPECT_EQ(r.res, int32_t(2 * kBlock)) << r.status;
  }(t->get()));
  EXPECT_FALSE((*t)->WriteNow(1, payload)) << "an unaligned offset";
  EXPECT_FALSE((*t)->WriteNow(1 << 20, payload)) << "past the end";
  EXPECT_FALSE((*read_only)->WriteNow(0, payload));
  EXPECT_FALSE((*unmapped)->WriteNow(0, payload));
  EXPECT_FALSE((*offloading)->WriteNow(0, payload));
  EXPECT_EQ((*t)->metrics()->of(OpKind::kWrite).ops.Get(), 1u) << "only the Write";
  // Nothing of the refusals was written.
  (*w)->BlockOn([](DirectFile* t) -> Task<> {
    BlockResult r = co_await t->Read(0, 2 * kBlock, Buffer::Allocate(2 * kBlock));
    EXPECT_EQ(r.res, int32_t(2 * kBlock)) << r.status;
    EXPECT_TRUE(Matches(r.buffer, 2 * kBlock, 9));
  }(unmapped->get()));
  const uint64_t copies = (*t)->memory_mapped_copies();
  EXPECT_TRUE((*t)->WriteNow(kBlock, payload, {.fua = true}));
  EXPECT_EQ((*t)->memory_mapped_copies(), copies + 1);
  EXPECT_EQ((*t)->metrics()->of(OpKind::kWrite).ops.Get(), 2u);
  EXPECT_EQ((*t)->metrics()->of(OpKind::kWrite).bytes.Get(), 3 * kBlock);
  // Another descriptor (pread, no mapping) sees it; the page before is untouched.
  (*w)->BlockOn([](DirectFile* t) -> Task<> {
    BlockResult r = co_await t->Read(kBlock, kBlock, Buffer::Allocate(kBlock));
    EXPECT_EQ(r.res, int32_t(kBlock)) << r.status;
    EXPECT_TRUE(Matches(r.buffer, kBlock, 1)) << "WriteNow's bytes are not in the file";
    r = co_await t->Read(0, kBlock, std::move(r.buffer));
    EXPECT_TRUE(Matches(r.buffer, kBlock, 9));
  }(unmapped->get()));
  (*t).reset();
  (*read_only).reset();
  (*unmapped).reset();
  (*offloading).reset();
  unlink(path.c_str());
}

// A file whose every page is allocated is served without reading its
// allocation bits (their count of clear bits is zero); a discard makes the
// count nonzero at once, so a write to the freed page is not copied through
// the mapping (which would allocate it again behind the discard's back,
// or fault on a full file system), and a write that allocates the page again
// brings the fast answer back.
TEST(MappedTmpfsTest, FullyAllocatedFileForgetsADiscardedPage) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  const std::string path = ShmPath("full");
  static constexpr uint32_t kFile = 1 << 20;
  static constexpr uint32_t kBlock = 4096;
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644));
    ASSERT_TRUE(fd) << strerror(errno);
  }
  PwritePattern(path, 0, kFile, 3);
  auto t = DirectFile::Open(**w, path, {});
  ASSERT_TRUE(t.ok()) << t.status();
  auto unmapped = DirectFile::Open(**w, path, {.map_memory_files = false});
  ASSERT_TRUE(unmapped.ok()) << unmapped.status();
  std::vector<uint8_t> payload(kBlock, 0x5a);
  EXPECT_TRUE((*t)->WriteNow(0, payload));
  (*w)->BlockOn([](DirectFile* t) -> Task<> {
    EXPECT_EQ((co_await t->Discard(4 * kBlock, kBlock)).res, 0);
  }(t->get()));
  EXPECT_EQ(AllocatedBytes(path), kFile - kBlock);
  EXPECT_FALSE((*t)->WriteNow(4 * kBlock, payload)) << "wrote a discarded page through the mapping";
  EXPECT_EQ(AllocatedBytes(path), kFile - kBlock) << "the discarded page was allocated again";
  EXPECT_TRUE((*t)->WriteNow(8 * kBlock, payload)) << "a page still allocated";
  // A Write (pwrite) allocates the page again and says so; then the mapping
  // takes it.
  (*w)->BlockOn([](DirectFile* t) -> Task<> {
    Buffer b = Buffer::Allocate(kBlock);
    Fill(b, kBlock, 7);
    BlockResult r = co_await t->Write(4 * kBlock, std::move(b));
    EXPECT_EQ(r.res, int32_t(kBlock)) << r.status;
  }(t->get()));
  const uint64_t copies = (*t)->memory_mapped_copies();
  EXPECT_TRUE((*t)->WriteNow(4 * kBlock, payload));
  EXPECT_EQ((*t)->memory_mapped_copies(), copies + 1);
  EXPECT_EQ(AllocatedBytes(path), kFile);
  (*w)->BlockOn([](DirectFile* t) -> Task<> {
    for (const uint64_t page : {0, 4, 8}) {
      BlockResult r = co_await t->Read(page * kBlock, kBlock, Buffer::Allocate(kBlock));
      EXPECT_EQ(r.res, int32_t(kBlock)) << r.status;
      EXPECT_EQ(r.buffer.data()[0], 0x5a) << "page " << page;
      EXPECT_EQ(r.buffer.data()[kBlock - 1], 0x5a) << "page " << page;
    }
  }(unmapped->get()));
  (*t).reset();
  (*unmapped).reset();
  unlink(path.c_str());
}

// A read-only and a read-write target on the same file (blockserve serves
// one file as two exports that way) each have a mapping; a discard through
// the read-write one must keep the read-only one's reads off the freed pages
// too: they read zeroes without allocating the pages again.
TEST(MappedTmpfsTest, DiscardIsSeenByAReadOnlyTargetOnTheSameFile) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  const std::string path = ShmPath("ro-and-rw");
  static constexpr uint32_t kFile = 1 << 20;
  static constexpr uint32_t kRange = 256 << 10;
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644));
    ASSERT_TRUE(fd) << strerror(errno);
  }
  PwritePattern(path, 0, kFile, 3);  // data before the targets open: their bits say allocated
  auto rw = DirectFile::Open(**w, path, {});
  ASSERT_TRUE(rw.ok()) << rw.status();
  auto ro = DirectFile::Open(**w, path, {.read_only = true});
  ASSERT_TRUE(ro.ok()) << ro.status();
  ASSERT_TRUE((*rw)->memory_mapped());
  ASSERT_TRUE((*ro)->memory_mapped());
  (*w)->BlockOn([](DirectFile* rw, DirectFile* ro, const std::string& path) -> Task<> {
    BlockResult r = co_await ro->Read(0, kRange, Buffer::Allocate(kRange));
    EXPECT_EQ(r.res, int32_t(kRange)) << r.status;
    EXPECT_TRUE(Matches(r.buffer, kRange, 3));
    EXPECT_EQ(ro->memory_mapped_copies(), 1u);
    EXPECT_EQ((co_await rw->Discard(0, kRange)).res, 0);
    EXPECT_EQ(AllocatedBytes(path), kFile - kRange);
    r = co_await ro->Read(0, kRange, std::move(r.buffer));
    EXPECT_EQ(r.res, int32_t(kRange)) << r.status;
    EXPECT_TRUE(AllZero(r.buffer, kRange));
    EXPECT_EQ(AllocatedBytes(path), kFile - kRange)
        << "a read through the read-only target allocated the discarded pages again";
    EXPECT_EQ(ro->memory_mapped_copies(), 1u) << "read discarded pages through its mapping";
  }(rw->get(), ro->get(), path));
  (*rw).reset();
  (*ro).reset();
  unlink(path.c_str());
}

// A file larger than any CPU's last-level cache (4 GiB, sparse) takes its
// writes through the mapping with non-temporal stores; what they wrote is what
// another descriptor reads, whole requests and gathered pieces.
TEST(MappedTmpfsTest, StreamedWritesToALargeFileReadBackWithPread) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  const std::string path = ShmPath("streamed");
  static constexpr uint64_t kFile = 4ull << 30;
  static constexpr uint32_t kBlock = 3 * 4096;
  static constexpr uint32_t kHeader = 4096;  // tmpfs targets align to pages
  auto f = DirectFile::Open(**w, path, {.create = true, .create_size = kFile});
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE((*f)->memory_mapped());
  (*w)->BlockOn([](DirectFile* f, const std::string& path) -> Task<> {
    UniqueFd other(::open(path.c_str(), O_RDONLY));
    EXPECT_TRUE(other) << strerror(errno);
    uint64_t seed = 10;
    for (const uint64_t offset : {uint64_t{0}, (uint64_t{1} << 30) + 4096, kFile - kBlock}) {
      // The first write allocates (pwrite); the second goes through the mapping.
      for (int pass = 0; pass < 2; ++pass) {
        Buffer b = Buffer::Allocate(kBlock);
        Fill(b, kBlock, ++seed);
        const uint64_t mapped_before = f->memory_mapped_copies();
        BlockResult r = co_await f->Write(offset, std::move(b));
        EXPECT_EQ(r.res, int32_t(kBlock)) << r.status;
        EXPECT_EQ(f->memory_mapped_copies(), mapped_before + pass) << "at " << offset;
      }
      Buffer back = Buffer::Allocate(kBlock);
      EXPECT_EQ(::pread(other.get(), back.data(), kBlock, static_cast<off_t>(offset)),
                ssize_t(kBlock));
      EXPECT_TRUE(Matches(back, kBlock, seed)) << "write at " << offset;
      // Gathered: a header block and the rest, each piece streamed.
      Buffer header = Buffer::Allocate(kHeader);
      Fill(header, kHeader, ++seed);
      Buffer payload = Buffer::Allocate(kBlock - kHeader);
      Fill(payload, kBlock - kHeader, ++seed);
      GatherResult g = co_await f->WriteGather(offset, std::move(header), std::move(payload));
      EXPECT_EQ(g.res, int32_t(kBlock)) << g.status;
      Buffer head_back = Buffer::Allocate(kHeader);
      Buffer rest_back = Buffer::Allocate(kBlock - kHeader);
      EXPECT_EQ(::pread(other.get(), head_back.data(), kHeader, static_cast<off_t>(offset)),
                kHeader);
      EXPECT_EQ(::pread(other.get(), rest_back.data(), kBlock - kHeader,
                        static_cast<off_t>(offset + kHeader)),
                ssize_t(kBlock - kHeader));
      EXPECT_TRUE(Matches(head_back, kHeader, seed - 1)) << "gathered header at " << offset;
      EXPECT_TRUE(Matches(rest_back, kBlock - kHeader, seed)) << "gathered payload at " << offset;
    }
  }(f->get(), path));
  (*f).reset();
  unlink(path.c_str());
}

// A first write done in io-wq (max_offloaded_copies) allocates its pages like
// a pwrite on the worker: later requests to them, from this target and from
// another one sharing the mapping, are copied through the mapping.
TEST(MappedTmpfsTest, OffloadedFirstWritesLetLaterCopiesUseTheMapping) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  const std::string path = ShmPath("offloaded-first");
  static constexpr uint32_t kBlock = 64 << 10;
  auto offloading = DirectFile::Open(
      **w, path, {.max_offloaded_copies = 1, .create = true, .create_size = 1 << 20});
  ASSERT_TRUE(offloading.ok()) << offloading.status();
  auto plain = DirectFile::Open(**w, path, {});
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_TRUE((*offloading)->memory_mapped());
  ASSERT_EQ((*offloading)->max_offloaded_copies(), 1u);
  (*w)->BlockOn([](DirectFile* offloading, DirectFile* plain) -> Task<> {
    Buffer b = Buffer::Allocate(kBlock);
    Fill(b, kBlock, 21);
    BlockResult r = co_await offloading->Write(0, std::move(b));
    EXPECT_EQ(r.res, int32_t(kBlock)) << r.status;
    Buffer header = Buffer::Allocate(4096);
    Fill(header, 4096, 22);
    Buffer payload = Buffer::Allocate(kBlock - 4096);
    Fill(payload, kBlock - 4096, 23);
    GatherResult g =
        co_await offloading->WriteGather(kBlock, std::move(header), std::move(payload));
    EXPECT_EQ(g.res, int32_t(kBlock)) << g.status;
    EXPECT_EQ(offloading->offloaded_requests(), 2u) << "both first writes went to io-wq";
    EXPECT_EQ(offloading->memory_mapped_copies(), 0u);
    r = co_await plain->Read(0, kBlock, std::move(r.buffer));
    EXPECT_EQ(r.res, int32_t(kBlock)) << r.status;
    EXPECT_TRUE(Matches(r.buffer, kBlock, 21));
    r = co_await plain->Read(kBlock + 4096, kBlock - 4096, std::move(r.buffer));
    EXPECT_EQ(r.res, int32_t(kBlock - 4096)) << r.status;
    EXPECT_TRUE(Matches(r.buffer, kBlock - 4096, 23));
    EXPECT_EQ(plain->memory_mapped_copies(), 2u)
        << "pages written in io-wq were read with pread, not through the mapping";
  }(offloading->get(), plain->get()));
  (*offloading).reset();
  (*plain).reset();
  unlink(path.c_str());
}

// Resident bytes (smaps "Rss") of each mapping of `path` in this process, in
// the order /proc/self/smaps lists them.
std::vector<uint64_t> MappingResidentBytes(const std::string& path) {
  std::ifstream smaps("/proc/self/smaps");
  std::vector<uint64_t> out;
  std::string line;
  bool in_mapping = false;
  while (std::getline(smaps, line)) {
    // A mapping's first line is "start-end perms offset dev inode [path]"; the
    // fields after it ("Rss:       12 kB") start with a capital letter.
    const std::size_t dash = line.find('-');
    if (dash > 0 && dash < line.find(' ') && std::isxdigit(static_cast<unsigned char>(line[0]))) {
      in_mapping = line.size() >= path.size() &&
                   line.compare(line.size() - path.size(), path.size(), path) == 0;
    } else if (in_mapping && line.rfind("Rss:", 0) == 0) {
      out.push_back(std::stoull(line.substr(4)) << 10);
    }
  }
  return out;
}

// Opening a target maps the allocated pages into its mapping's page tables at
// once (the first copy to a page takes no fault) and reads each, and only
// those: the holes stay unallocated (a read of a hole through the mapping
// would allocate it). A read-only target's mapping is populated the same way.
TEST(MappedTmpfsTest, MappingIsPopulatedForDataOnly) {
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  const std::string path = ShmPath("populated");
  static constexpr uint64_t kFile = 8 << 20;
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644));
    ASSERT_TRUE(fd) << strerror(errno);
    ASSERT_EQ(::ftruncate(fd.get(), kFile), 0) << strerror(errno);
  }
  PwritePattern(path, 0, 2 << 20, 1);  // data: [0, 2 MiB) and [6, 7 MiB)
  PwritePattern(path, 6 << 20, 1 << 20, 2);
  const uint64_t data = 3 << 20;
  ASSERT_EQ(AllocatedBytes(path), data);
  auto rw = DirectFile::Open(**w, path, {});
  ASSERT_TRUE(rw.ok()) << rw.status();
  auto ro = DirectFile::Open(**w, path, {.read_only = true});
  ASSERT_TRUE(ro.ok()) << ro.status();
  ASSERT_TRUE((*rw)->memory_mapped());
  ASSERT_TRUE((*ro)->memory_mapped());
  const std::vector<uint64_t> resident = MappingResidentBytes(path);
  ASSERT_EQ(resident.size(), 2u) << "one mapping per access";
  EXPECT_EQ(resident[0], data) << "the first mapping's data pages are not all mapped";
  EXPECT_EQ(resident[1], data) << "the second mapping's data pages are not all mapped";
  EXPECT_EQ(AllocatedBytes(path), data) << "populating allocated holes";
  (*rw).reset();
  (*ro).reset();
  EXPECT_TRUE(MappingResidentBytes(path).empty()) << "the mappings outlive their targets";
  unlink(path.c_str());
}

// This process's resident memory (VmRSS), in bytes.
uint64_t ResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) << 10;
  }
  return 0;
}

// A thin tmpfs file (4 TiB, nothing written) costs the mapping's bits memory
// only where data is, not one bit per page of its size (128 MiB here), and a
// page written far out is copied through the mapping like any other.
TEST(MappedTmpfsTest, ThinFileBitsCostMemoryOnlyWhereDataIs) {
  const std::string path = ShmPath("thin");
  constexpr uint64_t kThin = 4ull << 40;
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644));
    ASSERT_TRUE(fd) << strerror(errno);
    ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(kThin)), 0) << strerror(errno);
  }
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  const uint64_t before = ResidentBytes();
  auto f = DirectFile::Open(**w, path, {});
  ASSERT_TRUE(f.ok()) << f.status();
  const uint64_t after = ResidentBytes();
  std::printf("resident memory %lu KiB before opening a 4 TiB thin tmpfs file, %lu KiB after\n",
              before >> 10, after >> 10);
  ASSERT_TRUE((*f)->memory_mapped());
  EXPECT_LT(after, before + (16 << 20)) << "the bits of a thin file took memory for its size";
  (*w)->BlockOn([](DirectFile* f) -> Task<> {
    constexpr uint64_t kFar = 3ull << 40;
    Buffer b = Buffer::Allocate(4096);
    Fill(b, 4096, 41);
    BlockResult r = co_await f->Write(kFar, std::move(b));  // pwrite: sets a bit far out
    EXPECT_EQ(r.res, 4096) << r.status;
    std::memset(r.buffer.data(), 0, 4096);
    r = co_await f->Read(kFar, 4096, std::move(r.buffer));
    EXPECT_EQ(r.res, 4096) << r.status;
    EXPECT_TRUE(Matches(r.buffer, 4096, 41));
    EXPECT_EQ(f->memory_mapped_copies(), 1u);
    // A discard of the whole size (as mkfs does) leaves the bits as thin.
    EXPECT_EQ((co_await f->Discard(0, kThin)).res, 0);
    r = co_await f->Read(kFar, 4096, std::move(r.buffer));
    EXPECT_EQ(r.res, 4096) << r.status;
    EXPECT_TRUE(AllZero(r.buffer, 4096));
  }(f->get()));
  const uint64_t discarded = ResidentBytes();
  std::printf("after a discard of all 4 TiB: %lu KiB\n", discarded >> 10);
  EXPECT_LT(discarded, before + (16 << 20)) << "a discard of a thin file filled its bits";
  (*f).reset();
  unlink(path.c_str());
}

// Pages freed behind the target's back (another process punches a hole) on a
// file system that is then full: a write there cannot allocate, which through
// a mapping is SIGBUS. The target catches it and answers ENOSPC from pwrite; a
// read there answers zeroes; after space is freed the write succeeds and
// copies go through the mapping again.
TEST(MappedTmpfsTest, PagesFreedUnderneathOnAFullFileSystemFailWithEnospc) {
  ScratchMount fs("tmpfs", "size=1m");
  if (!fs.error().empty()) {
    std::printf("SKIPPED: no small tmpfs to fill (%s)\n", fs.error().c_str());
    GTEST_SKIP() << fs.error();
  }
  const std::string path = fs.dir() + "/export";
  const std::string filler = fs.dir() + "/filler";
  static constexpr uint32_t kFile = 512 << 10;
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT, 0644));
    ASSERT_TRUE(fd);
  }
  PwritePattern(path, 0, kFile, 7);
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  auto f = DirectFile::Open(**w, path, {});
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE((*f)->memory_mapped());
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR));
    ASSERT_EQ(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 8192), 0)
        << strerror(errno);
    UniqueFd fill(::open(filler.c_str(), O_RDWR | O_CREAT, 0644));
    std::vector<char> chunk(4096, 'x');
    while (::write(fill.get(), chunk.data(), chunk.size()) > 0) {
    }
    ASSERT_EQ(errno, ENOSPC);
  }
  Buffer file_pattern = Buffer::Allocate(kFile);  // what PwritePattern wrote
  Fill(file_pattern, kFile, 7);
  (*w)->BlockOn([](DirectFile* f, const std::string& filler, const Buffer& file) -> Task<> {
    Buffer b = Buffer::Allocate(4096);
    Fill(b, 4096, 8);
    BlockResult r = co_await f->Write(0, std::move(b));
    EXPECT_EQ(r.res, -ENOSPC) << r.status;
    r = co_await f->Read(4096, 4096, std::move(r.buffer));
    EXPECT_EQ(r.res, 4096) << r.status;
    EXPECT_TRUE(AllZero(r.buffer, 4096));
    EXPECT_EQ(f->memory_mapped_copies(), 0u);
    // The rest of the file is untouched and still copied through the mapping.
    r = co_await f->Read(65536, 4096, std::move(r.buffer));
    EXPECT_EQ(r.res, 4096) << r.status;
    EXPECT_EQ(std::memcmp(r.buffer.data(), file.data() + 65536, 4096), 0);
    EXPECT_EQ(f->memory_mapped_copies(), 1u);
    ::unlink(filler.c_str());
    Fill(r.buffer, 4096, 9);
    r = co_await f->Write(0, std::move(r.buffer));
    EXPECT_EQ(r.res, 4096) << r.status;
    r = co_await f->Read(0, 4096, std::move(r.buffer));
    EXPECT_TRUE(Matches(r.buffer, 4096, 9));
    EXPECT_EQ(f->memory_mapped_copies(), 2u) << "the written page is mapped again";
  }(f->get(), filler, file_pattern));
  (*f).reset();
}

// A file truncated behind the target's back: the mapping past the new end
// raises SIGBUS, which the target turns into the pread's answer (an
// unexpected end of file), not a crash.
TEST(MappedTmpfsTest, FileTruncatedUnderneathFailsTheRequest) {
  const std::string path = ShmPath("truncated");
  auto w = Worker::Create(Config{});
  ASSERT_TRUE(w.ok()) << w.status();
  auto f = DirectFile::Open(**w, path, {.create = true, .create_size = 1 << 20});
  ASSERT_TRUE(f.ok()) << f.status();
  PwritePattern(path, 0, 1 << 20, 5);
  (*w)->BlockOn([](DirectFile* f, const std::string& path) -> Task<> {
    Buffer b = Buffer::Allocate(4096);
    Fill(b, 4096, 6);
    BlockResult r = co_await f->Write(512 << 10, std::move(b));  // pwrite: marks the page
    EXPECT_EQ(r.res, 4096) << r.status;
    r = co_await f->Read(512 << 10, 4096, std::move(r.buffer));
    EXPECT_TRUE(Matches(r.buffer, 4096, 6));
    EXPECT_EQ(f->memory_mapped_copies(), 1u);
    EXPECT_EQ(::truncate(path.c_str(), 0), 0);
    r = co_await f->Read(512 << 10, 4096, std::move(r.buffer));
    EXPECT_EQ(r.res, -EIO) << r.status;
    EXPECT_THAT(r.status.ToString(), HasSubstr("unexpected end of file"));
    EXPECT_EQ(f->memory_mapped_copies(), 1u);
  }(f->get(), path));
  (*f).reset();
  unlink(path.c_str());
}

// ---- two workers on one mapping ------------------------------------------------------

// Every 8-byte word written by the concurrency test describes itself: the
// block and the word's place in it, the writer, the version, and a check
// byte over the rest, so a read can tell a word of the right place from
// zeroes, from another block's or place's data, and from garbage. Words,
// not whole blocks: where requests overlap in time nothing is atomic (a
// memcpy from the mapping can see another writer's copy half done, as a
// pread can), and an aligned 8-byte store is the unit a reader sees whole.
constexpr uint32_t kStampWord = 8;
constexpr uint32_t kStampBlock = 4096;

uint64_t StampWord(uint64_t block, uint64_t word, uint64_t writer, uint64_t version) {
  // block:20 | word:9 | writer:3 | version:24 | check:8
  const uint64_t body = (block & 0xFFFFF) << 44 | (word & 0x1FF) << 35 | (writer & 7) << 32 |
                        (version & 0xFFFFFF) << 8;
  return body | (((body * 0x9E3779B97F4A7C15) >> 56) ^ 0xA5);
}

// Whether each byte of the word that holds the place (block and word
// index: bits 35-63) is that place's byte or zero.
bool PlaceBytesMatch(const uint8_t* at, uint64_t block, uint64_t word) {
  uint64_t w;
  std::memcpy(&w, at, kStampWord);
  const uint64_t place = StampWord(block, word, 0, 0);
  for (int k = 4; k < 8; ++k) {
    const uint64_t mask = (k == 4 ? uint64_t{0xF8} : uint64_t{0xFF}) << (8 * k);
    if ((w & mask) != 0 && (w & mask) != (place & mask)) return false;
  }
  return true;
}

// A word as the stamp's fields, for failure messages.
std::string DescribeWord(const uint8_t* at) {
  uint64_t w;
  std::memcpy(&w, at, kStampWord);
  char text[160];
  std::snprintf(text, sizeof text, "0x%016lx (block %lu word %lu writer %lu version %lu%s)", w,
                w >> 44, (w >> 35) & 0x1FF, (w >> 32) & 7, (w >> 8) & 0xFFFFFF,
                w == StampWord(w >> 44, (w >> 35) & 0x1FF, (w >> 32) & 7, (w >> 8) & 0xFFFFFF)
                    ? ""
                    : ", check byte wrong");
  return text;
}

void StampBlock(uint8_t* at, uint64_t writer, uint64_t block, uint64_t version) {
  for (uint32_t i = 0; i < kStampBlock / kStampWord; ++i) {
    const uint64_t w = StampWord(block, i, writer, version);
    std::memcpy(at + i * kStampWord, &w, kStampWord);
  }
}

// What a word holds: zeroes (writer and version 0), a valid stamp of
// `block` at its place (its writer and version out), or something else
// (false).
bool ReadWord(const uint8_t* at, uint64_t block, uint32_t word, uint64_t* writer,
              uint64_t* version) {
  uint64_t w;
  std::memcpy(&w, at, kStampWord);
  *writer = *version = 0;
  if (w == 0) return true;
  *writer = (w >> 32) & 7;
  *version = (w >> 8) & 0xFFFFFF;
  return *version != 0 && w == StampWord(block, word, *writer, *version);
}

// Two workers on two threads, each with its own target on the same tmpfs
// file (so one mapping in the process), and four tasks on each: thousands of
// random 4-64 KiB writes, reads, discards and write-zeroes. Most of the file
// is split into 64 KiB chunks owned by one task each, interleaved so that
// neighbouring chunks (and the same words of the allocation bits) belong to
// tasks on both threads: there every read must return exactly the versions
// the owner last wrote (zeroes after a discard). The last region is written,
// discarded and read by every task at once: there nothing is ordered, and a
// read must return, word by word, zeroes or a valid word that some writer
// wrote to that very place. At the end the file read with plain pread (not
// through the mapping) must hold what the owners wrote, and discarded blocks
// must not have been allocated again.
TEST(MappedTmpfsTest, TwoWorkersShareTheMappingWithoutLosingWrites) {
  constexpr uint32_t kThreads = 2;
  constexpr uint32_t kTasks = 4;  // per worker
  constexpr uint32_t kOwners = kThreads * kTasks;
  constexpr uint64_t kChunk = 64 << 10;
  constexpr uint64_t kOwnedBytes = 8ull << 20;  // 128 chunks, 16 per owner
  constexpr uint64_t kSharedBytes = 512 << 10;
  constexpr uint64_t kFileBytes = kOwnedBytes + kSharedBytes;
  constexpr uint64_t kBlocks = kFileBytes / kStampBlock;
  constexpr int kOpsPerTask = 3000;
  const std::string path = ShmPath("two-workers");
  struct Unlink {
    const std::string& path;
    ~Unlink() { ::unlink(path.c_str()); }
  } unlink_at_exit{path};  // a failed ASSERT returns early
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644));
    ASSERT_TRUE(fd) << strerror(errno);
    ASSERT_EQ(::ftruncate(fd.get(), kFileBytes), 0);
  }
  // versions[b]: the version the owner of block b last wrote, 0 = zeroes.
  // Each owned block is touched by one task only; the shared blocks' entry is
  // the highest version anyone wrote there (an atomic max).
  std::vector<uint64_t> versions(kBlocks, 0);
  std::array<std::atomic<uint64_t>, kOwners> issued{};
  struct PerThread {
    std::string error;  // the first failure, empty if none
    uint64_t reads = 0, writes = 0, discards = 0, shared_reads = 0, mapped_copies = 0;
    uint64_t torn_words = 0;  // in shared reads
    bool mapped = false;
  };
  std::array<PerThread, kThreads> results;

  struct Ctx {
    DirectFile* f;
    std::vector<uint64_t>* versions;
    std::array<std::atomic<uint64_t>, kOwners>* issued;
    PerThread* out;
  };
  const auto owner_of_chunk = [](uint64_t chunk) {
    // Chunk c belongs to thread c % 2, task (c / 2) % 4: neighbours alternate
    // between the threads.
    return static_cast<uint32_t>((chunk % kThreads) * kTasks + (chunk / kThreads) % kTasks);
  };

  const auto run_task = [&](Ctx* c, uint32_t owner, uint64_t seed) -> Task<> {
    std::mt19937_64 rng(seed);
    Buffer buf = Buffer::Allocate(kChunk);
    std::vector<uint64_t> mine;  // the chunks this task owns
    for (uint64_t ch = 0; ch < kOwnedBytes / kChunk; ++ch) {
      if (owner_of_chunk(ch) == owner) mine.push_back(ch);
    }
    const auto fail = [c](std::string what) {
      if (c->out->error.empty()) c->out->error = std::move(what);
    };
    for (int op = 0; op < kOpsPerTask && c->out->error.empty(); ++op) {
      const bool shared = rng() % 5 == 0;
      uint64_t first_block, nblocks;
      if (shared) {
        nblocks = 1 + rng() % 16;
        first_block =
            kOwnedBytes / kStampBlock + rng() % (kSharedBytes / kStampBlock - nblocks + 1);
      } else {
        const uint64_t ch = mine[rng() % mine.size()];
        const uint64_t in_chunk = rng() % (kChunk / kStampBlock);
        nblocks = 1 + rng() % (kChunk / kStampBlock - in_chunk);
        first_block = ch * (kChunk / kStampBlock) + in_chunk;
      }
      const uint64_t offset = first_block * kStampBlock;
      const auto length = static_cast<uint32_t>(nblocks * kStampBlock);
      const unsigned kind = rng() % 100;
      if (kind < 45) {  // write
        std::vector<uint64_t> stamped(nblocks);
        for (uint64_t i = 0; i < nblocks; ++i) {
          stamped[i] = (*c->issued)[owner].fetch_add(1) + 1;
          StampBlock(buf.data() + i * kStampBlock, owner, first_block + i, stamped[i]);
        }
        buf.set_size(length);
        BlockResult r = co_await c->f->Write(offset, std::move(buf));
        buf = std::move(r.buffer);
        if (r.res != int32_t(length)) {
          fail("write at " + std::to_string(offset) + ": " + r.status.ToString());
          break;
        }
        ++c->out->writes;
        for (uint64_t i = 0; i < nblocks; ++i) {
          uint64_t& v = (*c->versions)[first_block + i];
          if (!shared) {
            v = stamped[i];
          } else {
            std::atomic_ref<uint64_t> max(v);
            uint64_t seen = max.load();
            while (seen < stamped[i] && !max.compare_exchange_weak(seen, stamped[i])) {
            }
          }
        }
      } else if (kind < 85) {  // read
        BlockResult r = co_await c->f->Read(offset, length, std::move(buf));
        buf = std::move(r.buffer);
        if (r.res != int32_t(length)) {
          fail("read at " + std::to_string(offset) + ": " + r.status.ToString());
          break;
        }
        for (uint64_t i = 0; i < nblocks && c->out->error.empty(); ++i) {
          const uint64_t block = first_block + i;
          for (uint32_t word = 0; word < kStampBlock / kStampWord; ++word) {
            uint64_t writer = 0, version = 0;
            const uint8_t* at = buf.data() + i * kStampBlock + word * kStampWord;
            if (shared) {
              // Nothing is ordered here: a word may mix bytes of two
              // writes, or of a write and a discard, that overlapped in
              // time. Its place bytes must still be this place's (or zero).
              if (!ReadWord(at, block, word, &writer, &version)) {
                ++c->out->torn_words;
                if (!PlaceBytesMatch(at, block, word)) {
                  fail("shared block " + std::to_string(block) + " word " + std::to_string(word) +
                       ": bytes of another place: " + DescribeWord(at) + "; read [" +
                       std::to_string(offset) + ", +" + std::to_string(length) + ")");
                }
              } else if (version != 0 &&
                         (writer >= kOwners || version > (*c->issued)[writer].load())) {
                fail("shared block " + std::to_string(block) +
                     ": a version never written: " + DescribeWord(at));
              }
              continue;
            }
            if (!ReadWord(at, block, word, &writer, &version)) {
              fail("block " + std::to_string(block) + " word " + std::to_string(word) +
                   ": neither zeroes nor a stamp of this place: " + DescribeWord(at) + "; read [" +
                   std::to_string(offset) + ", +" + std::to_string(length) + ")");
              break;
            }
            const uint64_t want = (*c->versions)[block];
            if (version != want || (want != 0 && writer != owner)) {
              fail("block " + std::to_string(block) + " word " + std::to_string(word) +
                   ": read version " + std::to_string(version) + " of writer " +
                   std::to_string(writer) + ", the owner " + std::to_string(owner) +
                   " last wrote version " + std::to_string(want) + " (0 = discarded)");
              break;
            }
          }
        }
        (shared ? c->out->shared_reads : c->out->reads)++;
      } else {  // discard, or write-zeroes (punched on tmpfs)
        BlockResult r = kind < 95 ? co_await c->f->Discard(offset, length)
                                  : co_await c->f->WriteZeroes(offset, length);
        if (r.res != 0) {
          fail("discard at " + std::to_string(offset) + ": " + r.status.ToString());
          break;
        }
        ++c->out->discards;
        if (!shared) {
          for (uint64_t i = 0; i < nblocks; ++i) (*c->versions)[first_block + i] = 0;
        }
      }
    }
  };

  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      PerThread& out = results[t];
      auto w = Worker::Create(Config{});
      if (!w.ok()) {
        out.error = w.status().ToString();
        return;
      }
      auto f = DirectFile::Open(**w, path, {.queue_depth = 8});
      if (!f.ok()) {
        out.error = f.status().ToString();
        return;
      }
      out.mapped = (*f)->memory_mapped();
      Ctx c{f->get(), &versions, &issued, &out};
      (*w)->BlockOn([](Ctx* c, uint32_t t, decltype(run_task)* run) -> Task<> {
        std::vector<JoinHandle<void>> hs;
        for (uint32_t k = 0; k < kTasks; ++k) {
          const uint32_t owner = t * kTasks + k;
          hs.push_back(Spawn((*run)(c, owner, 1000 + owner)));
        }
        for (auto& h : hs) co_await h;
      }(&c, t, &run_task));
      out.mapped_copies = (*f)->memory_mapped_copies();
      (*f).reset();
    });
  }
  for (auto& th : threads) th.join();
  for (uint32_t t = 0; t < kThreads; ++t) {
    const PerThread& r = results[t];
    std::printf(
        "worker %u: %lu writes, %lu owned reads, %lu shared reads, %lu discards, "
        "%lu copies through the mapping, %lu torn words in shared reads\n",
        t, r.writes, r.reads, r.shared_reads, r.discards, r.mapped_copies, r.torn_words);
    EXPECT_EQ(r.error, "") << "worker " << t;
    EXPECT_TRUE(r.mapped) << "worker " << t << " did not map the tmpfs file";
    EXPECT_GT(r.mapped_copies, 0u) << "worker " << t << " never copied through the mapping";
  }
  // The file as another process sees it (pread, no mapping): every owned
  // block holds what its owner last wrote, or zeroes.
  UniqueFd fd(::open(path.c_str(), O_RDONLY));
  ASSERT_TRUE(fd);
  std::vector<uint8_t> block(kStampBlock);
  uint64_t live = 0;
  for (uint64_t b = 0; b < kOwnedBytes / kStampBlock; ++b) {
    ASSERT_EQ(::pread(fd.get(), block.data(), kStampBlock, static_cast<off_t>(b * kStampBlock)),
              ssize_t(kStampBlock));
    const uint32_t owner = owner_of_chunk(b * kStampBlock / kChunk);
    for (uint32_t word = 0; word < kStampBlock / kStampWord; ++word) {
      uint64_t writer = 0, version = 0;
      ASSERT_TRUE(ReadWord(block.data() + word * kStampWord, b, word, &writer, &version))
          << "block " << b << " word " << word;
      ASSERT_EQ(version, versions[b]) << "block " << b << " word " << word << " (pread)";
      if (version != 0) {
        ASSERT_EQ(writer, owner) << "block " << b;
      }
    }
    if (versions[b] != 0) ++live;
  }
  // The shared region at rest: every word zero, or a stamp of its place, or
  // (two writes or a write and a discard overlapped there) a mix whose place
  // bytes are still its own.
  uint64_t torn_at_rest = 0;
  for (uint64_t b = kOwnedBytes / kStampBlock; b < kBlocks; ++b) {
    ASSERT_EQ(::pread(fd.get(), block.data(), kStampBlock, static_cast<off_t>(b * kStampBlock)),
              ssize_t(kStampBlock));
    for (uint32_t word = 0; word < kStampBlock / kStampWord; ++word) {
      uint64_t writer = 0, version = 0;
      const uint8_t* at = block.data() + word * kStampWord;
      if (ReadWord(at, b, word, &writer, &version)) continue;
      ++torn_at_rest;
      ASSERT_TRUE(PlaceBytesMatch(at, b, word))
          << "shared block " << b << " word " << word << ": " << DescribeWord(at);
    }
  }
  std::printf("shared region at rest: %lu torn words\n", torn_at_rest);
  // Discarded owned blocks stay freed: at most the live owned blocks and the
  // shared region (where stale bits are allowed: nothing there is ordered).
  const uint64_t allocated = AllocatedBytes(path);
  std::printf("%lu of %lu owned blocks live; file allocation %lu KiB (at most %lu KiB)\n", live,
              kOwnedBytes / kStampBlock, allocated >> 10,
              (live * kStampBlock + kSharedBytes) >> 10);
  EXPECT_GE(allocated, live * kStampBlock);
  EXPECT_LE(allocated, live * kStampBlock + kSharedBytes) << "discarded pages were allocated again";
}

// The target's SIGBUS handler takes only its own copies' faults: any other
// SIGBUS still ends the process as before.
TEST(MappedTmpfsDeathTest, OtherSigbusStillKills) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const auto map_a_target = [] {
    auto w = Worker::Create(Config{});
    const std::string path = ShmPath("death");
    auto f = DirectFile::Open(**w, path, {.create = true, .create_size = 1 << 20});
    unlink(path.c_str());
    if (!f.ok() || !(*f)->memory_mapped()) std::abort();
    return std::make_pair(std::move(*w), std::move(*f));
  };
  EXPECT_DEATH(
      {
        auto kept = map_a_target();
        // A fault elsewhere: a mapping past the end of an empty file.
        const std::string other = ShmPath("death-other");
        UniqueFd fd(::open(other.c_str(), O_RDWR | O_CREAT, 0644));
        unlink(other.c_str());
        auto* p = static_cast<volatile char*>(
            ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0));
        p[0] = 1;
        std::fprintf(stderr, "survived the fault\n");
      },
      "");
  EXPECT_DEATH(
      {
        auto kept = map_a_target();
        ::kill(::getpid(), SIGBUS);
        std::fprintf(stderr, "survived kill(SIGBUS)\n");
      },
      "");
}

}  // namespace
}  // namespace ringline::block
