#include "mapped_file.h"

#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <bit>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <map>
#include <tuple>

#include "absl/base/call_once.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "ringline/internal/store_fence.h"
#include "ringline/io_result.h"
#include "ringline/worker.h"

namespace ringline::block {
namespace {

const uint64_t kPage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));

// The CPU's last-level cache (32 MiB where glibc cannot tell).
uint64_t LastLevelCacheBytes() {
  for (const int name : {_SC_LEVEL4_CACHE_SIZE, _SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE}) {
    if (const long bytes = ::sysconf(name); bytes > 0) return static_cast<uint64_t>(bytes);
  }
  return uint64_t{32} << 20;
}

// ---- the SIGBUS guard ------------------------------------------------------------

// The copy in progress on this thread: where the jump goes, and the range of
// the mapping it touches. Set only around the memcpy calls (GuardedCopy), so
// the handler sees it only for a fault raised by that copy.
struct CopyGuard {
  sigjmp_buf resume;
  uintptr_t begin;
  uintptr_t end;
  // The copy's arguments, kept here rather than in registers a jump could
  // have clobbered.
  MappedFile::Copy kind;
  const iovec* pieces;
  std::size_t count;
};
// Static TLS in these static libraries: the handler reads it without the
// lazy allocation a dynamic TLS access could do.
thread_local CopyGuard* t_copy = nullptr;

struct sigaction g_previous_sigbus;  // written once, before OnSigbus can run

void OnSigbus(int sig, siginfo_t* info, void* context) {
  CopyGuard* copy = t_copy;
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  // si_code > 0: raised by the kernel for a fault, not sent by kill().
  if (copy != nullptr && info->si_code > 0 && addr >= copy->begin && addr < copy->end) {
    t_copy = nullptr;
    // SA_NODEFER left SIGBUS unblocked, so jumping without restoring the
    // signal mask leaves this thread able to take the next one.
    siglongjmp(copy->resume, 1);
  }
  // Not a guarded copy's fault: do what would have happened without this
  // handler.
  const struct sigaction& prev = g_previous_sigbus;
  if ((prev.sa_flags & SA_SIGINFO) != 0 && prev.sa_sigaction != nullptr) {
    prev.sa_sigaction(sig, info, context);
  } else if (prev.sa_handler == SIG_IGN) {
    if (info->si_code > 0) {
      ::signal(SIGBUS, SIG_DFL);  // a fault cannot be ignored: it kills on return
    }
  } else if (prev.sa_handler != SIG_DFL) {
    prev.sa_handler(sig);
  } else {
    // The default action: a fault kills when the instruction runs again; a
    // sent signal is raised again (SA_NODEFER: delivered at once).
    ::signal(SIGBUS, SIG_DFL);
    if (info->si_code <= 0) ::raise(SIGBUS);
  }
}

void InstallSigbusHandlerOnce() {
  static absl::once_flag once;
  absl::call_once(once, [] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = OnSigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    [[maybe_unused]] const int res = ::sigaction(SIGBUS, &sa, &g_previous_sigbus);
    assert(res == 0 && "sigaction(SIGBUS) fails only for a bad signal number");
  });
}

// Copies `n` bytes to `dst` with non-temporal stores: the destination's cache
// lines are written whole, without first being read from memory as a cached
// store must (read for ownership). Where the file is larger than the last-level
// cache a random page's lines are never cached, and a 4 KiB copy to one took
// 581 ns with memcpy against 262 ns this way (BENCHMARKS.md, "Streaming writes
// to the mapping"). The caller fences after its last copy (FenceAfterStreaming).
void StreamCopy(uint8_t* dst, const uint8_t* src, std::size_t n) {
#if defined(__SSE2__)
  // Cached stores up to the first 16-byte boundary and after the last.
  const std::size_t head = std::min(n, (16 - reinterpret_cast<uintptr_t>(dst) % 16) % 16);
  std::memcpy(dst, src, head);
  dst += head;
  src += head;
  n -= head;
  for (; n >= 64; n -= 64, dst += 64, src += 64) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 32));
    const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 48), d);
  }
#endif
  std::memcpy(dst, src, n);
}

// Non-temporal stores are weakly ordered: fenced before anyone can learn that
// the copy is done (a reply says the data is written; another worker may read
// it next). On a worker's thread by its ring, before it next enters the kernel
// (ringline/internal/store_fence.h); elsewhere now.
void FenceAfterStreaming() {
  if (Worker::CurrentOrNull() != nullptr) {
    internal::DeferStoreFence();
    return;
  }
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

// The copy itself, separate so that nothing of it is live across the
// sigsetjmp below.
[[gnu::noinline]] void CopyPieces(MappedFile::Copy kind, uint8_t* at, const iovec* pieces,
                                  std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) {
    const auto* piece = static_cast<const uint8_t*>(pieces[i].iov_base);
    switch (kind) {
      case MappedFile::Copy::kRead:
        std::memcpy(pieces[i].iov_base, at, pieces[i].iov_len);
        break;
      case MappedFile::Copy::kWrite:
        std::memcpy(at, piece, pieces[i].iov_len);
        break;
      case MappedFile::Copy::kStreamingWrite:
        StreamCopy(at, piece, pieces[i].iov_len);
        break;
      case MappedFile::Copy::kTouch:
        for (std::size_t off = 0; off < pieces[i].iov_len; off += kPage) {
          (void)*static_cast<volatile const uint8_t*>(at + off);
        }
        break;
    }
    at += pieces[i].iov_len;
  }
  if (kind == MappedFile::Copy::kStreamingWrite) FenceAfterStreaming();
}

// Copies between `at` (the mapping) and the pieces; false if the copy raised
// SIGBUS inside [at, at + total). Nothing with a destructor lives between the
// sigsetjmp and the memcpy calls the jump leaves, and after the jump only
// `guard` (in memory: its address is taken) is used.
[[gnu::noinline]] bool GuardedCopy(MappedFile::Copy kind, uint8_t* at, const iovec* pieces,
                                   std::size_t count, uint64_t total) {
  CopyGuard guard;
  guard.begin = reinterpret_cast<uintptr_t>(at);
  guard.end = guard.begin + total;
  guard.kind = kind;
  guard.pieces = pieces;
  guard.count = count;
  if (sigsetjmp(guard.resume, 0) != 0) return false;
  t_copy = &guard;
  std::atomic_signal_fence(std::memory_order_seq_cst);  // set before the first access
  CopyPieces(guard.kind, reinterpret_cast<uint8_t*>(guard.begin), guard.pieces, guard.count);
  std::atomic_signal_fence(std::memory_order_seq_cst);  // cleared after the last
  t_copy = nullptr;
  return true;
}

// ---- the process's mappings --------------------------------------------------------

// (device, inode, size, read-only): targets that open the same file the same
// way share one mapping.
using Key = std::tuple<dev_t, ino_t, uint64_t, bool>;

// (device, inode, size): the mappings of one file share its allocation bits,
// whatever their access, so that a discard through a read-write target keeps
// a read-only target on the same file off the freed pages too.
using BitsKey = std::tuple<dev_t, ino_t, uint64_t>;

struct Registry {
  absl::Mutex mu;
  std::map<Key, std::weak_ptr<MappedFile>> files ABSL_GUARDED_BY(mu);
  std::map<BitsKey, std::weak_ptr<PageBits>> bits ABSL_GUARDED_BY(mu);
};

Registry& Mappings() {
  static auto* const registry = new Registry();  // never freed: used until exit
  return *registry;
}

}  // namespace

// ---- the allocation bits ---------------------------------------------------------

// One bit per page, 1 = known allocated, and the count of clear bits; shared
// by every mapping of one (file, size) in the process (a read-only and a
// read-write target on one file), so that a page one of them forgets is
// forgotten by all. Any thread may read and change them at once.
class PageBits {
 public:
  // Null if mmap fails. The words are zero (no page known) in anonymous
  // memory that takes a page only when first touched, so a thin file's bits
  // cost memory only where it has data (one 4 KiB block of words per 128 MiB
  // of file), not 32 MiB per TiB of its size. A block no set has reached is
  // never read either (`written_`): some kernels give a read of untouched
  // anonymous memory a page of its own rather than the shared zero page (the
  // benchmark VM's 6.18 kernel does). The words are used through
  // std::atomic_ref (a std::atomic array would have to be constructed, which
  // writes every page).
  static std::shared_ptr<PageBits> Create(uint64_t pages) {
    const uint64_t words = (pages + 63) / 64;
    const std::size_t bytes = words * sizeof(uint64_t);
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    const uint64_t blocks = (words + kWordsPerBlock - 1) / kWordsPerBlock;
    return std::shared_ptr<PageBits>(
        new PageBits(static_cast<uint64_t*>(p), bytes, pages, (blocks + 63) / 64));
  }
  ~PageBits() { ::munmap(words_, bytes_); }
  PageBits(const PageBits&) = delete;
  PageBits& operator=(const PageBits&) = delete;

  // Every page of first..last is known allocated. Where every page of the
  // file is (a preallocated image), the count answers without reading a
  // word: the words of a large file are rarely in the cache when a random
  // request asks, and that one load was ~95 ns of a 4 KiB write
  // (BENCHMARKS.md, session 11).
  bool AllSet(uint64_t first_page, uint64_t last_page) const {
    if (clear_.load(std::memory_order_relaxed) == 0) return true;
    for (uint64_t w = first_page / 64; w <= last_page / 64; ++w) {
      if (!Written(w)) return false;
      const uint64_t mask = WordMask(w, first_page, last_page);
      if ((std::atomic_ref(words_[w]).load(std::memory_order_relaxed) & mask) != mask) return false;
    }
    return true;
  }

  // Sets (or clears) the bits of pages first..last. The count is changed by
  // what each word's atomic update found, so it is exact once no update is
  // in progress, and during one it is never below the true count: a clear
  // counts its whole range first and takes back the bits that were clear
  // already; a set counts only after its bits are set.
  void Set(uint64_t first_page, uint64_t last_page, bool known) {
    assert(first_page <= last_page && last_page < pages_);
    for (uint64_t w = first_page / 64; w <= last_page / 64; ++w) {
      // A block never written is all clear: a clear skips it, and a discard
      // of a thin file's whole size (mkfs does one) touches no page of it.
      if (known) {
        MarkWritten(w);
      } else if (!Written(w)) {
        w = (w / kWordsPerBlock + 1) * kWordsPerBlock - 1;
        continue;
      }
      const uint64_t mask = WordMask(w, first_page, last_page);
      // Words that already say so are only read: a written page of words
      // costs nothing more.
      std::atomic_ref<uint64_t> word(words_[w]);
      const uint64_t now = word.load(std::memory_order_relaxed) & mask;
      if (known && now != mask) {
        const uint64_t old = word.fetch_or(mask, std::memory_order_relaxed);
        Uncount(std::popcount(mask & ~old));
      } else if (!known && now != 0) {
        clear_.fetch_add(std::popcount(mask), std::memory_order_relaxed);
        const uint64_t old = word.fetch_and(~mask, std::memory_order_relaxed);
        Uncount(std::popcount(mask & ~old));
      }
    }
  }

 private:
  // 4 KiB of words, 32,768 pages of the file: the unit `written_` tracks.
  static constexpr uint64_t kWordsPerBlock = 512;

  PageBits(uint64_t* words, std::size_t bytes, uint64_t pages, std::size_t written_words)
      : words_(words),
        bytes_(bytes),
        pages_(pages),
        written_(new std::atomic<uint64_t>[written_words]()),
        clear_(pages) {}

  // Whether a set has reached the block of word `w` (a block's bit is set
  // before any of its words, and never cleared).
  bool Written(uint64_t w) const {
    const uint64_t block = w / kWordsPerBlock;
    return (written_[block / 64].load(std::memory_order_relaxed) >> (block % 64)) & 1;
  }
  void MarkWritten(uint64_t w) {
    const uint64_t block = w / kWordsPerBlock;
    const uint64_t bit = uint64_t{1} << (block % 64);
    std::atomic<uint64_t>& word = written_[block / 64];
    if (!(word.load(std::memory_order_relaxed) & bit))
      word.fetch_or(bit, std::memory_order_relaxed);
  }

  void Uncount(int pages) {
    [[maybe_unused]] const uint64_t before =
        clear_.fetch_sub(static_cast<uint64_t>(pages), std::memory_order_relaxed);
    assert(before >= static_cast<uint64_t>(pages) && "more bits set than were clear");
  }

  // The bits of word `w` that pages first..last cover.
  static uint64_t WordMask(uint64_t w, uint64_t first_page, uint64_t last_page) {
    uint64_t mask = ~uint64_t{0};
    if (w == first_page / 64) mask &= ~uint64_t{0} << (first_page % 64);
    if (w == last_page / 64) mask &= ~uint64_t{0} >> (63 - last_page % 64);
    return mask;
  }

  uint64_t* const words_;  // (pages_ + 63) / 64 words; munmap'ed by the destructor
  const std::size_t bytes_;
  [[maybe_unused]] const uint64_t pages_;  // read by the asserts only
  // One bit per kWordsPerBlock words, set by the first set in that block.
  const std::unique_ptr<std::atomic<uint64_t>[]> written_;
  // Pages whose bit is clear. Read by every copy, written only when a page
  // becomes known or forgotten (a write to a hole, a discard): its own line.
  alignas(64) std::atomic<uint64_t> clear_;
};

absl::StatusOr<std::shared_ptr<MappedFile>> MappedFile::Share(int fd, uint64_t size,
                                                              bool read_only) {
  assert(size > 0);
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoToStatus(-errno, "fstat");
  Registry& registry = Mappings();
  absl::MutexLock lock(&registry.mu);
  std::erase_if(registry.files, [](const auto& entry) { return entry.second.expired(); });
  std::erase_if(registry.bits, [](const auto& entry) { return entry.second.expired(); });
  std::weak_ptr<MappedFile>& slot = registry.files[Key{st.st_dev, st.st_ino, size, read_only}];
  if (std::shared_ptr<MappedFile> existing = slot.lock()) return existing;
  InstallSigbusHandlerOnce();
  const uint64_t pages = (size + kPage - 1) / kPage;
  void* base = ::mmap(nullptr, pages * kPage, read_only ? PROT_READ : PROT_READ | PROT_WRITE,
                      MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    registry.files.erase(Key{st.st_dev, st.st_ino, size, read_only});
    return ErrnoToStatus(-errno, absl::StrCat("mmap of ", size, " bytes"));
  }
  // Another mapping of the file (the other access) keeps the bits current:
  // share them. Else new bits, from SEEK_DATA.
  std::weak_ptr<PageBits>& bits_slot = registry.bits[BitsKey{st.st_dev, st.st_ino, size}];
  std::shared_ptr<PageBits> bits = bits_slot.lock();
  const bool new_bits = bits == nullptr;
  if (new_bits && (bits = PageBits::Create(pages)) == nullptr) {
    const int err = errno;
    ::munmap(base, pages * kPage);
    registry.files.erase(Key{st.st_dev, st.st_ino, size, read_only});
    return ErrnoToStatus(-err, absl::StrCat("mmap of the allocation bits of ", pages, " pages"));
  }
  std::shared_ptr<MappedFile> mapped(
      new MappedFile(static_cast<uint8_t*>(base), size, pages, !read_only, std::move(bits)));
  // New bits come from SEEK_DATA; the same walk populates this mapping. An
  // error matters only to the bits: populating is best effort.
  const int res = mapped->ScanExtents(fd, new_bits);
  if (new_bits) {
    if (res < 0) {
      registry.files.erase(Key{st.st_dev, st.st_ino, size, read_only});
      registry.bits.erase(BitsKey{st.st_dev, st.st_ino, size});
      return ErrnoToStatus(res, "finding allocated pages (lseek SEEK_DATA/SEEK_HOLE)");
    }
    bits_slot = mapped->known_;
  }
  slot = mapped;
  return mapped;
}

MappedFile::MappedFile(uint8_t* base, uint64_t size, uint64_t pages, bool writable,
                       std::shared_ptr<PageBits> known)
    : base_(base),
      size_(size),
      pages_(pages),
      writable_(writable),
      stream_writes_(size > LastLevelCacheBytes()),
      known_(std::move(known)) {}

MappedFile::~MappedFile() {
  [[maybe_unused]] const int res = ::munmap(base_, pages_ * kPage);
  assert(res == 0 && "munmap of the whole mapping");
}

int MappedFile::ScanExtents(int fd, bool set_bits) {
  off_t pos = 0;
  const auto end = static_cast<off_t>(size_);
  bool populate = true;
  while (pos < end) {
    const off_t data = ::lseek(fd, pos, SEEK_DATA);
    if (data < 0) return errno == ENXIO ? 0 : -errno;  // ENXIO: no data after pos
    if (data >= end) return 0;
    const off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return -errno;
    const off_t stop = std::min(hole, end);
    if (set_bits) {
      known_->Set(static_cast<uint64_t>(data) / kPage, static_cast<uint64_t>(stop - 1) / kPage,
                  true);
    }
    // Page table entries for the allocated pages now, so that the first copy
    // to each does not take a fault (about 1 us of a 4 KiB request, and 13%
    // of a fresh server's CPU in the first seconds of random writes over a
    // 1 GiB file: BENCHMARKS.md). A populate of a hole would allocate it, so
    // only extents SEEK_DATA reports. Best effort: where the kernel lacks
    // MADV_POPULATE_* (before 5.14) or a page cannot be mapped (the file
    // shrank meanwhile: EFAULT), the copies fault the pages in as before.
    //
    // Then one read of each page. Under a hypervisor that shadows the guest's
    // page tables (as this project's benchmark VM does), the populated entries
    // reach the hardware only at a page's first access from user space, which
    // traps to the hypervisor: 4.1-6.3 us per random 4 KiB copy into a fresh
    // 1 GiB mapping against 0.48 us after this walk, which took 1.46 s there
    // (BENCHMARKS.md, session 12). Elsewhere the walk costs a read per page.
    // Guarded: a file that shrank under it stops it.
    if (populate) {
      const uint64_t first = static_cast<uint64_t>(data) / kPage * kPage;
      const uint64_t length = static_cast<uint64_t>(stop) - first;
      populate = ::madvise(base_ + first, length,
                           writable_ ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) == 0;
      const iovec range{nullptr, length};
      populate = populate && GuardedCopy(Copy::kTouch, base_ + first, &range, 1, length);
    }
    pos = stop;
  }
  return 0;
}

bool MappedFile::TryCopy(bool write, uint64_t offset, std::span<const iovec> pieces) {
  uint64_t total = 0;
  for (const iovec& piece : pieces) total += piece.iov_len;
  if (total == 0) return true;
  assert(offset + total <= size_);
  const uint64_t first = offset / kPage;
  const uint64_t last = (offset + total - 1) / kPage;
  if (!known_->AllSet(first, last)) return false;
  const Copy kind = !write ? Copy::kRead : stream_writes_ ? Copy::kStreamingWrite : Copy::kWrite;
  if (!GuardedCopy(kind, base_ + offset, pieces.data(), pieces.size(), total)) [[unlikely]] {
    known_->Set(first, last, false);  // the caller's pread/pwrite finds out what is there
    return false;
  }
  return true;
}

void MappedFile::MarkAllocated(uint64_t offset, uint64_t length) {
  if (length == 0) return;
  assert(offset + length <= size_);
  known_->Set(offset / kPage, (offset + length - 1) / kPage, true);
}

void MappedFile::Forget(uint64_t offset, uint64_t length) {
  if (length == 0 || offset >= size_) return;
  const uint64_t end = std::min(size_, offset + length);
  known_->Set(offset / kPage, (end - 1) / kPage, false);
}

}  // namespace ringline::block
