#include "ringline/config.h"

#include <sched.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace ringline {
namespace {

absl::Status Bad(absl::string_view field, const std::string& value, absl::string_view allowed) {
  return absl::InvalidArgumentError(
      absl::StrCat("config.", field, " = ", value, " is invalid: ", allowed));
}
bool PowerOfTwo(uint64_t v) { return v && !(v & (v - 1)); }

}  // namespace

std::vector<int> AllowedCpus() {
  std::vector<int> out;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) out.push_back(c);
    }
  }
  if (out.empty()) {
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    for (long c = 0; c < (online > 0 ? online : 1); ++c) out.push_back(static_cast<int>(c));
  }
  return out;
}

absl::Status Config::Validate() const {
  const long cpus_online = sysconf(_SC_NPROCESSORS_ONLN);
  if (workers > 1024)
    return Bad("workers", absl::StrCat(workers), "allowed range is [0, 1024] (0 = one per CPU)");
  for (std::size_t i = 0; i < cpus.size(); ++i) {
    if (cpus[i] < 0 || cpus[i] >= cpus_online) {
      return absl::InvalidArgumentError(absl::StrCat("config.cpus[", i, "] = ", cpus[i],
                                                     " is invalid: allowed range is [0, ",
                                                     cpus_online - 1, "] (CPUs online)"));
    }
  }
  if (ring.sq_entries < 8 || ring.sq_entries > 32768 || !PowerOfTwo(ring.sq_entries)) {
    return Bad("ring.sq_entries", absl::StrCat(ring.sq_entries),
               "must be a power of two in [8, 32768]");
  }
  if (ring.cq_entries <= ring.sq_entries || ring.cq_entries > 65536 ||
      !PowerOfTwo(ring.cq_entries)) {
    return Bad("ring.cq_entries", absl::StrCat(ring.cq_entries),
               absl::StrCat("must be a power of two larger than ring.sq_entries (", ring.sq_entries,
                            ") and at most 65536"));
  }
  if (ring.fixed_files < 16 || ring.fixed_files > (1u << 20)) {
    return Bad("ring.fixed_files", absl::StrCat(ring.fixed_files),
               "allowed range is [16, 1048576]");
  }
  if (ring.direct_alloc_files >= ring.fixed_files) {
    return Bad("ring.direct_alloc_files", absl::StrCat(ring.direct_alloc_files),
               absl::StrCat("must be smaller than ring.fixed_files (", ring.fixed_files, ")"));
  }
  if (ring.registered_buffers > 16384) {
    return Bad("ring.registered_buffers", absl::StrCat(ring.registered_buffers),
               "allowed range is [0, 16384]");
  }
  if (ring.sqpoll_cpu >= cpus_online) {
    return absl::InvalidArgumentError(absl::StrCat("config.ring.sqpoll_cpu = ", ring.sqpoll_cpu,
                                                   " is invalid: allowed range is [-1, ",
                                                   cpus_online - 1, "]"));
  }
  if (op_slots < 1 || op_slots > (1u << 24)) {
    return Bad("op_slots", absl::StrCat(op_slots), "allowed range is [1, 16777216]");
  }
  if (message_queue_capacity < 1 || message_queue_capacity > (1u << 20)) {
    return Bad("message_queue_capacity", absl::StrCat(message_queue_capacity),
               "allowed range is [1, 1048576]");
  }
  if (wait_batch_max < 1 || wait_batch_max > 256) {
    return Bad("wait_batch_max", absl::StrCat(wait_batch_max),
               "allowed range is [1, 256] (1 turns completion batching off)");
  }
  if (wait_batch_window.count() < 1 || wait_batch_window.count() > 10000) {
    return Bad("wait_batch_window", absl::StrCat(wait_batch_window.count(), "us"),
               "allowed range is [1us, 10000us]");
  }
  if (tick.count() < 0) {
    return Bad("tick", absl::StrCat(tick.count(), "ms"),
               "must not be negative (0 disables the tick)");
  }
  if (shutdown_grace.count() < 0) {
    return Bad("shutdown_grace", absl::StrCat(shutdown_grace.count(), "ms"),
               "must not be negative");
  }
  return absl::OkStatus();
}

}  // namespace ringline
