#pragma once
// Tiny --key=value / --key value parser shared by the network benchmarks.

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace ringline::net::bench {

class Args {
 public:
  Args(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) != 0) {
        std::fprintf(stderr, "unexpected argument: %s\n", a.c_str());
        std::exit(2);
      }
      a = a.substr(2);
      const auto eq = a.find('=');
      if (eq != std::string::npos) {
        values_[a.substr(0, eq)] = a.substr(eq + 1);
      } else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
        values_[a] = argv[++i];
      } else {
        values_[a] = "true";
      }
    }
  }
  std::string Str(const std::string& k, const std::string& def) const {
    auto it = values_.find(k);
    return it == values_.end() ? def : it->second;
  }
  long Int(const std::string& k, long def) const {
    auto it = values_.find(k);
    return it == values_.end() ? def : std::strtol(it->second.c_str(), nullptr, 0);
  }
  double Num(const std::string& k, double def) const {
    auto it = values_.find(k);
    return it == values_.end() ? def : std::strtod(it->second.c_str(), nullptr);
  }
  bool Bool(const std::string& k, bool def) const {
    auto it = values_.find(k);
    if (it == values_.end()) return def;
    return it->second == "true" || it->second == "on" || it->second == "1" || it->second == "yes";
  }
  std::vector<int> Cpus(const std::string& k) const {
    std::vector<int> out;
    std::string s = Str(k, "");
    std::size_t pos = 0;
    while (pos < s.size()) {
      const std::size_t comma = s.find(',', pos);
      out.push_back(std::atoi(s.substr(pos, comma - pos).c_str()));
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    return out;
  }

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace ringline::net::bench
