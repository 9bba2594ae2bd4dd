// NvmeNamespace against a real NVMe driver: runs inside the QEMU guest of
// scripts/nvme-qemu-test.sh (tests/nvme/guest.d/10-block.sh), where QEMU
// emulates a controller (serial RINGLINE0001) with ns1 = 256 MiB of 512-byte
// LBAs and ns2 = 64 MiB of 4096-byte LBAs. Outside the guest it exits 77
// (SKIPPED) at once: it needs the guest's devices and writes to them.
//
// Areas used (the other guest scripts use ns1 bytes 3 MiB..3 MiB+8 KiB and ns2
// bytes 4000 KiB..4128 KiB; blockbench only reads):
//   ns1 1 MiB + 64 KiB   the host-checked pattern (seed 17), written last
//   ns1 >= 16 MiB, ns2 >= 8 MiB: scratch areas, one per test.
// Buffers: a small registered pool (FIXED), plain memory, and one registration
// larger than Linux 6.1 takes for FIXED passthrough (the fallback path).
#include <gtest/gtest.h>
#include <linux/nvme_ioctl.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "ringline/block/nvme_device.h"
#include "ringline/block/nvme_namespace.h"
#include "ringline/block/nvme_status.h"
#include "ringline/ringline.h"
#include "tests/block/guest_test_main.h"  // main(): SKIPPED outside the guest

namespace ringline::block {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}
uint64_t EnvU64(const char* name) { return std::strtoull(Env(name).c_str(), nullptr, 10); }

// The host-check pattern of the harness: byte i is (seed + i*131) % 251.
uint8_t PatternByte(uint64_t seed, uint64_t i) {
  return static_cast<uint8_t>((seed + i * 131) % 251);
}
void FillPattern(Buffer& b, std::size_t n, uint64_t seed) {
  for (std::size_t i = 0; i < n; ++i) b.data()[i] = PatternByte(seed, i);
  b.set_size(n);
}
// The first byte index where `b` differs from the pattern, or -1.
int64_t PatternMismatch(const uint8_t* p, std::size_t n, uint64_t seed, uint64_t start = 0) {
  for (std::size_t i = 0; i < n; ++i) {
    if (p[i] != PatternByte(seed, start + i)) return static_cast<int64_t>(i);
  }
  return -1;
}
int64_t NonZero(const uint8_t* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return static_cast<int64_t>(i);
  }
  return -1;
}

// Where a test's buffer comes from.
enum class Mem {
  kFixed,          // the small registered pool: IORING_URING_CMD_FIXED
  kPlain,          // Buffer::Allocate: plain user memory, pinned per command
  kBigRegistered,  // a registration too large for FIXED on Linux 6.1 (fallback)
};

class NvmeGuestTest : public ::testing::Test {
 protected:
  // Linux 6.1 takes a registered buffer for passthrough only if the whole
  // registration spans at most max_segments (127) pages: 6 x 64 KiB = 96.
  static constexpr std::size_t kFixedSize = 64 * kKiB;

  void SetUp() override {
    auto w = Worker::Create(Config{});
    ASSERT_TRUE(w.ok()) << w.status();
    worker_ = std::move(*w);
    auto p = BufferPool::Create(*worker_, {.buffer_size = kFixedSize, .count = 6});
    ASSERT_TRUE(p.ok()) << p.status();
    pool_ = std::move(*p);
    // The FIXED path is the point: in the guest we run as root, so the
    // registration must not have fallen back to plain memory.
    ASSERT_TRUE(pool_->registered()) << "buffer pool not registered with the ring";
    auto b = BufferPool::Create(*worker_, {.buffer_size = 4 * kMiB, .count = 1});
    ASSERT_TRUE(b.ok()) << b.status();
    big_pool_ = std::move(*b);
    ASSERT_TRUE(big_pool_->registered());
  }
  void TearDown() override {
    ns1_.reset();
    ns2_.reset();
    big_pool_.reset();
    pool_.reset();
    worker_.reset();
  }

  std::unique_ptr<NvmeNamespace> Open(const std::string& path, TargetOptions o = {}) {
    auto ns = NvmeNamespace::Open(*worker_, path, o);
    EXPECT_TRUE(ns.ok()) << ns.status();
    return ns.ok() ? std::move(*ns) : nullptr;
  }
  void OpenBoth() {
    ns1_ = Open(Env("RINGLINE_NVME_NS1"));
    ns2_ = Open(Env("RINGLINE_NVME_NS2"));
    ASSERT_TRUE(ns1_ && ns2_);
  }
  Buffer Acquire() {
    Buffer b = pool_->TryAcquire();
    EXPECT_TRUE(b);
    return b;
  }
  Buffer Get(Mem mem, std::size_t len) {
    Buffer b;
    switch (mem) {
      case Mem::kFixed:
        EXPECT_LE(len, kFixedSize);
        b = Acquire();
        break;
      case Mem::kPlain:
        b = Buffer::Allocate(len);
        break;
      case Mem::kBigRegistered:
        b = big_pool_->TryAcquire();
        break;
    }
    EXPECT_TRUE(b);
    EXPECT_GE(b.capacity(), len);
    EXPECT_EQ(b.registered(), mem != Mem::kPlain);
    return b;
  }
  template <typename T>
  auto Run(Task<T> t) {
    return *worker_->BlockOn(std::move(t));
  }

  // Writes `len` bytes of pattern `seed` at `offset` and checks the result.
  void WritePattern(NvmeNamespace& ns, uint64_t offset, std::size_t len, uint64_t seed,
                    bool fua = false, Mem mem = Mem::kFixed) {
    Buffer b = Get(mem, len);
    ASSERT_TRUE(b);
    FillPattern(b, len, seed);
    BlockResult r = Run(ns.Write(offset, std::move(b), {.fua = fua}));
    ASSERT_EQ(r.res, static_cast<int32_t>(len)) << r.status;
    EXPECT_TRUE(r.buffer) << "the buffer comes back";
  }
  // Reads `len` bytes at `offset` (one request) and returns them.
  std::vector<uint8_t> ReadBytes(NvmeNamespace& ns, uint64_t offset, std::size_t len,
                                 Mem mem = Mem::kFixed) {
    Buffer b = Get(mem, len);
    if (!b) return {};
    std::memset(b.data(), 0xee, len);
    BlockResult r = Run(ns.Read(offset, static_cast<uint32_t>(len), std::move(b)));
    EXPECT_EQ(r.res, static_cast<int32_t>(len)) << r.status;
    EXPECT_EQ(r.buffer.size(), len);
    return std::vector<uint8_t>(r.buffer.data(), r.buffer.data() + len);
  }

  std::unique_ptr<Worker> worker_;
  std::unique_ptr<BufferPool> pool_;
  std::unique_ptr<BufferPool> big_pool_;
  std::unique_ptr<NvmeNamespace> ns1_;
  std::unique_ptr<NvmeNamespace> ns2_;
};

TEST_F(NvmeGuestTest, IdentifyMatchesQemuConfiguration) {
  OpenBoth();
  struct Want {
    NvmeNamespace* ns;
    uint32_t nsid;
    uint64_t bytes;
    uint32_t lba;
    std::string path;
  } wants[] = {
      {ns1_.get(), 1, EnvU64("RINGLINE_NVME_NS1_BYTES"),
       static_cast<uint32_t>(EnvU64("RINGLINE_NVME_NS1_LBA")), Env("RINGLINE_NVME_NS1")},
      {ns2_.get(), 2, EnvU64("RINGLINE_NVME_NS2_BYTES"),
       static_cast<uint32_t>(EnvU64("RINGLINE_NVME_NS2_LBA")), Env("RINGLINE_NVME_NS2")},
  };
  for (const Want& w : wants) {
    const Geometry& g = w.ns->geometry();
    std::printf(
        "%s: nsid %u, %llu bytes (%llu LBAs of %u), max transfer %u (device %llu, MDTS %u), "
        "VWC %d, write zeroes %d (%u LBAs/cmd), DSM %d (%u LBAs/range), deallocated reads "
        "zeroes %d, serial '%s', model '%s'\n",
        w.ns->name().c_str(), w.ns->nsid(), static_cast<unsigned long long>(g.size_bytes),
        static_cast<unsigned long long>(w.ns->namespace_info().size_lbas), g.logical_block_size,
        g.max_transfer_bytes, static_cast<unsigned long long>(w.ns->device_max_transfer_bytes()),
        w.ns->controller_info().mdts, g.volatile_write_cache, g.supports_write_zeroes,
        w.ns->max_write_zeroes_lbas(), g.supports_discard, w.ns->max_discard_range_lbas(),
        g.discard_zeroes_data, w.ns->controller_info().serial.c_str(),
        w.ns->controller_info().model.c_str());
    EXPECT_EQ(w.ns->name(), w.path);
    EXPECT_EQ(w.ns->nsid(), w.nsid);
    EXPECT_EQ(g.logical_block_size, w.lba);
    EXPECT_EQ(g.size_bytes, w.bytes);
    EXPECT_EQ(w.ns->namespace_info().lba_size, w.lba);
    EXPECT_EQ(w.ns->controller_info().serial, Env("RINGLINE_NVME_SERIAL"));
    // QEMU's controller: MDTS 7 = 128 x 4 KiB; the kernel may cap it further.
    const uint64_t mdts = NvmeMdtsBytes(w.ns->controller_info().mdts);
    EXPECT_GT(g.max_transfer_bytes, 0u);
    if (mdts != 0) {
      EXPECT_LE(g.max_transfer_bytes, mdts);
    }
    EXPECT_EQ(g.max_transfer_bytes % w.lba, 0u);
    EXPECT_FALSE(g.read_only);
    EXPECT_TRUE(g.supports_fua);
    EXPECT_TRUE(g.supports_write_zeroes) << "QEMU's controller advertises Write Zeroes";
    EXPECT_TRUE(g.supports_discard) << "QEMU's controller advertises Dataset Management";
  }
}

TEST_F(NvmeGuestTest, WriteAndReadBackWithFixedBuffersOnBothNamespaces) {
  OpenBoth();
  for (NvmeNamespace* ns : {ns1_.get(), ns2_.get()}) {
    SCOPED_TRACE(ns->name());
    const uint32_t lba = ns->geometry().logical_block_size;
    const uint64_t base = ns == ns1_.get() ? 16 * kMiB : 8 * kMiB;
    // One LBA, an odd number of LBAs at an odd LBA, and 64 KiB.
    const struct {
      uint64_t offset;
      std::size_t len;
    } cases[] = {{base, lba}, {base + 7 * lba, 13 * lba}, {base + kMiB, 64 * kKiB}};
    uint64_t seed = 1;
    for (const auto& c : cases) {
      WritePattern(*ns, c.offset, c.len, seed);
      const auto got = ReadBytes(*ns, c.offset, c.len);
      EXPECT_EQ(PatternMismatch(got.data(), c.len, seed), -1) << c.len << " bytes at " << c.offset;
      ++seed;
    }
    EXPECT_EQ(ns->fixed_buffer_fallbacks(), 0u) << "the commands went FIXED";
    // Unregistered memory takes the non-FIXED path.
    WritePattern(*ns, base + 2 * kMiB, 8 * lba, 42, false, Mem::kPlain);
    const auto got = ReadBytes(*ns, base + 2 * kMiB, 8 * lba, Mem::kPlain);
    EXPECT_EQ(PatternMismatch(got.data(), 8 * lba, 42), -1);
    EXPECT_GE(ns->metrics()->of(OpKind::kWrite).ops.Get(), 4u);
    EXPECT_EQ(ns->metrics()->of(OpKind::kWrite).errors.Get(), 0u);
  }
}

TEST_F(NvmeGuestTest, FuaWriteAndFlush) {
  OpenBoth();
  for (NvmeNamespace* ns : {ns1_.get(), ns2_.get()}) {
    SCOPED_TRACE(ns->name());
    const uint64_t off = (ns == ns1_.get() ? 20 * kMiB : 12 * kMiB);
    WritePattern(*ns, off, 32 * kKiB, 5, /*fua=*/true);
    const auto got = ReadBytes(*ns, off, 32 * kKiB);
    EXPECT_EQ(PatternMismatch(got.data(), 32 * kKiB, 5), -1);
    BlockResult f = Run(ns->Flush());
    EXPECT_EQ(f.res, 0) << f.status;
    EXPECT_TRUE(f.status.ok()) << f.status;
    EXPECT_EQ(ns->metrics()->of(OpKind::kFlush).ops.Get(), 1u);
  }
  // QEMU emulates a volatile write cache, so the flush reached the device.
  EXPECT_TRUE(ns1_->geometry().volatile_write_cache);
}

TEST_F(NvmeGuestTest, WriteZeroesReadsBackZeroes) {
  OpenBoth();
  for (NvmeNamespace* ns : {ns1_.get(), ns2_.get()}) {
    SCOPED_TRACE(ns->name());
    const uint32_t lba = ns->geometry().logical_block_size;
    const uint64_t off = ns == ns1_.get() ? 24 * kMiB : 16 * kMiB;
    // Larger than one Write Zeroes command covers on ns1 (the kernel's limit
    // is the maximum transfer): several commands, joined.
    const std::size_t len = 3 * kMiB;
    const uint64_t commands =
        (len / lba + ns->max_write_zeroes_lbas() - 1) / ns->max_write_zeroes_lbas();
    std::printf("%s: write zeroes of %zu bytes = %llu command(s)\n", ns->name().c_str(), len,
                static_cast<unsigned long long>(commands));
    WritePattern(*ns, off, len, 9, false, Mem::kPlain);
    // Zero all but one LBA at each end.
    BlockResult z = Run(ns->WriteZeroes(off + lba, len - 2 * lba, {.fua = true}));
    ASSERT_EQ(z.res, 0) << z.status;
    const auto got = ReadBytes(*ns, off, len, Mem::kPlain);
    EXPECT_EQ(PatternMismatch(got.data(), lba, 9), -1) << "the LBA before is kept";
    EXPECT_EQ(NonZero(got.data() + lba, len - 2 * lba), -1) << "the range reads zeroes";
    EXPECT_EQ(PatternMismatch(got.data() + len - lba, lba, 9, len - lba), -1)
        << "the LBA after is kept";
  }
}

TEST_F(NvmeGuestTest, DeallocateReadsBackZeroesWhenTheDeviceSaysSo) {
  OpenBoth();
  for (NvmeNamespace* ns : {ns1_.get(), ns2_.get()}) {
    SCOPED_TRACE(ns->name());
    const uint32_t lba = ns->geometry().logical_block_size;
    const uint64_t off = ns == ns1_.get() ? 32 * kMiB : 24 * kMiB;
    const std::size_t len = 2 * kMiB;
    WritePattern(*ns, off, len, 11, false, Mem::kPlain);
    BlockResult d = Run(ns->Discard(off + 4 * lba, len - 8 * lba));
    ASSERT_EQ(d.res, 0) << d.status;
    EXPECT_EQ(ns->metrics()->of(OpKind::kDiscard).ops.Get(), 1u);
    const auto got = ReadBytes(*ns, off, len, Mem::kPlain);
    EXPECT_EQ(PatternMismatch(got.data(), 4 * lba, 11), -1) << "LBAs before are kept";
    EXPECT_EQ(PatternMismatch(got.data() + len - 4 * lba, 4 * lba, 11, len - 4 * lba), -1)
        << "LBAs after are kept";
    if (ns->geometry().discard_zeroes_data) {
      EXPECT_EQ(NonZero(got.data() + 4 * lba, len - 8 * lba), -1)
          << "DLFEAT says deallocated blocks read as zeroes";
    } else {
      std::printf("%s: DLFEAT does not promise zeroes after deallocate; content not checked\n",
                  ns->name().c_str());
    }
  }
}

// A request larger than the maximum transfer is split; every command must land
// at its own place. All commands of a request are slices of one buffer.
TEST_F(NvmeGuestTest, TransferLargerThanMdtsIsSplitCorrectly) {
  OpenBoth();
  uint64_t seed = 23;
  for (NvmeNamespace* ns : {ns1_.get(), ns2_.get()}) {
    SCOPED_TRACE(ns->name());
    const uint32_t lba = ns->geometry().logical_block_size;
    const uint32_t max = ns->geometry().max_transfer_bytes;
    const std::size_t len = 3 * std::size_t{max} + 5 * lba;  // 4 commands, the last one short
    ASSERT_LE(len, big_pool_->buffer_size());
    uint64_t off = ns == ns1_.get() ? 40 * kMiB : 32 * kMiB;
    // Plain memory, then a registered buffer too large for FIXED on 6.1 (the
    // namespace falls back to plain memory for it, once, and says so).
    for (Mem mem : {Mem::kPlain, Mem::kBigRegistered}) {
      SCOPED_TRACE(mem == Mem::kPlain ? "plain memory" : "big registration");
      const uint64_t admitted_before = ns->queue()->metrics().admitted.Get();
      WritePattern(*ns, off, len, seed, false, mem);
      const uint64_t commands = ns->queue()->metrics().admitted.Get() - admitted_before;
      if (mem == Mem::kPlain) {
        EXPECT_EQ(commands, 4u) << "one queue-depth place per NVMe command";
      } else {
        std::printf("%s: big registration: %llu commands, %u FIXED fallback(s)\n",
                    ns->name().c_str(), static_cast<unsigned long long>(commands),
                    ns->fixed_buffer_fallbacks());
        EXPECT_TRUE(commands == 4u || commands == 8u) << commands;
        EXPECT_EQ(commands == 8u, ns->fixed_buffer_fallbacks() == 1u);
      }
      // Read back in one split request...
      auto got = ReadBytes(*ns, off, len, mem);
      EXPECT_EQ(PatternMismatch(got.data(), len, seed), -1);
      // ...and piecewise with FIXED buffers, in requests that straddle the
      // command boundaries.
      for (std::size_t pos = 0; pos < len; pos += kFixedSize - 3 * lba) {
        const std::size_t n = std::min(kFixedSize - 3 * lba, len - pos);
        auto part = ReadBytes(*ns, off + pos, n);
        ASSERT_EQ(PatternMismatch(part.data(), n, seed, pos), -1) << "piece at " << pos;
      }
      EXPECT_EQ(ns->queue()->in_flight(), 0u);
      off += 4 * kMiB;
      ++seed;
    }
  }
  // FIXED slices of one registered buffer: a limit below the device's makes a
  // 64 KiB request 4 commands.
  auto ns = Open(Env("RINGLINE_NVME_NS2"), {.max_transfer_bytes = 16 * 1024});
  ASSERT_TRUE(ns);
  EXPECT_EQ(ns->geometry().max_transfer_bytes, 16 * 1024u);
  WritePattern(*ns, 48 * kMiB, kFixedSize, 77);
  EXPECT_EQ(ns->queue()->metrics().admitted.Get(), 4u);
  auto got = ReadBytes(*ns, 48 * kMiB, kFixedSize);
  EXPECT_EQ(PatternMismatch(got.data(), kFixedSize, 77), -1);
  EXPECT_EQ(ns->fixed_buffer_fallbacks(), 0u) << "the slices went FIXED";
}

// Many small commands through a small queue depth: the split waits for places
// (FIFO) and never has more commands in flight than the limit.
TEST_F(NvmeGuestTest, SplitRespectsQueueDepth) {
  auto ns = Open(Env("RINGLINE_NVME_NS2"), {.queue_depth = 3, .max_transfer_bytes = 8 * 1024});
  ASSERT_TRUE(ns);
  const uint64_t off = 40 * kMiB;
  const std::size_t len = 4 * kMiB;  // 512 commands of 8 KiB
  WritePattern(*ns, off, len, 31, false, Mem::kPlain);
  EXPECT_EQ(ns->queue()->metrics().admitted.Get(), 512u);
  EXPECT_LE(ns->queue()->metrics().max_in_flight.Get(), 3u);
  EXPECT_GE(ns->queue()->metrics().max_in_flight.Get(), 2u) << "the commands overlap";
  auto got = ReadBytes(*ns, off, len, Mem::kPlain);
  EXPECT_EQ(PatternMismatch(got.data(), len, 31), -1);
  // Two split requests at once share the places.
  auto both = [](NvmeNamespace* t, Buffer a, Buffer b) -> Task<std::pair<int32_t, int32_t>> {
    auto [ra, rb] = co_await WhenAll(t->Read(40 * kMiB, 1 * kMiB, std::move(a)),
                                     t->Read(41 * kMiB, 1 * kMiB, std::move(b)));
    co_return std::pair<int32_t, int32_t>(ra.res, rb.res);
  };
  auto [a, b] = Run(both(ns.get(), Buffer::Allocate(kMiB), Buffer::Allocate(kMiB)));
  EXPECT_EQ(a, static_cast<int32_t>(1 * kMiB));
  EXPECT_EQ(b, static_cast<int32_t>(1 * kMiB));
  EXPECT_LE(ns->queue()->metrics().max_in_flight.Get(), 3u);
}

// Destroying the task of a split request with commands in flight: the
// queue-depth places are returned at once, the buffer only after the kernel's
// last completion.
TEST_F(NvmeGuestTest, AbortingASplitRequestReleasesEverythingAfterTheKernel) {
  auto ns = Open(Env("RINGLINE_NVME_NS1"), {.queue_depth = 4, .max_transfer_bytes = 4096});
  ASSERT_TRUE(ns);
  const uint32_t total = pool_->available();
  // 16 commands, 4 admitted at a time.
  JoinHandle<BlockResult> h = Spawn(ns->Read(48 * kMiB, kFixedSize, Acquire()));
  // One loop turn runs the spawned task (it queues its first 4 SQEs); then
  // hand them to the kernel without dispatching any completion.
  worker_->BlockOn([]() -> Task<int> { co_return 0; }());
  ASSERT_EQ(ns->queue()->in_flight(), 4u);
  worker_->internals().ring().SubmitAndWait(0, -1);
  h.Abort();
  EXPECT_EQ(ns->queue()->in_flight(), 0u) << "places are returned on abort";
  EXPECT_EQ(pool_->available(), total - 1) << "the kernel may still write into the buffer";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (pool_->available() != total && std::chrono::steady_clock::now() < deadline) {
    worker_->BlockOn(SleepTask(std::chrono::milliseconds(1)));
  }
  EXPECT_EQ(pool_->available(), total) << "the buffer returns once the kernel is done";
  // The namespace still works.
  WritePattern(*ns, 48 * kMiB, kFixedSize, 3);
}

TEST_F(NvmeGuestTest, ReadPastTheEndGivesTheNamedNvmeError) {
  OpenBoth();
  for (NvmeNamespace* ns : {ns1_.get(), ns2_.get()}) {
    SCOPED_TRACE(ns->name());
    const uint32_t lba = ns->geometry().logical_block_size;
    const uint64_t nsze = ns->namespace_info().size_lbas;
    // Through the Target API the range is checked before the kernel.
    BlockResult r = Run(ns->Read(ns->geometry().size_bytes, lba, Acquire()));
    EXPECT_EQ(r.res, -EINVAL);
    EXPECT_NE(r.status.message().find("beyond the end"), std::string::npos) << r.status;
    EXPECT_TRUE(r.buffer);
    // A raw NVMe Read of the LBA after the last one: the controller answers.
    NvmeIoCommand cmd{.opcode = 0x02,
                      .cdw10 = static_cast<uint32_t>(nsze),
                      .cdw11 = static_cast<uint32_t>(nsze >> 32),
                      .cdw12 = 0,  // 1 LBA
                      .data_len = lba};
    NvmeCommandResult c = Run(ns->Passthrough(cmd, Acquire()));
    std::printf("%s: read of LBA %llu: NVMe status 0x%x: %s\n", ns->name().c_str(),
                static_cast<unsigned long long>(nsze), c.nvme_status, c.status.ToString().c_str());
    ASSERT_GT(c.nvme_status, 0) << "the controller's status is kept";
    EXPECT_EQ(c.res, -EINVAL) << "res is a negated errno chosen by the status' meaning";
    EXPECT_EQ(c.error(), EINVAL);
    EXPECT_EQ(NvmeStatusCode(c.nvme_status), kNvmeScLbaOutOfRange);
    EXPECT_TRUE(c.nvme_status == 0x4080 || c.nvme_status == 0x0080) << c.nvme_status;
    EXPECT_EQ(c.status.code(), absl::StatusCode::kOutOfRange);
    EXPECT_NE(c.status.message().find("Generic Command Status / LBA Out of Range"),
              std::string::npos)
        << c.status;
    EXPECT_EQ(NvmeStatusFromStatus(c.status), c.nvme_status);
    EXPECT_TRUE(c.buffer);
    // And the last LBA itself is readable through the same path.
    cmd.cdw10 = static_cast<uint32_t>(nsze - 1);
    cmd.cdw11 = static_cast<uint32_t>((nsze - 1) >> 32);
    c = Run(ns->Passthrough(cmd, Acquire()));
    EXPECT_EQ(c.res, 0) << c.status;
    EXPECT_EQ(c.buffer.size(), lba);
  }
}

TEST_F(NvmeGuestTest, InvalidRequestsAreRefusedBeforeTheKernel) {
  OpenBoth();
  NvmeNamespace& ns = *ns2_;  // 4096-byte LBAs
  const uint64_t submitted = worker_->internals().ring().sqes_submitted();
  BlockResult r = Run(ns.Read(512, 4096, Acquire()));
  EXPECT_EQ(r.res, -EINVAL);
  EXPECT_NE(r.status.message().find("multiples of 4096"), std::string::npos) << r.status;
  r = Run(ns.Read(0, 1000, Acquire()));
  EXPECT_EQ(r.res, -EINVAL);
  EXPECT_NE(r.status.message().find("length 1000 is misaligned"), std::string::npos) << r.status;
  r = Run(ns.WriteZeroes(ns.geometry().size_bytes - 4096, 8192));
  EXPECT_EQ(r.res, -EINVAL);
  EXPECT_NE(r.status.message().find("beyond the end"), std::string::npos) << r.status;
  r = Run(ns.Read(0, 0, Acquire()));
  EXPECT_EQ(r.res, 0) << "an empty read needs no command";
  EXPECT_EQ(worker_->internals().ring().sqes_submitted(), submitted)
      << "nothing reached the kernel";

  auto ro = Open(Env("RINGLINE_NVME_NS2"), {.read_only = true});
  ASSERT_TRUE(ro);
  EXPECT_TRUE(ro->geometry().read_only);
  Buffer b = Acquire();
  FillPattern(b, 4096, 1);
  r = Run(ro->Write(0, std::move(b)));
  EXPECT_EQ(r.res, -EPERM);
  EXPECT_NE(r.status.message().find("read-only"), std::string::npos) << r.status;
  EXPECT_EQ(Run(ro->Discard(0, 4096)).res, -EPERM);
  EXPECT_EQ(Run(ro->WriteZeroes(0, 4096)).res, -EPERM);
  // Reads work on a read-only target.
  r = Run(ro->Read(0, 4096, Acquire()));
  EXPECT_EQ(r.res, 4096) << r.status;
}

TEST_F(NvmeGuestTest, OpenRefusesAControllerAndAcceptsTheBlockDevice) {
  auto ctrl = NvmeNamespace::Open(*worker_, Env("RINGLINE_NVME_CTRL"));
  EXPECT_FALSE(ctrl.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(ctrl.status())) << ctrl.status();
  auto blk = NvmeNamespace::Open(*worker_, Env("RINGLINE_NVME_NS1_BLOCK"));
  ASSERT_TRUE(blk.ok()) << blk.status();
  EXPECT_EQ((*blk)->name(), Env("RINGLINE_NVME_NS1")) << "the generic device is used";
}

// Last: the pattern the host checks in ns1's image after the guest exits.
TEST_F(NvmeGuestTest, WritesTheHostCheckedPattern) {
  OpenBoth();
  constexpr uint64_t kOffset = 1 * kMiB;
  constexpr std::size_t kLength = 64 * kKiB;
  constexpr uint64_t kSeed = 17;
  WritePattern(*ns1_, kOffset, kLength, kSeed, /*fua=*/true);
  BlockResult f = Run(ns1_->Flush());
  ASSERT_EQ(f.res, 0) << f.status;
  const auto got = ReadBytes(*ns1_, kOffset, kLength);
  ASSERT_EQ(PatternMismatch(got.data(), kLength, kSeed), -1);
  const std::string results = Env("RINGLINE_RESULTS_DIR");
  ASSERT_FALSE(results.empty());
  std::ofstream expect(results + "/expect", std::ios::app);
  expect << "pattern 1 " << kOffset << " " << kLength << " " << kSeed << "\n";
  ASSERT_TRUE(expect.good());
  std::printf("registered: pattern 1 %llu %zu %llu\n", static_cast<unsigned long long>(kOffset),
              kLength, static_cast<unsigned long long>(kSeed));
}

}  // namespace
}  // namespace ringline::block
