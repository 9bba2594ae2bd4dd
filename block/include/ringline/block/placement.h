#pragma once
// Completion-aware placement: on which CPUs a block device's completions
// arrive, and on which CPUs the workers that use it should therefore run.
//
// blk-mq maps every CPU to one hardware queue (/sys/block/X/mq/N/cpu_list) and
// each interrupt-driven queue raises its interrupt on the CPUs of its IRQ's
// effective affinity (/proc/irq/I/effective_affinity_list). A request
// submitted on CPU c completes in an interrupt on the CPU its queue's IRQ
// targets; when that is not c, the waiting worker is woken from another CPU (an
// inter-processor interrupt and a wake-up, tens of microseconds in a VM) for
// every completion. A CPU is "local" for a device when its queue's interrupt
// arrives on that very CPU. On NVMe with one queue per CPU every CPU is local;
// on a device with fewer queues than CPUs (a virtio disk with one queue, an
// NVMe controller with few I/O queues) only some are.
//
// The probe reads sysfs and procfs under a root directory ("" for the real
// ones) so that tests can feed it a fake tree. It does blocking file I/O: call
// it at open or before starting workers, never on the I/O path. Everything
// here is thread-safe (no shared state).

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace ringline::block {

// CPU numbers, ascending, without duplicates.
using CpuList = std::vector<int>;

// Parses the kernel's CPU list spellings: "0-3,5" (affinity lists), "0, 1"
// (blk-mq cpu_list), "" (empty). nullopt on anything else or a reversed range.
std::optional<CpuList> ParseCpuList(absl::string_view text);
// "0-3,5"; "none" for an empty list.
std::string FormatCpuList(const CpuList& cpus);

// One interrupt-driven hardware queue of a device.
struct CompletionQueue {
  int index = 0;         // N of /sys/block/X/mq/N
  CpuList cpus;          // the CPUs that submit to it (mq/N/cpu_list)
  int irq = -1;          // its interrupt
  std::string irq_name;  // as /proc/interrupts names it: "virtio1-req.0", "nvme0q1"
  CpuList irq_cpus;      // where that interrupt arrives (effective affinity)
};

struct CompletionPlacement {
  enum class Kind : uint8_t {
    // No block device behind the path (tmpfs, another memory filesystem):
    // I/O completes on the submitting thread; every CPU is as good.
    kNoDevice,
    // A block device whose queue interrupts could not be found (a driver
    // not recognised, polled queues only, sysfs or procfs unreadable):
    // no preference, `reason` says why.
    kUnknown,
    // The queues and their interrupts are known.
    kFound,
  };
  Kind kind = Kind::kNoDevice;
  // The whole disk's kernel name ("vda", "nvme0n1"); empty for kNoDevice.
  std::string device;
  // kNoDevice / kUnknown: why there is no preference.
  std::string reason;
  // kFound: the interrupt-driven queues (polled queues have no interrupt and
  // are left out).
  std::vector<CompletionQueue> queues;
  // kFound: the CPUs whose completions arrive on that same CPU.
  CpuList local_cpus;

  // True when some CPU that submits to the device is not local: choosing the
  // CPU then matters.
  bool HasPreference() const;
  // True for a local CPU, and for any CPU when there is no preference.
  bool IsLocal(int cpu) const;
  // local_cpus when HasPreference(), else empty (Geometry::completion_cpus).
  CpuList PreferredCpus() const { return HasPreference() ? local_cpus : CpuList{}; }
  // The IRQs that target `cpu`'s queue (those a fix would move), and the CPUs
  // where they arrive: empty when `cpu` submits to no interrupt-driven queue.
  std::vector<const CompletionQueue*> QueuesOf(int cpu) const;
  // One line for logs and reports: "vda: 1 queue; queue 0 (CPUs 0-1) ->
  // IRQ 36 virtio1-req.0 on CPU 1; local CPUs: 1".
  std::string Describe() const;
};

// "" (the real /sys and /proc) or a directory holding sys/ and proc/ trees.
struct SysRoot {
  std::string dir;
  std::string Sys(absl::string_view rest) const;   // dir + "/sys/" + rest
  std::string Proc(absl::string_view rest) const;  // dir + "/proc/" + rest
};

// The placement of the device behind `path`: a regular file (its
// filesystem's device, the whole disk for a partition), a block device, or an
// NVMe generic char device (/dev/ngXnY: its namespace's queues); a path that
// does not exist yet is a file to be created in its directory. The path is
// stat()ed on the real filesystem; sysfs and procfs are read under `root`.
CompletionPlacement ProbeCompletionPlacement(const std::string& path, const SysRoot& root = {});
// The same for a device number: `block` (a block device, or a file's st_dev)
// or a character device.
CompletionPlacement ProbeCompletionPlacementOfDevice(bool block, unsigned major_num,
                                                     unsigned minor_num, const SysRoot& root = {});
// The same for a block device by kernel name ("vda", "nvme0n1", "sda2").
CompletionPlacement ProbeCompletionPlacementOfDisk(const std::string& kernel_name,
                                                   const SysRoot& root = {});

// ---- choosing worker CPUs --------------------------------------------------

// A target some workers will serve, and its placement.
struct PlacedTarget {
  std::string name;  // for messages: the path or export name
  CompletionPlacement placement;
  // The workers (almost) only write to this target, a file on a file system.
  // Such O_DIRECT writes do not complete in the interrupt: the file system
  // finishes each in a kernel worker thread on the interrupt's CPU
  // (iomap_dio_complete_work), so a worker on that CPU takes turns with it
  // (vda, 4k writes at QD32 from CPU 1: 25k switches a second between the two,
  // 41.6k IOPS; from CPU 0: 59.0k). Such a target prefers the allowed CPUs
  // that are not local to it; reads, and writes to a block device, complete
  // in the interrupt and prefer the local ones.
  bool file_writes = false;
};

struct WorkerPlacement {
  CpuList worker_cpus;  // worker i runs on worker_cpus[i]
  // Set when some worker that serves a target with a preference does not run
  // on one of its local CPUs: one line per such target saying what it costs
  // and how to fix it (`fix_cpus_hint` names the option that chooses CPUs).
  std::vector<std::string> warnings;
  // One line: where each worker runs and why ("worker 0 on CPU 1 (local to
  // vda)").
  std::string summary;
};

// Chooses a CPU for each of `workers` workers, each of which serves every
// target. `allowed`: the CPUs the process may run on (sched_getaffinity);
// `requested`: CPUs the user chose (worker i on requested[i % size]), empty
// to let this choose: the CPUs local to every target first, then the other
// allowed CPUs, one worker per CPU as far as they go. `fix_cpus_hint`: how the
// user chooses CPUs in this program ("--cpus=LIST", "taskset -c LIST"; LIST
// is replaced by the CPUs to choose).
WorkerPlacement PlaceWorkers(uint32_t workers, const CpuList& allowed, const CpuList& requested,
                             const std::vector<PlacedTarget>& targets,
                             absl::string_view fix_cpus_hint);

// The CPUs this thread may run on (sched_getaffinity), ascending.
CpuList AllowedCpus();

// CPUs a user chose (`field`: the option or setting, "--cpus", "cpus") must be
// among `allowed` (AllowedCpus()): OK, or an InvalidArgument error naming
// `field`, the CPUs outside, the allowed ones and the fix (`fix_cpus_hint`
// as for PlaceWorkers, LIST replaced by the allowed CPUs).
absl::Status CheckCpusAllowed(const CpuList& cpus, const CpuList& allowed, absl::string_view field,
                              absl::string_view fix_cpus_hint);

}  // namespace ringline::block
