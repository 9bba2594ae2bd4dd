#pragma once
// MappedFile (internal to block): a tmpfs file mapped MAP_SHARED into the
// process once, so that a worker copies a read or write to it with memcpy
// instead of a pread/pwrite system call. On tmpfs both do the same work (the
// file's pages are memory); the system call adds entry and exit, the page
// cache lookup, the inode lock of a write and the time stamps, which are most
// of a 4 KiB request's cost (BENCHMARKS.md, "tmpfs through a mapping").
//
// Why the mapping is used only where pages are known to be allocated: a
// shared mapping of tmpfs allocates a page on any fault, a read's too, so a
// read of a hole through it would fill a sparse file; and where the file
// system is full that allocation cannot succeed, which a mapping reports as
// SIGBUS, not as ENOSPC. So the mapping keeps one bit per page, set where the
// page is known allocated (SEEK_DATA at map time, and every successful
// write outside the mapping, pwrite or io-wq, the caller reports with
// MarkAllocated); a request touching a page whose bit is clear goes through
// pread/pwrite, which read holes as zeroes without allocating and report
// ENOSPC. Discard forgets its pages first
// (Forget).
//
// A bit can still be wrong: another process may punch or truncate the file,
// and a worker may have read a bit just before another worker cleared it. The
// copy is therefore guarded: SIGBUS raised by the copy itself (on this
// thread, at an address inside the request's range of the mapping) ends the
// copy (siglongjmp out of memcpy, which holds no locks and owns nothing), the
// request's pages are forgotten, and TryCopy reports that it did nothing; the
// caller then does the request with pread/pwrite, which returns the real
// result (ENOSPC, a short read past a shrunken end, or success). SIGBUS
// anywhere else goes to the handler installed before (the default action
// kills the process as it would have). The handler is installed once per
// process, when the first file is mapped; threads that copy must not block
// SIGBUS (a blocked fault signal kills the process).
//
// Ownership and sharing: one MappedFile per (file, size, access) in the
// process, shared by every DirectFile that opens it (one per worker), through
// shared_ptr; the mapping lives until the last one is released (it keeps the
// file open by itself). The bits are one set per (file, size), shared by the
// read-only and the read-write mapping of a file (blockserve may export one
// file both ways): a discard through one must keep
// the other's reads off the freed pages, which a read fault would allocate
// again. TryCopy, MarkAllocated and Forget may be called from any thread at
// once: the bits are changed atomically (std::atomic_ref), and what two
// workers do to the same pages at once is, as with any device, unordered
// (a read racing a discard of its range can return old bytes and zeroes
// mixed: the punch unmaps the page under the copy).

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <span>

#include "absl/status/statusor.h"

struct iovec;

namespace ringline::block {

class PageBits;  // which pages are known allocated (mapped_file.cc)

class MappedFile {
 public:
  // The process's mapping of the tmpfs file open at `fd` (`size` bytes,
  // writable unless `read_only`): the existing one if another target mapped
  // the same file, size and access, else a new one. Fails (and the caller
  // keeps pread/pwrite) where mmap or SEEK_DATA fails.
  static absl::StatusOr<std::shared_ptr<MappedFile>> Share(int fd, uint64_t size, bool read_only);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  // Copies `pieces` (in order) to the file at `offset` (write) or the file
  // at `offset` into them (read), when every page the request touches is
  // known allocated: returns true. Returns false, having done nothing the
  // caller may rely on (a read's buffer may hold part of the data, a write
  // may have reached some pages), when a page is not known allocated or the
  // copy faulted. The range must lie within the mapped size.
  bool TryCopy(bool write, uint64_t offset, std::span<const iovec> pieces);
  // How TryCopy copies: a write to a file larger than the last-level cache
  // uses non-temporal stores (its pages are not in the cache to begin with).
  // kTouch copies nothing: it reads one byte of each page (ScanExtents).
  enum class Copy : uint8_t { kRead, kWrite, kStreamingWrite, kTouch };

  // The pages of [offset, offset + length) are allocated (a pwrite to them
  // succeeded).
  void MarkAllocated(uint64_t offset, uint64_t length);
  // The pages of [offset, offset + length) may be freed (before a discard).
  void Forget(uint64_t offset, uint64_t length);

 private:
  MappedFile(uint8_t* base, uint64_t size, uint64_t pages, bool writable,
             std::shared_ptr<PageBits> known);
  // Walks the data extents of `fd` (SEEK_DATA/SEEK_HOLE): populates this
  // mapping's page tables for them, reads one byte of each of their pages
  // and, if `set_bits`, sets their bits; -errno where the walk fails.
  int ScanExtents(int fd, bool set_bits);

  uint8_t* base_;  // the mapping, size_ bytes rounded up to pages; munmap'ed by the destructor
  uint64_t size_;
  uint64_t pages_;
  bool writable_;       // PROT_WRITE: populated for writing (else for reading)
  bool stream_writes_;  // larger than the last-level cache: writes stream (Copy)
  // Which pages are known allocated (PageBits, mapped_file.cc), shared with
  // every other mapping of the same file and size in the process.
  std::shared_ptr<PageBits> known_;
};

}  // namespace ringline::block
