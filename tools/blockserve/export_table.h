#pragma once
// A worker's exports: the backend targets it opened and the NBD view of them.
//
// Each worker opens every configured export itself (thread-per-core: a target
// belongs to one ring), so the table is worker-local and serves as the
// ExportCatalog the handshake consults on that worker. Thread-safety: used only
// on its worker's thread.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "blockserve/nbd/export.h"
#include "blockserve/server_config.h"
#include "blockserve/write_order.h"
#include "ringline/block/target.h"
#include "ringline/worker.h"

namespace blockserve {

struct ServedExport {
  ExportConfig config;
  std::unique_ptr<ringline::block::Target> target;
  nbd::Export nbd;  // name, description and capabilities as advertised
  // Orders overlapping read-modify-writes and writes of this export across
  // every worker; shared, owned by the server, outlives the table.
  WriteOrder* order = nullptr;
};

class ExportTable : public nbd::ExportCatalog {
 public:
  // Opens every export of `config` on `worker`. Fails naming the export.
  // `orders[i]` is the shared WriteOrder of config.exports[i].
  static absl::StatusOr<std::unique_ptr<ExportTable>> Open(ringline::Worker& worker,
                                                           const ServerConfig& config,
                                                           const std::vector<WriteOrder*>& orders);

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

// With no export configured: creates `data_dir` and a sparse file of
// `default_size` in it (kept if it exists), and adds it as export "default".
absl::Status AddEmbeddedDefault(ServerConfig* config);

}  // namespace blockserve
