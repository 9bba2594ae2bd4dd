#pragma once
// Reading one-line sysfs attributes (internal to the block library): the one
// reader that device discovery, NVMe device resolution and NvmeNamespace use.
// Both functions do blocking file I/O: call them at open, never on the I/O
// path. Thread-safe (no shared state).

#include <cstdint>
#include <optional>
#include <string>

namespace ringline::block {

// The first line of the attribute at `path` with surrounding whitespace
// removed, or nullopt when it cannot be read.
std::optional<std::string> ReadSysfs(const std::string& path);

// The attribute as an unsigned decimal number, or nullopt when it cannot be
// read or is not one.
std::optional<uint64_t> ReadSysfsUint(const std::string& path);

}  // namespace ringline::block
