// ringline-blockbench: a load generator on ringline's block layer with fio's
// option spelling. See options.h for the options and report.h for the output.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "job.h"
#include "options.h"
#include "report.h"
#include "ringline/block/open.h"
#include "ringline/block/placement.h"
#include "ringline/runtime.h"
#include "ringline/worker.h"

namespace ringline::blockbench {
namespace {

// Like fio: a missing (or short) regular file is created and filled with data
// up to --size before the run, so reads hit allocated blocks, not holes.
int LayOut(const BenchOptions& o) {
  struct stat st;
  const bool exists = ::stat(o.filename.c_str(), &st) == 0;
  if (exists && !S_ISREG(st.st_mode)) return 0;
  if (o.size == 0) {
    if (!exists) {
      std::fprintf(stderr, "ringline-blockbench: %s does not exist; give --size to create it\n",
                   o.filename.c_str());
    }
    return exists ? 0 : 1;
  }
  const uint64_t have = exists ? static_cast<uint64_t>(st.st_size) : 0;
  if (have >= o.size) return 0;
  const int fd = ::open(o.filename.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror(("create " + o.filename).c_str());
    return 1;
  }
  std::vector<uint64_t> chunk((1 << 20) / 8);
  std::mt19937_64 rng(42);
  for (uint64_t off = have / (1 << 20) * (1 << 20); off < o.size; off += chunk.size() * 8) {
    for (auto& v : chunk) v = rng();
    const std::size_t n =
        static_cast<std::size_t>(std::min<uint64_t>(chunk.size() * 8, o.size - off));
    if (::pwrite(fd, chunk.data(), n, static_cast<off_t>(off)) != static_cast<ssize_t>(n)) {
      std::perror(("lay out " + o.filename).c_str());
      ::close(fd);
      return 1;
    }
  }
  ::fsync(fd);
  ::close(fd);
  return 0;
}

int Main(int argc, char** argv) {
  auto parsed = ParseOptions(argc, argv);
  if (!parsed.ok()) {
    if (absl::IsCancelled(parsed.status())) {
      std::fputs(std::string(parsed.status().message()).c_str(), stdout);
      return 0;
    }
    std::fprintf(stderr, "ringline-blockbench: %s\n",
                 std::string(parsed.status().message()).c_str());
    return 2;
  }
  const BenchOptions o = *parsed;
  if (absl::Status st =
          block::CheckCpusAllowed(o.cpus, block::AllowedCpus(), "--cpus", "--cpus=LIST");
      !st.ok()) {
    std::fprintf(stderr, "ringline-blockbench: %s\n", std::string(st.message()).c_str());
    return 2;
  }
  if (int rc = LayOut(o); rc != 0) return rc;

  // Each job's worker runs where the target's completions arrive when the
  // configuration allows (docs/architecture.md "Placement"), else one warning
  // per target says what it costs and how to fix it.
  // A job that only writes to a file on a file system runs away from the CPU
  // where the file system completes the writes (PlacedTarget::file_writes).
  const block::CompletionPlacement device = block::ProbeCompletionPlacement(o.filename);
  struct stat target_st;
  const bool file_writes =
      !o.reads() && ::stat(o.filename.c_str(), &target_st) == 0 && S_ISREG(target_st.st_mode);
  block::WorkerPlacement placement = block::PlaceWorkers(
      o.numjobs, block::AllowedCpus(), o.cpus,
      {{.name = o.filename, .placement = device, .file_writes = file_writes}}, "--cpus=LIST");
  for (const std::string& w : placement.warnings) {
    std::fprintf(stderr, "ringline-blockbench: warning: %s\n", w.c_str());
  }

  // Workers are pinned where a CPU is better than another: the CPUs the user
  // chose, or those on which the target's completions arrive. A target with no
  // preference (tmpfs: the copy runs on the submitting thread; a device whose
  // every CPU is local) leaves the worker to the scheduler, like fio without
  // --cpus_allowed: on a shared machine a pinned worker waits behind whatever
  // else runs on its CPU while the other CPU may be idle.
  Config config;
  config.workers = o.numjobs;
  config.cpus = placement.worker_cpus;
  config.pin_workers = !o.cpus.empty() || device.HasPreference();
  if (!config.pin_workers) {
    placement.summary =
        absl::StrCat(o.numjobs == 1 ? "worker 0" : absl::StrCat("workers 0-", o.numjobs - 1),
                     " not pinned: the target has no CPU preference, the scheduler places ",
                     o.numjobs == 1 ? "it" : "them", " (--cpus=LIST pins)");
  }
  uint32_t sq = 256;
  while (sq < o.iodepth && sq < 4096) sq *= 2;
  config.ring.sq_entries = sq;
  config.ring.cq_entries = std::max<uint32_t>(2048, sq * 4);

  std::vector<JobResult> results(o.numjobs);
  StartGate gate(o.numjobs);
  auto rt = Runtime::Start(
      config, [&](Worker& w) -> Task<> { return RunJob(w, o, &results[w.index()], &gate); });
  if (!rt.ok()) {
    std::fprintf(stderr, "ringline-blockbench: %s\n", rt.status().ToString().c_str());
    return 1;
  }
  const bool started = gate.WaitReadyAndGo();
  (*rt)->Join();
  rt->reset();
  if (!started) {
    for (std::size_t i = 0; i < results.size(); ++i) {
      if (!results[i].status.ok()) {
        std::fprintf(stderr, "ringline-blockbench: job %zu: %s\n", i,
                     results[i].status.ToString().c_str());
      }
    }
    return 1;
  }
  const std::string report =
      RenderReport(o, results, gate.cpu_start(), gate.cpu_end(), device, placement);
  if (!o.output.empty()) {
    FILE* f = std::fopen(o.output.c_str(), "w");
    if (!f) {
      std::perror(("open " + o.output).c_str());
      return 1;
    }
    std::fputs(report.c_str(), f);
    std::fclose(f);
  } else {
    std::fputs(report.c_str(), stdout);
  }
  if (o.offload != 0 && !results.empty() && results[0].max_offloaded == 0) {
    std::fprintf(stderr,
                 "ringline-blockbench: warning: --offload=%u had no effect: %s is read and "
                 "written by its device (O_DIRECT or NVMe), not copied on the worker's CPU\n",
                 o.offload, o.filename.c_str());
  }
  int rc = 0;
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (results[i].errors != 0) {
      std::fprintf(stderr, "ringline-blockbench: job %zu: %llu errors, first: %s\n", i,
                   static_cast<unsigned long long>(results[i].errors),
                   results[i].status.ToString().c_str());
      rc = 1;
    }
  }
  return rc;
}

}  // namespace
}  // namespace ringline::blockbench

int main(int argc, char** argv) { return ringline::blockbench::Main(argc, argv); }
