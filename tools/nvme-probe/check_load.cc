#include "check_load.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ringline/sleep.h"
#include "ringline/spawn.h"

namespace ringline::nvme_probe {
namespace {

using SteadyClock = std::chrono::steady_clock;

// xorshift64*: cheap enough to sit between requests without showing up in
// the QD1 latency.
uint64_t NextRandom(uint64_t& s) {
  s ^= s >> 12;
  s ^= s << 25;
  s ^= s >> 27;
  return s * 0x2545F4914F6CDD1DULL;
}
// Uniform in [0, n) without a division.
uint64_t Below(uint64_t r, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(r) * n) >> 64);
}

uint64_t Nanoseconds(SteadyClock::duration d) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
}

enum class Mode { kRandomRead, kWritePattern, kReadVerify };

// State shared by the lanes of one run (all on one thread: no atomics needed
// beyond what Histogram has anyway).
struct Run {
  block::Target* target = nullptr;
  Mode mode = Mode::kRandomRead;
  Region region;
  uint8_t seed = 0;
  const std::vector<uint64_t>* blocks = nullptr;  // write/verify: block indexes
  std::size_t next = 0;                           // next index into *blocks
  SteadyClock::time_point start{};
  SteadyClock::time_point deadline{};  // random reads
  bool stop = false;
  uint64_t ios = 0;
  Histogram latency;
  absl::Status status;
  uint64_t mismatched_blocks = 0;
  std::optional<Mismatch> first_mismatch;

  void Fail(absl::Status st) {
    if (status.ok()) status = std::move(st);
    stop = true;
  }
};

void FillPattern(uint8_t* p, std::size_t n, uint8_t seed, uint64_t offset) {
  // Step the value instead of a modulo per byte.
  unsigned v = PatternByte(seed, offset);
  for (std::size_t i = 0; i < n; ++i) {
    p[i] = static_cast<uint8_t>(v);
    v += 131;
    if (v >= 251) v -= 251;
  }
}

// Compares a block read back with the pattern; records the first difference.
void Compare(Run& run, const uint8_t* p, uint64_t offset) {
  unsigned v = PatternByte(run.seed, offset);
  for (uint32_t i = 0; i < run.region.io_size; ++i) {
    if (p[i] != v) {
      ++run.mismatched_blocks;
      if (!run.first_mismatch.has_value() || offset + i < run.first_mismatch->offset) {
        run.first_mismatch = Mismatch{offset + i, static_cast<uint8_t>(v), p[i]};
      }
      return;
    }
    v += 131;
    if (v >= 251) v -= 251;
  }
}

// One request slot: takes the next request, issues it with its buffer, waits,
// records, repeats. The buffer comes back in every result.
Task<> Lane(Run* run, Buffer buf, uint64_t rng) {
  rng |= 1;
  const uint32_t size = run->region.io_size;
  while (!run->stop) {
    uint64_t block;
    if (run->mode == Mode::kRandomRead) {
      block = Below(NextRandom(rng), run->region.blocks());
    } else {
      if (run->next == run->blocks->size()) break;
      block = (*run->blocks)[run->next++];
    }
    const uint64_t offset = run->region.offset + block * size;
    const SteadyClock::time_point t0 = SteadyClock::now();
    block::BlockResult r;
    if (run->mode == Mode::kWritePattern) {
      FillPattern(buf.data(), size, run->seed, offset);
      buf.set_size(size);
      r = co_await run->target->Write(offset, std::move(buf));
    } else {
      r = co_await run->target->Read(offset, size, std::move(buf));
    }
    const SteadyClock::time_point t1 = SteadyClock::now();
    buf = std::move(r.buffer);
    if (!r.ok()) {
      run->Fail(r.status.ok() ? absl::InternalError(absl::StrCat("request failed: ", r.res))
                              : r.status);
      break;
    }
    if (static_cast<uint32_t>(r.res) != size) {
      run->Fail(absl::DataLossError(
          absl::StrCat("short transfer at offset ", offset, ": ", r.res, " of ", size, " bytes")));
      break;
    }
    ++run->ios;
    run->latency.Record(Nanoseconds(t1 - t0));
    if (run->mode == Mode::kReadVerify) Compare(*run, buf.data(), offset);
    if (run->mode == Mode::kRandomRead && t1 >= run->deadline) run->stop = true;
  }
}

// Calls `progress` every 100 ms until aborted by the caller.
Task<> Ticker(const Run* run, ProgressFn progress, double total_seconds) {
  for (;;) {
    co_await Sleep(std::chrono::milliseconds(100));
    double fraction;
    if (run->mode == Mode::kRandomRead) {
      fraction =
          std::chrono::duration<double>(SteadyClock::now() - run->start).count() / total_seconds;
    } else {
      fraction = static_cast<double>(run->ios) / static_cast<double>(run->blocks->size());
    }
    progress(std::min(fraction, 1.0), run->ios);
  }
}

// Runs `queue_depth` lanes over `run` to the end and returns what they did.
Task<LoadResult> Drive(Run& run, BufferPool& pool, uint32_t queue_depth, uint64_t seed,
                       const ProgressFn& progress, double seconds) {
  std::mt19937_64 seeder(seed);
  std::vector<Buffer> buffers;
  for (uint32_t i = 0; i < queue_depth; ++i) {
    Buffer b = pool.TryAcquire();
    if (b.capacity() < run.region.io_size) {
      co_return LoadResult{.status = absl::InternalError(
                               absl::StrCat("buffer pool has fewer than ", queue_depth,
                                            " free buffers of ", run.region.io_size, " bytes"))};
    }
    buffers.push_back(std::move(b));
  }
  run.start = SteadyClock::now();
  run.deadline = run.start + std::chrono::duration_cast<SteadyClock::duration>(
                                 std::chrono::duration<double>(seconds));
  JoinHandle<void> ticker;
  if (progress) ticker = Spawn(Ticker(&run, progress, seconds));
  std::vector<JoinHandle<void>> lanes;
  for (uint32_t i = 0; i < queue_depth; ++i) {
    lanes.push_back(Spawn(Lane(&run, std::move(buffers[i]), seeder())));
  }
  for (auto& lane : lanes) co_await lane;
  const double elapsed = std::chrono::duration<double>(SteadyClock::now() - run.start).count();
  // The ticker only sleeps between calls; destroying it cancels its timer.
  ticker.Abort();
  if (progress) progress(1.0, run.ios);
  co_return LoadResult{
      .ios = run.ios, .seconds = elapsed, .latency_ns = run.latency.Read(), .status = run.status};
}

}  // namespace

uint8_t PatternByte(uint8_t seed, uint64_t offset) {
  return static_cast<uint8_t>((seed + (offset % 251) * 131) % 251);
}

Task<LoadResult> RandomReads(block::Target& target, BufferPool& pool, Region region,
                             uint32_t queue_depth, double seconds, uint64_t seed,
                             ProgressFn progress) {
  Run run;
  run.target = &target;
  run.mode = Mode::kRandomRead;
  run.region = region;
  co_return co_await Drive(run, pool, queue_depth, seed, progress, seconds);
}

Task<VerifyResult> WriteVerify(block::Target& target, BufferPool& pool, Region region,
                               uint32_t queue_depth, uint64_t max_blocks, uint8_t seed,
                               uint64_t shuffle_seed, ProgressFn progress) {
  VerifyResult result;
  result.seed = seed;
  // Distinct blocks, in random order: the whole region when it is small, else
  // a random sample spread over it (so high offsets are exercised too).
  std::mt19937_64 rng(shuffle_seed);
  const uint64_t total = region.blocks();
  std::vector<uint64_t> blocks;
  if (total <= max_blocks) {
    blocks.resize(total);
    for (uint64_t i = 0; i < total; ++i) blocks[i] = i;
  } else {
    std::unordered_set<uint64_t> chosen;
    while (chosen.size() < max_blocks) chosen.insert(Below(rng(), total));
    blocks.assign(chosen.begin(), chosen.end());
  }
  std::shuffle(blocks.begin(), blocks.end(), rng);
  result.blocks = blocks.size();

  // Half of the bar for writing, half for reading back.
  auto half = [&progress](double base) -> ProgressFn {
    if (!progress) return nullptr;
    return [&progress, base](double f, uint64_t ios) { progress(base + f / 2, ios); };
  };
  // The write and the read-back visit the same blocks with the same pattern.
  auto run_of = [&](Mode mode) {
    return Run{.target = &target, .mode = mode, .region = region, .seed = seed, .blocks = &blocks};
  };
  Run write = run_of(Mode::kWritePattern);
  result.writes = co_await Drive(write, pool, queue_depth, rng(), half(0.0), 0);
  if (!result.writes.status.ok()) co_return result;

  // Flush before reading back: it proves the flush path (fdatasync, NVMe
  // Flush) works too, and leaves the pattern durable for whoever checks the
  // medium afterwards (the QEMU harness reads the namespace image).
  block::BlockResult flushed = co_await target.Flush();
  if (!flushed.ok()) {
    result.flush = flushed.status.ok() ? absl::InternalError("flush failed") : flushed.status;
    co_return result;
  }

  Run read = run_of(Mode::kReadVerify);
  result.reads = co_await Drive(read, pool, queue_depth, rng(), half(0.5), 0);
  result.mismatched_blocks = read.mismatched_blocks;
  result.first_mismatch = read.first_mismatch;
  co_return result;
}

}  // namespace ringline::nvme_probe
