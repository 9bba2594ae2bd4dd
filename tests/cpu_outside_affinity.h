#pragma once
// For tests of CPU options (blockserve --cpus, ringline-blockbench --cpus): a
// CPU this process may not run on, to check that it is refused.

#include <sched.h>

// The highest CPU number below CPU_SETSIZE that is not in this thread's
// affinity (sched_getaffinity), or -1 when every one is (or the call fails).
inline int CpuOutsideAffinity() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
  for (int cpu = CPU_SETSIZE - 1; cpu >= 0; --cpu) {
    if (!CPU_ISSET(cpu, &set)) return cpu;
  }
  return -1;
}
