#include "ringline/probe.h"

#include <liburing.h>
#include <sys/resource.h>
#include <sys/utsname.h>

#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ringline/io_result.h"

namespace ringline {
namespace {

struct FlagSpec {
  const char* name;
  uint32_t flags;
  const char* needs;
};
constexpr FlagSpec kFlags[] = {
    {"SQE128|CQE32", IORING_SETUP_SQE128 | IORING_SETUP_CQE32, "Linux 5.19"},
    {"SINGLE_ISSUER", IORING_SETUP_SINGLE_ISSUER, "Linux 6.0"},
    {"DEFER_TASKRUN", IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "Linux 6.1"},
    {"SQPOLL", IORING_SETUP_SQPOLL, "Linux 5.11 (unprivileged)"},
    {"IOPOLL", IORING_SETUP_IOPOLL, "Linux 5.1"},
};
// SQPOLL and IOPOLL are optional modes; the rest are required.
bool FlagRequired(const std::string& name) { return name != "SQPOLL" && name != "IOPOLL"; }

struct OpSpec {
  const char* name;
  int op;
  bool required;
  const char* needs;
};
constexpr OpSpec kOps[] = {
    {"NOP", IORING_OP_NOP, true, "Linux 5.1"},
    {"READ", IORING_OP_READ, true, "Linux 5.6"},
    {"WRITE", IORING_OP_WRITE, true, "Linux 5.6"},
    {"READ_FIXED", IORING_OP_READ_FIXED, true, "Linux 5.1"},
    {"WRITE_FIXED", IORING_OP_WRITE_FIXED, true, "Linux 5.1"},
    {"FSYNC", IORING_OP_FSYNC, true, "Linux 5.1"},
    {"FALLOCATE", IORING_OP_FALLOCATE, true, "Linux 5.6"},
    {"TIMEOUT", IORING_OP_TIMEOUT, true, "Linux 5.4"},
    {"ASYNC_CANCEL", IORING_OP_ASYNC_CANCEL, true, "Linux 5.5"},
    {"ACCEPT", IORING_OP_ACCEPT, true, "Linux 5.5 (multishot 5.19)"},
    {"CONNECT", IORING_OP_CONNECT, true, "Linux 5.5"},
    {"RECV", IORING_OP_RECV, true, "Linux 5.6 (multishot 6.0)"},
    {"SEND", IORING_OP_SEND, true, "Linux 5.6"},
    {"RECVMSG", IORING_OP_RECVMSG, true, "Linux 5.3"},
    {"SENDMSG", IORING_OP_SENDMSG, true, "Linux 5.3"},
    {"SEND_ZC", IORING_OP_SEND_ZC, true, "Linux 6.0"},
    {"SENDMSG_ZC", IORING_OP_SENDMSG_ZC, true, "Linux 6.1"},
    {"SHUTDOWN", IORING_OP_SHUTDOWN, true, "Linux 5.11"},
    {"CLOSE", IORING_OP_CLOSE, true, "Linux 5.6 (direct descriptors 5.15)"},
    {"URING_CMD", IORING_OP_URING_CMD, false, "Linux 5.19 (NVMe passthrough)"},
};

std::string ReadFirstLine(const char* path) {
  std::ifstream f(path);
  std::string line;
  if (f) std::getline(f, line);
  return line;
}

bool HasCapIpcLock() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("CapEff:", 0) == 0) {
      unsigned long long caps = std::strtoull(line.c_str() + 7, nullptr, 16);
      return caps & (1ull << 14);  // CAP_IPC_LOCK
    }
  }
  return false;
}

}  // namespace

KernelVersion ParseKernelVersion(const std::string& release) {
  KernelVersion v;
  v.release = release;
  std::sscanf(release.c_str(), "%d.%d.%d", &v.major, &v.minor, &v.patch);
  return v;
}

FeatureReport ProbeKernel() {
  FeatureReport r;
  utsname u{};
  uname(&u);
  r.kernel = ParseKernelVersion(u.release);
  const std::string disabled = ReadFirstLine("/proc/sys/kernel/io_uring_disabled");
  r.io_uring_disabled = disabled.empty() ? 0 : std::atoi(disabled.c_str());

  io_uring ring;
  int ret = io_uring_queue_init(8, &ring, 0);
  if (ret < 0) {
    r.setup_permitted = false;
    r.setup_error = ErrnoToStatus(ret, "io_uring_setup").ToString();
  } else {
    r.setup_permitted = true;
    io_uring_probe* probe = io_uring_get_probe_ring(&ring);
    for (const OpSpec& op : kOps) {
      const bool ok = probe && io_uring_opcode_supported(probe, op.op);
      r.opcodes.push_back({op.name, op.op, ok, op.required, op.needs});
    }
    if (probe) io_uring_free_probe(probe);
    io_uring_queue_exit(&ring);
  }
  for (const FlagSpec& f : kFlags) {
    bool ok = false;
    if (r.setup_permitted) {
      io_uring t;
      io_uring_params p{};
      p.flags = f.flags;
      if (f.flags & IORING_SETUP_SQPOLL) p.sq_thread_idle = 10;
      ok = io_uring_queue_init_params(8, &t, &p) == 0;
      if (ok) io_uring_queue_exit(&t);
    }
    r.setup_flags.push_back({f.name, ok, f.needs, FlagRequired(f.name)});
  }
  rlimit rl{};
  getrlimit(RLIMIT_MEMLOCK, &rl);
  r.memlock_soft = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : rl.rlim_cur;
  r.memlock_hard = rl.rlim_max == RLIM_INFINITY ? UINT64_MAX : rl.rlim_max;
  r.cap_ipc_lock = HasCapIpcLock();
  return r;
}

std::vector<std::string> FeatureReport::Problems() const {
  std::vector<std::string> out;
  if (!kernel.AtLeast(kMinKernelMajor, kMinKernelMinor)) {
    out.push_back(absl::StrCat("kernel ", kernel.release, " is too old: ringline needs Linux ",
                               kMinKernelMajor, ".", kMinKernelMinor, " or newer"));
  }
  if (io_uring_disabled == 2) {
    out.push_back(
        "io_uring is disabled by the kernel.io_uring_disabled sysctl (= 2): set it to 0 "
        "(`sysctl -w kernel.io_uring_disabled=0`)");
  } else if (io_uring_disabled == 1 && !setup_permitted) {
    out.push_back(
        "io_uring is restricted by kernel.io_uring_disabled = 1: add this user to the group "
        "named by kernel.io_uring_group, or set the sysctl to 0");
  }
  if (!setup_permitted) {
    out.push_back(absl::StrCat(
        setup_error,
        ": io_uring_setup is refused; in a container or under seccomp, allow the io_uring_setup, "
        "io_uring_enter and io_uring_register system calls (e.g. docker --security-opt "
        "seccomp=unconfined)"));
    return out;
  }
  for (const auto& f : setup_flags) {
    if (!f.supported && f.required) {
      out.push_back(
          absl::StrCat("io_uring setup flag ", f.name, " is not supported (needs ", f.needs, ")"));
    }
  }
  for (const auto& op : opcodes) {
    if (!op.supported && op.required) {
      out.push_back(
          absl::StrCat("io_uring opcode ", op.name, " is not supported (needs ", op.needs, ")"));
    }
  }
  return out;
}

absl::Status FeatureReport::Verdict() const {
  auto problems = Problems();
  if (problems.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("ringline cannot run here: ", absl::StrJoin(problems, "; ")));
}

absl::Status FeatureReport::CheckRegisteredBuffers(uint64_t bytes) const {
  if (cap_ipc_lock || memlock_soft == UINT64_MAX) return absl::OkStatus();
  // io_uring pins (and charges) whole pages.
  constexpr uint64_t kPage = 4096;
  const uint64_t pages = bytes / kPage + (bytes % kPage != 0 ? 1 : 0);
  if (pages <= memlock_soft / kPage) return absl::OkStatus();
  std::string raise;
  if (memlock_hard == UINT64_MAX || pages <= memlock_hard / kPage) {
    raise = absl::StrCat(
        "raise the soft limit (the hard limit allows it): `ulimit -l ",
        memlock_hard == UINT64_MAX ? std::string("unlimited") : absl::StrCat(memlock_hard / 1024),
        "`, or LimitMEMLOCK= in the systemd unit");
  } else {
    raise =
        "raise the hard limit (LimitMEMLOCK=infinity in the systemd unit, memlock in "
        "/etc/security/limits.conf, or docker --ulimit memlock=-1) or grant CAP_IPC_LOCK";
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("registering ", bytes,
                   " bytes of I/O buffers needs more locked memory than "
                   "RLIMIT_MEMLOCK allows (",
                   memlock_soft, " bytes) and the process lacks CAP_IPC_LOCK: ", raise,
                   "; otherwise the buffers are not registered (plain READ/WRITE instead of the "
                   "_FIXED opcodes)"));
}

absl::Status CheckKernelSupport() {
  static std::once_flag once;
  static absl::Status* verdict;
  std::call_once(once, [] { verdict = new absl::Status(ProbeKernel().Verdict()); });
  return *verdict;
}

}  // namespace ringline
