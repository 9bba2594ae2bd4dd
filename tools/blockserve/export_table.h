#pragma once
// A worker's exports: the backend targets it opened and the NBD view of them.
//
// Each worker opens every configured export itself (thread-per-core: a target
// belongs to one ring), so the table is worker-local and serves as the
// ExportCatalog the handshake consults on that worker. Thread-safety: used only
// on its worker's thread.

#include <atomic>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "blockserve/nbd/export.h"
#include "blockserve/server_config.h"
#include "blockserve/write_order.h"
#include "ringline/block/fault_injection.h"
#include "ringline/block/target.h"
#include "ringline/worker.h"

namespace blockserve {

// What every worker's copy of one export shares: whether the export can still
// promise durability, and the fault plan a test build injects into it.
//
// Poisoning: once a flush of the export has failed, the kernel may already have
// dropped the data that did not reach storage (Linux marks the pages clean and
// reports the error once), so a later flush that succeeds would not mean that
// every acknowledged write is durable; PostgreSQL learned this in 2018. From
// the first failed flush on, the export is kPoisoned until blockserve restarts:
// every FLUSH and FUA request fails with EIO, while plain reads and writes go
// on (HealthCheckedTarget enforces it).
//
// Why an atomic: every worker serves the export through its own target, and
// a flush on any of them must poison the export for all. The state only ever
// moves healthy -> poisoned; the release store happens before the failed
// flush is answered, and a worker's acquire load before each FLUSH or FUA
// request sees it for any request sent after that answer (the client's next
// request reaches the other worker through the kernel, which orders the two).
// No lock, nothing on the path of reads and plain writes.
//
// Ownership: created by the server, one per export, before the workers start;
// outlives them. Thread-safety: every method may be called from any thread.
class ExportState {
 public:
  enum class Health : uint8_t { kHealthy, kPoisoned };

  // The state of `config`'s export, with its fault plan when config.faults is
  // not empty. Fails naming the export when the plan is invalid.
  static absl::StatusOr<std::unique_ptr<ExportState>> Create(const ExportConfig& config);
  ExportState(const ExportState&) = delete;
  ExportState& operator=(const ExportState&) = delete;

  const std::string& name() const { return name_; }
  Health health() const { return health_.load(std::memory_order_acquire); }
  bool poisoned() const { return health() == Health::kPoisoned; }
  // The errno of the failure that poisoned the export (0 while healthy).
  int poison_errno() const { return poison_errno_.load(std::memory_order_acquire); }
  // A sync failed with `errnum` (`what` says which request and why, with the
  // errno): the first call moves the export to kPoisoned and logs it once as
  // an error; later calls change nothing. True for the call that poisoned it.
  bool Poison(int errnum, std::string_view what);
  // Counts a FLUSH or FUA request refused because the export is poisoned.
  void CountRefusal() { refused_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

  // The plan every worker's FaultyTarget shares (null: no faults configured).
  const std::shared_ptr<ringline::block::FaultPlan>& faults() const { return faults_; }

 private:
  ExportState(std::string name, std::shared_ptr<ringline::block::FaultPlan> faults)
      : name_(std::move(name)), faults_(std::move(faults)) {}

  const std::string name_;
  const std::shared_ptr<ringline::block::FaultPlan> faults_;
  std::atomic<Health> health_{Health::kHealthy};
  std::atomic<int> poison_errno_{0};
  std::atomic<uint64_t> refused_{0};
};

// The export's target as sessions see it: forwards to the backend (or to the
// FaultyTarget over it) and keeps the ExportState's promise. A failed flush
// poisons the state; so does a FUA write or write-zeroes that fails with EIO
// (its sync is a flush of the file, and the kernel reports a writeback error to
// a descriptor once: the next flush would not see the error it consumed).
// ENOSPC and other refusals do not poison: nothing was written. While
// poisoned, Flush() and FUA writes and write-zeroes fail with EIO without
// reaching the backend; everything else is forwarded as it is (the task of the
// backend is returned: no extra coroutine on reads and writes).
// Ownership: owns the inner target; `state` outlives it. Thread-safety: the
// inner target's (one worker).
class HealthCheckedTarget final : public ringline::block::Target {
 public:
  HealthCheckedTarget(std::unique_ptr<ringline::block::Target> inner, ExportState& state)
      : inner_(std::move(inner)), state_(state) {}

  const ringline::block::Geometry& geometry() const override { return inner_->geometry(); }
  const std::string& name() const override { return inner_->name(); }
  ringline::Task<ringline::block::BlockResult> Read(uint64_t offset, uint32_t length,
                                                    ringline::Buffer buffer) override {
    return inner_->Read(offset, length, std::move(buffer));
  }
  ringline::Task<ringline::block::BlockResult> Write(
      uint64_t offset, ringline::Buffer buffer,
      ringline::block::WriteOptions options = {}) override;
  // Forwarded, but a FUA write while poisoned takes Write's path (refused).
  bool WriteNow(uint64_t offset, std::span<const uint8_t> data,
                ringline::block::WriteOptions options = {}) override {
    if (options.fua && state_.poisoned()) return false;
    return inner_->WriteNow(offset, data, options);
  }
  bool writes_now() const override { return inner_->writes_now(); }
  ringline::Task<ringline::block::BlockResult> Flush() override;
  ringline::Task<ringline::block::BlockResult> Discard(uint64_t offset, uint64_t length) override {
    return inner_->Discard(offset, length);
  }
  ringline::Task<ringline::block::BlockResult> WriteZeroes(
      uint64_t offset, uint64_t length, ringline::block::WriteOptions options = {}) override;
  ringline::Task<ringline::block::BlockResult> Cache(uint64_t offset, uint64_t length) override {
    return inner_->Cache(offset, length);
  }
  ringline::Task<ringline::block::ExtentResult> Extents(
      uint64_t offset, uint64_t length, std::span<ringline::block::Extent> out) override {
    return inner_->Extents(offset, length, out);
  }
  const ringline::block::TargetMetrics* metrics() const override { return inner_->metrics(); }
  const ringline::block::QueueDepthLimiter* queue() const override { return inner_->queue(); }

  ringline::block::Target& inner() { return *inner_; }

 private:
  // The EIO of a request refused because the export is poisoned.
  ringline::block::BlockResult Refusal(const char* what, ringline::Buffer buffer = {}) const;
  // Runs a FUA write or write-zeroes and poisons the state if it fails with EIO.
  ringline::Task<ringline::block::BlockResult> Synced(
      ringline::Task<ringline::block::BlockResult> op, const char* what);

  std::unique_ptr<ringline::block::Target> inner_;
  ExportState& state_;
};

struct ServedExport {
  ExportConfig config;
  // HealthCheckedTarget over the backend (with a FaultyTarget between them
  // when the export has faults configured).
  std::unique_ptr<ringline::block::Target> target;
  nbd::Export nbd;  // name, description and capabilities as advertised
  // Orders overlapping read-modify-writes and writes of this export across
  // every worker; shared, owned by the server, outlives the table.
  WriteOrder* order = nullptr;
  // Health and faults, shared by every worker; owned by the server, outlives
  // the table.
  ExportState* state = nullptr;
};

class ExportTable : public nbd::ExportCatalog {
 public:
  // Opens every export of `config` on `worker`. Fails naming the export.
  // `orders[i]` and `states[i]` are the shared WriteOrder and ExportState of
  // config.exports[i].
  static absl::StatusOr<std::unique_ptr<ExportTable>> Open(ringline::Worker& worker,
                                                           const ServerConfig& config,
                                                           const std::vector<WriteOrder*>& orders,
                                                           const std::vector<ExportState*>& states);

  std::optional<nbd::Export> Find(std::string_view name) const override;
  std::vector<nbd::ExportListing> List() const override;

  // The export a negotiated name refers to (canonical name), or null.
  ServedExport* Lookup(std::string_view name);
  std::vector<std::unique_ptr<ServedExport>>& exports() { return exports_; }

 private:
  std::vector<std::unique_ptr<ServedExport>> exports_;
};

// What a backend's geometry lets blockserve promise a client; requests are
// accepted up to `max_request` bytes.
nbd::ExportInfo ExportInfoFor(const ringline::block::Geometry& g, bool read_only,
                              uint32_t max_request = nbd::kMaxPayloadLength);

// Prometheus text for the exports' states: blockserve_export_poisoned and,
// for exports with faults configured, blockserve_faults_injected_total.
std::string RenderExportStates(const std::vector<const ExportState*>& states);

// With no export configured: creates `data_dir` and a sparse file of
// `default_size` in it (kept if it exists), and adds it as export "default".
absl::Status AddEmbeddedDefault(ServerConfig* config);

}  // namespace blockserve
