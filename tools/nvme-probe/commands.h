// The subcommands of nvme-probe and how they are registered.
//
// Adding a subcommand: write cmd_<name>.cc
// with a Register<Name>Command(CommandRegistry&) that calls Add() with the
// subcommand's name, description and a run function returning an ExitCode
// (output.h), declare it below, and call it from main.cc. Each subcommand
// takes `-o/--output-format` (AddOutputFormatOption) and documents its JSON
// in README.md.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "output.h"

namespace ringline::nvme_probe {

// Owns nothing but the association between CLI11 subcommands and their run
// functions; the CLI::App objects belong to the root app.
class CommandRegistry {
 public:
  explicit CommandRegistry(CLI::App& root) : root_(root) {}

  // Adds a subcommand; `run` is called after parsing if it was selected.
  CLI::App* Add(const std::string& name, const std::string& description, std::function<int()> run) {
    CLI::App* app = root_.add_subcommand(name, description);
    commands_.emplace_back(app, std::move(run));
    return app;
  }

  // A subcommand about one device: a required DEVICE argument (described by
  // `device_help`) and -o/--output-format; `run` gets both after parsing.
  CLI::App* AddDeviceCommand(const std::string& name, const std::string& description,
                             const std::string& device_help,
                             std::function<int(const std::string&, OutputFormat)> run) {
    struct Options {
      std::string device;
      OutputFormat format = OutputFormat::kNormal;
    };
    auto options = std::make_shared<Options>();
    CLI::App* cmd = Add(name, description, [options, run = std::move(run)] {
      return run(options->device, options->format);
    });
    cmd->add_option("DEVICE", options->device, device_help)->required();
    AddOutputFormatOption(cmd, &options->format);
    return cmd;
  }

  // The registered subcommand names, in registration order.
  std::vector<std::string> Names() const {
    std::vector<std::string> names;
    for (const auto& entry : commands_) names.push_back(entry.first->get_name());
    return names;
  }

  // Runs the subcommand the command line selected; its exit code.
  int RunSelected() const {
    for (const auto& [app, run] : commands_) {
      if (app->parsed()) return run();
    }
    return 2;  // unreachable: the root requires a subcommand
  }

 private:
  CLI::App& root_;
  std::vector<std::pair<CLI::App*, std::function<int()>>> commands_;
};

void RegisterListCommand(CommandRegistry& registry);
void RegisterInfoCommand(CommandRegistry& registry);
void RegisterHealthCommand(CommandRegistry& registry);
void RegisterUringCommand(CommandRegistry& registry);
void RegisterCheckCommand(CommandRegistry& registry);

}  // namespace ringline::nvme_probe
