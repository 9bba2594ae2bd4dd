#include "output.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <utility>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ringline/block/nvme_status.h"

namespace ringline::nvme_probe {

void AddOutputFormatOption(CLI::App* command, OutputFormat* format) {
  command
      ->add_option_function<std::string>(
          "-o,--output-format",
          [format](const std::string& value) {
            *format = value == "json" ? OutputFormat::kJson : OutputFormat::kNormal;
          },
          "Output format: normal (aligned text) or json")
      ->check(CLI::IsMember({"normal", "json"}))
      ->type_name("FORMAT");
}

Json JsonDocument(std::string_view command) {
  Json doc = Json::object();
  doc["schema_version"] = kJsonSchemaVersion;
  doc["command"] = std::string(command);
  doc["ok"] = true;
  return doc;
}

void PrintJson(const Json& doc) { std::cout << doc.dump(2) << '\n' << std::flush; }

std::string Uint128ToString(absl::uint128 value) {
  if (value == 0) return "0";
  std::string digits;
  while (value != 0) {
    digits.push_back(static_cast<char>('0' + static_cast<int>(value % 10)));
    value /= 10;
  }
  std::reverse(digits.begin(), digits.end());
  return digits;
}

Json JsonUint128(absl::uint128 value) {
  if (absl::Uint128High64(value) == 0) return Json(absl::Uint128Low64(value));
  return Json(Uint128ToString(value));
}

int ExitCodeFor(const absl::Status& status) {
  return status.code() == absl::StatusCode::kPermissionDenied ? kExitPermission : kExitProblem;
}

std::string_view ErrorKindFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kPermissionDenied:
      return kErrorPermission;
    case absl::StatusCode::kNotFound:
      return kErrorNotFound;
    case absl::StatusCode::kInvalidArgument:
      return kErrorNotNvme;
    default:
      break;
  }
  // NvmeStatusToStatus attaches the raw status as a payload.
  if (status
          .GetPayload(absl::string_view(block::kNvmeStatusPayloadKey.data(),
                                        block::kNvmeStatusPayloadKey.size()))
          .has_value())
    return kErrorNvmeStatus;
  return kErrorSystem;
}

int ReportFailure(OutputFormat format, std::string_view command, const absl::Status& status,
                  Json doc) {
  return ReportFailure(format, command, status, std::move(doc), ErrorKindFor(status));
}

int ReportFailure(OutputFormat format, std::string_view command, const absl::Status& status,
                  Json doc, std::string_view kind) {
  const int code = ExitCodeFor(status);
  if (format == OutputFormat::kJson) {
    if (!doc.is_object()) doc = JsonDocument(command);
    doc["ok"] = false;
    doc["error"] = {{"kind", std::string(kind)}, {"message", std::string(status.message())}};
    PrintJson(doc);
    return code;
  }
  std::cerr << "nvme-probe " << command << ": " << status.message() << '\n';
  if (code == kExitPermission && status.message().find("run as root") == std::string_view::npos) {
    std::cerr << "nvme-probe " << command
              << ": run as root, or as a member of the group that owns the device (usually "
                 "'disk')\n";
  }
  return code;
}

Style Style::ForStdout() {
  const char* no_colour = std::getenv("NO_COLOR");
  const char* term = std::getenv("TERM");
  const bool colour = isatty(STDOUT_FILENO) == 1 && (no_colour == nullptr || *no_colour == '\0') &&
                      !(term != nullptr && std::strcmp(term, "dumb") == 0);
  return Style(colour);
}

std::string Style::Apply(Highlight h, std::string_view text) const {
  if (!colour_ || h == Highlight::kNone) return std::string(text);
  std::string_view code;
  switch (h) {
    case Highlight::kGood:
      code = "\033[32m";
      break;
    case Highlight::kWarn:
      code = "\033[33m";
      break;
    case Highlight::kAlarm:
      code = "\033[1;31m";
      break;
    case Highlight::kHeading:
      code = "\033[1m";
      break;
    case Highlight::kNone:
      break;
  }
  return std::string(code).append(text).append("\033[0m");
}

void Table::Print(std::ostream& out, const Style& style) const {
  std::vector<size_t> width(header_.size(), 0);
  for (size_t i = 0; i < header_.size(); ++i) width[i] = header_[i].size();
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], row[i].text.size());
    }
  }
  const std::string pad(static_cast<size_t>(indent_), ' ');
  auto line = [&](const std::vector<Cell>& cells, bool heading) {
    std::string s = pad;
    for (size_t i = 0; i < width.size(); ++i) {
      const Cell empty("");
      const Cell& c = i < cells.size() ? cells[i] : empty;
      const bool last = i + 1 == width.size();
      std::string text = style.Apply(heading ? Highlight::kHeading : c.highlight, c.text);
      s += text;
      // Pad with plain spaces after the (possibly coloured) text so escape
      // codes do not count towards the column width.
      if (!last) s.append(width[i] - c.text.size() + 2, ' ');
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    out << s << '\n';
  };
  std::vector<Cell> head(header_.begin(), header_.end());
  line(head, true);
  for (const auto& row : rows_) line(row, false);
}

void KeyValues::Print(std::ostream& out, const Style& style) const {
  size_t width = 0;
  for (const auto& [key, value] : rows_) width = std::max(width, key.size());
  const std::string pad(static_cast<size_t>(indent_), ' ');
  for (const auto& [key, value] : rows_) {
    out << pad << key << std::string(width - key.size() + 2, ' ')
        << style.Apply(value.highlight, value.text) << '\n';
  }
}

std::string BytesWithUnit(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024.0 && unit < 6) {
    v /= 1024.0;
    ++unit;
  }
  if (unit == 0) return absl::StrCat(bytes, " B");
  return absl::StrFormat("%u (%.1f %s)", bytes, v, kUnits[unit]);
}

std::string YesNo(bool value) { return value ? "yes" : "no"; }

}  // namespace ringline::nvme_probe
