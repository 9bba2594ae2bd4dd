#pragma once
// blockserve's command line, in the manner of qemu-nbd and nbdkit. Flags
// override the --config file; the result is validated.

#include <optional>

#include "blockserve/server_config.h"

namespace blockserve {

struct CliOutcome {
  std::optional<ServerConfig> config;  // set when the server should start
  int exit_code = 0;                   // otherwise: 0 after --help, 2 on a usage error
};

CliOutcome ParseCommandLine(int argc, char** argv);

}  // namespace blockserve
