// Shared output helpers of nvme-probe: exit codes, the -o option, JSON
// documents, aligned tables with optional colour, and error reporting.
//
// Every subcommand follows the same contract (documented in README.md):
//   - human-readable text on stdout by default, one JSON document on stdout
//     with `-o json`; diagnostics go to stderr;
//   - exit codes from ExitCode below.
// Single-threaded program: nothing here is thread-safe.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/numeric/int128.h"
#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace CLI {
class App;
}

namespace ringline::nvme_probe {

// Exit codes scripts can act on.
enum ExitCode : int {
  kExitOk = 0,          // ran, nothing wrong found
  kExitProblem = 1,     // a problem was found: health alarm, no device, error
  kExitUsage = 2,       // bad command line
  kExitPermission = 3,  // EACCES/EPERM on a device: needs root or the disk group
};

// Bumped when a field changes meaning or disappears; adding fields is not a
// schema change.
inline constexpr int kJsonSchemaVersion = 1;

enum class OutputFormat { kNormal, kJson };

// Adds `-o,--output-format normal|json` to a subcommand.
void AddOutputFormatOption(CLI::App* command, OutputFormat* format);

using Json = nlohmann::ordered_json;

// {"schema_version": 1, "command": <command>, "ok": true}; callers add the
// payload and set "ok" to false when they report a problem.
Json JsonDocument(std::string_view command);

// Writes `doc` to stdout, indented, with a trailing newline.
void PrintJson(const Json& doc);

// JSON number when it fits in 64 bits, else its decimal string (the SMART
// counters are 128-bit; nlohmann has no 128-bit integers).
Json JsonUint128(absl::uint128 value);
std::string Uint128ToString(absl::uint128 value);

// Error kinds used in the "error" object of a JSON document.
inline constexpr std::string_view kErrorNoDevices = "no_devices";
inline constexpr std::string_view kErrorNotFound = "not_found";
inline constexpr std::string_view kErrorNotNvme = "not_nvme";
inline constexpr std::string_view kErrorPermission = "permission_denied";
inline constexpr std::string_view kErrorNvmeStatus = "nvme_status";
inline constexpr std::string_view kErrorSystem = "system_error";
// `uring`: the verdict is that ringline cannot run on this host.
inline constexpr std::string_view kErrorCannotRun = "cannot_run";
// `check`: a path that is neither an NVMe namespace, a block device nor a
// regular file (a directory, a controller, /dev/null, a metadata format).
inline constexpr std::string_view kErrorUnsupportedTarget = "unsupported_target";
// `check`: an I/O request failed, or read back what was not written.
inline constexpr std::string_view kErrorIo = "io_error";
inline constexpr std::string_view kErrorVerifyMismatch = "verify_mismatch";

// The exit code for a failed operation: 3 for kPermissionDenied, else 1.
int ExitCodeFor(const absl::Status& status);

// The error kind for a failed operation (see the constants above).
std::string_view ErrorKindFor(const absl::Status& status);

// Reports a failure that ends a subcommand and returns its exit code. Text
// mode: "nvme-probe <command>: <message>" on stderr, plus a hint for
// permission errors. JSON mode: a document on stdout with "ok": false and
// "error": {"kind", "message"}, merged into `doc` when given.
int ReportFailure(OutputFormat format, std::string_view command, const absl::Status& status,
                  Json doc = nullptr);
// The same with an error kind chosen by the caller instead of ErrorKindFor().
int ReportFailure(OutputFormat format, std::string_view command, const absl::Status& status,
                  Json doc, std::string_view kind);

// ---- text output ---------------------------------------------------------

enum class Highlight { kNone, kGood, kWarn, kAlarm, kHeading };

// ANSI colour, on only when stdout is a terminal, NO_COLOR is unset and TERM
// is not "dumb".
class Style {
 public:
  static Style ForStdout();
  explicit Style(bool colour) : colour_(colour) {}
  bool colour() const { return colour_; }
  std::string Apply(Highlight h, std::string_view text) const;

 private:
  bool colour_;
};

struct Cell {
  Cell(std::string t) : text(std::move(t)) {}  // NOLINT: implicit on purpose
  Cell(const char* t) : text(t) {}             // NOLINT
  Cell(std::string t, Highlight h) : text(std::move(t)), highlight(h) {}
  std::string text;
  Highlight highlight = Highlight::kNone;
};

// Columns aligned to the widest cell; colour codes do not count towards
// the width. Rows shorter than the header are padded.
class Table {
 public:
  explicit Table(std::vector<std::string> header, int indent = 0)
      : header_(std::move(header)), indent_(indent) {}
  void AddRow(std::vector<Cell> row) { rows_.push_back(std::move(row)); }
  bool empty() const { return rows_.empty(); }
  void Print(std::ostream& out, const Style& style) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<Cell>> rows_;
  int indent_;
};

// "Key   value" lines with the keys padded to one width.
class KeyValues {
 public:
  explicit KeyValues(int indent = 2) : indent_(indent) {}
  void Add(std::string key, Cell value) { rows_.emplace_back(std::move(key), std::move(value)); }
  void Print(std::ostream& out, const Style& style) const;

 private:
  std::vector<std::pair<std::string, Cell>> rows_;
  int indent_;
};

// "268435456 (256.0 MiB)".
std::string BytesWithUnit(uint64_t bytes);
std::string YesNo(bool value);

}  // namespace ringline::nvme_probe
