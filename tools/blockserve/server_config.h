#pragma once
// blockserve's configuration: one struct filled from a TOML file and the
// command line (flags win), validated before anything starts. Every error names
// the flag or field, the bad value and what would be accepted.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ringline/block/fault_injection.h"
#include "ringline/block/target.h"

namespace blockserve {

enum class TlsMode { kOff, kOn, kRequire };

// The largest max_in_flight accepted (requests one connection may have in flight).
inline constexpr uint32_t kMaxInFlightLimit = 1024;

struct ExportConfig {
  std::string name;
  std::string path;  // file, block device or NVMe generic char device (/dev/ngXnY)
  bool read_only = false;
  std::string description;
  uint32_t queue_depth = 128;
  // O_DIRECT or the page cache (TOML `cache`: "direct", "writeback", "auto").
  ringline::block::CacheMode cache = ringline::block::CacheMode::kAuto;
  // Only for files blockserve creates (the embedded default): the sparse size.
  uint64_t create_size = 0;
  // Device faults injected into this export's backend (TOML [[export.fault]]
  // tables, see ringline/block/fault_injection.h), for tests; one plan for
  // all workers, seeded with `fault_seed` (TOML fault_seed). Accepted only by
  // builds with RINGLINE_FAULT_INJECTION (FaultInjectionBuiltIn()).
  std::vector<ringline::block::FaultRule> faults;
  uint64_t fault_seed = 1;
};

// True when this blockserve was built with RINGLINE_FAULT_INJECTION (the
// default; packaging may turn it off), so `[[export.fault]]` is accepted.
bool FaultInjectionBuiltIn();

struct ServerConfig {
  std::string listen = "127.0.0.1";
  uint16_t port = 10809;
  uint32_t workers = 2;
  // The CPUs the workers may run on (--cpus, TOML `cpus`: "0,2-3"), ascending;
  // empty: every CPU the process may run on (sched_getaffinity). Placement
  // chooses the workers' CPUs among them (those where the exports'
  // completions arrive first); more workers than CPUs share them. Every CPU
  // must be one the process may run on (Validate: block::CheckCpusAllowed).
  std::vector<int> cpus;
  std::vector<ExportConfig> exports;
  TlsMode tls = TlsMode::kOff;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;         // when set, client certificates are verified against it
  uint16_t metrics_port = 0;  // 0: no metrics endpoint
  std::string log_level = "info";
  // Where the embedded default export lives when no export is given.
  std::string data_dir = "var/blockserve";
  uint64_t default_size = uint64_t{1} << 30;
  uint32_t max_connections = 4096;
  // Largest READ/WRITE payload accepted (--max-request, TOML max_request): a
  // multiple of 64 KiB in [64 KiB, 1 GiB]. Each worker keeps up to four
  // buffers of this size (allocated, resident only once used).
  uint32_t max_request = 64u << 20;
  uint32_t shutdown_grace_ms = 10000;
  // Microseconds a worker may hold completions to wake once per batch while
  // clients keep many requests in flight (--batch-window-us, TOML
  // batch_window_us, 0..10000; 0 turns batching off). Kept only while it
  // measurably cuts the CPU per byte without lowering the rate, and ended by
  // clients that wait for each reply (ringline::Config::wait_batch_window).
  uint32_t batch_window_us = 50;
  // --cache: when set, the cache mode of every export (the flag wins over
  // each export's own `cache`).
  std::optional<ringline::block::CacheMode> cache;

  // ---- operating it as a service: sockets, limits, timeouts ------------------
  // Also (or only) listen on this Unix socket path (--unix, TOML `unix`),
  // removed on exit.
  std::string unix_socket;
  // Whether to listen on TCP (TOML `tcp`). Unset: TCP unless only a Unix
  // socket was asked for (--unix without --listen or --port). See ServesTcp().
  std::optional<bool> listen_tcp;
  std::string pid_file;  // written once listening, removed on exit
  // Seconds from accept until the client must be in transmission (0: none).
  uint32_t handshake_timeout_s = 10;
  // TCP keepalive on accepted connections: first probe after this many idle
  // seconds, then every 10 s; 6 unanswered probes and the peer is dead.
  bool keepalive = true;
  uint32_t keepalive_idle_s = 60;
  std::string tls_psk;  // psktool-format key file (identity:hexkey per line)

  // ---- fairness: what one connection, and the server, may hold -----------------
  // Requests one connection may have in flight (--max-in-flight, TOML
  // max_in_flight, 1..1024); at the limit the server reads no further request
  // from it until one finishes (the rest wait in its socket).
  uint32_t max_in_flight = 256;
  // Request buffer bytes one connection may hold (--max-in-flight-bytes, TOML
  // max_in_flight_bytes, 64K..4G). A request that would pass it waits like
  // one over max_in_flight, except that a request arriving while the
  // connection holds nothing is always admitted, so one request up to
  // max_request is always served. So one connection holds at most
  // max(max_in_flight_bytes, max_request) plus an alignment unit per side.
  uint64_t max_in_flight_bytes = 64u << 20;
  // Request buffer memory beyond the per-worker pools, all workers together
  // (--buffer-memory, TOML buffer_memory, 0..1T; 0: the pools only). When a
  // pool is empty a request buffer is allocated from this budget and freed
  // when the request finishes; when the budget is spent too, requests wait
  // for a pool buffer (FIFO), which --io-timeout bounds.
  uint64_t buffer_memory = uint64_t{1} << 30;
  // Seconds the server waits on a client in transmission without progress
  // (--io-timeout, TOML io_timeout, 0 = none..3600): a write payload that
  // stops arriving, or replies the client stops reading. Every completed
  // payload piece or reply send is progress. The connection is then closed
  // and its buffers returned. An idle client (nothing owed) never times out.
  uint32_t io_timeout_s = 30;

  bool ServesTcp() const { return listen_tcp.value_or(unix_socket.empty()); }
  absl::Status Validate() const;

 private:
  absl::Status ValidateService() const;   // the fields of the section above
  absl::Status ValidateFairness() const;  // the fairness section
};

// "NAME=PATH[,ro]" as given to --export.
absl::StatusOr<ExportConfig> ParseExportSpec(const std::string& spec);

// Reads a TOML file into `config` (fields it does not mention keep their
// values). Unknown keys are errors, so a typo cannot pass silently.
absl::Status LoadConfigFile(const std::string& path, ServerConfig* config);

// --cpus / TOML `cpus`: "0", "0,2", "0-3,6" (the kernel's CPU list spelling),
// at least one CPU. `where` names the flag or field in the error.
absl::StatusOr<std::vector<int>> ParseCpus(const std::string& text, const std::string& where);

// Sizes such as "1G", "512M", "4096".
absl::StatusOr<uint64_t> ParseSize(const std::string& text);

const char* TlsModeName(TlsMode mode);

}  // namespace blockserve
