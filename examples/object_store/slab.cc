#include "slab.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "ringline/unique_fd.h"

namespace object_store {

absl::StatusOr<Superblock> PrepareSlab(const std::string& path, uint32_t workers, uint32_t slots,
                                       uint32_t slot_size) {
  if (slot_size < 2 * kClearSize || slot_size % 4096 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--slot-size ", slot_size, ": must be a multiple of 4096, at least 8192"));
  }
  ringline::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) return absl::ErrnoToStatus(errno, absl::StrCat("--slab ", path));
  Superblock sb{};
  const ssize_t n = ::pread(fd.get(), &sb, sizeof(sb), 0);
  if (n < 0) return absl::ErrnoToStatus(errno, absl::StrCat("reading ", path));
  if (n == 0) {  // new: write the superblock, make the file its full (sparse) size
    sb = Superblock{kSuperMagic, workers, slots, slot_size, 0};
    const uint64_t size = kSuperSize + uint64_t{workers} * slots * slot_size;
    if (::pwrite(fd.get(), &sb, sizeof(sb), 0) != sizeof(sb) || ::ftruncate(fd.get(), size) != 0 ||
        ::fsync(fd.get()) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("creating ", path));
    }
    // The new name must be durable too, or a crash could lose the whole slab
    // with every object acknowledged in it.
    const std::size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
    ringline::UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dfd || ::fsync(dfd.get()) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("syncing the directory of ", path));
    }
    return sb;
  }
  if (n != sizeof(sb) || sb.magic != kSuperMagic) {
    return absl::FailedPreconditionError(
        absl::StrCat("--slab ", path, " exists and is not an object store slab"));
  }
  if (sb.workers != workers) {
    return absl::FailedPreconditionError(
        absl::StrCat("--slab ", path, " was created for ", sb.workers,
                     " workers (each owns its keys' slots): start with --workers ", sb.workers));
  }
  return sb;
}

}  // namespace object_store
