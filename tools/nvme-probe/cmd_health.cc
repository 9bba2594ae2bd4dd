// `nvme-probe health DEVICE`: the controller's SMART / Health Information
// log with anything alarming called out. Exit code 1 when there is an alarm.
//
// Alarms: any critical warning bit; available spare below its threshold;
// percentage used >= 90; media errors > 0; composite temperature at or
// above the controller's warning (WCTEMP) or critical (CCTEMP) threshold
// when it reports them.
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "commands.h"
#include "device.h"
#include "output.h"
#include "ringline/block/nvme_device.h"

namespace ringline::nvme_probe {
namespace {

using block::NvmeControllerInfo;
using block::NvmeSmartLog;

constexpr std::string_view kCommand = "health";
constexpr int kPercentageUsedAlarm = 90;

struct Alarm {
  std::string field;  // the JSON field it concerns
  std::string message;
};

std::vector<Alarm> FindAlarms(const NvmeSmartLog& s, const std::optional<NvmeControllerInfo>& c) {
  std::vector<Alarm> alarms;
  for (const std::string& w : s.critical_warning.Describe()) {
    alarms.push_back({"critical_warning", absl::StrCat("critical warning: ", w)});
  }
  if (s.available_spare_percent < s.available_spare_threshold) {
    alarms.push_back({"available_spare_percent",
                      absl::StrFormat("available spare %d%% is below the threshold %d%%",
                                      s.available_spare_percent, s.available_spare_threshold)});
  }
  if (s.percentage_used >= kPercentageUsedAlarm) {
    alarms.push_back({"percentage_used",
                      absl::StrFormat("%d%% of the rated endurance is used", s.percentage_used)});
  }
  if (s.media_errors > 0) {
    alarms.push_back({"media_errors", absl::StrCat(Uint128ToString(s.media_errors),
                                                   " unrecovered media / data integrity errors")});
  }
  if (c.has_value() && s.temperature_kelvin != 0) {
    const uint16_t t = s.temperature_kelvin;
    if (c->critical_temperature_kelvin != 0 && t >= c->critical_temperature_kelvin) {
      alarms.push_back(
          {"temperature_kelvin",
           absl::StrFormat("temperature %d C is at or above the critical threshold %d C",
                           block::KelvinToCelsius(t),
                           block::KelvinToCelsius(c->critical_temperature_kelvin))});
    } else if (c->warning_temperature_kelvin != 0 && t >= c->warning_temperature_kelvin) {
      alarms.push_back(
          {"temperature_kelvin",
           absl::StrFormat("temperature %d C is at or above the warning threshold %d C",
                           block::KelvinToCelsius(t),
                           block::KelvinToCelsius(c->warning_temperature_kelvin))});
    }
  }
  return alarms;
}

bool HasAlarm(const std::vector<Alarm>& alarms, std::string_view field) {
  for (const auto& a : alarms) {
    if (a.field == field) return true;
  }
  return false;
}

Json SmartJson(const NvmeSmartLog& s) {
  const block::NvmeCriticalWarning& w = s.critical_warning;
  Json sensors = Json::array();
  for (size_t i = 0; i < s.temperature_sensors_kelvin.size(); ++i) {
    if (s.temperature_sensors_kelvin[i] != 0) {
      sensors.push_back(Json{{"sensor", i + 1}, {"kelvin", s.temperature_sensors_kelvin[i]}});
    }
  }
  return Json{{"critical_warning", Json{{"raw", w.raw},
                                        {"spare_below_threshold", w.spare_below_threshold()},
                                        {"temperature", w.temperature()},
                                        {"reliability_degraded", w.reliability_degraded()},
                                        {"read_only", w.read_only()},
                                        {"volatile_backup_failed", w.volatile_backup_failed()},
                                        {"pmr_read_only", w.pmr_read_only()}}},
              {"temperature_kelvin", s.temperature_kelvin},
              {"temperature_celsius", block::KelvinToCelsius(s.temperature_kelvin)},
              {"available_spare_percent", s.available_spare_percent},
              {"available_spare_threshold_percent", s.available_spare_threshold},
              {"percentage_used", s.percentage_used},
              {"data_units_read", JsonUint128(s.data_units_read)},
              {"data_units_written", JsonUint128(s.data_units_written)},
              {"host_read_commands", JsonUint128(s.host_read_commands)},
              {"host_write_commands", JsonUint128(s.host_write_commands)},
              {"controller_busy_minutes", JsonUint128(s.controller_busy_minutes)},
              {"power_cycles", JsonUint128(s.power_cycles)},
              {"power_on_hours", JsonUint128(s.power_on_hours)},
              {"unsafe_shutdowns", JsonUint128(s.unsafe_shutdowns)},
              {"media_errors", JsonUint128(s.media_errors)},
              {"error_log_entries", JsonUint128(s.error_log_entries)},
              {"warning_temperature_minutes", s.warning_temperature_minutes},
              {"critical_temperature_minutes", s.critical_temperature_minutes},
              {"temperature_sensors", std::move(sensors)}};
}

std::string DataUnits(absl::uint128 units) {
  // One data unit is 1000 x 512 bytes.
  const absl::uint128 bytes = units * 512000;
  if (absl::Uint128High64(bytes) != 0) return Uint128ToString(units);
  return absl::StrCat(Uint128ToString(units), " = ", BytesWithUnit(absl::Uint128Low64(bytes)));
}

void PrintText(const block::NvmeDevicePaths& paths, const std::optional<NvmeControllerInfo>& c,
               const NvmeSmartLog& s, const std::vector<Alarm>& alarms) {
  const Style style = Style::ForStdout();
  auto mark = [&](std::string_view field, std::string text) {
    return Cell(std::move(text), HasAlarm(alarms, field) ? Highlight::kAlarm : Highlight::kNone);
  };
  KeyValues top(0);
  top.Add("Device", absl::StrCat(paths.input, " (", KindDescription(paths.kind), ")"));
  if (!paths.controller_name.empty()) top.Add("Controller", paths.controller_path());
  if (c.has_value()) top.Add("Model / serial", absl::StrCat(c->model, " / ", c->serial));
  top.Print(std::cout, style);

  std::cout << '\n' << style.Apply(Highlight::kHeading, "SMART / Health Information") << '\n';
  KeyValues kv;
  const auto& w = s.critical_warning;
  kv.Add("Critical warning",
         mark("critical_warning",
              w.raw == 0 ? std::string("none") : absl::StrFormat("0x%02x", w.raw)));
  std::string temp = absl::StrFormat("%d C (%d K)", block::KelvinToCelsius(s.temperature_kelvin),
                                     s.temperature_kelvin);
  if (c.has_value() && c->warning_temperature_kelvin != 0) {
    absl::StrAppend(&temp, absl::StrFormat(", warning at %d C",
                                           block::KelvinToCelsius(c->warning_temperature_kelvin)));
  }
  if (c.has_value() && c->critical_temperature_kelvin != 0) {
    absl::StrAppend(&temp, absl::StrFormat(", critical at %d C",
                                           block::KelvinToCelsius(c->critical_temperature_kelvin)));
  }
  kv.Add("Temperature", mark("temperature_kelvin", temp));
  kv.Add("Available spare", mark("available_spare_percent",
                                 absl::StrFormat("%d%% (threshold %d%%)", s.available_spare_percent,
                                                 s.available_spare_threshold)));
  kv.Add("Percentage used", mark("percentage_used", absl::StrCat(s.percentage_used, "%")));
  kv.Add("Data units read", DataUnits(s.data_units_read));
  kv.Add("Data units written", DataUnits(s.data_units_written));
  kv.Add("Host read commands", Uint128ToString(s.host_read_commands));
  kv.Add("Host write commands", Uint128ToString(s.host_write_commands));
  kv.Add("Controller busy time", absl::StrCat(Uint128ToString(s.controller_busy_minutes), " min"));
  kv.Add("Power cycles", Uint128ToString(s.power_cycles));
  kv.Add("Power on hours", Uint128ToString(s.power_on_hours));
  kv.Add("Unsafe shutdowns", Uint128ToString(s.unsafe_shutdowns));
  kv.Add("Media errors", mark("media_errors", Uint128ToString(s.media_errors)));
  kv.Add("Error log entries", Uint128ToString(s.error_log_entries));
  kv.Add("Warning temp. time", absl::StrCat(s.warning_temperature_minutes, " min"));
  kv.Add("Critical temp. time", absl::StrCat(s.critical_temperature_minutes, " min"));
  for (size_t i = 0; i < s.temperature_sensors_kelvin.size(); ++i) {
    const uint16_t k = s.temperature_sensors_kelvin[i];
    if (k != 0) {
      kv.Add(absl::StrCat("Temperature sensor ", i + 1),
             absl::StrFormat("%d C", block::KelvinToCelsius(k)));
    }
  }
  kv.Print(std::cout, style);

  std::cout << '\n';
  if (alarms.empty()) {
    std::cout << style.Apply(Highlight::kGood, "No alarms.") << '\n';
  } else {
    std::cout << style.Apply(Highlight::kAlarm, absl::StrCat(alarms.size(), " alarm(s):")) << '\n';
    for (const auto& a : alarms)
      std::cout << "  " << style.Apply(Highlight::kAlarm, a.message) << '\n';
  }
}

int RunHealth(const std::string& path, OutputFormat format) {
  absl::StatusOr<OpenedDevice> dev = ResolveAndOpen(path);
  if (!dev.ok()) return ReportFailure(format, kCommand, dev.status());
  const int fd = dev->fd.get();

  Json doc = JsonDocument(kCommand);
  doc["device"] = path;
  doc["kind"] = KindId(dev->paths.kind);
  doc["controller_device"] =
      dev->paths.controller_name.empty() ? Json(nullptr) : Json(dev->paths.controller_path());

  // Identify is for the temperature thresholds and the heading only; a
  // failure there must not hide the health log.
  std::optional<NvmeControllerInfo> ctrl;
  std::vector<std::string> warnings;
  if (absl::StatusOr<NvmeControllerInfo> id = block::IdentifyController(fd); id.ok()) {
    ctrl = *std::move(id);
  } else if (id.status().code() == absl::StatusCode::kPermissionDenied) {
    return ReportFailure(format, kCommand, id.status(), std::move(doc));
  } else {
    warnings.emplace_back(id.status().message());
  }

  absl::StatusOr<NvmeSmartLog> smart = block::GetSmartLog(fd);
  if (!smart.ok()) return ReportFailure(format, kCommand, smart.status(), std::move(doc));
  const std::vector<Alarm> alarms = FindAlarms(*smart, ctrl);

  if (format == OutputFormat::kJson) {
    doc["ok"] = alarms.empty();
    if (ctrl.has_value()) {
      doc["controller"] = Json{{"model", ctrl->model},
                               {"serial", ctrl->serial},
                               {"firmware", ctrl->firmware},
                               {"warning_temperature_kelvin", ctrl->warning_temperature_kelvin},
                               {"critical_temperature_kelvin", ctrl->critical_temperature_kelvin}};
    } else {
      doc["controller"] = nullptr;
    }
    doc["smart"] = SmartJson(*smart);
    Json a = Json::array();
    for (const auto& alarm : alarms)
      a.push_back(Json{{"field", alarm.field}, {"message", alarm.message}});
    doc["alarms"] = std::move(a);
    doc["warnings"] = warnings;
    PrintJson(doc);
  } else {
    for (const auto& w : warnings) std::cerr << "nvme-probe health: warning: " << w << '\n';
    PrintText(dev->paths, ctrl, *smart, alarms);
  }
  return alarms.empty() ? kExitOk : kExitProblem;
}

}  // namespace

void RegisterHealthCommand(CommandRegistry& registry) {
  registry.AddDeviceCommand(
      "health",
      "SMART / health log of the controller behind DEVICE, alarms highlighted (exit 1 on alarm)",
      "NVMe device node (controller or namespace)", RunHealth);
}

}  // namespace ringline::nvme_probe
