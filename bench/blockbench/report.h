#pragma once
// The report of a blockbench run: JSON (--output-format=json) or text.
//
// JSON keys (all numbers; latencies in nanoseconds, completion latency as seen
// by the caller of Target::Read/Write):
//   iops, bw_bytes, ios, elapsed_s, errors,
//   lat_ns {min, mean, max, p50, p90, p99, p99.9},
//   read / write {ios, iops, bw_bytes, lat_ns {...}},
//   cpu_user_s, cpu_sys_s, cpu_s_per_million_ios (whole process, during the run),
//   jobs [{job, cpu, target, completion_cpus, polled, ios, errors, elapsed_s}],
//   placement {device, worker_cpus, summary, warnings}, options {...}.

#include <sys/resource.h>

#include <string>
#include <vector>

#include "job.h"
#include "options.h"
#include "ringline/block/placement.h"

namespace ringline::blockbench {

// `device`: the target's completion placement; `workers`: the CPUs chosen for
// the jobs' workers and why.
std::string RenderReport(const BenchOptions& options, const std::vector<JobResult>& jobs,
                         const rusage& cpu_start, const rusage& cpu_end,
                         const block::CompletionPlacement& device,
                         const block::WorkerPlacement& workers);

}  // namespace ringline::blockbench
