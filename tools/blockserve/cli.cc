#include "blockserve/cli.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <tuple>

#include "blockserve/version.h"
#include "ringline/log.h"

namespace blockserve {

CliOutcome ParseCommandLine(int argc, char** argv) {
  CLI::App app{
      "blockserve: an NBD (network block device) server on ringline.\n"
      "With no --export it serves a sparse file it creates in --data-dir (the embedded "
      "default).\nConnect with e.g. `nbdinfo nbd://127.0.0.1`.",
      "blockserve"};
  std::string listen, config_file, tls, tls_cert, tls_key, tls_ca, log_level, data_dir,
      default_size, max_request, cache, cpus;
  std::vector<std::string> exports;
  uint32_t port = 0, workers = 0, metrics_port = 0, max_connections = 0;
  app.add_option("--config", config_file, "TOML configuration file (flags override it)")
      ->check(CLI::ExistingFile);
  app.add_option("--listen,-b", listen, "address to listen on (default 127.0.0.1)");
  app.add_option("--port,-p", port, "TCP port (default 10809)")->check(CLI::Range(1, 65535));
  app.add_option("--export,-e", exports,
                 "NAME=PATH[,ro]: export a file, block device or /dev/ngXnY "
                 "(repeatable)");
  app.add_option("--workers,-w", workers, "worker threads, one per CPU (default 2)")
      ->check(CLI::Range(1, 256));
  app.add_option("--cpus", cpus,
                 "CPUs the workers may run on (0,2-3); blockserve places them among these, "
                 "where the exports' completions arrive first (default: every CPU it may use)");
  app.add_option("--tls", tls, "off | on | require (default off)")
      ->check(CLI::IsMember({"off", "on", "require"}));
  app.add_option("--tls-cert", tls_cert, "server certificate (PEM)")->check(CLI::ExistingFile);
  app.add_option("--tls-key", tls_key, "server private key (PEM)")->check(CLI::ExistingFile);
  app.add_option("--tls-ca", tls_ca, "CA to verify client certificates against (PEM)")
      ->check(CLI::ExistingFile);
  app.add_option("--metrics-port", metrics_port, "serve Prometheus metrics over HTTP on this port")
      ->check(CLI::Range(1, 65535));
  app.add_option("--log-level", log_level, "debug | info | warn | error | off (default info)")
      ->check(CLI::IsMember({"debug", "info", "warn", "warning", "error", "off"}));
  app.add_option("--data-dir", data_dir,
                 "where the embedded default export lives (default var/blockserve)");
  app.add_option("--default-size", default_size,
                 "size of the embedded default export (default 1G)");
  app.add_option("--max-connections", max_connections,
                 "connections served at once, all workers together; more are closed at once "
                 "(default 4096)")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-request", max_request,
                 "largest read/write accepted, multiple of 64K up to 1G (default 64M)");
  app.add_option("--cache", cache,
                 "direct | writeback | auto: O_DIRECT, the page cache, or O_DIRECT where the "
                 "filesystem takes it (default auto; overrides every export's `cache`)")
      ->check(CLI::IsMember({"direct", "writeback", "auto"}));
  // Operating it as a service.
  std::string unix_socket, pid_file, keepalive, tls_psk;
  std::optional<uint32_t> handshake_timeout, keepalive_idle;
  app.set_version_flag("--version,-V", std::string("blockserve ") + kBlockserveVersion,
                       "print the version and exit");
  app.add_option("--unix,-U", unix_socket,
                 "also listen on this Unix socket (alone unless --listen or --port is given); "
                 "removed on exit");
  app.add_option("--pid-file", pid_file, "write the process id here once listening");
  app.add_option("--handshake-timeout", handshake_timeout,
                 "seconds a client may take from connecting to entering transmission; 0: no "
                 "limit (default 10)")
      ->check(CLI::Range(0, 3600));
  app.add_option("--keepalive", keepalive, "on | off: TCP keepalive on connections (default on)")
      ->check(CLI::IsMember({"on", "off"}));
  app.add_option("--keepalive-idle", keepalive_idle,
                 "seconds a connection is quiet before keepalive probes start (default 60)")
      ->check(CLI::Range(1, 32767));
  app.add_option("--tls-psk", tls_psk,
                 "pre-shared keys, one identity:hexkey per line (psktool's format)")
      ->check(CLI::ExistingFile);
  // Fairness: what one connection, and the server, may hold.
  std::string max_in_flight_bytes, buffer_memory;
  std::optional<uint32_t> max_in_flight, io_timeout;
  app.add_option("--max-in-flight", max_in_flight,
                 "requests one connection may have in flight; beyond it the server stops reading "
                 "from it (default 256)")
      ->check(CLI::Range(1u, kMaxInFlightLimit));
  app.add_option("--max-in-flight-bytes", max_in_flight_bytes,
                 "request buffer bytes one connection may hold, 64K..4G; one request up to "
                 "--max-request is always admitted (default 64M)");
  app.add_option("--buffer-memory", buffer_memory,
                 "request buffer memory beyond the per-worker pools, all workers together, "
                 "0..1T (default 1G)");
  app.add_option("--io-timeout", io_timeout,
                 "seconds a write payload may stop arriving, or replies stop being read, before "
                 "the connection is closed; 0: no limit (default 30)")
      ->check(CLI::Range(0, 3600));
  std::optional<uint32_t> batch_window_us;
  app.add_option("--batch-window-us", batch_window_us,
                 "microseconds a worker may hold completions to answer in batches while clients "
                 "keep many requests in flight; kept only while it saves CPU without lowering the "
                 "rate; 0: off (default 50)")
      ->check(CLI::Range(0, 10000));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    app.exit(e);
    return {std::nullopt, 0};
  } catch (const CLI::CallForVersion& e) {
    app.exit(e);
    return {std::nullopt, 0};
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return {std::nullopt, 2};
  }

  ServerConfig c;
  auto fail = [](const absl::Status& st) {
    std::fprintf(stderr, "blockserve: %s\n", std::string(st.message()).c_str());
    return CliOutcome{std::nullopt, 2};
  };
  if (!config_file.empty()) {
    if (auto st = LoadConfigFile(config_file, &c); !st.ok()) return fail(st);
  }
  if (!listen.empty()) c.listen = listen;
  if (port) c.port = static_cast<uint16_t>(port);
  if (workers) c.workers = workers;
  if (!cpus.empty()) {
    auto v = ParseCpus(cpus, "--cpus");
    if (!v.ok()) return fail(v.status());
    c.cpus = std::move(*v);
  }
  if (metrics_port) c.metrics_port = static_cast<uint16_t>(metrics_port);
  if (max_connections) c.max_connections = max_connections;
  if (!log_level.empty()) c.log_level = log_level;
  if (!data_dir.empty()) c.data_dir = data_dir;
  if (!default_size.empty()) {
    auto v = ParseSize(default_size);
    if (!v.ok())
      return fail(
          absl::InvalidArgumentError("--default-size " + std::string(v.status().message())));
    c.default_size = *v;
  }
  if (!max_request.empty()) {
    auto v = ParseSize(max_request);
    if (!v.ok() || *v > (uint64_t{1} << 30)) {
      return fail(absl::InvalidArgumentError(
          "--max-request " + max_request + ": use a size such as 64M (a multiple of 64K, <= 1G)"));
    }
    c.max_request = static_cast<uint32_t>(*v);
  }
  if (!tls.empty()) {
    c.tls = tls == "on" ? TlsMode::kOn : tls == "require" ? TlsMode::kRequire : TlsMode::kOff;
  }
  if (!cache.empty()) {
    ringline::block::CacheMode mode;
    if (!ringline::block::ParseCacheMode(cache, &mode)) {
      return fail(
          absl::InvalidArgumentError("--cache '" + cache + "': use direct, writeback or auto"));
    }
    c.cache = mode;
  }
  if (!tls_cert.empty()) c.tls_cert = tls_cert;
  if (!tls_key.empty()) c.tls_key = tls_key;
  if (!tls_ca.empty()) c.tls_ca = tls_ca;
  if (!listen.empty() || port) c.listen_tcp = true;
  if (!unix_socket.empty()) c.unix_socket = unix_socket;
  if (!pid_file.empty()) c.pid_file = pid_file;
  if (handshake_timeout) c.handshake_timeout_s = *handshake_timeout;
  if (!keepalive.empty()) c.keepalive = keepalive == "on";
  if (keepalive_idle) c.keepalive_idle_s = *keepalive_idle;
  if (!tls_psk.empty()) c.tls_psk = tls_psk;
  if (max_in_flight) c.max_in_flight = *max_in_flight;
  if (io_timeout) c.io_timeout_s = *io_timeout;
  if (batch_window_us) c.batch_window_us = *batch_window_us;
  for (auto [flag, text, field] :
       {std::tuple{"--max-in-flight-bytes", &max_in_flight_bytes, &c.max_in_flight_bytes},
        std::tuple{"--buffer-memory", &buffer_memory, &c.buffer_memory}}) {
    if (text->empty()) continue;
    auto v = ParseSize(*text);
    if (!v.ok()) {
      return fail(
          absl::InvalidArgumentError(std::string(flag) + " " + std::string(v.status().message())));
    }
    *field = *v;
  }
  if (!exports.empty()) c.exports.clear();  // flags replace the file's exports
  for (const auto& spec : exports) {
    auto e = ParseExportSpec(spec);
    if (!e.ok()) return fail(e.status());
    c.exports.push_back(std::move(*e));
  }
  ringline::LogLevel level;
  if (!ringline::ParseLogLevel(c.log_level, &level)) {
    return fail(absl::InvalidArgumentError("log_level '" + c.log_level +
                                           "': use debug, info, warn, error or off"));
  }
  if (auto st = c.Validate(); !st.ok()) return fail(st);
  return {std::move(c), 0};
}

}  // namespace blockserve
