#include "blockserve/export_table.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "ringline/block/open.h"
#include "ringline/io_result.h"
#include "ringline/log.h"

namespace blockserve {

nbd::ExportInfo ExportInfoFor(const ringline::block::Geometry& g, bool read_only) {
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
  info.block_size.minimum = std::max<uint32_t>(g.logical_block_size, g.memory_alignment);
  info.block_size.preferred = std::max<uint32_t>(4096, g.physical_block_size);
  info.block_size.maximum = nbd::kMaxPayloadLength;
  return info;
}

absl::StatusOr<std::unique_ptr<ExportTable>> ExportTable::Open(ringline::Worker& worker,
                                                               const ServerConfig& config) {
  auto table = std::make_unique<ExportTable>();
  for (const ExportConfig& e : config.exports) {
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
    auto served = std::make_unique<ServedExport>();
    served->config = e;
    served->target = std::move(*target);
    served->nbd.name = e.name;
    served->nbd.description = e.description;
    served->nbd.info = ExportInfoFor(served->target->geometry(), e.read_only);
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
