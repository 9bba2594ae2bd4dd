#include "report.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace ringline::blockbench {
namespace {

double Seconds(const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; }

nlohmann::ordered_json Latency(const LatencyHistogram& h) {
  nlohmann::ordered_json j;
  j["min"] = h.min();
  j["mean"] = h.mean();
  j["max"] = h.max();
  j["p50"] = h.Quantile(0.50);
  j["p90"] = h.Quantile(0.90);
  j["p99"] = h.Quantile(0.99);
  j["p99.9"] = h.Quantile(0.999);
  return j;
}

std::string Human(double bytes_per_s) {
  if (bytes_per_s >= 1e9) return absl::StrFormat("%.2f GB/s", bytes_per_s / 1e9);
  if (bytes_per_s >= 1e6) return absl::StrFormat("%.1f MB/s", bytes_per_s / 1e6);
  return absl::StrFormat("%.1f kB/s", bytes_per_s / 1e3);
}

}  // namespace

std::string RenderReport(const BenchOptions& o, const std::vector<JobResult>& jobs,
                         const rusage& cpu_start, const rusage& cpu_end,
                         const block::CompletionPlacement& device,
                         const block::WorkerPlacement& workers) {
  LatencyHistogram lat[2], all;
  uint64_t ios[2] = {0, 0}, bytes[2] = {0, 0}, errors = 0;
  double elapsed = 0;
  for (const JobResult& j : jobs) {
    for (int d = 0; d < 2; ++d) {
      lat[d].Merge(j.lat[d]);
      all.Merge(j.lat[d]);
      ios[d] += j.ios[d];
      bytes[d] += j.bytes[d];
    }
    errors += j.errors;
    elapsed = std::max(elapsed, j.elapsed_s);
  }
  const uint64_t total = ios[0] + ios[1];
  const double user = Seconds(cpu_end.ru_utime) - Seconds(cpu_start.ru_utime);
  const double sys = Seconds(cpu_end.ru_stime) - Seconds(cpu_start.ru_stime);
  const double per_s = elapsed > 0 ? 1.0 / elapsed : 0;
  const double cpu_per_m = total ? (user + sys) / static_cast<double>(total) * 1e6 : 0;

  if (o.json) {
    nlohmann::ordered_json j;
    j["tool"] = "ringline-blockbench";
    j["options"] = {{"filename", o.filename},
                    {"rw", RwModeName(o.rw)},
                    {"bs", o.bs},
                    {"iodepth", o.iodepth},
                    {"runtime_s", o.runtime_s},
                    {"time_based", o.time_based},
                    {"numjobs", o.numjobs},
                    {"size", o.size},
                    {"rwmixread", o.rwmixread},
                    {"cpus", o.cpus},
                    {"iodepth_batch_submit", o.iodepth_batch_submit},
                    {"offload", o.offload},
                    {"map_memory_files", o.map_memory_files}};
    j["elapsed_s"] = elapsed;
    j["ios"] = total;
    j["iops"] = static_cast<double>(total) * per_s;
    j["bw_bytes"] = static_cast<double>(bytes[0] + bytes[1]) * per_s;
    j["errors"] = errors;
    j["lat_ns"] = Latency(all);
    const char* names[2] = {"read", "write"};
    for (int d = 0; d < 2; ++d) {
      j[names[d]] = {{"ios", ios[d]},
                     {"iops", static_cast<double>(ios[d]) * per_s},
                     {"bw_bytes", static_cast<double>(bytes[d]) * per_s},
                     {"lat_ns", Latency(lat[d])}};
    }
    j["cpu_user_s"] = user;
    j["cpu_sys_s"] = sys;
    j["cpu_s_per_million_ios"] = cpu_per_m;
    nlohmann::ordered_json js = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      nlohmann::ordered_json e;
      e["job"] = i;
      e["cpu"] = jobs[i].cpu;
      e["target"] = jobs[i].target_kind;
      e["completion_cpus"] = jobs[i].completion_cpus;
      e["polled"] = jobs[i].polled;
      e["offload"] = jobs[i].max_offloaded;
      e["offload_threads"] = jobs[i].offload_threads;
      e["offloaded_ios"] = jobs[i].offloaded_ios;
      e["mapped_ios"] = jobs[i].mapped_ios;
      e["worker_cpu_s"] = jobs[i].worker_cpu_s;
      e["ios"] = jobs[i].ios[0] + jobs[i].ios[1];
      e["errors"] = jobs[i].errors;
      e["elapsed_s"] = jobs[i].elapsed_s;
      if (!jobs[i].status.ok()) e["error"] = std::string(jobs[i].status.ToString());
      js.push_back(std::move(e));
    }
    j["jobs"] = std::move(js);
    j["placement"] = {{"device", device.Describe()},
                      {"worker_cpus", workers.worker_cpus},
                      {"summary", workers.summary},
                      {"warnings", workers.warnings}};
    return j.dump(2) + "\n";
  }

  std::string out = absl::StrFormat(
      "%s: rw=%s, bs=%u, iodepth=%u, iodepth_batch_submit=%u, numjobs=%u, target=%s\n", o.name,
      RwModeName(o.rw), o.bs, o.iodepth, o.iodepth_batch_submit, o.numjobs,
      jobs.empty() ? "?" : jobs[0].target_kind);
  const char* names[2] = {"read", "write"};
  for (int d = 0; d < 2; ++d) {
    if (ios[d] == 0) continue;
    out += absl::StrFormat(
        "  %-5s: IOPS=%.0f, BW=%s, ios=%u\n"
        "         lat (usec): min=%.1f, mean=%.1f, max=%.1f\n"
        "         lat percentiles (usec): 50th=%.1f, 90th=%.1f, 99th=%.1f, 99.9th=%.1f\n",
        names[d], static_cast<double>(ios[d]) * per_s, Human(static_cast<double>(bytes[d]) * per_s),
        ios[d], lat[d].min() / 1e3, lat[d].mean() / 1e3, lat[d].max() / 1e3,
        lat[d].Quantile(0.5) / 1e3, lat[d].Quantile(0.9) / 1e3, lat[d].Quantile(0.99) / 1e3,
        lat[d].Quantile(0.999) / 1e3);
  }
  out += absl::StrFormat("  cpu: usr=%.3fs, sys=%.3fs, %.3f CPU-s per million I/Os\n", user, sys,
                         cpu_per_m);
  double worker_cpu = 0;
  uint64_t offloaded = 0;
  for (const JobResult& j : jobs) {
    worker_cpu += j.worker_cpu_s;
    offloaded += j.offloaded_ios;
  }
  out += absl::StrFormat("  worker threads: %.3f CPU-s (the rest of the process: %.3f CPU-s)\n",
                         worker_cpu, user + sys - worker_cpu);
  if (o.offload != 0) {
    out += absl::StrFormat(
        "  offload: up to %u of %u requests in io-wq (applied: %u), %.1f%% of "
        "requests went there\n",
        o.offload, o.iodepth, jobs.empty() ? 0 : jobs[0].max_offloaded,
        total ? 100.0 * static_cast<double>(offloaded) / total : 0.0);
  }
  out += "  jobs:";
  for (std::size_t i = 0; i < jobs.size(); ++i) out += absl::StrFormat(" %u@cpu%d", i, jobs[i].cpu);
  out += absl::StrFormat("\n  placement: %s\n  device: %s\n", workers.summary, device.Describe());
  out += absl::StrFormat("  run: %.2fs, errors=%u\n", elapsed, errors);
  return out;
}

}  // namespace ringline::blockbench
