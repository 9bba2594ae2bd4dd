#include "blockserve/server_config.h"

#include <arpa/inet.h>
#include <sys/un.h>
#include <toml++/toml.h>

#include <cerrno>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ringline/block/placement.h"

namespace blockserve {
namespace {

absl::Status FieldError(const std::string& where, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", problem));
}

bool ValidExportName(const std::string& n) {
  // The NBD protocol allows any UTF-8 up to 4096 bytes; we keep names printable
  // so they are safe in logs and metric labels.
  if (n.size() > 4096) return false;
  for (unsigned char c : n) {
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') return false;
  }
  return true;
}

// The errnos a fault rule may inject, by name (TOML `error`).
struct NamedErrno {
  const char* name;
  int value;
};
constexpr NamedErrno kFaultErrnos[] = {
    {"EIO", EIO},       {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT},         {"EFBIG", EFBIG},
    {"EPERM", EPERM},   {"EROFS", EROFS},   {"EACCES", EACCES},         {"EINVAL", EINVAL},
    {"ENOMEM", ENOMEM}, {"ENODEV", ENODEV}, {"EOPNOTSUPP", EOPNOTSUPP}, {"ETIMEDOUT", ETIMEDOUT},
};

// The operation kinds a fault rule names (TOML `ops`), in NBD's words.
struct NamedOp {
  const char* name;
  ringline::block::OpKind kind;
};
constexpr NamedOp kFaultOps[] = {{"read", ringline::block::OpKind::kRead},
                                 {"write", ringline::block::OpKind::kWrite},
                                 {"flush", ringline::block::OpKind::kFlush},
                                 {"trim", ringline::block::OpKind::kDiscard},
                                 {"write_zeroes", ringline::block::OpKind::kWriteZeroes}};

// One [[export.fault]] table. `where` is "export[i].fault[j]".
absl::Status ParseFaultRule(const toml::table& t, const std::string& where,
                            ringline::block::FaultRule* rule) {
  namespace blk = ringline::block;
  static const std::set<std::string> kKeys = {
      "ops", "offset", "length", "skip", "limit", "probability", "error", "when", "latency_ms"};
  for (const auto& [k, v] : t) {
    if (!kKeys.count(std::string(k.str()))) {
      return FieldError(absl::StrCat(where, ".", std::string(k.str())),
                        absl::StrCat("unknown key (known: ", absl::StrJoin(kKeys, ", "), ")"));
    }
  }
  auto uint_or_size = [&](const char* key, uint64_t* out) -> absl::Status {
    auto n = t[key];
    if (!n) return absl::OkStatus();
    if (auto text = n.value<std::string>()) {
      auto v = ParseSize(*text);
      if (!v.ok())
        return FieldError(absl::StrCat(where, ".", key), std::string(v.status().message()));
      *out = *v;
    } else if (auto v = n.value<int64_t>(); v && *v >= 0) {
      *out = static_cast<uint64_t>(*v);
    } else {
      return FieldError(absl::StrCat(where, ".", key),
                        "must be a non-negative integer or a size such as \"4K\"");
    }
    return absl::OkStatus();
  };
  if (auto n = t["ops"]) {
    auto* arr = n.as_array();
    if (!arr || arr->empty()) {
      return FieldError(where + ".ops",
                        "must be a non-empty array of \"read\", \"write\", \"flush\", "
                        "\"trim\", \"write_zeroes\"");
    }
    rule->ops = 0;
    for (const auto& e : *arr) {
      auto name = e.value<std::string>();
      bool known = false;
      for (const NamedOp& op : kFaultOps) {
        if (name && *name == op.name) {
          rule->ops |= blk::OpBit(op.kind);
          known = true;
        }
      }
      if (!known) {
        return FieldError(where + ".ops",
                          absl::StrCat("'", name.value_or("?"),
                                       "' is not one of read, write, flush, trim, write_zeroes"));
      }
    }
  }
  absl::Status st;
  if (!(st = uint_or_size("offset", &rule->offset)).ok()) return st;
  if (!(st = uint_or_size("length", &rule->length)).ok()) return st;
  if (!(st = uint_or_size("skip", &rule->skip)).ok()) return st;
  if (!(st = uint_or_size("limit", &rule->limit)).ok()) return st;
  if (rule->length != 0 && rule->offset > UINT64_MAX - rule->length) {
    return FieldError(where + ".length", "offset + length wraps around");
  }
  if (auto n = t["probability"]) {
    auto v = n.value<double>();
    if (!v || !(*v >= 0.0 && *v <= 1.0))
      return FieldError(where + ".probability", "must be in [0, 1]");
    rule->probability = *v;
  }
  if (auto n = t["error"]) {
    std::string names;
    for (const NamedErrno& e : kFaultErrnos)
      absl::StrAppend(&names, names.empty() ? "" : ", ", e.name);
    auto name = n.value<std::string>();
    rule->error = 0;
    for (const NamedErrno& e : kFaultErrnos) {
      if (name && *name == e.name) rule->error = e.value;
    }
    if (rule->error == 0)
      return FieldError(where + ".error", absl::StrCat("must be one of ", names));
  }
  if (auto n = t["when"]) {
    auto v = n.value<std::string>();
    if (v && *v == "instead") {
      rule->timing = blk::FaultTiming::kInstead;
    } else if (v && *v == "after") {
      rule->timing = blk::FaultTiming::kAfter;
    } else {
      return FieldError(where + ".when",
                        "must be \"instead\" (the request never reaches the device) or "
                        "\"after\" (it runs, then fails)");
    }
  }
  if (auto n = t["latency_ms"]) {
    auto v = n.value<double>();
    if (!v || !(*v >= 0.0 && *v <= 3600e3)) {
      return FieldError(where + ".latency_ms", "must be a number of milliseconds in [0, 3600000]");
    }
    rule->latency = std::chrono::nanoseconds(static_cast<int64_t>(std::llround(*v * 1e6)));
  }
  if (rule->error == 0 && rule->latency.count() == 0) {
    return FieldError(where, "injects nothing: give `error`, `latency_ms` or both");
  }
  return absl::OkStatus();
}

// The [[export.fault]] array of one export.
absl::Status ParseFaults(toml::node_view<toml::node> n, const std::string& where,
                         ExportConfig* ex) {
  if (!FaultInjectionBuiltIn()) {
    return FieldError(where + ".fault",
                      "fault injection is not built into this blockserve: configure it with "
                      "-DRINGLINE_FAULT_INJECTION=ON (test builds), or remove the "
                      "[[export.fault]] tables");
  }
  auto* arr = n.as_array();
  if (!arr) return FieldError(where + ".fault", "must be an array of tables ([[export.fault]])");
  for (std::size_t j = 0; j < arr->size(); ++j) {
    const std::string w = absl::StrCat(where, ".fault[", j, "]");
    auto* t = (*arr)[j].as_table();
    if (!t) return FieldError(w, "must be a table");
    ringline::block::FaultRule rule;
    if (auto st = ParseFaultRule(*t, w, &rule); !st.ok()) return st;
    ex->faults.push_back(rule);
  }
  return absl::OkStatus();
}

}  // namespace

bool FaultInjectionBuiltIn() {
#ifdef BLOCKSERVE_FAULT_INJECTION
  return true;
#else
  return false;
#endif
}

const char* TlsModeName(TlsMode m) {
  switch (m) {
    case TlsMode::kOff:
      return "off";
    case TlsMode::kOn:
      return "on";
    case TlsMode::kRequire:
      return "require";
  }
  return "?";
}

absl::StatusOr<uint64_t> ParseSize(const std::string& text) {
  if (text.empty()) return absl::InvalidArgumentError("empty size");
  std::size_t pos = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(text, &pos, 10);
  } catch (...) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not a size (e.g. 1G, 512M)"));
  }
  std::string suffix = text.substr(pos);
  uint64_t mult = 1;
  if (suffix == "" || suffix == "B")
    mult = 1;
  else if (suffix == "K" || suffix == "KiB" || suffix == "k")
    mult = 1ull << 10;
  else if (suffix == "M" || suffix == "MiB")
    mult = 1ull << 20;
  else if (suffix == "G" || suffix == "GiB")
    mult = 1ull << 30;
  else if (suffix == "T" || suffix == "TiB")
    mult = 1ull << 40;
  else {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' has an unknown size suffix '", suffix, "' (use K, M, G or T)"));
  }
  if (v > UINT64_MAX / mult)
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is too large"));
  return v * mult;
}

absl::StatusOr<ExportConfig> ParseExportSpec(const std::string& spec) {
  const auto eq = spec.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--export '", spec,
                     "': expected NAME=PATH[,ro] (e.g. --export disk=/var/lib/disk.img,ro)"));
  }
  ExportConfig e;
  e.name = spec.substr(0, eq);
  std::string rest = spec.substr(eq + 1);
  const auto comma = rest.rfind(',');
  if (comma != std::string::npos) {
    const std::string opt = rest.substr(comma + 1);
    if (opt == "ro") {
      e.read_only = true;
      rest = rest.substr(0, comma);
    } else if (opt == "rw") {
      rest = rest.substr(0, comma);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--export '", spec, "': unknown option '", opt,
                                                     "' (the only options are ro and rw)"));
    }
  }
  e.path = rest;
  return e;
}

absl::StatusOr<std::vector<int>> ParseCpus(const std::string& text, const std::string& where) {
  std::optional<ringline::block::CpuList> cpus = ringline::block::ParseCpuList(text);
  if (!cpus || cpus->empty()) {
    return FieldError(where, absl::StrCat("'", text,
                                          "' is not a list of CPUs: use e.g. 1, 0,2 or 0-3 "
                                          "(the CPUs the workers may run on)"));
  }
  return *cpus;
}

absl::Status ServerConfig::Validate() const {
  in6_addr a6;
  in_addr a4;
  if (inet_pton(AF_INET, listen.c_str(), &a4) != 1 &&
      inet_pton(AF_INET6, listen.c_str(), &a6) != 1 && listen.rfind("unix:", 0) != 0) {
    return FieldError("listen", absl::StrCat("'", listen,
                                             "' is not an IPv4 or IPv6 address (or unix:PATH); "
                                             "e.g. --listen 127.0.0.1"));
  }
  if (port == 0) return FieldError("port", "0 is not a usable port: use 1..65535 (NBD's is 10809)");
  if (workers == 0 || workers > 256) {
    return FieldError("workers", absl::StrCat(workers, " is out of range: use 1..256"));
  }
  if (!cpus.empty()) {
    if (auto st = ringline::block::CheckCpusAllowed(cpus, ringline::block::AllowedCpus(), "cpus",
                                                    "--cpus LIST");
        !st.ok()) {
      return st;
    }
  }
  std::set<std::string> names;
  for (std::size_t i = 0; i < exports.size(); ++i) {
    const auto& e = exports[i];
    const std::string where = absl::StrCat("export[", i, "] (", e.name, ")");
    if (!ValidExportName(e.name)) {
      return FieldError(where + ".name", "must be printable text without quotes or backslashes");
    }
    if (!names.insert(e.name).second) {
      return FieldError(where + ".name", absl::StrCat("'", e.name, "' is exported twice"));
    }
    if (e.path.empty()) return FieldError(where + ".path", "missing: give a file or device path");
    if (e.queue_depth == 0 || e.queue_depth > 4096) {
      return FieldError(where + ".queue_depth",
                        absl::StrCat(e.queue_depth, " is out of range: use 1..4096"));
    }
  }
  if (tls != TlsMode::kOff && (tls_cert.empty() || tls_key.empty()) && tls_psk.empty()) {
    return FieldError("tls", absl::StrCat("--tls=", TlsModeName(tls),
                                          " needs --tls-cert and --tls-key (PEM files), or "
                                          "--tls-psk (a psktool key file)"));
  }
  if (tls_cert.empty() != tls_key.empty()) {
    return FieldError(tls_cert.empty() ? "tls.cert" : "tls.key",
                      "--tls-cert and --tls-key go together: give both");
  }
  if (metrics_port != 0 && metrics_port == port) {
    return FieldError("metrics_port",
                      absl::StrCat(metrics_port, " is the NBD port too: pick another"));
  }
  if (default_size < 4096 || default_size % 4096 != 0) {
    return FieldError("default_size",
                      absl::StrCat(default_size, " must be a multiple of 4096, at least 4096"));
  }
  if (max_connections == 0) return FieldError("max_connections", "must be at least 1");
  if (max_request < (64u << 10) || max_request > (1u << 30) || max_request % (64u << 10) != 0) {
    return FieldError("max_request", absl::StrCat(max_request,
                                                  " must be a multiple of 64K in [64K, 1G] "
                                                  "(e.g. 64M, the default)"));
  }
  return ValidateService();
}

absl::Status ServerConfig::ValidateService() const {
  if (!unix_socket.empty() && unix_socket.size() >= sizeof(sockaddr_un::sun_path)) {
    return FieldError("unix", absl::StrCat("'", unix_socket, "' is longer than ",
                                           sizeof(sockaddr_un::sun_path) - 1,
                                           " bytes, the limit for a Unix socket path"));
  }
  if (!ServesTcp() && unix_socket.empty()) {
    return FieldError("tcp", "false, and no Unix socket (--unix) either: nothing to listen on");
  }
  if (handshake_timeout_s > 3600) {
    return FieldError("handshake_timeout",
                      absl::StrCat(handshake_timeout_s, " s is out of range: use 0 (none)..3600"));
  }
  if (keepalive_idle_s < 1 || keepalive_idle_s > 32767) {
    return FieldError("keepalive_idle",
                      absl::StrCat(keepalive_idle_s, " s is out of range: use 1..32767"));
  }
  return ValidateFairness();
}

absl::Status ServerConfig::ValidateFairness() const {
  if (max_in_flight < 1 || max_in_flight > kMaxInFlightLimit) {
    return FieldError("max_in_flight", absl::StrCat(max_in_flight, " is out of range: use 1..",
                                                    kMaxInFlightLimit, " (default 256)"));
  }
  if (max_in_flight_bytes < (64u << 10) || max_in_flight_bytes > (uint64_t{4} << 30)) {
    return FieldError(
        "max_in_flight_bytes",
        absl::StrCat(max_in_flight_bytes, " is out of range: use 64K..4G (default 64M)"));
  }
  if (buffer_memory > (uint64_t{1} << 40)) {
    return FieldError(
        "buffer_memory",
        absl::StrCat(buffer_memory, " is out of range: use 0 (the pools only)..1T (default 1G)"));
  }
  if (io_timeout_s > 3600) {
    return FieldError("io_timeout",
                      absl::StrCat(io_timeout_s, " s is out of range: use 0 (none)..3600"));
  }
  if (batch_window_us > 10000) {
    return FieldError("batch_window_us",
                      absl::StrCat(batch_window_us, " us is out of range: use 0 (off)..10000"));
  }
  return absl::OkStatus();
}

absl::Status LoadConfigFile(const std::string& path, ServerConfig* c) {
  toml::table t;
  try {
    t = toml::parse_file(path);
  } catch (const toml::parse_error& err) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", path, ":", err.source().begin.line, ":",
                     err.source().begin.column, ": ", std::string(err.description())));
  }
  static const std::set<std::string> kTop = {
      "listen", "port", "workers", "cpus", "log_level", "metrics_port", "data_dir", "default_size",
      "max_connections", "shutdown_grace_ms", "tls", "export",
      // operating it as a service
      "unix", "tcp", "pid_file", "handshake_timeout", "keepalive", "keepalive_idle",
      // issue 12
      "max_request",
      // fairness
      "max_in_flight", "max_in_flight_bytes", "buffer_memory", "io_timeout",
      // waiting
      "batch_window_us"};
  for (const auto& [k, v] : t) {
    if (!kTop.count(std::string(k.str()))) {
      return absl::InvalidArgumentError(
          absl::StrCat("config file ", path, ": unknown key '", std::string(k.str()), "'"));
    }
  }
  auto err = [&](const std::string& key, const std::string& want) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", path, ": '", key, "' must be ", want));
  };
  auto get_uint = [&](const toml::node_view<toml::node> n, const std::string& key, uint64_t max,
                      auto* out) -> absl::Status {
    if (!n) return absl::OkStatus();
    auto v = n.value<int64_t>();
    if (!v || *v < 0 || static_cast<uint64_t>(*v) > max) {
      return err(key, absl::StrCat("an integer in [0, ", max, "]"));
    }
    *out = static_cast<std::remove_pointer_t<decltype(out)>>(*v);
    return absl::OkStatus();
  };
  auto get_str = [&](const toml::node_view<toml::node> n, const std::string& key,
                     std::string* out) -> absl::Status {
    if (!n) return absl::OkStatus();
    auto v = n.value<std::string>();
    if (!v) return err(key, "a string");
    *out = *v;
    return absl::OkStatus();
  };
  absl::Status st;
  if (!(st = get_str(t["listen"], "listen", &c->listen)).ok()) return st;
  if (!(st = get_uint(t["port"], "port", 65535, &c->port)).ok()) return st;
  if (!(st = get_uint(t["workers"], "workers", 256, &c->workers)).ok()) return st;
  if (auto n = t["cpus"]) {
    // "0,2-3" as for --cpus, or an array of CPU numbers.
    std::string text;
    if (auto str = n.value<std::string>()) {
      text = *str;
    } else if (const toml::array* a = n.as_array()) {
      for (const toml::node& e : *a) {
        auto cpu = e.value<int64_t>();
        if (!cpu || *cpu < 0) return err("cpus", "a CPU list such as \"0,2-3\" or [0, 2, 3]");
        absl::StrAppend(&text, text.empty() ? "" : ",", *cpu);
      }
    } else {
      return err("cpus", "a CPU list such as \"0,2-3\" or [0, 2, 3]");
    }
    auto cpus = ParseCpus(text, absl::StrCat("config file ", path, ": cpus"));
    if (!cpus.ok()) return cpus.status();
    c->cpus = std::move(*cpus);
  }
  if (!(st = get_str(t["log_level"], "log_level", &c->log_level)).ok()) return st;
  if (!(st = get_uint(t["metrics_port"], "metrics_port", 65535, &c->metrics_port)).ok()) return st;
  if (!(st = get_str(t["data_dir"], "data_dir", &c->data_dir)).ok()) return st;
  if (!(st = get_uint(t["max_connections"], "max_connections", 1u << 20, &c->max_connections)).ok())
    return st;
  if (!(st = get_uint(t["shutdown_grace_ms"], "shutdown_grace_ms", 3600000, &c->shutdown_grace_ms))
           .ok())
    return st;
  if (auto n = t["max_request"]) {
    uint64_t v = 0;
    if (auto text = n.value<std::string>()) {
      auto parsed = ParseSize(*text);
      if (!parsed.ok()) return err("max_request", std::string(parsed.status().message()));
      v = *parsed;
    } else if (!(st = get_uint(n, "max_request", uint64_t{1} << 30, &v)).ok()) {
      return st;
    }
    if (v > (uint64_t{1} << 30)) return err("max_request", "at most 1G");
    c->max_request = static_cast<uint32_t>(v);
  }
  // Operating it as a service.
  auto get_bool = [&](const toml::node_view<toml::node> n, const std::string& key,
                      auto* out) -> absl::Status {
    if (!n) return absl::OkStatus();
    auto v = n.value<bool>();
    if (!v) return err(key, "true or false");
    *out = *v;
    return absl::OkStatus();
  };
  if (!(st = get_str(t["unix"], "unix", &c->unix_socket)).ok()) return st;
  if (t["listen"] || t["port"]) c->listen_tcp = true;
  if (t["tcp"]) {
    bool tcp = true;
    if (!(st = get_bool(t["tcp"], "tcp", &tcp)).ok()) return st;
    c->listen_tcp = tcp;
  }
  if (!(st = get_str(t["pid_file"], "pid_file", &c->pid_file)).ok()) return st;
  if (!(st = get_uint(t["handshake_timeout"], "handshake_timeout", 3600, &c->handshake_timeout_s))
           .ok())
    return st;
  if (!(st = get_bool(t["keepalive"], "keepalive", &c->keepalive)).ok()) return st;
  if (!(st = get_uint(t["keepalive_idle"], "keepalive_idle", 32767, &c->keepalive_idle_s)).ok())
    return st;
  // Fairness. Sizes are a string ("32M") or a number of bytes.
  auto get_size = [&](const toml::node_view<toml::node> n, const std::string& key, uint64_t max,
                      uint64_t* out) -> absl::Status {
    if (!n) return absl::OkStatus();
    if (auto text = n.value<std::string>()) {
      auto parsed = ParseSize(*text);
      if (!parsed.ok()) return err(key, std::string(parsed.status().message()));
      *out = *parsed;
      return absl::OkStatus();
    }
    return get_uint(n, key, max, out);
  };
  if (!(st = get_uint(t["max_in_flight"], "max_in_flight", kMaxInFlightLimit, &c->max_in_flight))
           .ok())
    return st;
  if (!(st = get_size(t["max_in_flight_bytes"], "max_in_flight_bytes", uint64_t{4} << 30,
                      &c->max_in_flight_bytes))
           .ok())
    return st;
  if (!(st = get_size(t["buffer_memory"], "buffer_memory", uint64_t{1} << 40, &c->buffer_memory))
           .ok())
    return st;
  if (!(st = get_uint(t["io_timeout"], "io_timeout", 3600, &c->io_timeout_s)).ok()) return st;
  if (!(st = get_uint(t["batch_window_us"], "batch_window_us", 10000, &c->batch_window_us)).ok())
    return st;
  if (auto n = t["default_size"]) {
    if (auto s = n.value<std::string>()) {
      auto v = ParseSize(*s);
      if (!v.ok()) return err("default_size", std::string(v.status().message()));
      c->default_size = *v;
    } else if (!(st = get_uint(n, "default_size", UINT64_MAX >> 1, &c->default_size)).ok()) {
      return st;
    }
  }
  if (auto* tls = t["tls"].as_table()) {
    for (const auto& [k, v] : *tls) {
      const std::string key(k.str());
      if (key != "mode" && key != "cert" && key != "key" && key != "ca" && key != "psk") {
        return absl::InvalidArgumentError(
            absl::StrCat("config file ", path, ": unknown key 'tls.", key, "'"));
      }
    }
    std::string mode;
    if (!(st = get_str((*tls)["mode"], "tls.mode", &mode)).ok()) return st;
    if (!mode.empty()) {
      if (mode == "off")
        c->tls = TlsMode::kOff;
      else if (mode == "on")
        c->tls = TlsMode::kOn;
      else if (mode == "require")
        c->tls = TlsMode::kRequire;
      else
        return err("tls.mode", "one of \"off\", \"on\", \"require\"");
    }
    if (!(st = get_str((*tls)["cert"], "tls.cert", &c->tls_cert)).ok()) return st;
    if (!(st = get_str((*tls)["key"], "tls.key", &c->tls_key)).ok()) return st;
    if (!(st = get_str((*tls)["ca"], "tls.ca", &c->tls_ca)).ok()) return st;
    if (!(st = get_str((*tls)["psk"], "tls.psk", &c->tls_psk)).ok()) return st;
  } else if (t["tls"]) {
    return err("tls", "a table ([tls])");
  }
  if (auto n = t["export"]) {
    auto* arr = n.as_array();
    if (!arr) return err("export", "an array of tables ([[export]])");
    for (std::size_t i = 0; i < arr->size(); ++i) {
      auto* e = (*arr)[i].as_table();
      const std::string where = absl::StrCat("export[", i, "]");
      if (!e) return err(where, "a table");
      for (const auto& [k, v] : *e) {
        const std::string key(k.str());
        if (key != "name" && key != "path" && key != "read_only" && key != "description" &&
            key != "queue_depth" && key != "cache" && key != "fault" && key != "fault_seed") {
          return absl::InvalidArgumentError(
              absl::StrCat("config file ", path, ": unknown key '", where, ".", key, "'"));
        }
      }
      ExportConfig ex;
      if (!(st = get_str((*e)["name"], where + ".name", &ex.name)).ok()) return st;
      if (!(st = get_str((*e)["path"], where + ".path", &ex.path)).ok()) return st;
      if (!(st = get_str((*e)["description"], where + ".description", &ex.description)).ok())
        return st;
      if (!(st = get_uint((*e)["queue_depth"], where + ".queue_depth", 4096, &ex.queue_depth)).ok())
        return st;
      std::string cache;
      if (!(st = get_str((*e)["cache"], where + ".cache", &cache)).ok()) return st;
      if ((*e)["cache"] && !ringline::block::ParseCacheMode(cache, &ex.cache)) {
        return err(where + ".cache", "one of \"direct\", \"writeback\", \"auto\"");
      }
      if (auto ro = (*e)["read_only"]) {
        auto b = ro.value<bool>();
        if (!b) return err(where + ".read_only", "true or false");
        ex.read_only = *b;
      }
      if (auto f = (*e)["fault"]) {
        if (st = ParseFaults(f, where, &ex); !st.ok()) {
          return absl::InvalidArgumentError(absl::StrCat("config file ", path, ": ", st.message()));
        }
      }
      if (!(st = get_uint((*e)["fault_seed"], where + ".fault_seed", UINT64_MAX >> 1,
                          &ex.fault_seed))
               .ok())
        return st;
      if (ex.path.empty()) return err(where + ".path", "set (the file or device to export)");
      c->exports.push_back(std::move(ex));
    }
  }
  return absl::OkStatus();
}

}  // namespace blockserve
