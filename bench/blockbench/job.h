#pragma once
// One blockbench job: on its own worker, opens the target, keeps `iodepth`
// requests in flight (one coroutine "lane" per request slot, each owning one
// registered buffer) until the run time or the byte budget is used up, and
// records per-direction counts and latencies.

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "latency_histogram.h"
#include "options.h"
#include "ringline/task.h"
#include "ringline/worker.h"

namespace ringline::blockbench {

// Start line shared by the jobs and the main thread: jobs set up, report
// ready, wait for `go`, run, and the last to finish samples the process's CPU
// time (before any worker tears down).
class StartGate {
 public:
  explicit StartGate(uint32_t jobs) : jobs_(jobs) {}
  // Job side.
  void Ready(bool ok);
  bool go() const { return go_.load(std::memory_order_acquire); }
  bool aborted() const { return abort_.load(std::memory_order_acquire); }
  void Finished();
  // Main side: waits for every job to be ready; false if one failed (then the
  // others are told to stop). Samples the CPU start time and opens the gate.
  bool WaitReadyAndGo();
  rusage cpu_start() const { return start_; }
  rusage cpu_end() const { return end_; }

 private:
  const uint32_t jobs_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint32_t ready_ = 0;   // guarded by mu_
  bool failed_ = false;  // guarded by mu_
  std::atomic<bool> go_{false};
  std::atomic<bool> abort_{false};
  std::atomic<uint32_t> finished_{0};
  rusage start_{};
  rusage end_{};
};

struct JobResult {
  absl::Status status;       // set-up failure or the first I/O error
  uint64_t ios[2] = {0, 0};  // [0] reads, [1] writes
  uint64_t bytes[2] = {0, 0};
  uint64_t errors = 0;
  LatencyHistogram lat[2];
  double elapsed_s = 0;
  int cpu = -1;  // the CPU the job's worker started on (where it is pinned, if it is)
  std::vector<int> completion_cpus;  // the opened target's Geometry::completion_cpus
  bool polled = false;               // completions polled (--hipri took effect)
  std::string target_kind;           // "file", "block device", ...
  // --offload as it applied to the target (DirectFile::max_offloaded_copies:
  // 0 where its I/O does not complete on the worker's CPU), and the requests
  // that went to io-wq.
  uint32_t max_offloaded = 0;
  uint32_t offload_threads = 0;  // DirectFile::offload_threads
  uint64_t offloaded_ios = 0;
  uint64_t mapped_ios = 0;  // DirectFile::memory_mapped_copies
  // CPU time (user + system) of the job's worker thread during the run; the
  // rest of the process's CPU time is mostly io-wq's (iou-wrk threads).
  double worker_cpu_s = 0;
};

// The job's main task, run on `worker`.
Task<> RunJob(Worker& worker, const BenchOptions& options, JobResult* result, StartGate* gate);

}  // namespace ringline::blockbench
