// `nvme-probe uring`: can ringline run on this kernel, and if not, why.
//
// Everything about the kernel comes from the engine's own start-up probe
// (ringline/probe.h), so this command and the engine cannot disagree: the
// verdict printed here is the one Runtime::Start would reach. On top of it,
// the locked-memory budget is compared with the registered buffers a
// deployment would use (--buffers); a shortfall is a warning, not a failure,
// because the engine then falls back to unregistered buffers.
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "commands.h"
#include "output.h"
#include "ringline/probe.h"

namespace ringline::nvme_probe {
namespace {

constexpr std::string_view kCommand = "uring";
constexpr uint64_t kDefaultBuffers = uint64_t{64} << 20;

std::string MinimumKernel() { return absl::StrCat(kMinKernelMajor, ".", kMinKernelMinor); }

// What the io_uring_disabled sysctl value means (Linux 6.6+; absent before,
// which the probe reports as 0).
std::string DisabledMeaning(int value) {
  switch (value) {
    case 0:
      return "io_uring allowed";
    case 1:
      return "io_uring only for CAP_SYS_ADMIN and the kernel.io_uring_group group";
    case 2:
      return "io_uring disabled for everyone";
  }
  return "unknown value";
}

// Memlock limits print as "unlimited" in text and null in JSON.
std::string LimitText(uint64_t bytes) {
  return bytes == UINT64_MAX ? std::string("unlimited") : BytesWithUnit(bytes);
}
Json LimitJson(uint64_t bytes) { return bytes == UINT64_MAX ? Json(nullptr) : Json(bytes); }

// Why the buffers fit (for the text and JSON), given that they do.
std::string FitReason(const FeatureReport& r) {
  if (r.cap_ipc_lock) return "CAP_IPC_LOCK: registration is not limited by RLIMIT_MEMLOCK";
  if (r.memlock_soft == UINT64_MAX) return "RLIMIT_MEMLOCK is unlimited";
  return "within the RLIMIT_MEMLOCK soft limit";
}

Json ReportJson(const FeatureReport& r, uint64_t buffers, const absl::Status& buffers_fit,
                const std::vector<std::string>& problems) {
  Json doc = JsonDocument(kCommand);
  doc["ok"] = problems.empty();
  doc["kernel"] = Json{{"release", r.kernel.release},
                       {"major", r.kernel.major},
                       {"minor", r.kernel.minor},
                       {"patch", r.kernel.patch},
                       {"minimum", MinimumKernel()},
                       {"supported", r.kernel.AtLeast(kMinKernelMajor, kMinKernelMinor)}};
  doc["io_uring_disabled"] = r.io_uring_disabled;
  doc["setup"] = Json{{"permitted", r.setup_permitted},
                      {"error", r.setup_error.empty() ? Json(nullptr) : Json(r.setup_error)}};
  Json flags = Json::array();
  for (const auto& f : r.setup_flags) {
    flags.push_back(Json{{"name", f.name},
                         {"supported", f.supported},
                         {"required", f.required},
                         {"since", f.needs}});
  }
  doc["setup_flags"] = std::move(flags);
  Json ops = Json::array();
  for (const auto& op : r.opcodes) {
    ops.push_back(Json{{"name", op.name},
                       {"opcode", op.opcode},
                       {"supported", op.supported},
                       {"required", op.required},
                       {"since", op.needs}});
  }
  doc["opcodes"] = std::move(ops);
  doc["memlock"] =
      Json{{"soft_bytes", LimitJson(r.memlock_soft)},
           {"hard_bytes", LimitJson(r.memlock_hard)},
           {"cap_ipc_lock", r.cap_ipc_lock},
           {"buffers_bytes", buffers},
           {"buffers_fit", buffers_fit.ok()},
           {"detail", buffers_fit.ok() ? FitReason(r) : std::string(buffers_fit.message())}};
  doc["verdict"] = Json{{"can_run", problems.empty()},
                        {"message", problems.empty() ? std::string("ringline can run here")
                                                     : std::string(r.Verdict().message())}};
  doc["problems"] = problems;
  std::vector<std::string> warnings;
  if (!buffers_fit.ok()) warnings.emplace_back(buffers_fit.message());
  doc["warnings"] = std::move(warnings);
  if (!problems.empty()) {
    doc["error"] = Json{{"kind", std::string(kErrorCannotRun)},
                        {"message", std::string(r.Verdict().message())}};
  }
  return doc;
}

// Colour for a feature: missing and required is an alarm, missing and
// optional only a warning.
Cell Supported(bool supported, bool required) {
  if (supported) return Cell("yes", Highlight::kGood);
  return Cell("no", required ? Highlight::kAlarm : Highlight::kWarn);
}

void PrintText(const FeatureReport& r, uint64_t buffers, const absl::Status& buffers_fit,
               const std::vector<std::string>& problems) {
  const Style style = Style::ForStdout();
  const bool kernel_ok = r.kernel.AtLeast(kMinKernelMajor, kMinKernelMinor);
  KeyValues top(0);
  top.Add("Kernel", Cell(absl::StrCat(r.kernel.release, " (ringline needs ", MinimumKernel(),
                                      " or newer: ", kernel_ok ? "ok" : "too old", ")"),
                         kernel_ok ? Highlight::kNone : Highlight::kAlarm));
  top.Add("io_uring_disabled",
          Cell(absl::StrCat(r.io_uring_disabled, " (", DisabledMeaning(r.io_uring_disabled), ")"),
               r.io_uring_disabled == 0 ? Highlight::kNone : Highlight::kWarn));
  top.Add("io_uring_setup",
          r.setup_permitted ? Cell("permitted")
                            : Cell(absl::StrCat("refused: ", r.setup_error), Highlight::kAlarm));
  top.Print(std::cout, style);

  if (r.setup_permitted) {
    // Setup flags and opcodes: the same columns, from two lists of the same shape.
    auto features = [&](const char* heading, const char* column, const auto& items) {
      std::cout << '\n' << style.Apply(Highlight::kHeading, heading) << '\n';
      Table table({column, "SUPPORTED", "RINGLINE", "SINCE"}, 2);
      for (const auto& f : items) {
        table.AddRow({f.name, Supported(f.supported, f.required),
                      f.required ? "required" : "optional", f.needs});
      }
      table.Print(std::cout, style);
    };
    features("Setup flags", "FLAG", r.setup_flags);
    features("Opcodes", "OPCODE", r.opcodes);
  }

  std::cout << '\n' << style.Apply(Highlight::kHeading, "Locked memory") << '\n';
  KeyValues mem;
  mem.Add("RLIMIT_MEMLOCK",
          absl::StrCat("soft ", LimitText(r.memlock_soft), ", hard ", LimitText(r.memlock_hard)));
  mem.Add("CAP_IPC_LOCK", YesNo(r.cap_ipc_lock));
  mem.Add("Registered buffers",
          buffers_fit.ok()
              ? Cell(absl::StrCat(BytesWithUnit(buffers), ": fit (", FitReason(r), ")"),
                     Highlight::kGood)
              : Cell(absl::StrCat(BytesWithUnit(buffers), ": do not fit"), Highlight::kWarn));
  mem.Print(std::cout, style);
  if (!buffers_fit.ok()) {
    std::cout << "  " << style.Apply(Highlight::kWarn, std::string(buffers_fit.message())) << '\n';
  }

  std::cout << '\n';
  if (problems.empty()) {
    std::cout << style.Apply(Highlight::kGood, "Verdict: ringline can run here") << '\n';
    if (!buffers_fit.ok()) {
      std::cout << "(with a warning: registered buffers will fall back to plain memory, see "
                   "above)\n";
    }
    return;
  }
  std::cout << style.Apply(Highlight::kAlarm, "Verdict: ringline cannot run here:") << '\n';
  for (const std::string& p : problems) {
    std::cout << "  " << style.Apply(Highlight::kAlarm, p) << '\n';
  }
}

int RunUring(uint64_t buffers, OutputFormat format) {
  const FeatureReport report = ProbeKernel();
  const std::vector<std::string> problems = report.Problems();
  const absl::Status buffers_fit = report.CheckRegisteredBuffers(buffers);
  if (format == OutputFormat::kJson) {
    PrintJson(ReportJson(report, buffers, buffers_fit, problems));
  } else {
    PrintText(report, buffers, buffers_fit, problems);
  }
  return problems.empty() ? kExitOk : kExitProblem;
}

}  // namespace

void RegisterUringCommand(CommandRegistry& registry) {
  struct Options {
    uint64_t buffers = kDefaultBuffers;
    OutputFormat format = OutputFormat::kNormal;
  };
  auto options = std::make_shared<Options>();
  CLI::App* cmd = registry.Add(
      std::string(kCommand),
      "The kernel's io_uring support as ringline needs it, ending in a verdict (exit 1 when "
      "ringline cannot run here)",
      [options] { return RunUring(options->buffers, options->format); });
  cmd->add_option("--buffers", options->buffers,
                  "Registered I/O buffers the deployment will use, all workers together, e.g. "
                  "64MiB (compared with RLIMIT_MEMLOCK)")
      ->transform(CLI::AsSizeValue(/*kb_is_1000=*/true))
      ->check(CLI::Range(uint64_t{1}, UINT64_MAX))
      ->type_name("BYTES")
      ->capture_default_str();
  AddOutputFormatOption(cmd, &options->format);
}

}  // namespace ringline::nvme_probe
