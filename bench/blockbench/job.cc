#include "job.h"

#include <pthread.h>
#include <sched.h>

#include <memory>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ringline/block/direct_file.h"
#include "ringline/block/nvme_namespace.h"
#include "ringline/block/open.h"
#include "ringline/buffer_pool.h"
#include "ringline/sleep.h"
#include "ringline/spawn.h"

namespace ringline::blockbench {
namespace {

using Clock = std::chrono::steady_clock;

// xorshift64*: fast, good enough for choosing offsets.
inline uint64_t NextRandom(uint64_t& s) {
  s ^= s >> 12;
  s ^= s << 25;
  s ^= s >> 27;
  return s * 0x2545F4914F6CDD1DULL;
}
// Uniform in [0, n) without a division.
inline uint64_t Below(uint64_t r, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(r) * n) >> 64);
}

struct JobState {
  block::Target* target = nullptr;
  JobResult* result = nullptr;
  RwMode mode = RwMode::kRandRead;
  uint32_t bs = 0;
  uint32_t rwmixread = 50;
  uint64_t nblocks = 0;
  uint64_t seq_next = 0;
  uint64_t budget = 0;  // requests to issue; 0 = unlimited
  uint64_t issued = 0;
  bool has_deadline = false;
  Clock::time_point deadline{};
  bool stop = false;
};

// One request slot: issues a request, waits for it, records it, repeats. The
// buffer goes to the target with each request and comes back in the result.
Task<> Lane(JobState* s, Buffer buf, uint64_t seed) {
  uint64_t rng = seed | 1;
  const uint32_t bs = s->bs;
  while (!s->stop) {
    if (s->budget != 0 && s->issued >= s->budget) break;
    ++s->issued;
    uint64_t block;
    bool read;
    switch (s->mode) {
      case RwMode::kRandRead:
      case RwMode::kRandWrite:
      case RwMode::kRandRw:
        block = Below(NextRandom(rng), s->nblocks);
        read = s->mode == RwMode::kRandRead ||
               (s->mode == RwMode::kRandRw && Below(NextRandom(rng), 100) < s->rwmixread);
        break;
      default:
        block = s->seq_next;
        if (++s->seq_next == s->nblocks) s->seq_next = 0;
        read = s->mode == RwMode::kRead;
        break;
    }
    const uint64_t offset = block * bs;
    const Clock::time_point t0 = Clock::now();
    block::BlockResult r;
    if (read) {
      r = co_await s->target->Read(offset, bs, std::move(buf));
    } else {
      buf.set_size(bs);
      r = co_await s->target->Write(offset, std::move(buf));
    }
    const Clock::time_point t1 = Clock::now();
    buf = std::move(r.buffer);
    if (!r.ok()) [[unlikely]] {
      ++s->result->errors;
      if (s->result->status.ok()) s->result->status = r.status;
      s->stop = true;
      break;
    }
    const int d = read ? 0 : 1;
    ++s->result->ios[d];
    s->result->bytes[d] += bs;
    s->result->lat[d].Record(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
    if (s->has_deadline && t1 >= s->deadline) s->stop = true;
  }
}

double CpuSeconds(const rusage& u) {
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

const char* KindOf(const block::Target& t) {
  if (auto* f = dynamic_cast<const block::DirectFile*>(&t)) {
    return f->is_block_device() ? "block device (O_DIRECT)" : "file (O_DIRECT)";
  }
  if (dynamic_cast<const block::NvmeNamespace*>(&t)) return "NVMe namespace (passthrough)";
  return "other";
}

}  // namespace

void StartGate::Ready(bool ok) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++ready_;
    if (!ok) failed_ = true;
  }
  cv_.notify_all();
}

bool StartGate::WaitReadyAndGo() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return ready_ == jobs_; });
  if (failed_) {
    abort_.store(true, std::memory_order_release);
    go_.store(true, std::memory_order_release);
    return false;
  }
  getrusage(RUSAGE_SELF, &start_);
  go_.store(true, std::memory_order_release);
  return true;
}

void StartGate::Finished() {
  if (finished_.fetch_add(1) + 1 == jobs_) getrusage(RUSAGE_SELF, &end_);
}

Task<> RunJob(Worker& worker, const BenchOptions& o, JobResult* result, StartGate* gate) {
  result->cpu = sched_getcpu();
  // Named so that top -H and scripts/bench-block.sh tell the worker from the
  // main thread (at most 15 characters).
  pthread_setname_np(pthread_self(),
                     absl::StrCat("blockbench-w", worker.index()).substr(0, 15).c_str());
  auto fail = [&](absl::Status st) {
    result->status = std::move(st);
    gate->Ready(false);
    worker.RequestStop();
  };
  auto opened = block::OpenTarget(worker, o.filename,
                                  {.read_only = !o.writes(),
                                   .queue_depth = o.iodepth,
                                   .latency_histograms = false,
                                   .map_memory_files = o.map_memory_files,
                                   .max_offloaded_copies = o.offload,
                                   .submit_batch = o.iodepth_batch_submit,
                                   .polled = o.hipri});
  if (!opened.ok()) {
    fail(opened.status());
    co_return;
  }
  std::unique_ptr<block::Target> target = std::move(*opened);
  const block::Geometry& g = target->geometry();
  result->target_kind = KindOf(*target);
  result->completion_cpus = g.completion_cpus;
  if (auto* ns = dynamic_cast<block::NvmeNamespace*>(target.get())) result->polled = ns->polled();
  auto* file = dynamic_cast<block::DirectFile*>(target.get());
  result->max_offloaded = file ? file->max_offloaded_copies() : 0;
  result->offload_threads = file ? file->offload_threads() : 0;
  const uint64_t region = o.size ? o.size : g.size_bytes;
  if (o.bs % g.logical_block_size != 0) {
    fail(absl::InvalidArgumentError(absl::StrCat("--bs=", o.bs, " is not a multiple of the ",
                                                 g.logical_block_size, "-byte block size of ",
                                                 o.filename)));
    co_return;
  }
  if (region > g.size_bytes || region < o.bs) {
    fail(absl::InvalidArgumentError(absl::StrCat("--size=", region, " does not fit ", o.filename,
                                                 " (", g.size_bytes, " bytes) or is below --bs")));
    co_return;
  }
  auto pool_or = BufferPool::Create(worker, {.buffer_size = o.bs, .count = o.iodepth});
  if (!pool_or.ok()) {
    fail(pool_or.status());
    co_return;
  }
  std::unique_ptr<BufferPool> pool = std::move(*pool_or);
  std::vector<Buffer> buffers;
  std::mt19937_64 seeder(0x5eed0000u + worker.index());
  for (uint32_t i = 0; i < o.iodepth; ++i) {
    Buffer b = pool->TryAcquire();
    // Writes carry random bytes (filled once, like fio without refill_buffers).
    for (std::size_t k = 0; k + 8 <= b.capacity(); k += 8) {
      const uint64_t v = seeder();
      __builtin_memcpy(b.data() + k, &v, 8);
    }
    buffers.push_back(std::move(b));
  }

  JobState s;
  s.target = target.get();
  s.result = result;
  s.mode = o.rw;
  s.bs = o.bs;
  s.rwmixread = o.rwmixread;
  s.nblocks = region / o.bs;
  if (!o.time_based) s.budget = s.nblocks;  // one pass over --size, like fio
  s.has_deadline = o.runtime_s > 0;

  gate->Ready(true);
  while (!gate->go()) co_await Sleep(std::chrono::milliseconds(1));
  if (gate->aborted()) {
    worker.RequestStop();
    co_return;
  }

  rusage thread_start{};
  getrusage(RUSAGE_THREAD, &thread_start);
  const Clock::time_point start = Clock::now();
  s.deadline = start + std::chrono::duration_cast<Clock::duration>(
                           std::chrono::duration<double>(o.runtime_s));
  std::vector<JoinHandle<void>> lanes;
  for (uint32_t i = 0; i < o.iodepth; ++i) {
    lanes.push_back(Spawn(Lane(&s, std::move(buffers[i]), seeder())));
  }
  for (auto& h : lanes) co_await h;
  result->elapsed_s = std::chrono::duration<double>(Clock::now() - start).count();
  rusage thread_end{};
  getrusage(RUSAGE_THREAD, &thread_end);
  result->worker_cpu_s = CpuSeconds(thread_end) - CpuSeconds(thread_start);
  if (file) {
    result->offloaded_ios = file->offloaded_requests();
    result->mapped_ios = file->memory_mapped_copies();
  }
  gate->Finished();

  lanes.clear();
  target.reset();
  pool.reset();
  worker.RequestStop();
}

}  // namespace ringline::blockbench
