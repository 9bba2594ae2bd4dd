#include "blockserve/export_table.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "blockserve/stats.h"
#include "ringline/block/fault_injection.h"
#include "ringline/block/open.h"
#include "ringline/io_result.h"
#include "ringline/log.h"

namespace blockserve {

namespace blk = ringline::block;
using ringline::Buffer;
using ringline::Task;

namespace {

Task<blk::BlockResult> Finished(blk::BlockResult r) { co_return r; }

}  // namespace

// ---- ExportState ---------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<ExportState>> ExportState::Create(const ExportConfig& config) {
  std::shared_ptr<blk::FaultPlan> plan;
  if (!config.faults.empty()) {
    auto p = blk::FaultPlan::Create(config.faults, config.fault_seed);
    if (!p.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("export '", config.name, "': ", p.status().message()));
    }
    plan = std::move(*p);
    for (std::size_t i = 0; i < plan->size(); ++i) {
      RL_LOG_WARN("export '%s': injecting faults (test build), rule %zu: %s (seed %llu)",
                  config.name, i, plan->Describe(i), static_cast<unsigned long long>(plan->seed()));
    }
  }
  return std::unique_ptr<ExportState>(new ExportState(config.name, std::move(plan)));
}

bool ExportState::Poison(int errnum, std::string_view what) {
  Health expected = Health::kHealthy;
  // The errno is stored first, so a reader that sees kPoisoned sees it too.
  int no_errno = 0;
  poison_errno_.compare_exchange_strong(no_errno, errnum, std::memory_order_release);
  if (!health_.compare_exchange_strong(expected, Health::kPoisoned, std::memory_order_acq_rel)) {
    return false;
  }
  RL_LOG_ERROR(
      "export '%s' is POISONED: %s. Every later FLUSH and FUA write on it fails with EIO until "
      "blockserve restarts: the kernel may already have dropped the data that did not reach "
      "storage, so a later flush that succeeded would be a lie. Reads and plain writes go on.",
      name_, std::string(what));
  return true;
}

// ---- HealthCheckedTarget ---------------------------------------------------------------

blk::BlockResult HealthCheckedTarget::Refusal(const char* what, Buffer buffer) const {
  state_.CountRefusal();
  blk::BlockResult r;
  r.res = -EIO;
  r.status = absl::DataLossError(absl::StrCat(
      what, " refused: export '", state_.name(), "' is poisoned since a flush failed with ",
      ringline::ErrnoName(state_.poison_errno()),
      "; FLUSH and FUA writes fail until blockserve restarts"));
  r.buffer = std::move(buffer);
  return r;
}

Task<blk::BlockResult> HealthCheckedTarget::Write(uint64_t offset, Buffer buffer,
                                                  blk::WriteOptions options) {
  if (!options.fua) return inner_->Write(offset, std::move(buffer), options);
  if (state_.poisoned()) [[unlikely]]
    return Finished(Refusal("FUA write", std::move(buffer)));
  return Synced(inner_->Write(offset, std::move(buffer), options), "FUA write");
}

Task<blk::BlockResult> HealthCheckedTarget::WriteZeroes(uint64_t offset, uint64_t length,
                                                        blk::WriteOptions options) {
  if (!options.fua) return inner_->WriteZeroes(offset, length, options);
  if (state_.poisoned()) [[unlikely]]
    return Finished(Refusal("FUA write-zeroes"));
  return Synced(inner_->WriteZeroes(offset, length, options), "FUA write-zeroes");
}

Task<blk::BlockResult> HealthCheckedTarget::Synced(Task<blk::BlockResult> op, const char* what) {
  blk::BlockResult r = co_await std::move(op);
  if (r.error() == EIO) {
    state_.Poison(EIO, absl::StrCat("a ", what, " failed: ", r.status.message()));
  }
  co_return r;
}

Task<blk::BlockResult> HealthCheckedTarget::Flush() {
  if (state_.poisoned()) co_return Refusal("flush");
  blk::BlockResult r = co_await inner_->Flush();
  if (!r.ok()) state_.Poison(r.error(), absl::StrCat("a flush failed: ", r.status.message()));
  co_return r;
}

std::string RenderExportStates(const std::vector<const ExportState*>& states) {
  std::string out;
  absl::StrAppend(&out,
                  "# HELP blockserve_export_poisoned 1 once a failed flush has poisoned the "
                  "export: FLUSH and FUA writes fail until restart.\n"
                  "# TYPE blockserve_export_poisoned gauge\n");
  for (const ExportState* s : states) {
    absl::StrAppend(&out, "blockserve_export_poisoned{export=\"", EscapeLabelValue(s->name()),
                    "\"} ", s->poisoned() ? 1 : 0, "\n");
  }
  absl::StrAppend(&out,
                  "# HELP blockserve_export_poisoned_refusals_total FLUSH and FUA requests "
                  "failed because the export is poisoned.\n"
                  "# TYPE blockserve_export_poisoned_refusals_total counter\n");
  for (const ExportState* s : states) {
    absl::StrAppend(&out, "blockserve_export_poisoned_refusals_total{export=\"",
                    EscapeLabelValue(s->name()), "\"} ", s->refused(), "\n");
  }
  bool header = false;
  for (const ExportState* s : states) {
    if (!s->faults()) continue;
    if (!header) {
      absl::StrAppend(&out,
                      "# HELP blockserve_faults_injected_total Requests failed (error) or "
                      "delayed (delay) by the export's fault rules (test builds).\n"
                      "# TYPE blockserve_faults_injected_total counter\n");
      header = true;
    }
    const std::string ex = EscapeLabelValue(s->name());
    absl::StrAppend(&out, "blockserve_faults_injected_total{export=\"", ex, "\",kind=\"error\"} ",
                    s->faults()->errors_injected(), "\n");
    absl::StrAppend(&out, "blockserve_faults_injected_total{export=\"", ex, "\",kind=\"delay\"} ",
                    s->faults()->delays_injected(), "\n");
  }
  return out;
}

nbd::ExportInfo ExportInfoFor(const ringline::block::Geometry& g, bool read_only,
                              uint32_t max_request) {
  nbd::ExportInfo info;
  info.size = g.size_bytes;
  info.read_only = read_only || g.read_only;
  info.can_flush = true;
  info.can_fua = g.supports_fua;
  info.can_trim = g.supports_discard;
  info.can_write_zeroes = g.supports_write_zeroes;
  // The backends' zeroing (fallocate ZERO_RANGE, NVMe Write Zeroes) never
  // falls back to writing data, so FAST_ZERO is honest where zeroing exists.
  info.can_fast_zero = g.supports_write_zeroes;
  // Writes are acknowledged only when the kernel has them (O_DIRECT, NVMe), and
  // a flush on any connection flushes the whole device or file: a flush covers
  // writes acknowledged on every connection.
  info.can_multi_conn = true;
  info.rotational = g.rotational;
  info.can_df = true;  // reads are always answered in one chunk
  // NBD_CMD_CACHE only where a prefetch means something (the page cache).
  info.can_cache = g.supports_cache;
  info.block_size.minimum = std::max<uint32_t>(g.logical_block_size, g.memory_alignment);
  info.block_size.preferred = std::max<uint32_t>(4096, g.physical_block_size);
  // Targets split a request at their max_transfer_bytes themselves.
  info.block_size.maximum = max_request;
  info.max_request_length = max_request;
  return info;
}

absl::StatusOr<std::unique_ptr<ExportTable>> ExportTable::Open(
    ringline::Worker& worker, const ServerConfig& config, const std::vector<WriteOrder*>& orders,
    const std::vector<ExportState*>& states) {
  auto table = std::make_unique<ExportTable>();
  for (std::size_t i = 0; i < config.exports.size(); ++i) {
    const ExportConfig& e = config.exports[i];
    ringline::block::TargetOptions opts;
    opts.read_only = e.read_only;
    opts.queue_depth = e.queue_depth;
    opts.latency_histograms = false;  // the session times whole requests itself
    opts.cache = config.cache.value_or(e.cache);
    auto target = ringline::block::OpenTarget(worker, e.path, opts);
    if (!target.ok()) {
      return absl::Status(target.status().code(), absl::StrCat("export '", e.name, "' (", e.path,
                                                               "): ", target.status().message()));
    }
    ExportState* state = states.at(i);
    std::unique_ptr<blk::Target> backend = std::move(*target);
    if (state->faults()) {
      backend = std::make_unique<blk::FaultyTarget>(std::move(backend), state->faults());
    }
    auto served = std::make_unique<ServedExport>();
    served->config = e;
    served->target = std::make_unique<HealthCheckedTarget>(std::move(backend), *state);
    served->state = state;
    served->nbd.name = e.name;
    served->nbd.description = e.description;
    served->nbd.info = ExportInfoFor(served->target->geometry(), e.read_only, config.max_request);
    served->order = orders.at(i);
    table->exports_.push_back(std::move(served));
  }
  return table;
}

std::optional<nbd::Export> ExportTable::Find(std::string_view name) const {
  if (exports_.empty()) return std::nullopt;
  if (name.empty()) return exports_.front()->nbd;  // the default export
  for (const auto& e : exports_) {
    if (e->nbd.name == name) return e->nbd;
  }
  return std::nullopt;
}

std::vector<nbd::ExportListing> ExportTable::List() const {
  std::vector<nbd::ExportListing> out;
  for (const auto& e : exports_) out.push_back({e->nbd.name, e->nbd.description, false});
  return out;
}

ServedExport* ExportTable::Lookup(std::string_view name) {
  for (auto& e : exports_) {
    if (e->nbd.name == name) return e.get();
  }
  return nullptr;
}

absl::Status AddEmbeddedDefault(ServerConfig* config) {
  if (!config->exports.empty()) return absl::OkStatus();
  std::error_code ec;
  std::filesystem::create_directories(config->data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat("data_dir ", config->data_dir,
                                                      ": cannot create it (", ec.message(),
                                                      "); choose another with --data-dir"));
  }
  const std::string path = config->data_dir + "/default.img";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ringline::ErrnoToStatus(-errno, absl::StrCat("creating ", path));
  struct stat st {};
  fstat(fd, &st);
  if (st.st_size == 0) {
    // Sparse: no blocks are allocated until written.
    if (ftruncate(fd, static_cast<off_t>(config->default_size)) != 0) {
      const int e = errno;
      ::close(fd);
      return ringline::ErrnoToStatus(-e, absl::StrCat("sizing ", path));
    }
    RL_LOG_INFO("created embedded default export %s (%u MiB, sparse)", path,
                static_cast<unsigned>(config->default_size >> 20));
  }
  ::close(fd);
  ExportConfig e;
  e.name = "default";
  e.path = path;
  e.description = "blockserve embedded default (sparse file)";
  config->exports.push_back(e);
  return absl::OkStatus();
}

}  // namespace blockserve
