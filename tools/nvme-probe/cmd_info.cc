// `nvme-probe info DEVICE`: what the block layer reads at open time, for a
// namespace (/dev/ngXnY, /dev/nvmeXnY) or for every namespace of a
// controller (/dev/nvmeX): maximum transfer, LBA formats, volatile write
// cache, optional commands, the passthrough device and on which CPUs its
// completions arrive (ringline/block/placement.h).
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "commands.h"
#include "device.h"
#include "output.h"
#include "placement_report.h"
#include "ringline/block/nvme_device.h"

namespace ringline::nvme_probe {
namespace {

using block::NvmeControllerInfo;
using block::NvmeDevicePaths;
using block::NvmeNamespaceInfo;

constexpr std::string_view kCommand = "info";

struct MaxTransfer {
  uint64_t bytes = 0;  // 0 = no limit known
  std::string source;  // "kernel" or "mdts"
  std::string detail;  // the sysfs file, or how MDTS was converted
};

struct NamespaceReport {
  NvmeDevicePaths paths;
  NvmeNamespaceInfo info;
  MaxTransfer max_transfer;
  // On which CPUs its completions arrive (from its block device's queues).
  block::CompletionPlacement placement;
};

block::CompletionPlacement PlacementOf(const NvmeDevicePaths& paths) {
  if (paths.block_name.empty()) {
    block::CompletionPlacement p;
    p.kind = block::CompletionPlacement::Kind::kUnknown;
    p.reason = "the namespace has no block device in sysfs";
    return p;
  }
  return block::ProbeCompletionPlacementOfDisk(paths.block_name);
}

MaxTransfer MaxTransferFor(const NvmeDevicePaths& paths, const NvmeControllerInfo& ctrl) {
  if (!paths.block_name.empty()) {
    if (auto kernel = block::KernelMaxTransferBytes(paths.block_name); kernel.ok()) {
      return {*kernel, "kernel",
              absl::StrCat("/sys/class/block/", paths.block_name, "/queue/max_hw_sectors_kb")};
    }
  }
  const uint64_t mdts = block::NvmeMdtsBytes(ctrl.mdts);
  return {mdts, "mdts",
          ctrl.mdts == 0 ? std::string("MDTS 0: no limit reported")
                         : absl::StrCat("2^MDTS (", ctrl.mdts, ") x 4 KiB minimum page size")};
}

std::vector<std::pair<std::string, bool>> OptionalCommandList(
    const block::NvmeOptionalCommands& o) {
  return {{"compare", o.compare},
          {"write_uncorrectable", o.write_uncorrectable},
          {"dataset_management", o.dataset_management},
          {"write_zeroes", o.write_zeroes},
          {"save_select_features", o.save_select_features},
          {"reservations", o.reservations},
          {"timestamp", o.timestamp},
          {"verify", o.verify},
          {"copy", o.copy}};
}

std::string RelativePerformance(uint8_t rp) {
  static constexpr const char* kNames[] = {"best", "better", "good", "degraded"};
  return kNames[rp & 3];
}

Json MaxTransferJson(const MaxTransfer& m) {
  return Json{{"bytes", m.bytes}, {"source", m.source}, {"detail", m.detail}};
}

Json PathOrNull(const std::string& p) { return p.empty() ? Json(nullptr) : Json(p); }

Json DevicesJson(const NvmeDevicePaths& p) {
  return Json{{"controller", PathOrNull(p.controller_path())},
              {"block", PathOrNull(p.block_path())},
              {"generic", PathOrNull(p.generic_path())},
              {"passthrough", PathOrNull(PassthroughPath(p))}};
}

Json ControllerJson(const NvmeControllerInfo& c) {
  Json optional = Json::object();
  for (const auto& [name, supported] : OptionalCommandList(c.optional_commands)) {
    optional[name] = supported;
  }
  return Json{{"model", c.model},
              {"serial", c.serial},
              {"firmware", c.firmware},
              {"vendor_id", c.vendor_id},
              {"subsystem_vendor_id", c.subsystem_vendor_id},
              {"controller_id", c.controller_id},
              {"version", c.VersionString()},
              {"mdts", c.mdts},
              {"mdts_bytes", block::NvmeMdtsBytes(c.mdts)},
              {"volatile_write_cache", c.volatile_write_cache},
              {"oncs", c.oncs},
              {"optional_commands", std::move(optional)},
              {"namespace_count", c.namespace_count},
              {"warning_temperature_kelvin", c.warning_temperature_kelvin},
              {"critical_temperature_kelvin", c.critical_temperature_kelvin},
              {"subsystem_nqn", c.subsystem_nqn}};
}

Json NamespaceJson(const NamespaceReport& r) {
  const NvmeNamespaceInfo& n = r.info;
  Json formats = Json::array();
  for (size_t i = 0; i < n.lba_formats.size(); ++i) {
    const auto& f = n.lba_formats[i];
    formats.push_back(Json{{"index", i},
                           {"data_size", f.data_size},
                           {"metadata_size", f.metadata_size},
                           {"relative_performance", f.relative_performance},
                           {"in_use", f.in_use}});
  }
  return Json{{"nsid", n.nsid},
              {"devices", DevicesJson(r.paths)},
              {"size_lbas", n.size_lbas},
              {"capacity_lbas", n.capacity_lbas},
              {"utilization_lbas", n.utilization_lbas},
              {"lba_size", n.lba_size},
              {"metadata_size", n.metadata_size},
              {"size_bytes", n.size_bytes()},
              {"capacity_bytes", n.capacity_bytes()},
              {"utilization_bytes", n.utilization_bytes()},
              {"lba_format_index", n.lba_format_index},
              {"metadata_extended_lba", n.metadata_extended_lba},
              {"lba_formats", std::move(formats)},
              {"thin_provisioning", n.thin_provisioning},
              {"deallocated_reads_zeroes", n.deallocated_reads_zeroes},
              {"optimal_io_boundary_lbas", n.optimal_io_boundary_lbas},
              {"max_transfer", MaxTransferJson(r.max_transfer)},
              {"completion_placement", PlacementJson(r.placement)}};
}

void PrintText(const NvmeDevicePaths& device, const NvmeControllerInfo& c,
               const std::vector<NamespaceReport>& namespaces, const MaxTransfer& max_transfer,
               const std::vector<std::string>& warnings) {
  const Style style = Style::ForStdout();
  auto dash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };

  KeyValues top(0);
  std::string what = KindDescription(device.kind);
  if (device.nsid != 0) absl::StrAppend(&what, ", namespace ", device.nsid);
  top.Add("Device", absl::StrCat(device.input, " (", what, ")"));
  top.Add("Passthrough device",
          Cell(dash(PassthroughPath(device)), PassthroughPath(device).empty() && device.nsid != 0
                                                  ? Highlight::kWarn
                                                  : Highlight::kNone));
  top.Add("Block device", dash(device.block_path()));
  top.Add("Controller", dash(device.controller_path()));
  top.Add("Max transfer", max_transfer.bytes == 0 ? std::string("no limit reported")
                                                  : absl::StrCat(BytesWithUnit(max_transfer.bytes),
                                                                 " [", max_transfer.detail, "]"));
  top.Print(std::cout, style);

  std::cout << '\n' << style.Apply(Highlight::kHeading, "Controller") << '\n';
  KeyValues kv;
  kv.Add("Model", c.model);
  kv.Add("Serial", c.serial);
  kv.Add("Firmware", c.firmware);
  kv.Add("Vendor ID", absl::StrFormat("0x%04x", c.vendor_id));
  kv.Add("Controller ID", absl::StrCat(c.controller_id));
  kv.Add("NVMe version", dash(c.VersionString()));
  kv.Add("MDTS", c.mdts == 0
                     ? std::string("0 (no limit)")
                     : absl::StrCat(c.mdts, " = ", BytesWithUnit(block::NvmeMdtsBytes(c.mdts)),
                                    " at 4 KiB pages"));
  kv.Add("Volatile write cache",
         c.volatile_write_cache ? "yes (writes need Flush or FUA to be durable)" : "no");
  std::vector<std::string> yes;
  std::vector<std::string> no;
  for (const auto& [name, supported] : OptionalCommandList(c.optional_commands)) {
    (supported ? yes : no).push_back(name);
  }
  kv.Add("Optional commands", yes.empty() ? std::string("none") : absl::StrJoin(yes, ", "));
  kv.Add("Not supported", no.empty() ? std::string("-") : absl::StrJoin(no, ", "));
  kv.Add("Namespaces (NN)", absl::StrCat(c.namespace_count));
  kv.Add("Subsystem NQN", dash(c.subsystem_nqn));
  kv.Print(std::cout, style);

  for (const NamespaceReport& r : namespaces) {
    const NvmeNamespaceInfo& n = r.info;
    std::cout << '\n'
              << style.Apply(Highlight::kHeading, absl::StrCat("Namespace ", n.nsid)) << '\n';
    KeyValues ns;
    ns.Add("Block device", dash(r.paths.block_path()));
    ns.Add("Generic device", dash(r.paths.generic_path()));
    ns.Add("Size", absl::StrCat(n.size_lbas, " LBAs = ", BytesWithUnit(n.size_bytes())));
    ns.Add("Capacity",
           absl::StrCat(n.capacity_lbas, " LBAs = ", BytesWithUnit(n.capacity_bytes())));
    ns.Add("Utilization",
           absl::StrCat(n.utilization_lbas, " LBAs = ", BytesWithUnit(n.utilization_bytes())));
    ns.Add("LBA size",
           absl::StrCat(n.lba_size, " bytes + ", n.metadata_size, " metadata",
                        n.metadata_size != 0 && n.metadata_extended_lba ? " (extended LBA)" : ""));
    ns.Add("Max transfer", r.max_transfer.bytes == 0
                               ? std::string("no limit reported")
                               : absl::StrCat(BytesWithUnit(r.max_transfer.bytes), " [",
                                              r.max_transfer.detail, "]"));
    ns.Add("Completions", PlacementCell(r.placement));
    ns.Add("Thin provisioning", YesNo(n.thin_provisioning));
    ns.Add("Deallocated reads zeroes", YesNo(n.deallocated_reads_zeroes));
    if (n.optimal_io_boundary_lbas != 0) {
      ns.Add("Optimal I/O boundary", absl::StrCat(n.optimal_io_boundary_lbas, " LBAs"));
    }
    ns.Print(std::cout, style);
    std::cout << "  LBA formats\n";
    Table formats({"Index", "Data size", "Metadata", "Performance", "In use"}, 4);
    for (size_t i = 0; i < n.lba_formats.size(); ++i) {
      const auto& f = n.lba_formats[i];
      formats.AddRow({absl::StrCat(i), f.data_size == 0 ? "-" : absl::StrCat(f.data_size),
                      absl::StrCat(f.metadata_size), RelativePerformance(f.relative_performance),
                      f.in_use ? Cell("*", Highlight::kGood) : Cell("")});
    }
    formats.Print(std::cout, style);
  }
  for (const std::string& w : warnings) std::cerr << "nvme-probe info: warning: " << w << '\n';
}

int RunInfo(const std::string& path, OutputFormat format) {
  absl::StatusOr<OpenedDevice> dev = ResolveAndOpen(path);
  if (!dev.ok()) return ReportFailure(format, kCommand, dev.status());
  const int fd = dev->fd.get();
  const NvmeDevicePaths& paths = dev->paths;

  Json doc = JsonDocument(kCommand);
  doc["device"] = path;
  doc["kind"] = KindId(paths.kind);
  doc["devices"] = DevicesJson(paths);

  absl::StatusOr<NvmeControllerInfo> ctrl = block::IdentifyController(fd);
  if (!ctrl.ok()) return ReportFailure(format, kCommand, ctrl.status(), std::move(doc));

  std::vector<NamespaceReport> namespaces;
  std::vector<std::string> warnings;
  if (paths.kind == block::NvmeDeviceKind::kController) {
    for (const std::string& name : block::NvmeControllerNamespaces(paths.controller_name)) {
      absl::StatusOr<NvmeDevicePaths> ns_paths =
          block::ResolveNvmeDevice(absl::StrCat("/dev/", name));
      if (!ns_paths.ok() || ns_paths->nsid == 0) {
        warnings.push_back(absl::StrCat(
            name, ": cannot find its namespace id: ",
            ns_paths.ok() ? "sysfs has none" : std::string(ns_paths.status().message())));
        continue;
      }
      absl::StatusOr<NvmeNamespaceInfo> info = block::IdentifyNamespace(fd, ns_paths->nsid);
      if (!info.ok()) return ReportFailure(format, kCommand, info.status(), std::move(doc));
      MaxTransfer mt = MaxTransferFor(*ns_paths, *ctrl);
      block::CompletionPlacement placement = PlacementOf(*ns_paths);
      namespaces.push_back(
          {*std::move(ns_paths), *std::move(info), std::move(mt), std::move(placement)});
    }
  } else {
    uint32_t nsid = paths.nsid;
    if (nsid == 0) {
      absl::StatusOr<uint32_t> id = block::GetNamespaceId(fd);
      if (!id.ok()) return ReportFailure(format, kCommand, id.status(), std::move(doc));
      nsid = *id;
    }
    absl::StatusOr<NvmeNamespaceInfo> info = block::IdentifyNamespace(fd, nsid);
    if (!info.ok()) return ReportFailure(format, kCommand, info.status(), std::move(doc));
    NvmeDevicePaths ns_paths = paths;
    ns_paths.nsid = nsid;
    MaxTransfer mt = MaxTransferFor(ns_paths, *ctrl);
    block::CompletionPlacement placement = PlacementOf(ns_paths);
    namespaces.push_back(
        {std::move(ns_paths), *std::move(info), std::move(mt), std::move(placement)});
  }

  // The device's limit: its namespace's, or for a controller the smallest
  // of its namespaces' kernel limits (MDTS-derived when it has none).
  MaxTransfer max_transfer;
  for (const NamespaceReport& r : namespaces) {
    if (max_transfer.bytes == 0 ||
        (r.max_transfer.bytes != 0 && r.max_transfer.bytes < max_transfer.bytes)) {
      max_transfer = r.max_transfer;
    }
  }
  if (namespaces.empty()) max_transfer = MaxTransferFor(NvmeDevicePaths{}, *ctrl);

  if (format == OutputFormat::kJson) {
    doc["nsid"] = paths.kind == block::NvmeDeviceKind::kController
                      ? Json(nullptr)
                      : Json(namespaces.front().info.nsid);
    doc["max_transfer"] = MaxTransferJson(max_transfer);
    doc["controller"] = ControllerJson(*ctrl);
    Json ns = Json::array();
    for (const auto& r : namespaces) ns.push_back(NamespaceJson(r));
    doc["namespaces"] = std::move(ns);
    doc["warnings"] = warnings;
    PrintJson(doc);
    return kExitOk;
  }
  NvmeDevicePaths shown = paths;
  if (!namespaces.empty() && shown.kind != block::NvmeDeviceKind::kController) {
    shown.nsid = namespaces.front().info.nsid;
  }
  PrintText(shown, *ctrl, namespaces, max_transfer, warnings);
  return kExitOk;
}

}  // namespace

void RegisterInfoCommand(CommandRegistry& registry) {
  registry.AddDeviceCommand(
      "info",
      "Identify an NVMe namespace (/dev/ngXnY, /dev/nvmeXnY) or controller (/dev/nvmeX): max "
      "transfer, LBA formats, write cache, optional commands, passthrough device",
      "NVMe device node", RunInfo);
}

}  // namespace ringline::nvme_probe
