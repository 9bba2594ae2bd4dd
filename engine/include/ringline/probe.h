#pragma once
// Kernel feature probe, run before any worker starts.
//
// It reports what this kernel offers and fails with a message naming what is
// missing and the kernel version or setting that provides it: the kernel
// version, the io_uring_disabled sysctl, EPERM from io_uring_setup (containers,
// seccomp), the setup flags and opcodes the engine needs, and RLIMIT_MEMLOCK.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ringline {

// The oldest kernel the engine runs on (docs/architecture.md "Kernel floor and feature probing").
inline constexpr int kMinKernelMajor = 6;
inline constexpr int kMinKernelMinor = 1;

struct KernelVersion {
  int major = 0, minor = 0, patch = 0;
  std::string release;  // uname -r
  bool AtLeast(int ma, int mi) const { return major > ma || (major == ma && minor >= mi); }
};

struct FeatureReport {
  KernelVersion kernel;
  int io_uring_disabled = 0;  // /proc/sys/kernel/io_uring_disabled, 0 when absent
  bool setup_permitted = false;
  std::string setup_error;  // why io_uring_setup failed, if it did
  struct Flag {
    std::string name;
    bool supported;
    std::string needs;  // kernel version that introduced it
    bool required;      // false for the optional modes (SQPOLL, IOPOLL)
  };
  std::vector<Flag> setup_flags;  // SQE128, CQE32, SINGLE_ISSUER, DEFER_TASKRUN, SQPOLL, IOPOLL
  struct Opcode {
    std::string name;
    int opcode;
    bool supported;
    bool required;
    std::string needs;
  };
  std::vector<Opcode> opcodes;
  uint64_t memlock_soft = 0;  // bytes; UINT64_MAX when unlimited
  uint64_t memlock_hard = 0;
  bool cap_ipc_lock = false;  // registration is not limited by RLIMIT_MEMLOCK

  // OK when the engine can run here; otherwise the first problem, actionable.
  absl::Status Verdict() const;
  // Every problem found (empty when Verdict() is OK).
  std::vector<std::string> Problems() const;

  // Whether registering `bytes` of I/O buffers (all of a process's pools on
  // all its rings) fits the locked-memory budget: always with CAP_IPC_LOCK or
  // an unlimited RLIMIT_MEMLOCK, else when the page-rounded size is within
  // the soft limit. Not part of Verdict(): a BufferPool whose registration is
  // refused falls back to unregistered buffers with a warning. The error
  // (ResourceExhausted) names the limit and how to raise it. The kernel
  // charges registrations per user, so other processes' rings count too.
  absl::Status CheckRegisteredBuffers(uint64_t bytes) const;
};

// Probes this kernel. Never fails; problems are in the report.
FeatureReport ProbeKernel();

// ProbeKernel().Verdict(), computed once per process.
absl::Status CheckKernelSupport();

KernelVersion ParseKernelVersion(const std::string& release);

}  // namespace ringline
