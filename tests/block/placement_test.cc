// Completion-aware placement (ringline/block/placement.h): the probe on fake
// sysfs/procfs trees laid out like the kernel's (virtio-blk with one queue,
// NVMe with one queue per CPU, NVMe with fewer queues than CPUs plus polled
// queues, a partition, NVMe multipath, the generic char device), the worker
// CPU choice, and the real thing on this host's disk (SKIPPED without one).

#include "ringline/block/placement.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "ringline/block/target.h"

namespace ringline::block {
namespace {

namespace fs = std::filesystem;

// A temporary root holding sys/ and proc/; removed with the object.
class FakeTree {
 public:
  FakeTree() {
    char tmpl[] = "/tmp/ringline-placement-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  ~FakeTree() { fs::remove_all(dir_); }
  SysRoot root() const { return SysRoot{dir_}; }

  void Write(const std::string& rel, const std::string& text) {
    const fs::path p = fs::path(dir_) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  // A relative symlink at `rel` pointing to `target_rel` (both from the root).
  void Link(const std::string& rel, const std::string& target_rel) {
    const fs::path p = fs::path(dir_) / rel;
    fs::create_directories(p.parent_path());
    fs::create_directories(fs::path(dir_) / target_rel);
    fs::create_symlink(fs::relative(fs::path(dir_) / target_rel, p.parent_path()), p);
  }
  void Mkdir(const std::string& rel) { fs::create_directories(fs::path(dir_) / rel); }

  // A whole disk `name` at devices/<parent>/block/<name>, its class and dev
  // links, and `device` pointing to <driver_dir>.
  std::string Disk(const std::string& name, const std::string& devnum,
                   const std::string& driver_dir) {
    const std::string dir = "sys/devices/" + driver_dir + "/block/" + name;
    Mkdir(dir);
    Link("sys/class/block/" + name, dir);
    Link("sys/dev/block/" + devnum, dir);
    Link(dir + "/device", "sys/devices/" + driver_dir);
    return dir;
  }
  void Queue(const std::string& disk_dir, int index, const std::string& cpu_list) {
    Write(disk_dir + "/mq/" + std::to_string(index) + "/cpu_list", cpu_list + "\n");
  }
  void Irq(int irq, const std::string& effective) {
    Write("proc/irq/" + std::to_string(irq) + "/effective_affinity_list", effective + "\n");
    Write("proc/irq/" + std::to_string(irq) + "/smp_affinity_list", "0-1\n");
  }

 private:
  std::string dir_;
};

// This VM's disk: virtio-blk, one queue for CPUs 0 and 1, its IRQ on CPU 1.
void VirtioOneQueue(FakeTree& t) {
  const std::string vda = t.Disk("vda", "254:0", "pci0000:00/0000:00:02.0/virtio1");
  t.Queue(vda, 0, "0, 1");
  t.Write("proc/interrupts",
          "           CPU0       CPU1\n"
          " 35:          0          1  PCI-MSIX-0000:00:02.0   0-edge      virtio1-config\n"
          " 36:          0   10625616  PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0\n"
          "NMI:          0          0   Non-maskable interrupts\n");
  t.Irq(36, "1");
  t.Irq(35, "0");
  // A partition of it.
  t.Write(vda + "/vda1/partition", "1\n");
  t.Link("sys/dev/block/254:1", vda + "/vda1");
  t.Link("sys/class/block/vda1", vda + "/vda1");
}

TEST(CpuListTest, ParsesAndFormatsKernelSpellings) {
  EXPECT_EQ(*ParseCpuList("0, 1"), (CpuList{0, 1}));
  EXPECT_EQ(*ParseCpuList("0-3,5"), (CpuList{0, 1, 2, 3, 5}));
  EXPECT_EQ(*ParseCpuList("5,1,1"), (CpuList{1, 5}));
  EXPECT_EQ(*ParseCpuList(""), CpuList{});
  EXPECT_FALSE(ParseCpuList("3-1").has_value());
  EXPECT_FALSE(ParseCpuList("a").has_value());
  EXPECT_FALSE(ParseCpuList("-1").has_value());
  EXPECT_EQ(FormatCpuList({0, 1, 2, 3, 5}), "0-3,5");
  EXPECT_EQ(FormatCpuList({1}), "1");
  EXPECT_EQ(FormatCpuList({}), "none");
}

TEST(PlacementProbeTest, VirtioDiskWithOneQueueCompletesOnItsIrqCpu) {
  FakeTree t;
  VirtioOneQueue(t);
  const CompletionPlacement p = ProbeCompletionPlacementOfDevice(true, 254, 0, t.root());
  ASSERT_EQ(p.kind, CompletionPlacement::Kind::kFound) << p.Describe();
  EXPECT_EQ(p.device, "vda");
  ASSERT_EQ(p.queues.size(), 1u);
  EXPECT_EQ(p.queues[0].irq, 36);
  EXPECT_EQ(p.queues[0].irq_name, "virtio1-req.0");
  EXPECT_EQ(p.queues[0].cpus, (CpuList{0, 1}));
  EXPECT_EQ(p.queues[0].irq_cpus, (CpuList{1}));
  EXPECT_EQ(p.local_cpus, (CpuList{1}));
  EXPECT_TRUE(p.HasPreference());
  EXPECT_TRUE(p.IsLocal(1));
  EXPECT_FALSE(p.IsLocal(0));
  EXPECT_EQ(p.PreferredCpus(), (CpuList{1}));
  EXPECT_NE(p.Describe().find("IRQ 36 virtio1-req.0 on CPU 1"), std::string::npos) << p.Describe();

  // A partition resolves to its disk.
  const CompletionPlacement part = ProbeCompletionPlacementOfDevice(true, 254, 1, t.root());
  EXPECT_EQ(part.device, "vda");
  EXPECT_EQ(part.local_cpus, (CpuList{1}));
  EXPECT_EQ(ProbeCompletionPlacementOfDisk("vda1", t.root()).local_cpus, (CpuList{1}));
}

TEST(PlacementProbeTest, FallsBackToSmpAffinityWithoutEffectiveMask) {
  FakeTree t;
  VirtioOneQueue(t);
  std::filesystem::remove(t.root().Proc("irq/36/effective_affinity_list"));
  t.Write("proc/irq/36/smp_affinity_list", "0\n");
  EXPECT_EQ(ProbeCompletionPlacementOfDisk("vda", t.root()).local_cpus, (CpuList{0}));
}

TEST(PlacementProbeTest, NoDeviceAndUnknownHaveNoPreference) {
  FakeTree t;
  VirtioOneQueue(t);
  // tmpfs: an anonymous device number.
  const CompletionPlacement tmp = ProbeCompletionPlacementOfDevice(true, 0, 42, t.root());
  EXPECT_EQ(tmp.kind, CompletionPlacement::Kind::kNoDevice);
  EXPECT_FALSE(tmp.HasPreference());
  EXPECT_TRUE(tmp.IsLocal(0));
  EXPECT_TRUE(tmp.PreferredCpus().empty());
  // A device sysfs does not know.
  EXPECT_EQ(ProbeCompletionPlacementOfDevice(true, 8, 0, t.root()).kind,
            CompletionPlacement::Kind::kNoDevice);
  // A driver whose interrupt names are not known (a SCSI disk).
  const std::string sda =
      t.Disk("sda", "8:16", "pci0000:00/0000:00:07.0/host0/target0:0:0/0:0:0:0");
  t.Queue(sda, 0, "0-1");
  const CompletionPlacement scsi = ProbeCompletionPlacementOfDevice(true, 8, 16, t.root());
  EXPECT_EQ(scsi.kind, CompletionPlacement::Kind::kUnknown);
  EXPECT_FALSE(scsi.HasPreference());
  EXPECT_NE(scsi.reason.find("0:0:0:0"), std::string::npos) << scsi.reason;
  // The interrupt is missing from /proc/interrupts.
  t.Write("proc/interrupts", "           CPU0       CPU1\n");
  const CompletionPlacement gone = ProbeCompletionPlacementOfDisk("vda", t.root());
  EXPECT_EQ(gone.kind, CompletionPlacement::Kind::kUnknown);
  EXPECT_NE(gone.reason.find("virtio1-req.0"), std::string::npos) << gone.reason;
}

// NVMe: qN serves hardware context N-1; q0 is the admin queue; polled
// queues (here context 2) have no interrupt.
void NvmeController(FakeTree& t, bool multipath) {
  const std::string ctrl = "pci0000:00/0000:00:04.0/nvme/nvme0";
  std::string disk;
  if (multipath) {
    // The head nvme0n1 is bio-based (no mq); the path nvme0c0n1 has the queues.
    const std::string head = t.Disk("nvme0n1", "259:0", "virtual/nvme-subsystem/nvme-subsys0");
    (void)head;
    disk = t.Disk("nvme0c0n1", "259:9", ctrl);
  } else {
    disk = t.Disk("nvme0n1", "259:0", ctrl);
  }
  t.Queue(disk, 0, "0");
  t.Queue(disk, 1, "1");
  t.Queue(disk, 2, "0, 1");  // poll queue
  t.Write("proc/interrupts",
          "           CPU0       CPU1\n"
          " 40:          5          0  PCI-MSIX-0000:00:04.0   0-edge      nvme0q0\n"
          " 41:        100          0  PCI-MSIX-0000:00:04.0   1-edge      nvme0q1\n"
          " 42:          0        100  PCI-MSIX-0000:00:04.0   2-edge      nvme0q2\n");
  t.Irq(40, "0");
  t.Irq(41, "0");
  t.Irq(42, "1");
  const std::string ng = "sys/devices/" + ctrl + "/ng0n1";
  t.Mkdir(ng);
  t.Link("sys/dev/char/242:0", ng);
}

TEST(PlacementProbeTest, NvmeWithAQueuePerCpuHasNothingToFix) {
  FakeTree t;
  NvmeController(t, false);
  const CompletionPlacement p = ProbeCompletionPlacementOfDisk("nvme0n1", t.root());
  ASSERT_EQ(p.kind, CompletionPlacement::Kind::kFound) << p.Describe();
  ASSERT_EQ(p.queues.size(), 2u);  // the poll queue has no interrupt
  EXPECT_EQ(p.queues[0].irq_name, "nvme0q1");
  EXPECT_EQ(p.queues[1].irq_name, "nvme0q2");
  EXPECT_EQ(p.local_cpus, (CpuList{0, 1}));
  EXPECT_FALSE(p.HasPreference());
  EXPECT_TRUE(p.PreferredCpus().empty());
  // The generic char device uses its namespace's queues.
  const CompletionPlacement ng = ProbeCompletionPlacementOfDevice(false, 242, 0, t.root());
  EXPECT_EQ(ng.device, "nvme0n1");
  EXPECT_EQ(ng.queues.size(), 2u);
}

TEST(PlacementProbeTest, NvmeWithFewerQueuesThanCpusPrefersTheIrqCpu) {
  FakeTree t;
  NvmeController(t, true);
  // max_ioqpairs=1: one interrupt-driven queue for both CPUs, on CPU 0.
  std::filesystem::remove_all(t.root().Sys("class/block/nvme0c0n1/mq/1"));
  t.Write("sys/class/block/nvme0c0n1/mq/0/cpu_list", "0, 1\n");
  const CompletionPlacement p = ProbeCompletionPlacementOfDevice(false, 242, 0, t.root());
  ASSERT_EQ(p.kind, CompletionPlacement::Kind::kFound) << p.Describe();
  EXPECT_EQ(p.device, "nvme0n1");
  ASSERT_EQ(p.queues.size(), 1u);
  EXPECT_EQ(p.queues[0].irq, 41);
  EXPECT_EQ(p.local_cpus, (CpuList{0}));
  EXPECT_TRUE(p.HasPreference());
}

TEST(PlaceWorkersTest, PutsWorkersOnLocalCpusFirstAndWarnsForTheRest) {
  FakeTree t;
  VirtioOneQueue(t);
  const std::vector<PlacedTarget> disk = {
      {"/var/tmp/f", ProbeCompletionPlacementOfDisk("vda", t.root())}};

  // One worker: on CPU 1, no warning.
  WorkerPlacement one = PlaceWorkers(1, {0, 1}, {}, disk, "--cpus=LIST");
  EXPECT_EQ(one.worker_cpus, (CpuList{1}));
  EXPECT_TRUE(one.warnings.empty());
  EXPECT_NE(one.summary.find("worker 0 on CPU 1"), std::string::npos) << one.summary;

  // Two workers on two CPUs: the second cannot be local; one warning names
  // the cost and the fixes.
  WorkerPlacement two = PlaceWorkers(2, {0, 1}, {}, disk, "--cpus=LIST");
  EXPECT_EQ(two.worker_cpus, (CpuList{1, 0}));
  ASSERT_EQ(two.warnings.size(), 1u);
  const std::string& w = two.warnings[0];
  EXPECT_NE(w.find("worker 1 on CPU 0 waits"), std::string::npos) << w;
  EXPECT_NE(w.find("arrive on CPU 1 (IRQ 36)"), std::string::npos) << w;
  EXPECT_NE(w.find("cross-CPU wake-up"), std::string::npos) << w;
  EXPECT_NE(w.find("run the workers on CPUs 1 (--cpus=1)"), std::string::npos) << w;
  EXPECT_NE(w.find("echo 0 > /proc/irq/36/smp_affinity_list"), std::string::npos) << w;

  // The user's choice is kept, with the warning.
  WorkerPlacement asked = PlaceWorkers(1, {0, 1}, {0}, disk, "--cpus=LIST");
  EXPECT_EQ(asked.worker_cpus, (CpuList{0}));
  ASSERT_EQ(asked.warnings.size(), 1u);

  // Only CPU 0 allowed (taskset): say the local CPU is outside the set.
  WorkerPlacement fenced = PlaceWorkers(1, {0}, {}, disk, "--cpus=LIST");
  EXPECT_EQ(fenced.worker_cpus, (CpuList{0}));
  ASSERT_EQ(fenced.warnings.size(), 1u);
  EXPECT_NE(fenced.warnings[0].find("outside the CPUs this process may use (0)"), std::string::npos)
      << fenced.warnings[0];

  // Only written to, through a file system: away from the interrupt's CPU,
  // where the file system completes the writes, without a warning; where no
  // other CPU is allowed, on the local one.
  std::vector<PlacedTarget> writes = disk;
  writes[0].file_writes = true;
  WorkerPlacement away = PlaceWorkers(1, {0, 1}, {}, writes, "--cpus=LIST");
  EXPECT_EQ(away.worker_cpus, (CpuList{0}));
  EXPECT_TRUE(away.warnings.empty());
  EXPECT_NE(away.summary.find("worker 0 on CPU 0 (away from the CPU where the file system "
                              "completes writes to vda)"),
            std::string::npos)
      << away.summary;
  EXPECT_EQ(PlaceWorkers(1, {1}, {}, writes, "--cpus=LIST").worker_cpus, (CpuList{1}));
  EXPECT_EQ(PlaceWorkers(2, {0, 1}, {}, writes, "--cpus=LIST").worker_cpus, (CpuList{0, 1}));

  // No device (tmpfs): CPUs in order, no warning.
  const std::vector<PlacedTarget> shm = {
      {"/dev/shm/f", ProbeCompletionPlacementOfDevice(true, 0, 42, t.root())}};
  WorkerPlacement any = PlaceWorkers(3, {0, 1}, {}, shm, "--cpus=LIST");
  EXPECT_EQ(any.worker_cpus, (CpuList{0, 1, 0}));
  EXPECT_TRUE(any.warnings.empty());
}

// The real thing: this host's disks, and a file on the root filesystem.
TEST(PlacementHostTest, RealDiskAndFiles) {
  const CompletionPlacement vda = ProbeCompletionPlacementOfDisk("vda");
  if (vda.kind == CompletionPlacement::Kind::kUnknown &&
      vda.reason == "not a block device in sysfs") {
    GTEST_SKIP() << "this host has no /sys/class/block/vda";
  }
  std::printf("vda: %s\n", vda.Describe().c_str());
  ASSERT_EQ(vda.kind, CompletionPlacement::Kind::kFound) << vda.Describe();
  ASSERT_FALSE(vda.queues.empty());
  // Every queue's IRQ is vda's and sits where procfs says.
  for (const CompletionQueue& q : vda.queues) {
    std::ifstream in("/proc/irq/" + std::to_string(q.irq) + "/effective_affinity_list");
    std::string text;
    std::getline(in, text);
    EXPECT_EQ(ParseCpuList(text), q.irq_cpus) << q.irq_name;
    EXPECT_NE(q.irq_name.find("-req."), std::string::npos);
  }
  // A file on the filesystem whose device is vda (if it is) resolves to it.
  struct stat st;
  ASSERT_EQ(::stat("/var/tmp", &st), 0);
  const CompletionPlacement file = ProbeCompletionPlacement("/var/tmp");
  std::printf("/var/tmp (%u:%u): %s\n", major(st.st_dev), minor(st.st_dev),
              file.Describe().c_str());
  if (file.device == "vda") {
    EXPECT_EQ(file.local_cpus, vda.local_cpus);
  }
  // tmpfs: no device.
  if (::access("/dev/shm", W_OK) == 0) {
    EXPECT_EQ(ProbeCompletionPlacement("/dev/shm").kind, CompletionPlacement::Kind::kNoDevice);
  }
}

}  // namespace
}  // namespace ringline::block
