#pragma once
// Config: everything a runtime needs, with defaults that suit a 2-core machine.
// Validate() names the field, the value and the allowed range of the first bad value.

#include <chrono>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "ringline/internal/ring.h"

namespace ringline {

struct Config {
  // Worker threads; each owns one ring. 0 (the default) means one per CPU this
  // process may run on (sched_getaffinity at Runtime::Start: under taskset or a
  // cgroup cpuset that is fewer than the machine has).
  uint32_t workers = 0;
  // CPUs to pin worker i to (cpus[i % size]); empty means the i-th CPU (mod
  // their number) of those this process may run on.
  std::vector<int> cpus;
  bool pin_workers = true;

  RingOptions ring;

  // Initial operation slots per worker (the slab grows by chunks when needed).
  uint32_t op_slots = 1024;
  // Capacity of each worker's cross-thread message queue.
  uint32_t message_queue_capacity = 4096;
  // Period of the worker tick hook; zero disables it.
  std::chrono::milliseconds tick{0};
  // Completion batching (internal/wait_batching.h): while a worker's wake-ups
  // keep finding completions arriving (clients with many requests in flight),
  // its waits ask the kernel for up to `wait_batch_max` completions at once,
  // for at most `wait_batch_window` each, and so wake it (and the clients it
  // answers in a batch) once per batch. Each worker tries it now and then and
  // keeps it only while it measurably cuts the CPU per byte moved without
  // lowering the rate; a few windows in a row that bring at most one
  // completion (clients that wait for each reply) end it. 1 turns it off:
  // every completion wakes the worker at once.
  uint32_t wait_batch_max = 16;
  std::chrono::microseconds wait_batch_window{50};
  // After a shutdown request, how long tasks may run to wind down (they see the
  // worker's stop token cancelled) before the remaining ones are destroyed. The
  // worker stops earlier as soon as it has no task left. 5 s lets in-flight
  // requests finish on SIGTERM; 0 destroys them at once.
  std::chrono::milliseconds shutdown_grace{5000};

  absl::Status Validate() const;
};

// The CPUs this process may run on (sched_getaffinity), ascending; every online
// CPU if the call fails.
std::vector<int> AllowedCpus();

}  // namespace ringline
