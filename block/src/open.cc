#include "ringline/block/open.h"

#include <sys/stat.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "ringline/block/direct_file.h"
#include "ringline/block/nvme_namespace.h"
#include "ringline/io_result.h"

namespace ringline::block {

absl::StatusOr<std::unique_ptr<Target>> OpenTarget(Worker& worker, const std::string& path,
                                                   const TargetOptions& options) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoToStatus(-errno, absl::StrCat("stat ", path));
  if (S_ISCHR(st.st_mode)) {
    // NVMe generic char devices (/dev/ngXnY) go through passthrough;
    // NvmeNamespace::Open refuses other character devices with a reason.
    auto ns = NvmeNamespace::Open(worker, path, options);
    if (!ns.ok()) return ns.status();
    return std::unique_ptr<Target>(std::move(*ns));
  }
  auto f = DirectFile::Open(worker, path, options);
  if (!f.ok()) return f.status();
  return std::unique_ptr<Target>(std::move(*f));
}

}  // namespace ringline::block
