// nvme-probe: what NVMe devices and io_uring features this host has, and
// whether ringline's I/O path works on a device or file. See README.md for
// the subcommands, JSON schema and exit codes.
#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "commands.h"
#include "output.h"

#ifndef RINGLINE_VERSION
#define RINGLINE_VERSION "unknown"
#endif

int main(int argc, char** argv) {
  using ringline::nvme_probe::CommandRegistry;
  CLI::App app{"nvme-probe: NVMe devices as the ringline engine sees them", "nvme-probe"};
  app.require_subcommand(1, 1);
  app.set_version_flag("--version", "nvme-probe " RINGLINE_VERSION);
  app.footer(
      "Exit codes: 0 fine, 1 a problem was found (alarm, no device, error), 2 usage error,\n"
      "3 permission denied (run as root or as a member of the disk group).");

  CommandRegistry registry(app);
  ringline::nvme_probe::RegisterListCommand(registry);
  ringline::nvme_probe::RegisterInfoCommand(registry);
  ringline::nvme_probe::RegisterHealthCommand(registry);
  ringline::nvme_probe::RegisterUringCommand(registry);
  ringline::nvme_probe::RegisterCheckCommand(registry);

  // CLI11 reports an unknown word in the subcommand position as "A subcommand
  // is required"; name the problem instead.
  if (argc > 1 && argv[1][0] != '-') {
    const std::vector<std::string> names = registry.Names();
    if (std::find(names.begin(), names.end(), argv[1]) == names.end()) {
      std::string known;
      for (const std::string& n : names) known += (known.empty() ? "" : ", ") + n;
      std::cerr << "nvme-probe: unknown subcommand '" << argv[1] << "' (subcommands: " << known
                << ")\nRun with --help for more information.\n";
      return ringline::nvme_probe::kExitUsage;
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version arrive as "errors" with a success exit code;
    // every real parse error becomes exit code 2 (CLI11's own codes differ).
    const int code = app.exit(e);
    return code == 0 ? ringline::nvme_probe::kExitOk : ringline::nvme_probe::kExitUsage;
  }
  return registry.RunSelected();
}
