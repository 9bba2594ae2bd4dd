#include "ringline/block/open.h"

#include <sys/stat.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "ringline/block/direct_file.h"
#include "ringline/io_result.h"

namespace ringline::block {

absl::StatusOr<std::unique_ptr<Target>> OpenTarget(Worker& worker, const std::string& path,
                                                   const TargetOptions& options) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoToStatus(-errno, absl::StrCat("stat ", path));
  if (S_ISCHR(st.st_mode)) {
    // NOTE: NvmeNamespace (ringline/block/nvme_namespace.h) is being written in
    // parallel; dispatch /dev/ngXnY here once it exists.
    return absl::UnimplementedError(absl::StrCat(
        path, " is a character device: NVMe generic devices (/dev/ngXnY) need NvmeNamespace, "
              "which this build does not have yet"));
  }
  DirectFileOptions o;
  o.read_only = options.read_only;
  o.queue_depth = options.queue_depth;
  o.max_transfer_bytes = options.max_transfer_bytes;
  o.latency_histograms = options.latency_histograms;
  auto f = DirectFile::Open(worker, path, o);
  if (!f.ok()) return f.status();
  return std::unique_ptr<Target>(std::move(*f));
}

}  // namespace ringline::block
