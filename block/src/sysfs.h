#pragma once
// Reading sysfs and procfs (internal to the block library): the one reader
// that device discovery, NVMe device resolution, NvmeNamespace and placement
// use. Paths are whole paths; callers that read a fake tree (tests) prefix
// them with its root (SysRoot, ringline/block/placement.h).
// Every function does blocking file I/O: call them at open, never on the I/O
// path. Thread-safe (no shared state).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ringline::block {

// The first line of the attribute at `path` with surrounding whitespace
// removed, or nullopt when it cannot be read.
std::optional<std::string> ReadSysfs(const std::string& path);

// The attribute as an unsigned decimal number, or nullopt when it cannot be
// read or is not one.
std::optional<uint64_t> ReadSysfsUint(const std::string& path);

// The whole file (procfs tables such as /proc/interrupts), or nullopt.
std::optional<std::string> ReadWholeFile(const std::string& path);

// The names in directory `path` not starting with ".", sorted; empty when it
// cannot be read.
std::vector<std::string> ListSysfsDir(const std::string& path);

// The canonical path `path` resolves to (symlinks followed), or nullopt.
std::optional<std::string> ResolvedSysfsPath(const std::string& path);

// True when `path` exists.
bool SysfsExists(const std::string& path);

}  // namespace ringline::block
