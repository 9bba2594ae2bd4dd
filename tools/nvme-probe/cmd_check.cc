// `nvme-probe check TARGET`: proves that ringline's I/O path works on TARGET
// and how fast it is.
//
// The target is opened exactly as the engine's users open it
// (block::OpenTarget on a Worker: NVMe passthrough for a generic char device
// /dev/ngXnY, O_DIRECT for a block device or a regular file), its geometry is
// reported, and 4 KiB random reads run at QD1 and QD32 for --seconds each
// (check_load.h), on a CPU where the target's completions arrive when the
// process may use one (ringline/block/placement.h). With --write a verify pass writes a pattern,
// flushes and reads it back; that destroys data, so it is allowed on a regular file, and on a
// device only when --i-know-this-destroys-data names the same device a second time (a typo in one
// place then cannot wipe the wrong disk).
//
// Exit codes: 0 passed; 1 not found, not a usable target, an I/O error or a
// verify mismatch; 2 usage (including a refused --write); 3 permission.
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "check_load.h"
#include "commands.h"
#include "output.h"
#include "placement_report.h"
#include "ringline/block/direct_file.h"
#include "ringline/block/nvme_namespace.h"
#include "ringline/block/nvme_status.h"
#include "ringline/block/open.h"
#include "ringline/buffer_pool.h"
#include "ringline/config.h"
#include "ringline/io_result.h"
#include "ringline/probe.h"
#include "ringline/worker.h"

namespace ringline::nvme_probe {
namespace {

constexpr std::string_view kCommand = "check";
constexpr uint32_t kIoSize = 4096;
constexpr uint32_t kQueueDepths[] = {1, 32};
constexpr uint32_t kMaxQueueDepth = 32;
// Blocks the verify pass writes: enough to spread over the device and to
// keep 32 requests in flight for a while, few enough for a slow emulated
// device (4 MiB).
constexpr uint64_t kVerifyBlocks = 1024;

struct CheckOptions {
  std::string target;
  double seconds = 3;
  bool write = false;
  std::string confirm;  // --i-know-this-destroys-data=DEVICE
  std::optional<uint64_t> offset;
  std::optional<uint64_t> size;
  OutputFormat format = OutputFormat::kNormal;
};

enum class TargetKind { kNvme, kBlockDevice, kFile };

std::string KindId(TargetKind k) {
  switch (k) {
    case TargetKind::kNvme:
      return "nvme";
    case TargetKind::kBlockDevice:
      return "block_device";
    case TargetKind::kFile:
      return "file";
  }
  return "unknown";
}

std::string KindText(TargetKind k) {
  switch (k) {
    case TargetKind::kNvme:
      return "NVMe namespace, passthrough (IORING_OP_URING_CMD)";
    case TargetKind::kBlockDevice:
      return "block device, O_DIRECT";
    case TargetKind::kFile:
      return "regular file, O_DIRECT";
  }
  return "unknown";
}

struct ReadRun {
  uint32_t queue_depth = 0;
  LoadResult result;
};

// Everything the run found; printed after the worker is done.
struct CheckReport {
  absl::Status status;  // why the check failed (OK: it passed)
  std::string error_kind;
  bool usage_error = false;  // --offset/--size do not fit: exit 2, no document
  bool opened = false;
  TargetKind kind = TargetKind::kFile;
  std::string device;  // what was opened (NVMe: the generic char device)
  std::optional<uint32_t> nsid;
  block::Geometry geometry;
  bool registered_buffers = false;
  Region region;
  std::vector<ReadRun> reads;
  std::optional<VerifyResult> verify;
  std::vector<std::string> warnings;
  // Where the target's completions arrive, and the CPU the check ran on
  // (chosen by block::PlaceWorkers as the engine's tools choose it).
  block::CompletionPlacement placement;
  int cpu = -1;

  void Fail(absl::Status st, std::string_view kind) {
    status = std::move(st);
    error_kind = std::string(kind);
  }
};

// The error kind for a failure to open the target.
std::string_view OpenErrorKind(const absl::Status& st) {
  switch (st.code()) {
    case absl::StatusCode::kPermissionDenied:
      return kErrorPermission;
    case absl::StatusCode::kNotFound:
      return kErrorNotFound;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kUnimplemented:
      return kErrorUnsupportedTarget;
    default:
      break;
  }
  if (st.GetPayload(absl::string_view(block::kNvmeStatusPayloadKey.data(),
                                      block::kNvmeStatusPayloadKey.size()))
          .has_value()) {
    return kErrorNvmeStatus;
  }
  return kErrorSystem;
}

std::string Latency(uint64_t ns) {
  const double us = static_cast<double>(ns) / 1e3;
  if (us < 10) return absl::StrFormat("%.1f us", us);
  if (us < 1000) return absl::StrFormat("%.0f us", us);
  if (us < 10000) return absl::StrFormat("%.2f ms", us / 1e3);
  return absl::StrFormat("%.1f ms", us / 1e3);
}

// A one-line progress bar on stderr, redrawn in place; only on a terminal so
// logs and pipes never see carriage returns.
class ProgressBar {
 public:
  ProgressBar() {
    const char* term = std::getenv("TERM");
    enabled_ = isatty(STDERR_FILENO) == 1 && !(term != nullptr && std::strcmp(term, "dumb") == 0);
  }
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  ~ProgressBar() { Clear(); }

  // A callback for one phase named `label`, or null when disabled.
  ProgressFn Phase(std::string label) {
    if (!enabled_) return nullptr;
    const auto start = std::chrono::steady_clock::now();
    return [this, label = std::move(label), start](double fraction, uint64_t ios) {
      constexpr int kWidth = 30;
      const int filled = static_cast<int>(fraction * kWidth + 0.5);
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double iops = elapsed > 0 ? static_cast<double>(ios) / elapsed : 0;
      std::fprintf(stderr, "\r\033[K%-14s [%s%s] %3.0f%%  %.0f IOPS", label.c_str(),
                   std::string(static_cast<size_t>(filled), '#').c_str(),
                   std::string(static_cast<size_t>(kWidth - filled), '.').c_str(), fraction * 100,
                   iops);
      std::fflush(stderr);
      drawn_ = true;
    };
  }

  void Clear() {
    if (!drawn_) return;
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
    drawn_ = false;
  }

 private:
  bool enabled_ = false;
  bool drawn_ = false;
};

// The whole check on `worker`; the target and pool live and die in here.
Task<CheckReport> RunOnWorker(Worker& worker, const CheckOptions& o, ProgressBar& bar) {
  CheckReport report;
  auto opened = block::OpenTarget(
      worker, o.target,
      {.read_only = !o.write, .queue_depth = kMaxQueueDepth, .latency_histograms = false});
  if (!opened.ok()) {
    report.Fail(opened.status(), OpenErrorKind(opened.status()));
    co_return report;
  }
  std::unique_ptr<block::Target> target = std::move(*opened);
  report.opened = true;
  report.device = target->name();
  report.geometry = target->geometry();
  const block::Geometry& g = report.geometry;
  if (const auto* ns = dynamic_cast<const block::NvmeNamespace*>(target.get())) {
    report.kind = TargetKind::kNvme;
    report.nsid = ns->nsid();
  } else if (const auto* f = dynamic_cast<const block::DirectFile*>(target.get())) {
    report.kind = f->is_block_device() ? TargetKind::kBlockDevice : TargetKind::kFile;
  }

  // 4 KiB, or one logical block where blocks are larger.
  Region& region = report.region;
  region.io_size = std::max(kIoSize, g.logical_block_size);
  if (g.size_bytes < region.io_size) {
    report.Fail(absl::FailedPreconditionError(absl::StrCat(o.target, " is ", g.size_bytes,
                                                           " bytes: too small for one ",
                                                           region.io_size, "-byte request")),
                kErrorUnsupportedTarget);
    co_return report;
  }
  // --offset and --size are checked here, not by the parser, because only
  // the open target knows its block size and size. Their errors are usage
  // errors (exit 2) like the parser's.
  region.offset = o.offset.value_or(0);
  if (region.offset % g.logical_block_size != 0) {
    report.usage_error = true;
    report.status = absl::InvalidArgumentError(
        absl::StrCat("--offset ", region.offset, " is not a multiple of the ", g.logical_block_size,
                     "-byte logical block size of ", o.target));
    co_return report;
  }
  if (region.offset > g.size_bytes - region.io_size) {
    report.usage_error = true;
    report.status = absl::InvalidArgumentError(
        absl::StrCat("--offset ", region.offset, " leaves less than one ", region.io_size,
                     "-byte request of ", o.target, " (", g.size_bytes, " bytes)"));
    co_return report;
  }
  const uint64_t room = g.size_bytes - region.offset;
  region.bytes = o.size.value_or(room);
  if (region.bytes > room || region.bytes < region.io_size) {
    report.usage_error = true;
    report.status = absl::InvalidArgumentError(
        absl::StrCat("--size ", region.bytes, " must be at least ", region.io_size,
                     " bytes and fit in ", o.target, " after --offset (", room, " bytes)"));
    co_return report;
  }

  auto pool_or =
      BufferPool::Create(worker, {.buffer_size = region.io_size, .count = kMaxQueueDepth});
  if (!pool_or.ok()) {
    report.Fail(pool_or.status(), kErrorSystem);
    co_return report;
  }
  std::unique_ptr<BufferPool> pool = std::move(*pool_or);
  report.registered_buffers = pool->registered();
  if (!report.registered_buffers) {
    report.warnings.push_back(
        "the I/O buffers could not be registered (RLIMIT_MEMLOCK; see `nvme-probe uring`): "
        "the numbers are for plain READ/WRITE, not the _FIXED path ringline normally uses");
  }

  std::random_device entropy;
  for (uint32_t qd : kQueueDepths) {
    LoadResult r = co_await RandomReads(*target, *pool, region, qd, o.seconds, entropy(),
                                        bar.Phase(absl::StrCat("read QD", qd)));
    bar.Clear();
    const absl::Status st = r.status;
    report.reads.push_back({qd, std::move(r)});
    if (!st.ok()) {
      report.Fail(st, kErrorIo);
      co_return report;
    }
  }

  if (o.write) {
    const uint8_t seed = static_cast<uint8_t>(entropy() % 251);
    VerifyResult v = co_await WriteVerify(*target, *pool, region, kMaxQueueDepth, kVerifyBlocks,
                                          seed, entropy(), bar.Phase("write+verify"));
    bar.Clear();
    if (!v.writes.status.ok()) {
      report.Fail(v.writes.status, kErrorIo);
    } else if (!v.flush.ok()) {
      report.Fail(v.flush, kErrorIo);
    } else if (!v.reads.status.ok()) {
      report.Fail(v.reads.status, kErrorIo);
    } else if (v.mismatched_blocks != 0) {
      const Mismatch& m = *v.first_mismatch;
      report.Fail(absl::DataLossError(absl::StrFormat(
                      "%u of %u blocks read back differ from what was written; the first "
                      "difference is at byte offset %u: expected 0x%02x, found 0x%02x",
                      v.mismatched_blocks, v.blocks, m.offset, m.expected, m.found)),
                  kErrorVerifyMismatch);
    }
    report.verify = std::move(v);
  }

  if (const auto* ns = dynamic_cast<const block::NvmeNamespace*>(target.get());
      ns != nullptr && ns->fixed_buffer_fallbacks() != 0) {
    report.warnings.push_back(
        "the kernel refused IORING_URING_CMD_FIXED on the registered buffers (Linux 6.1 does "
        "for a registration larger than the queue's max_segments pages): passthrough ran on "
        "plain memory");
  }
  // Every request is done: the target goes before the pool it was reading
  // into, and both before the worker.
  target.reset();
  pool.reset();
  co_return report;
}

Json LoadJson(const LoadResult& r, uint32_t io_size) {
  return Json{{"ios", r.ios},
              {"seconds", r.seconds},
              {"iops", r.iops()},
              {"mib_per_second", r.iops() * io_size / (1024.0 * 1024.0)},
              {"latency_ns", Json{{"p50", r.latency_ns.Quantile(0.5)},
                                  {"p99", r.latency_ns.Quantile(0.99)},
                                  {"mean", r.latency_ns.Mean()}}}};
}

Json ReportJson(const CheckOptions& o, const CheckReport& r) {
  Json doc = JsonDocument(kCommand);
  doc["ok"] = r.status.ok();
  doc["target"] = o.target;
  if (!r.opened) return doc;
  const block::Geometry& g = r.geometry;
  doc["device"] = r.device;
  doc["kind"] = KindId(r.kind);
  doc["access"] = r.kind == TargetKind::kNvme ? "nvme_passthrough" : "o_direct";
  doc["nsid"] = r.nsid.has_value() ? Json(*r.nsid) : Json(nullptr);
  doc["size_bytes"] = g.size_bytes;
  doc["alignment"] = Json{{"logical_block_size", g.logical_block_size},
                          {"physical_block_size", g.physical_block_size},
                          {"memory_alignment", g.memory_alignment}};
  doc["geometry"] = Json{{"max_transfer_bytes", g.max_transfer_bytes},
                         {"read_only", g.read_only},
                         {"volatile_write_cache", g.volatile_write_cache},
                         {"supports_fua", g.supports_fua},
                         {"supports_discard", g.supports_discard},
                         {"supports_write_zeroes", g.supports_write_zeroes},
                         {"discard_zeroes_data", g.discard_zeroes_data},
                         {"rotational", g.rotational}};
  doc["registered_buffers"] = r.registered_buffers;
  doc["io_size"] = r.region.io_size;
  doc["region"] = Json{{"offset", r.region.offset}, {"bytes", r.region.bytes}};
  Json reads = Json::array();
  for (const ReadRun& run : r.reads) {
    Json j = Json{{"queue_depth", run.queue_depth}};
    j.update(LoadJson(run.result, r.region.io_size));
    reads.push_back(std::move(j));
  }
  doc["reads"] = std::move(reads);
  if (r.verify.has_value()) {
    const VerifyResult& v = *r.verify;
    Json mismatch = nullptr;
    if (v.first_mismatch.has_value()) {
      mismatch = Json{{"offset", v.first_mismatch->offset},
                      {"expected", v.first_mismatch->expected},
                      {"found", v.first_mismatch->found}};
    }
    doc["verify"] = Json{{"passed", v.ok()},
                         {"blocks", v.blocks},
                         {"bytes", v.blocks * r.region.io_size},
                         {"seed", v.seed},
                         {"pattern", "(seed + byte_offset * 131) % 251"},
                         {"writes", LoadJson(v.writes, r.region.io_size)},
                         {"flushed", v.writes.status.ok() && v.flush.ok()},
                         {"reads", LoadJson(v.reads, r.region.io_size)},
                         {"mismatched_blocks", v.mismatched_blocks},
                         {"first_mismatch", std::move(mismatch)}};
  } else {
    doc["verify"] = nullptr;
  }
  Json placement = PlacementJson(r.placement);
  placement["cpu"] = r.cpu;
  doc["completion_placement"] = std::move(placement);
  doc["warnings"] = r.warnings;
  return doc;
}

void PrintText(const CheckOptions& o, const CheckReport& r) {
  const Style style = Style::ForStdout();
  const block::Geometry& g = r.geometry;
  KeyValues top(0);
  top.Add("Target", r.device == o.target ? o.target : absl::StrCat(o.target, " -> ", r.device));
  top.Add("Kind", KindText(r.kind));
  if (r.nsid.has_value()) top.Add("Namespace ID", absl::StrCat(*r.nsid));
  top.Add("Size", BytesWithUnit(g.size_bytes));
  top.Add("Alignment",
          absl::StrCat("logical block ", g.logical_block_size, " B, physical block ",
                       g.physical_block_size, " B, memory ", g.memory_alignment, " B"));
  top.Add("Max transfer", g.max_transfer_bytes == 0 ? std::string("no limit")
                                                    : BytesWithUnit(g.max_transfer_bytes));
  top.Add("Write cache", g.volatile_write_cache ? "volatile (flush needed for durability)"
                                                : "none or non-volatile");
  top.Add("Completions", PlacementCell(r.placement));
  top.Add("Measured on",
          absl::StrCat("CPU ", r.cpu,
                       r.placement.HasPreference()
                           ? (r.placement.IsLocal(r.cpu) ? " (completions arrive here)"
                                                         : " (completions arrive elsewhere)")
                           : ""));
  top.Add("Buffers", r.registered_buffers
                         ? Cell("registered (fixed buffers)", Highlight::kGood)
                         : Cell("not registered (plain memory)", Highlight::kWarn));
  top.Print(std::cout, style);

  if (!r.reads.empty()) {
    std::cout << '\n'
              << style.Apply(
                     Highlight::kHeading,
                     absl::StrCat("Random ", r.region.io_size / 1024, " KiB reads over ",
                                  BytesWithUnit(r.region.bytes), " at offset ", r.region.offset))
              << '\n';
    Table t({"QD", "IOPS", "MiB/s", "p50", "p99", "mean", "SECONDS"}, 2);
    for (const ReadRun& run : r.reads) {
      const LoadResult& l = run.result;
      t.AddRow({absl::StrCat(run.queue_depth), absl::StrFormat("%.0f", l.iops()),
                absl::StrFormat("%.1f", l.iops() * r.region.io_size / (1024.0 * 1024.0)),
                Latency(l.latency_ns.Quantile(0.5)), Latency(l.latency_ns.Quantile(0.99)),
                Latency(static_cast<uint64_t>(l.latency_ns.Mean())),
                absl::StrFormat("%.1f", l.seconds)});
    }
    t.Print(std::cout, style);
  }
  if (r.verify.has_value()) {
    const VerifyResult& v = *r.verify;
    std::cout << '\n'
              << style.Apply(Highlight::kHeading,
                             absl::StrCat("Write / flush / read-back verify: ", v.blocks,
                                          " random blocks of ", r.region.io_size / 1024,
                                          " KiB at QD", kMaxQueueDepth, ", pattern seed ", v.seed))
              << '\n';
    Table t({"PASS", "IOPS", "p50", "p99"}, 2);
    t.AddRow({"write", absl::StrFormat("%.0f", v.writes.iops()),
              Latency(v.writes.latency_ns.Quantile(0.5)),
              Latency(v.writes.latency_ns.Quantile(0.99))});
    if (v.reads.ios != 0) {
      t.AddRow({"read back", absl::StrFormat("%.0f", v.reads.iops()),
                Latency(v.reads.latency_ns.Quantile(0.5)),
                Latency(v.reads.latency_ns.Quantile(0.99))});
    }
    t.Print(std::cout, style);
  }
  for (const std::string& w : r.warnings) {
    std::cout << '\n' << style.Apply(Highlight::kWarn, absl::StrCat("warning: ", w)) << '\n';
  }
  std::cout << '\n';
  if (r.status.ok()) {
    std::cout << style.Apply(Highlight::kGood,
                             o.write ? "Check passed: reads, writes, flush and verify work."
                                     : "Check passed: reads work.")
              << '\n';
  } else {
    std::cout << style.Apply(Highlight::kAlarm, "Check FAILED.") << '\n';
  }
}

// --write is refused on anything but a regular file unless the confirmation
// names the same device; an error message when refused.
std::optional<std::string> RefuseWrite(const CheckOptions& o, const struct stat& st) {
  const bool confirmed = [&] {
    if (o.confirm.empty()) return false;
    if (o.confirm == o.target) return true;
    // The same node spelt differently (a /dev/disk/by-id link) is the same
    // device; anything else is a mistake worth stopping for.
    std::error_code e1, e2;
    const auto a = std::filesystem::canonical(o.target, e1);
    const auto b = std::filesystem::canonical(o.confirm, e2);
    return !e1 && !e2 && a == b;
  }();
  if (!o.confirm.empty() && !confirmed) {
    return absl::StrCat("--i-know-this-destroys-data=", o.confirm, " does not name ", o.target,
                        "; refusing to write");
  }
  if (S_ISREG(st.st_mode) || confirmed) return std::nullopt;
  return absl::StrCat("--write overwrites data on ", o.target,
                      ", which is a device, not a regular file; to really do that, name it "
                      "twice: --write --i-know-this-destroys-data=",
                      o.target);
}

bool PinThisThread(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0;
}

int RunCheck(const CheckOptions& o) {
  struct stat st;
  if (::stat(o.target.c_str(), &st) != 0) {
    const absl::Status status =
        errno == ENOENT ? absl::NotFoundError(absl::StrCat(o.target, ": no such file or device"))
                        : ErrnoToStatus(-errno, absl::StrCat("stat ", o.target));
    Json doc = JsonDocument(kCommand);
    doc["target"] = o.target;
    return ReportFailure(o.format, kCommand, status, std::move(doc), OpenErrorKind(status));
  }
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode) && !S_ISCHR(st.st_mode)) {
    return ReportFailure(
        o.format, kCommand,
        absl::InvalidArgumentError(absl::StrCat(
            o.target, " is ", S_ISDIR(st.st_mode) ? "a directory" : "not a file or device",
            ": check takes an NVMe generic device (/dev/ngXnY), a block device or a regular "
            "file")),
        nullptr, kErrorUnsupportedTarget);
  }
  if (o.write) {
    if (std::optional<std::string> refused = RefuseWrite(o, st)) {
      std::cerr << "nvme-probe check: " << *refused << '\n';
      return kExitUsage;
    }
  }
  // The engine's own verdict first: "io_uring is disabled" says more than the
  // errno of a failed ring set-up.
  if (absl::Status verdict = CheckKernelSupport(); !verdict.ok()) {
    return ReportFailure(o.format, kCommand,
                         absl::FailedPreconditionError(absl::StrCat(
                             verdict.message(), " (`nvme-probe uring` has the details)")),
                         nullptr, kErrorCannotRun);
  }
  // Measure where the engine's tools would run the worker: on a CPU where
  // the target's completions arrive, if this process may use one.
  const block::CompletionPlacement placement = block::ProbeCompletionPlacement(o.target);
  const block::WorkerPlacement plan = block::PlaceWorkers(
      1, block::AllowedCpus(), {}, {{o.target, placement}}, "taskset -c LIST nvme-probe check");
  Config worker_config;
  worker_config.cpus = plan.worker_cpus;
  if (!PinThisThread(plan.worker_cpus[0])) {
    return ReportFailure(
        o.format, kCommand,
        ErrnoToStatus(-errno, absl::StrCat("pinning to CPU ", plan.worker_cpus[0])), nullptr,
        kErrorSystem);
  }
  absl::StatusOr<std::unique_ptr<Worker>> worker = Worker::Create(worker_config);
  if (!worker.ok()) {
    return ReportFailure(o.format, kCommand, worker.status(), nullptr, kErrorSystem);
  }
  CheckReport report;
  {
    ProgressBar bar;
    std::optional<CheckReport> r = (*worker)->BlockOn(RunOnWorker(**worker, o, bar));
    if (r.has_value())
      report = std::move(*r);
    else
      report.Fail(absl::AbortedError("the worker stopped before the check finished"), kErrorSystem);
  }
  worker->reset();
  report.placement = placement;
  report.cpu = plan.worker_cpus[0];
  report.warnings.insert(report.warnings.end(), plan.warnings.begin(), plan.warnings.end());

  if (report.usage_error) {
    std::cerr << "nvme-probe check: " << report.status.message() << '\n';
    return kExitUsage;
  }
  if (o.format == OutputFormat::kJson) {
    Json doc = ReportJson(o, report);
    if (!report.status.ok()) {
      return ReportFailure(o.format, kCommand, report.status, std::move(doc), report.error_kind);
    }
    PrintJson(doc);
    return kExitOk;
  }
  if (report.opened) PrintText(o, report);
  if (!report.status.ok()) return ReportFailure(o.format, kCommand, report.status);
  return kExitOk;
}

}  // namespace

void RegisterCheckCommand(CommandRegistry& registry) {
  auto options = std::make_shared<CheckOptions>();
  CLI::App* cmd = registry.Add(
      std::string(kCommand),
      "Open TARGET as ringline would and measure 4 KiB random reads at QD1 and QD32; --write "
      "adds a write/read-back verify pass",
      [options] { return RunCheck(*options); });
  cmd->add_option("TARGET", options->target,
                  "NVMe generic device (/dev/ngXnY), block device or regular file")
      ->required();
  cmd->add_option("--seconds", options->seconds, "Seconds of random reads per queue depth")
      ->check(CLI::Range(0.1, 3600.0))
      ->type_name("N")
      ->capture_default_str();
  cmd->add_option_function<uint64_t>(
         "--offset", [options](uint64_t v) { options->offset = v; },
         "Test only from this byte offset on (default 0)")
      ->transform(CLI::AsSizeValue(/*kb_is_1000=*/true))
      ->type_name("BYTES");
  cmd->add_option_function<uint64_t>(
         "--size", [options](uint64_t v) { options->size = v; },
         "Test only this many bytes (default: to the end)")
      ->transform(CLI::AsSizeValue(/*kb_is_1000=*/true))
      ->type_name("BYTES");
  CLI::Option* write_flag =
      cmd->add_flag("--write", options->write,
                    "Also write a pattern to up to 1024 random blocks, flush and read it back "
                    "(DESTROYS their data; on a device needs --i-know-this-destroys-data)");
  cmd->add_option("--i-know-this-destroys-data", options->confirm,
                  "Allow --write on a device: name the same DEVICE again")
      ->type_name("DEVICE")
      ->needs(write_flag);
  AddOutputFormatOption(cmd, &options->format);
}

}  // namespace ringline::nvme_probe
