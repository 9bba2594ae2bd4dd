#include "ringline/block/placement.h"

#include <sched.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "sysfs.h"

namespace ringline::block {
namespace {

bool Contains(const CpuList& cpus, int cpu) {
  return std::binary_search(cpus.begin(), cpus.end(), cpu);
}

CpuList Normalized(CpuList cpus) {
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

CpuList Intersection(const CpuList& a, const CpuList& b) {
  CpuList out;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

CpuList Difference(const CpuList& a, const CpuList& b) {
  CpuList out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

std::string Basename(const std::string& path) { return path.substr(path.rfind('/') + 1); }
std::string Dirname(const std::string& path) { return path.substr(0, path.rfind('/')); }

// The IRQ number of every interrupt action name in /proc/interrupts. A line
// is "IRQ: per-CPU counts, chip, hardware IRQ, action names"; the names are
// the last fields (several actions are separated by ", ").
std::map<std::string, int> InterruptsByName(const SysRoot& root) {
  std::map<std::string, int> out;
  auto text = ReadWholeFile(root.Proc("interrupts"));
  if (!text) return out;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    line = absl::StripLeadingAsciiWhitespace(line);
    const std::size_t colon = line.find(':');
    int irq = 0;
    if (colon == absl::string_view::npos || !absl::SimpleAtoi(line.substr(0, colon), &irq)) {
      continue;  // the CPU header, or NMI/LOC/... rows
    }
    for (absl::string_view field :
         absl::StrSplit(line.substr(colon + 1), absl::ByAnyChar(" \t,"), absl::SkipEmpty())) {
      out.emplace(std::string(field), irq);
    }
  }
  return out;
}

// The whole disk behind a sysfs block-device directory: itself, its parent
// for a partition.
std::string WholeDisk(const std::string& dir) {
  return SysfsExists(dir + "/partition") ? Dirname(dir) : dir;
}

// The directory holding mq/ for `disk_dir`: the disk itself; the first path
// device nvmeXcCnY of an NVMe multipath head nvmeXnY (the head is bio-based);
// the only component of a stacked device (device-mapper, md) with one.
std::string QueuesDir(const SysRoot& root, const std::string& disk_dir) {
  if (SysfsExists(disk_dir + "/mq")) return disk_dir;
  const std::string name = Basename(disk_dir);
  if (absl::StartsWith(name, "nvme")) {
    const std::size_t n = name.rfind('n');
    const std::string prefix = name.substr(0, n) + "c";  // "nvme0c"
    const std::string suffix = name.substr(n);           // "n1"
    for (const std::string& entry : ListSysfsDir(root.Sys("class/block"))) {
      if (absl::StartsWith(entry, prefix) && absl::EndsWith(entry, suffix)) {
        if (auto dir = ResolvedSysfsPath(root.Sys("class/block/" + entry));
            dir && SysfsExists(*dir + "/mq")) {
          return *dir;
        }
      }
    }
  }
  const std::vector<std::string> slaves = ListSysfsDir(disk_dir + "/slaves");
  if (slaves.size() == 1) {
    if (auto dir = ResolvedSysfsPath(disk_dir + "/slaves/" + slaves[0])) {
      return QueuesDir(root, WholeDisk(*dir));
    }
  }
  return "";
}

// The interrupt name of hardware queue `index` for the driver whose device
// (the target of the disk's `device` link) is `driver_device`, or "" for a
// driver whose names are not known here.
std::string InterruptName(const std::string& driver_device, int index) {
  if (absl::StartsWith(driver_device, "virtio")) {
    return absl::StrCat(driver_device, "-req.", index);  // virtio-blk: one vq per queue
  }
  if (absl::StartsWith(driver_device, "nvme")) {
    // Queue 0 of the controller is the admin queue: I/O queue qid serves
    // hardware context qid - 1 (default and read maps; polled queues have no
    // interrupt and no such name).
    return absl::StrCat(driver_device, "q", index + 1);
  }
  return "";
}

CompletionPlacement Unknown(std::string device, std::string reason) {
  CompletionPlacement p;
  p.kind = CompletionPlacement::Kind::kUnknown;
  p.device = std::move(device);
  p.reason = std::move(reason);
  return p;
}

CompletionPlacement PlacementOfDisk(const SysRoot& root, const std::string& disk_dir) {
  const std::string disk = Basename(disk_dir);
  const std::string queues_dir = QueuesDir(root, disk_dir);
  if (queues_dir.empty()) {
    return Unknown(disk, "it has no blk-mq hardware queues in sysfs (mq/)");
  }
  auto device = ResolvedSysfsPath(queues_dir + "/device");
  if (!device) return Unknown(disk, "sysfs has no device link for it");
  const std::string driver_device = Basename(*device);
  if (InterruptName(driver_device, 0).empty()) {
    return Unknown(disk, absl::StrCat("its queue interrupts are not known for device ",
                                      driver_device, " (virtio-blk and NVMe are)"));
  }
  const std::map<std::string, int> irqs = InterruptsByName(root);
  CompletionPlacement p;
  p.kind = CompletionPlacement::Kind::kFound;
  p.device = disk;
  for (const std::string& entry : ListSysfsDir(queues_dir + "/mq")) {
    CompletionQueue q;
    if (!absl::SimpleAtoi(entry, &q.index)) continue;
    auto cpus = ReadSysfs(absl::StrCat(queues_dir, "/mq/", entry, "/cpu_list"));
    auto parsed = cpus ? ParseCpuList(*cpus) : std::nullopt;
    if (!parsed) continue;
    q.cpus = std::move(*parsed);
    q.irq_name = InterruptName(driver_device, q.index);
    auto it = irqs.find(q.irq_name);
    if (it == irqs.end()) continue;  // a polled queue, or a name this kernel does not use
    q.irq = it->second;
    const std::string irq_dir = root.Proc(absl::StrCat("irq/", q.irq, "/"));
    auto aff = ReadSysfs(irq_dir + "effective_affinity_list");
    if (!aff) aff = ReadSysfs(irq_dir + "smp_affinity_list");  // no effective mask here
    auto irq_cpus = aff ? ParseCpuList(*aff) : std::nullopt;
    if (!irq_cpus) continue;
    q.irq_cpus = std::move(*irq_cpus);
    for (int c : Intersection(q.cpus, q.irq_cpus)) p.local_cpus.push_back(c);
    p.queues.push_back(std::move(q));
  }
  std::sort(p.queues.begin(), p.queues.end(),
            [](const CompletionQueue& a, const CompletionQueue& b) { return a.index < b.index; });
  if (p.queues.empty()) {
    return Unknown(disk,
                   absl::StrCat("no interrupt of its queues (", InterruptName(driver_device, 0),
                                ", ...) was found in /proc/interrupts with an affinity"));
  }
  p.local_cpus = Normalized(std::move(p.local_cpus));
  return p;
}

}  // namespace

std::optional<CpuList> ParseCpuList(absl::string_view text) {
  CpuList out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    const std::size_t dash = part.find('-');
    int lo = 0;
    int hi = 0;
    if (dash == absl::string_view::npos) {
      if (!absl::SimpleAtoi(part, &lo)) return std::nullopt;
      hi = lo;
    } else if (!absl::SimpleAtoi(part.substr(0, dash), &lo) ||
               !absl::SimpleAtoi(part.substr(dash + 1), &hi)) {
      return std::nullopt;
    }
    if (lo < 0 || hi < lo || hi > 1 << 16) return std::nullopt;
    for (int c = lo; c <= hi; ++c) out.push_back(c);
  }
  return Normalized(std::move(out));
}

std::string FormatCpuList(const CpuList& cpus) {
  if (cpus.empty()) return "none";
  std::string out;
  for (std::size_t i = 0; i < cpus.size();) {
    std::size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    absl::StrAppend(&out, out.empty() ? "" : ",", cpus[i]);
    if (j > i) absl::StrAppend(&out, "-", cpus[j]);
    i = j + 1;
  }
  return out;
}

std::string SysRoot::Sys(absl::string_view rest) const { return absl::StrCat(dir, "/sys/", rest); }
std::string SysRoot::Proc(absl::string_view rest) const {
  return absl::StrCat(dir, "/proc/", rest);
}

bool CompletionPlacement::HasPreference() const {
  if (kind != Kind::kFound) return false;
  for (const CompletionQueue& q : queues) {
    for (int c : q.cpus) {
      if (!Contains(local_cpus, c)) return true;
    }
  }
  return false;
}

bool CompletionPlacement::IsLocal(int cpu) const {
  return !HasPreference() || Contains(local_cpus, cpu);
}

std::vector<const CompletionQueue*> CompletionPlacement::QueuesOf(int cpu) const {
  std::vector<const CompletionQueue*> out;
  for (const CompletionQueue& q : queues) {
    if (Contains(q.cpus, cpu)) out.push_back(&q);
  }
  return out;
}

std::string CompletionPlacement::Describe() const {
  switch (kind) {
    case Kind::kNoDevice:
      return absl::StrCat("no block device (", reason, "): no CPU preference");
    case Kind::kUnknown:
      return absl::StrCat(device, ": completion CPUs unknown (", reason, "): no CPU preference");
    case Kind::kFound:
      break;
  }
  std::string out = absl::StrCat(device, ": ", queues.size(), " interrupt-driven queue",
                                 queues.size() == 1 ? "" : "s");
  constexpr std::size_t kShown = 4;
  for (std::size_t i = 0; i < queues.size() && i < kShown; ++i) {
    const CompletionQueue& q = queues[i];
    absl::StrAppend(&out, i == 0 ? ": " : "; ", "queue ", q.index, " (CPUs ", FormatCpuList(q.cpus),
                    ") -> IRQ ", q.irq, " ", q.irq_name, " on CPU ", FormatCpuList(q.irq_cpus));
  }
  if (queues.size() > kShown) absl::StrAppend(&out, "; ...");
  absl::StrAppend(&out, "; completions local on CPUs ", FormatCpuList(local_cpus),
                  HasPreference() ? "" : " (every CPU: no preference)");
  return out;
}

CompletionPlacement ProbeCompletionPlacementOfDevice(bool block, unsigned major_num,
                                                     unsigned minor_num, const SysRoot& root) {
  const std::string dev = absl::StrCat(major_num, ":", minor_num);
  if (block && major_num == 0) {
    CompletionPlacement p;
    p.reason = absl::StrCat("device ", dev,
                            " is anonymous: tmpfs or another memory or network "
                            "filesystem");
    return p;
  }
  auto dir = ResolvedSysfsPath(root.Sys(absl::StrCat(block ? "dev/block/" : "dev/char/", dev)));
  if (!dir) {
    if (!block) return Unknown(dev, "character device unknown to sysfs");
    CompletionPlacement p;
    p.reason = absl::StrCat("device ", dev, " is not a block device in sysfs");
    return p;
  }
  if (block) return PlacementOfDisk(root, WholeDisk(*dir));
  // A character device: NVMe's generic node ngXnY submits to the queues of
  // its namespace's block device nvmeXnY.
  const std::string name = Basename(*dir);
  if (!absl::StartsWith(name, "ng")) {
    return Unknown(name, "a character device other than an NVMe generic device (ngXnY)");
  }
  return ProbeCompletionPlacementOfDisk(absl::StrCat("nvme", name.substr(2)), root);
}

CompletionPlacement ProbeCompletionPlacementOfDisk(const std::string& kernel_name,
                                                   const SysRoot& root) {
  auto dir = ResolvedSysfsPath(root.Sys("class/block/" + kernel_name));
  if (!dir) return Unknown(kernel_name, "not a block device in sysfs");
  return PlacementOfDisk(root, WholeDisk(*dir));
}

CompletionPlacement ProbeCompletionPlacement(const std::string& path, const SysRoot& root) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    // A file about to be created lives on its directory's device.
    const std::size_t slash = path.rfind('/');
    const std::string dir =
        slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    if (errno != ENOENT || ::stat(dir.c_str(), &st) != 0) {
      return Unknown(path, absl::StrCat("stat failed: ", std::strerror(errno)));
    }
  }
  if (S_ISBLK(st.st_mode)) {
    return ProbeCompletionPlacementOfDevice(true, major(st.st_rdev), minor(st.st_rdev), root);
  }
  if (S_ISCHR(st.st_mode)) {
    return ProbeCompletionPlacementOfDevice(false, major(st.st_rdev), minor(st.st_rdev), root);
  }
  return ProbeCompletionPlacementOfDevice(true, major(st.st_dev), minor(st.st_dev), root);
}

CpuList AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  CpuList out;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return out;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) out.push_back(c);
  }
  return out;
}

absl::Status CheckCpusAllowed(const CpuList& cpus, const CpuList& allowed, absl::string_view field,
                              absl::string_view fix_cpus_hint) {
  CpuList outside;
  for (int c : cpus) {
    if (!Contains(allowed, c)) outside.push_back(c);
  }
  if (outside.empty()) return absl::OkStatus();
  outside = Normalized(std::move(outside));
  const std::string may = FormatCpuList(Normalized(allowed));
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": ", outside.size() == 1 ? "CPU " : "CPUs ", FormatCpuList(outside),
      outside.size() == 1 ? " is" : " are", " not among the CPUs this process may run on (", may,
      "): choose from those (", absl::StrReplaceAll(fix_cpus_hint, {{"LIST", may}}),
      "), or allow more (taskset, the cgroup's cpuset)"));
}

WorkerPlacement PlaceWorkers(uint32_t workers, const CpuList& allowed, const CpuList& requested,
                             const std::vector<PlacedTarget>& targets,
                             absl::string_view fix_cpus_hint) {
  WorkerPlacement out;
  const CpuList allowed_sorted = Normalized(allowed);
  // Every worker serves every target: the CPUs local to all of them, except
  // for targets only written to through a file system, which prefer the CPUs
  // away from their completion work (PlacedTarget::file_writes) where there
  // are such CPUs.
  CpuList preferred = allowed_sorted;
  for (const PlacedTarget& t : targets) {
    if (!t.placement.HasPreference()) continue;
    if (!t.file_writes) {
      preferred = Intersection(preferred, t.placement.local_cpus);
    } else if (CpuList away = Difference(preferred, t.placement.local_cpus); !away.empty()) {
      preferred = std::move(away);
    }
  }
  CpuList order;
  if (!requested.empty()) {
    order = requested;
  } else {
    order = preferred;
    for (int c : allowed_sorted) {
      if (!Contains(preferred, c)) order.push_back(c);
    }
    if (order.empty()) order.push_back(0);  // sched_getaffinity failed: CPU 0 is always there
  }
  for (uint32_t i = 0; i < workers; ++i) out.worker_cpus.push_back(order[i % order.size()]);

  for (uint32_t i = 0; i < workers; ++i) {
    const int cpu = out.worker_cpus[i];
    std::vector<std::string> remote;
    std::vector<std::string> away;
    for (const PlacedTarget& t : targets) {
      if (t.placement.IsLocal(cpu)) continue;
      (t.file_writes ? away : remote).push_back(t.placement.device);
    }
    absl::StrAppend(&out.summary, i == 0 ? "" : ", ", "worker ", i, " on CPU ", cpu,
                    remote.empty() ? ""
                                   : absl::StrCat(" (completions of ", absl::StrJoin(remote, ", "),
                                                  " arrive elsewhere)"),
                    away.empty() ? ""
                                 : absl::StrCat(" (away from the CPU where the file system "
                                                "completes writes to ",
                                                absl::StrJoin(away, ", "), ")"));
  }
  absl::StrAppend(&out.summary, requested.empty() ? " (chosen from CPUs " : " (as requested; CPUs ",
                  FormatCpuList(allowed_sorted), requested.empty() ? ")" : " allowed)");

  for (const PlacedTarget& t : targets) {
    const CompletionPlacement& p = t.placement;
    if (!p.HasPreference() || t.file_writes) continue;  // away on purpose
    CpuList remote_workers;
    CpuList remote_cpus;
    CpuList irqs;
    CpuList irq_cpus;
    std::vector<std::string> moves;
    for (uint32_t i = 0; i < workers; ++i) {
      const int cpu = out.worker_cpus[i];
      if (p.IsLocal(cpu)) continue;
      remote_workers.push_back(static_cast<int>(i));
      remote_cpus.push_back(cpu);
      for (const CompletionQueue* q : p.QueuesOf(cpu)) {
        irqs.push_back(q->irq);
        irq_cpus.insert(irq_cpus.end(), q->irq_cpus.begin(), q->irq_cpus.end());
        moves.push_back(absl::StrCat("echo ", cpu, " > /proc/irq/", q->irq, "/smp_affinity_list"));
      }
    }
    if (remote_workers.empty()) continue;
    remote_cpus = Normalized(std::move(remote_cpus));
    std::sort(moves.begin(), moves.end());
    moves.erase(std::unique(moves.begin(), moves.end()), moves.end());
    const CpuList usable = Intersection(p.local_cpus, allowed_sorted);
    std::string choose;
    if (usable.empty()) {
      choose = absl::StrCat("its local CPUs ", FormatCpuList(p.local_cpus),
                            " are outside the CPUs this process may use (",
                            FormatCpuList(allowed_sorted), "): allow them (taskset, cgroup)");
    } else {
      choose =
          absl::StrCat("run the workers on CPUs ", FormatCpuList(usable), " (",
                       absl::StrReplaceAll(fix_cpus_hint, {{"LIST", FormatCpuList(usable)}}), ")");
    }
    out.warnings.push_back(absl::StrCat(
        t.name, ": worker", remote_workers.size() == 1 ? " " : "s ", FormatCpuList(remote_workers),
        " on CPU", remote_cpus.size() == 1 ? " " : "s ", FormatCpuList(remote_cpus),
        remote_workers.size() == 1 ? " waits" : " wait", " for completions of ", p.device,
        " that arrive on CPU ", FormatCpuList(Normalized(irq_cpus)), " (IRQ ",
        absl::StrJoin(Normalized(irqs), ", "), "): each one costs a cross-CPU wake-up. Fix: ",
        choose, ", or move the interrupt (", absl::StrJoin(moves, "; "),
        "; the kernel refuses this for its managed NVMe queue interrupts)"));
  }
  return out;
}

}  // namespace ringline::block
