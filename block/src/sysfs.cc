#include "sysfs.h"

#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iterator>

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

std::optional<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<std::string> ListSysfsDir(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return out;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name[0] != '.') out.push_back(name);  // ".", ".." and hidden names
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::string> ResolvedSysfsPath(const std::string& path) {
  char real[PATH_MAX];
  if (::realpath(path.c_str(), real) == nullptr) return std::nullopt;
  return std::string(real);
}

bool SysfsExists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

}  // namespace ringline::block
