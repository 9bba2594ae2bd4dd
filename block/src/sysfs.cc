#include "sysfs.h"

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"

namespace ringline::block {

std::optional<std::string> ReadSysfs(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  if (!in || !std::getline(in, s)) return std::nullopt;
  absl::StripAsciiWhitespace(&s);
  return s;
}

std::optional<uint64_t> ReadSysfsUint(const std::string& path) {
  auto s = ReadSysfs(path);
  uint64_t v = 0;
  if (!s || !absl::SimpleAtoi(*s, &v)) return std::nullopt;
  return v;
}

}  // namespace ringline::block
