// `nvme-probe list`: controllers and namespaces found by libnvme's topology
// scan, with each namespace's block and generic (passthrough) device.
//
// libnvme identifies each namespace by opening it, which an unprivileged
// user cannot do: libnvme then leaves the namespace out. Namespaces are
// therefore enumerated from sysfs (which anyone can read) and their details
// taken from libnvme where it had them, else from sysfs ("source" tells).
#include <libnvme.h>
#include <sys/stat.h>
#include <syslog.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "commands.h"
#include "output.h"
#include "ringline/block/nvme_device.h"

namespace ringline::nvme_probe {
namespace {

constexpr std::string_view kCommand = "list";

struct NamespaceRow {
  std::string name;  // nvme0n1
  uint32_t nsid = 0;
  uint32_t lba_size = 0;
  uint32_t metadata_size = 0;
  uint64_t size_lbas = 0;
  std::optional<uint64_t> utilization_lbas;  // not in sysfs
  std::string source;                        // "identify" (libnvme) or "sysfs"
  std::string generic_path;                  // "" when there is none
};

struct ControllerRow {
  std::string name;  // nvme0
  std::string subsystem;
  std::string subsystem_nqn;
  std::string model;
  std::string serial;
  std::string firmware;
  std::string transport;
  std::string address;
  std::string state;
  std::vector<NamespaceRow> namespaces;
};

std::string ReadAttr(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  if (in) std::getline(in, s);
  absl::StripAsciiWhitespace(&s);
  return s;
}

std::string OrEmpty(const char* s) {
  std::string out = s == nullptr ? std::string() : std::string(s);
  absl::StripAsciiWhitespace(&out);
  return out;
}

// nvme<N> controller names in /sys/class/nvme, ordered by instance.
std::vector<std::string> SysfsControllers() {
  std::vector<std::pair<uint32_t, std::string>> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/sys/class/nvme", ec)) {
    const std::string name = entry.path().filename().string();
    absl::string_view rest = name;
    uint32_t instance = 0;
    if (absl::ConsumePrefix(&rest, "nvme") && absl::SimpleAtoi(rest, &instance)) {
      found.emplace_back(instance, name);
    }
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> names;
  for (auto& f : found) names.push_back(std::move(f.second));
  return names;
}

struct RootDeleter {
  void operator()(nvme_root_t r) const { nvme_free_tree(r); }
};
using RootPtr = std::unique_ptr<std::remove_pointer_t<nvme_root_t>, RootDeleter>;

// What libnvme's scan found, by kernel name.
struct Scan {
  RootPtr root;
  std::map<std::string, nvme_ctrl_t> controllers;
  std::map<std::string, nvme_ns_t> namespaces;
  std::string error;  // set when the scan failed
};

Scan ScanTopology() {
  Scan scan;
  // libnvme logs to the given stream; stderr keeps stdout clean for JSON.
  scan.root.reset(nvme_create_root(stderr, LOG_ERR));
  if (!scan.root) {
    scan.error = "libnvme: cannot create the topology root";
    return scan;
  }
  if (nvme_scan_topology(scan.root.get(), nullptr, nullptr) != 0) {
    scan.error = absl::StrCat("libnvme topology scan failed: ", std::strerror(errno));
    // What was found before the failure is still usable.
  }
  nvme_host_t h;
  nvme_subsystem_t s;
  nvme_ctrl_t c;
  nvme_ns_t n;
  nvme_for_each_host(scan.root.get(), h) {
    nvme_for_each_subsystem(h, s) {
      // Multipath namespaces (the ns heads) hang off the subsystem.
      nvme_subsystem_for_each_ns(s, n) { scan.namespaces[OrEmpty(nvme_ns_get_name(n))] = n; }
      nvme_subsystem_for_each_ctrl(s, c) {
        scan.controllers[OrEmpty(nvme_ctrl_get_name(c))] = c;
        // Without multipath, namespaces hang off their controller.
        nvme_ctrl_for_each_ns(c, n) { scan.namespaces[OrEmpty(nvme_ns_get_name(n))] = n; }
      }
    }
  }
  return scan;
}

std::string GenericFor(const std::string& block_name) {
  absl::string_view rest = block_name;
  if (!absl::ConsumePrefix(&rest, "nvme")) return {};
  const std::string generic = absl::StrCat("ng", rest);
  struct stat st;
  if (stat(absl::StrCat("/dev/", generic).c_str(), &st) == 0) return absl::StrCat("/dev/", generic);
  return {};
}

NamespaceRow DescribeNamespace(const std::string& name, const Scan& scan) {
  NamespaceRow row;
  row.name = name;
  row.generic_path = GenericFor(name);
  if (auto it = scan.namespaces.find(name); it != scan.namespaces.end()) {
    nvme_ns_t n = it->second;
    row.nsid = static_cast<uint32_t>(nvme_ns_get_nsid(n));
    row.lba_size = static_cast<uint32_t>(nvme_ns_get_lba_size(n));
    row.metadata_size = static_cast<uint32_t>(nvme_ns_get_meta_size(n));
    row.size_lbas = nvme_ns_get_lba_count(n);
    row.utilization_lbas = nvme_ns_get_lba_util(n);
    row.source = "identify";
    return row;
  }
  const std::string dir = absl::StrCat("/sys/class/block/", name, "/");
  uint64_t sectors = 0;
  (void)absl::SimpleAtoi(ReadAttr(dir + "nsid"), &row.nsid);
  (void)absl::SimpleAtoi(ReadAttr(dir + "queue/logical_block_size"), &row.lba_size);
  (void)absl::SimpleAtoi(ReadAttr(dir + "size"), &sectors);  // 512-byte units
  if (row.lba_size != 0) row.size_lbas = sectors * 512 / row.lba_size;
  row.source = "sysfs";
  return row;
}

ControllerRow DescribeController(const std::string& name, const Scan& scan) {
  ControllerRow row;
  row.name = name;
  if (auto it = scan.controllers.find(name); it != scan.controllers.end()) {
    nvme_ctrl_t c = it->second;
    nvme_subsystem_t s = nvme_ctrl_get_subsystem(c);
    row.model = OrEmpty(nvme_ctrl_get_model(c));
    row.serial = OrEmpty(nvme_ctrl_get_serial(c));
    row.firmware = OrEmpty(nvme_ctrl_get_firmware(c));
    row.transport = OrEmpty(nvme_ctrl_get_transport(c));
    row.address = OrEmpty(nvme_ctrl_get_address(c));
    row.state = OrEmpty(nvme_ctrl_get_state(c));
    if (s != nullptr) {
      row.subsystem = OrEmpty(nvme_subsystem_get_name(s));
      row.subsystem_nqn = OrEmpty(nvme_subsystem_get_nqn(s));
    }
  } else {
    const std::string dir = absl::StrCat("/sys/class/nvme/", name, "/");
    row.model = ReadAttr(dir + "model");
    row.serial = ReadAttr(dir + "serial");
    row.firmware = ReadAttr(dir + "firmware_rev");
    row.transport = ReadAttr(dir + "transport");
    row.address = ReadAttr(dir + "address");
    row.state = ReadAttr(dir + "state");
    row.subsystem_nqn = ReadAttr(dir + "subsysnqn");
  }
  for (const std::string& ns : block::NvmeControllerNamespaces(name)) {
    row.namespaces.push_back(DescribeNamespace(ns, scan));
  }
  return row;
}

Json NamespaceJson(const NamespaceRow& ns) {
  Json j = Json::object();
  j["nsid"] = ns.nsid;
  j["name"] = ns.name;
  j["block_device"] = absl::StrCat("/dev/", ns.name);
  j["generic_device"] = ns.generic_path.empty() ? Json(nullptr) : Json(ns.generic_path);
  j["lba_size"] = ns.lba_size;
  j["metadata_size"] = ns.metadata_size;
  j["size_lbas"] = ns.size_lbas;
  j["size_bytes"] = ns.size_lbas * ns.lba_size;
  if (ns.utilization_lbas.has_value()) {
    j["utilization_lbas"] = *ns.utilization_lbas;
    j["utilization_bytes"] = *ns.utilization_lbas * ns.lba_size;
  } else {
    j["utilization_lbas"] = nullptr;
    j["utilization_bytes"] = nullptr;
  }
  j["source"] = ns.source;
  return j;
}

Json ControllerJson(const ControllerRow& c) {
  Json j = Json::object();
  j["name"] = c.name;
  j["device"] = absl::StrCat("/dev/", c.name);
  j["model"] = c.model;
  j["serial"] = c.serial;
  j["firmware"] = c.firmware;
  j["transport"] = c.transport;
  j["address"] = c.address;
  j["state"] = c.state;
  j["subsystem"] = c.subsystem;
  j["subsystem_nqn"] = c.subsystem_nqn;
  Json namespaces = Json::array();
  for (const auto& ns : c.namespaces) namespaces.push_back(NamespaceJson(ns));
  j["namespaces"] = std::move(namespaces);
  return j;
}

int RunList(OutputFormat format) {
  const std::vector<std::string> names = SysfsControllers();
  if (names.empty()) {
    const std::string message =
        "no NVMe controllers found: /sys/class/nvme is empty or missing (this host has no NVMe "
        "device, or the nvme driver is not loaded: try 'modprobe nvme')";
    if (format == OutputFormat::kJson) {
      Json doc = JsonDocument(kCommand);
      doc["ok"] = false;
      doc["controllers"] = Json::array();
      doc["error"] = {{"kind", std::string(kErrorNoDevices)}, {"message", message}};
      PrintJson(doc);
    } else {
      std::cerr << "nvme-probe list: " << message << '\n';
    }
    return kExitProblem;
  }

  const Scan scan = ScanTopology();
  std::vector<ControllerRow> rows;
  for (const std::string& name : names) rows.push_back(DescribeController(name, scan));

  if (format == OutputFormat::kJson) {
    Json doc = JsonDocument(kCommand);
    Json controllers = Json::array();
    for (const auto& c : rows) controllers.push_back(ControllerJson(c));
    doc["controllers"] = std::move(controllers);
    Json warnings = Json::array();
    if (!scan.error.empty()) warnings.push_back(scan.error);
    doc["warnings"] = std::move(warnings);
    PrintJson(doc);
    return kExitOk;
  }

  const Style style = Style::ForStdout();
  if (!scan.error.empty()) std::cerr << "nvme-probe list: warning: " << scan.error << '\n';
  Table controllers({"Controller", "Transport", "Address", "State", "Model", "Serial", "Firmware"});
  Table namespaces(
      {"Namespace", "Generic", "Controller", "NSID", "LBA size", "Capacity", "Used", "Source"});
  bool partial = false;
  for (const auto& c : rows) {
    controllers.AddRow({absl::StrCat("/dev/", c.name), c.transport, c.address,
                        Cell(c.state, c.state == "live" ? Highlight::kNone : Highlight::kWarn),
                        c.model, c.serial, c.firmware});
    for (const auto& ns : c.namespaces) {
      partial |= ns.source != "identify";
      namespaces.AddRow(
          {absl::StrCat("/dev/", ns.name), ns.generic_path.empty() ? "-" : ns.generic_path, c.name,
           absl::StrCat(ns.nsid), absl::StrCat(ns.lba_size),
           BytesWithUnit(ns.size_lbas * ns.lba_size),
           ns.utilization_lbas.has_value() ? BytesWithUnit(*ns.utilization_lbas * ns.lba_size)
                                           : std::string("-"),
           ns.source});
    }
  }
  controllers.Print(std::cout, style);
  std::cout << '\n';
  if (namespaces.empty()) {
    std::cout << "(no namespaces)\n";
  } else {
    namespaces.Print(std::cout, style);
  }
  if (partial) {
    std::cout << "\nSource 'sysfs': libnvme could not identify the namespace (opening it needs "
                 "root); sizes come from sysfs.\n";
  }
  return kExitOk;
}

}  // namespace

void RegisterListCommand(CommandRegistry& registry) {
  auto format = std::make_shared<OutputFormat>(OutputFormat::kNormal);
  CLI::App* cmd =
      registry.Add("list", "List NVMe controllers and namespaces (block and generic char devices)",
                   [format] { return RunList(*format); });
  AddOutputFormatOption(cmd, format.get());
}

}  // namespace ringline::nvme_probe
