// nbd-floor: the least server work per NBD request, as a yardstick in
// benchmarks (scripts/bench-nbd.sh runs it next to blockserve and its peers).
// It is NOT a server for use: one connection at a time (others wait in the
// listen backlog), no TLS, no structured replies, no trim, the whole file
// mapped, a tmpfs file only.
//
// Why it exists: an NBD server's CPU per 4 KiB request over loopback is
// mostly the kernel's (the TCP receive and send, the copy into tmpfs), and
// every server pays that. This program pays it and nothing more, so its IOPS
// per server CPU-second is the floor a real server is measured against:
//   - one blocking read() takes every byte queued on the socket into one
//     fixed buffer, and every complete request in it is handled before the
//     next read();
//   - a write's payload is copied with memcpy into a MAP_SHARED mapping of
//     the tmpfs file (no pwrite: no system call, no page-cache lookup per
//     request), whose page-table entries are all set up at start-up
//     (MAP_POPULATE): a fresh mapping takes a minor fault on the first touch
//     of each page, which in a few seconds of random 4 KiB writes over a
//     1 GiB file is about half the requests, and which a long-running server
//     has paid long before; then each page is read once, because under a
//     hypervisor that shadows the guest's page tables the populated entries
//     reach the hardware only at a page's first access from user space (a
//     trap to the hypervisor, ~5 us each on the benchmark VM);
//   - the simple replies of a batch are collected in one buffer and sent with
//     one system call; a read sends the replies before it, then its header
//     and its data from the mapping with one writev().
// Nothing is allocated per request or per connection: the buffers are
// allocated once at start-up.
//
// Why tmpfs only: a mapping of a disk file would measure the page cache, not
// the path to the disk, and a floor for the disk rows needs the disk. Every
// page of the file is allocated at start-up (fallocate), so a write through
// the mapping never faults on a full tmpfs (which a mapping reports as
// SIGBUS, not ENOSPC). Nothing else may shrink the file while it is served.
//
//   nbd-floor --port P [--listen ADDR] --export NAME FILE
//
// Prints "listening on ADDR:PORT" (the port the kernel chose for --port 0) as
// its one line on stdout, then logs each connection's end on stderr.

#include <fcntl.h>
#include <linux/magic.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "blockserve/nbd/byte_order.h"
#include "blockserve/nbd/error.h"
#include "blockserve/nbd/protocol.h"
#include "blockserve/nbd/reply.h"
#include "blockserve/nbd/request.h"
#include "ringline/unique_fd.h"

namespace ringline::nbd_floor {
namespace {

// The protocol's constants, byte order and request/reply codec are
// blockserve's (tools/blockserve/nbd): the floor differs only in what it does
// per request, not in how it reads and writes the protocol.
using namespace blockserve::nbd;  // NOLINT(build/namespaces): protocol constants

constexpr uint16_t kTransmissionFlags = kFlagHasFlags | kFlagSendFlush | kFlagSendFua;

// ---- limits ------------------------------------------------------------------
// Option data beyond this closes the connection (a name and a few info
// requests need far less).
constexpr size_t kMaxOptionData = 64 * 1024;
// The largest READ or WRITE; larger closes the connection. Clients assume
// 32 MiB when the server sends no block-size information.
constexpr size_t kMaxRequestLength = 32 * 1024 * 1024;
// What one read() may take beyond a partial request left from the last one.
constexpr size_t kReadSlack = 1024 * 1024;
// Holds kReadSlack of handled bytes before the unhandled tail is moved to the
// front, plus the largest request: a pending request always fits.
constexpr size_t kInputCapacity = kReadSlack + kRequestHeaderSize + kMaxRequestLength;
// Simple replies collected before one write(): 4096 of them.
constexpr size_t kReplyCapacity = 64 * 1024;

// ---- blocking socket I/O ---------------------------------------------------------
// Each returns false when the peer is gone or the socket failed.
bool ReadExact(int fd, uint8_t* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::read(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Sends every byte of `pieces` (advanced in place over what was sent).
bool WriteAll(int fd, iovec* pieces, int count) {
  while (count > 0) {
    const ssize_t n = ::writev(fd, pieces, count);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    auto sent = static_cast<size_t>(n);
    while (count > 0 && sent >= pieces->iov_len) {
      sent -= pieces->iov_len;
      ++pieces;
      --count;
    }
    if (count > 0) {
      pieces->iov_base = static_cast<uint8_t*>(pieces->iov_base) + sent;
      pieces->iov_len -= sent;
    }
  }
  return true;
}

bool WriteAll(int fd, const void* data, size_t size) {
  iovec piece{const_cast<void*>(data), size};
  return WriteAll(fd, &piece, 1);
}

// ---- the export ----------------------------------------------------------------------
// A tmpfs file mapped MAP_SHARED read-write, whole. Owns the descriptor and
// the mapping (unmapped by the destructor). Move-only.
class MappedExport {
 public:
  static absl::StatusOr<MappedExport> Open(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": open read-write"));
    struct statfs fs {};
    if (::fstatfs(fd.get(), &fs) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat(path, ": fstatfs"));
    }
    if (fs.f_type != TMPFS_MAGIC) {
      return absl::FailedPreconditionError(absl::StrCat(
          path,
          ": not on tmpfs; nbd-floor serves tmpfs files only (a mapping of a disk file would "
          "measure the page cache, not the disk): put the file in /dev/shm"));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return absl::ErrnoToStatus(errno, path + ": fstat");
    if (!S_ISREG(st.st_mode) || st.st_size <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": not a regular file of at least one byte"));
    }
    const auto size = static_cast<uint64_t>(st.st_size);
    // Every page allocated now, so that no write through the mapping faults
    // on a full tmpfs later (SIGBUS). Keeps the contents and the size.
    if (::fallocate(fd.get(), 0, 0, st.st_size) != 0) {
      return absl::ErrnoToStatus(
          errno, absl::StrCat(path, ": allocating its ", size, " bytes on tmpfs (fallocate)"));
    }
    // Populated: no request takes the first-touch fault (see the top of the file).
    void* base =
        ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd.get(), 0);
    if (base == MAP_FAILED) return absl::ErrnoToStatus(errno, path + ": mmap");
    const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    for (uint64_t off = 0; off < size; off += page) {
      (void)*(static_cast<volatile const uint8_t*>(base) + off);
    }
    return MappedExport(std::move(fd), static_cast<uint8_t*>(base), size);
  }

  MappedExport(MappedExport&& o) noexcept
      : fd_(std::move(o.fd_)),
        base_(std::exchange(o.base_, nullptr)),
        size_(std::exchange(o.size_, 0)) {}
  MappedExport& operator=(MappedExport&&) = delete;
  MappedExport(const MappedExport&) = delete;
  MappedExport& operator=(const MappedExport&) = delete;
  ~MappedExport() {
    if (base_ != nullptr) ::munmap(base_, size_);
  }

  uint8_t* base() const { return base_; }
  uint64_t size() const { return size_; }
  // [offset, offset + length) lies within the file.
  bool Contains(uint64_t offset, uint64_t length) const {
    return length <= size_ && offset <= size_ - length;
  }

 private:
  MappedExport(UniqueFd fd, uint8_t* base, uint64_t size)
      : fd_(std::move(fd)), base_(base), size_(size) {}

  UniqueFd fd_;
  uint8_t* base_;  // size_ bytes, MAP_SHARED; munmap'ed by the destructor
  uint64_t size_;
};

// ---- the server ---------------------------------------------------------------------------
// How a connection ended.
enum class ConnectionEnd {
  kAborted,        // NBD_OPT_ABORT during the handshake
  kDisconnected,   // NBD_CMD_DISC
  kPeerClosed,     // EOF from the client
  kSocketError,    // a read or write on the socket failed
  kProtocolError,  // a violation that closes the connection (logged)
};

const char* ConnectionEndName(ConnectionEnd end) {
  switch (end) {
    case ConnectionEnd::kAborted:
      return "NBD_OPT_ABORT";
    case ConnectionEnd::kDisconnected:
      return "NBD_CMD_DISC";
    case ConnectionEnd::kPeerClosed:
      return "the client closed the connection";
    case ConnectionEnd::kSocketError:
      return "socket error";
    case ConnectionEnd::kProtocolError:
      return "protocol error";
  }
  return "?";
}

// Serves one connection at a time over the buffers it allocated once. Not
// thread-safe; the benchmark pins the one thread with taskset.
class FloorServer {
 public:
  FloorServer(const MappedExport& file, std::string export_name)
      : file_(file),
        export_name_(std::move(export_name)),
        option_data_(std::make_unique_for_overwrite<uint8_t[]>(kMaxOptionData)),
        input_(std::make_unique_for_overwrite<uint8_t[]>(kInputCapacity)),
        replies_(std::make_unique_for_overwrite<uint8_t[]>(kReplyCapacity)) {}
  FloorServer(const FloorServer&) = delete;
  FloorServer& operator=(const FloorServer&) = delete;

  // Handshake, then transmission until the connection ends. `requests` is
  // set to the number of transmission requests handled.
  ConnectionEnd Serve(int sock, uint64_t& requests) {
    requests = 0;
    if (std::optional<ConnectionEnd> end = Negotiate(sock)) return *end;
    return Transmit(sock, requests);
  }

 private:
  // Fixed newstyle negotiation. Returns nullopt when the client chose the
  // export (NBD_OPT_GO or NBD_OPT_EXPORT_NAME) and transmission follows,
  // otherwise how the connection ended.
  std::optional<ConnectionEnd> Negotiate(int sock) {
    uint8_t greeting[kGreetingSize];
    StoreBe64(greeting, kNbdMagic);
    StoreBe64(greeting + 8, kOptionMagic);
    StoreBe16(greeting + 16, kFlagFixedNewstyle | kFlagNoZeroes);
    if (!WriteAll(sock, greeting, sizeof(greeting))) return ConnectionEnd::kSocketError;
    uint8_t client_flags_be[4];
    if (!ReadExact(sock, client_flags_be, 4)) return ConnectionEnd::kPeerClosed;
    const uint32_t client_flags = LoadBe32(client_flags_be);
    if ((client_flags & ~(kClientFlagFixedNewstyle | kClientFlagNoZeroes)) != 0 ||
        (client_flags & kClientFlagFixedNewstyle) == 0) {
      // Unknown flags MUST close (proto.md); this yardstick speaks only fixed newstyle.
      return ProtocolError(absl::StrCat("client flags 0x", absl::Hex(client_flags),
                                        ": want FIXED_NEWSTYLE, optionally NO_ZEROES"));
    }
    const bool no_zeroes = (client_flags & kClientFlagNoZeroes) != 0;

    for (;;) {
      uint8_t header[kOptionHeaderSize];
      if (!ReadExact(sock, header, sizeof(header))) return ConnectionEnd::kPeerClosed;
      const uint32_t option = LoadBe32(header + 8);
      const uint32_t length = LoadBe32(header + 12);
      if (LoadBe64(header) != kOptionMagic) return ProtocolError("option without IHAVEOPT magic");
      if (length > kMaxOptionData) {
        return ProtocolError(absl::StrCat("option ", option, " with ", length,
                                          " bytes of data (at most ", kMaxOptionData, ")"));
      }
      uint8_t* data = option_data_.get();
      if (!ReadExact(sock, data, length)) return ConnectionEnd::kPeerClosed;

      switch (option) {
        case kOptExportName: {
          // No error reply exists for this option: an unknown name closes.
          if (!NameMatches(std::string_view(reinterpret_cast<char*>(data), length))) {
            return ProtocolError("NBD_OPT_EXPORT_NAME of an unknown export");
          }
          uint8_t reply[10 + kExportNameReplyZeroes] = {};
          StoreBe64(reply, file_.size());
          StoreBe16(reply + 8, kTransmissionFlags);
          if (!WriteAll(sock, reply, no_zeroes ? 10 : sizeof(reply))) {
            return ConnectionEnd::kSocketError;
          }
          return std::nullopt;
        }
        case kOptInfo:
        case kOptGo: {
          // Data: name length (32), name, number of info requests (16), requests (16 each).
          // Whatever was requested, NBD_INFO_EXPORT is the one piece sent (and required).
          uint32_t reply_type = kRepAck;
          const uint32_t name_length = length >= 6 ? LoadBe32(data) : 0;
          if (length < 6 || name_length > length - 6 ||
              length != 6 + name_length + 2 * size_t{LoadBe16(data + 4 + name_length)}) {
            reply_type = kRepErrInvalid;
          } else if (!NameMatches(
                         std::string_view(reinterpret_cast<char*>(data) + 4, name_length))) {
            reply_type = kRepErrUnknown;
          }
          if (reply_type != kRepAck) {
            if (!SendOptionReply(sock, option, reply_type, nullptr, 0)) {
              return ConnectionEnd::kSocketError;
            }
            break;
          }
          uint8_t info[12];
          StoreBe16(info, kInfoExport);
          StoreBe64(info + 2, file_.size());
          StoreBe16(info + 10, kTransmissionFlags);
          if (!SendOptionReply(sock, option, kRepInfo, info, sizeof(info)) ||
              !SendOptionReply(sock, option, kRepAck, nullptr, 0)) {
            return ConnectionEnd::kSocketError;
          }
          if (option == kOptGo) return std::nullopt;
          break;
        }
        case kOptAbort:
          // The server MUST reply with NBD_REP_ACK; the client may be gone already.
          SendOptionReply(sock, option, kRepAck, nullptr, 0);
          return ConnectionEnd::kAborted;
        default:
          // Structured replies, meta contexts, TLS, lists, extended headers:
          // unsupported, so libnbd uses simple replies.
          if (!SendOptionReply(sock, option, kRepErrUnsup, nullptr, 0)) {
            return ConnectionEnd::kSocketError;
          }
          break;
      }
    }
  }

  bool NameMatches(std::string_view name) const {
    return name.empty() || name == export_name_;  // "" is the default export
  }

  static bool SendOptionReply(int sock, uint32_t option, uint32_t type, const uint8_t* data,
                              uint32_t length) {
    uint8_t header[kOptionReplyHeaderSize];
    StoreBe64(header, kOptionReplyMagic);
    StoreBe32(header + 8, option);
    StoreBe32(header + 12, type);
    StoreBe32(header + 16, length);
    iovec pieces[2] = {{header, sizeof(header)}, {const_cast<uint8_t*>(data), length}};
    return WriteAll(sock, pieces, length > 0 ? 2 : 1);
  }

  static ConnectionEnd ProtocolError(const std::string& what) {
    std::fprintf(stderr, "nbd-floor: closing the connection: %s\n", what.c_str());
    return ConnectionEnd::kProtocolError;
  }

  // The batch loop: one read() of everything queued, every complete request
  // handled, the replies sent once per batch.
  ConnectionEnd Transmit(int sock, uint64_t& requests) {
    uint8_t* const input = input_.get();
    size_t begin = 0;  // the first byte not handled yet
    size_t end = 0;    // one past the last byte read
    reply_bytes_ = 0;
    for (;;) {
      // A request is handled as soon as it is whole, so [begin, end) is
      // shorter than one request; moved to the front once more than
      // kReadSlack of handled bytes lie before it, which leaves room for the
      // largest request after it.
      if (begin == end) {
        begin = end = 0;
      } else if (begin > kReadSlack) {
        std::memmove(input, input + begin, end - begin);
        end -= begin;
        begin = 0;
      }
      const ssize_t n = ::read(sock, input + end, kInputCapacity - end);
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) return ConnectionEnd::kPeerClosed;
      if (n < 0) return ConnectionEnd::kSocketError;
      end += static_cast<size_t>(n);

      while (end - begin >= kRequestHeaderSize) {
        const uint8_t* header = input + begin;
        const ParsedRequest parsed = ParseRequest({header, end - begin});
        if (parsed.status != ParseStatus::kOk) return ProtocolError("bad request magic");
        const auto [flags, type, cookie, offset, length] = parsed.request;
        if ((type == kCmdRead || type == kCmdWrite) && length > kMaxRequestLength) {
          return ProtocolError(
              absl::StrCat("request of ", length, " bytes (at most ", kMaxRequestLength, ")"));
        }
        const size_t whole = kRequestHeaderSize + (type == kCmdWrite ? length : 0);
        if (end - begin < whole) break;  // the rest arrives with a later read()
        begin += whole;
        ++requests;

        const bool flags_ok = (flags & ~kCmdFlagFua) == 0;
        switch (type) {
          case kCmdWrite: {
            NbdError error = NbdError::kOk;
            if (!flags_ok) {
              error = NbdError::kInval;
            } else if (!file_.Contains(offset, length)) {
              error = NbdError::kNoSpc;
            } else {
              // FUA needs nothing more: tmpfs has no storage below the page cache.
              std::memcpy(file_.base() + offset, header + kRequestHeaderSize, length);
            }
            if (!AddReply(sock, cookie, error)) return ConnectionEnd::kSocketError;
            break;
          }
          case kCmdRead: {
            if (!flags_ok || !file_.Contains(offset, length)) {
              if (!AddReply(sock, cookie, NbdError::kInval)) return ConnectionEnd::kSocketError;
              break;
            }
            // The replies before it first, then its header and data in one writev.
            if (!FlushReplies(sock)) return ConnectionEnd::kSocketError;
            SimpleReplyBytes reply;
            EncodeSimpleReply(cookie, NbdError::kOk, reply);
            iovec pieces[2] = {{reply.data(), reply.size()}, {file_.base() + offset, length}};
            if (!WriteAll(sock, pieces, 2)) return ConnectionEnd::kSocketError;
            break;
          }
          case kCmdFlush:
            // Every write is in tmpfs's pages already: nothing to flush.
            if (!AddReply(sock, cookie, flags_ok ? NbdError::kOk : NbdError::kInval)) {
              return ConnectionEnd::kSocketError;
            }
            break;
          case kCmdDisc:
            // Every request before it is handled; their replies go out, then the end.
            return FlushReplies(sock) ? ConnectionEnd::kDisconnected : ConnectionEnd::kSocketError;
          default:  // trim, write zeroes, block status, cache: not offered
            if (!AddReply(sock, cookie, NbdError::kInval)) return ConnectionEnd::kSocketError;
            break;
        }
      }
      if (!FlushReplies(sock)) return ConnectionEnd::kSocketError;
    }
  }

  // Appends a simple reply to the batch (sent first if the buffer is full).
  bool AddReply(int sock, uint64_t cookie, NbdError error) {
    if (reply_bytes_ + kSimpleReplySize > kReplyCapacity && !FlushReplies(sock)) return false;
    EncodeSimpleReply(
        cookie, error,
        std::span<uint8_t, kSimpleReplySize>(replies_.get() + reply_bytes_, kSimpleReplySize));
    reply_bytes_ += kSimpleReplySize;
    return true;
  }

  bool FlushReplies(int sock) {
    if (reply_bytes_ == 0) return true;
    const size_t bytes = std::exchange(reply_bytes_, 0);
    return WriteAll(sock, replies_.get(), bytes);
  }

  const MappedExport& file_;
  const std::string export_name_;
  // Allocated once, reused by every connection; read into and written from
  // only by this thread's blocking system calls, which are done with them
  // when they return.
  std::unique_ptr<uint8_t[]> option_data_;  // kMaxOptionData bytes
  std::unique_ptr<uint8_t[]> input_;        // kInputCapacity bytes of requests
  std::unique_ptr<uint8_t[]> replies_;      // kReplyCapacity bytes of simple replies
  size_t reply_bytes_ = 0;                  // replies collected, not sent yet
};

// A listening TCP socket on `address` (numeric IPv4 or IPv6) and `port`.
absl::StatusOr<UniqueFd> Listen(const std::string& address, uint16_t port, uint16_t& bound_port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(address.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen ", address, ": ", ::gai_strerror(rc), " (want a numeric address)"));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owned(found, &::freeaddrinfo);
  UniqueFd sock(::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock) return absl::ErrnoToStatus(errno, "socket");
  const int one = 1;
  ::setsockopt(sock.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(sock.get(), found->ai_addr, found->ai_addrlen) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("bind ", address, " port ", port));
  }
  if (::listen(sock.get(), 64) != 0) return absl::ErrnoToStatus(errno, "listen");
  sockaddr_storage bound{};
  socklen_t bound_size = sizeof(bound);
  if (::getsockname(sock.get(), reinterpret_cast<sockaddr*>(&bound), &bound_size) != 0) {
    return absl::ErrnoToStatus(errno, "getsockname");
  }
  bound_port =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return sock;
}

int Main(int argc, char** argv) {
  CLI::App app{
      "nbd-floor: the least server work per NBD request, a yardstick for benchmarks "
      "(not a server for use: one connection at a time, tmpfs files only)",
      "nbd-floor"};
  uint16_t port = 0;
  std::string address = "127.0.0.1";
  std::string export_name;
  std::string path;
  app.add_option("--port", port, "TCP port (0: the kernel chooses; printed)")->required();
  app.add_option("--listen", address, "numeric address to listen on")->capture_default_str();
  app.add_option("--export", export_name, "export name (the empty name is accepted too)")
      ->required();
  app.add_option("FILE", path, "the file to serve, on tmpfs (e.g. in /dev/shm)")->required();
  CLI11_PARSE(app, argc, argv);

  // A client that vanishes makes write() fail with EPIPE instead of killing us.
  ::signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<MappedExport> file = MappedExport::Open(path);
  if (!file.ok()) {
    std::fprintf(stderr, "nbd-floor: %s\n", std::string(file.status().message()).c_str());
    return 1;
  }
  uint16_t bound_port = 0;
  absl::StatusOr<UniqueFd> listener = Listen(address, port, bound_port);
  if (!listener.ok()) {
    std::fprintf(stderr, "nbd-floor: %s\n", std::string(listener.status().message()).c_str());
    return 1;
  }
  const bool v6 = address.find(':') != std::string::npos;
  std::printf("listening on %s%s%s:%u\n", v6 ? "[" : "", address.c_str(), v6 ? "]" : "",
              unsigned{bound_port});
  std::fflush(stdout);
  std::fprintf(stderr, "nbd-floor: serving %s (%llu bytes) as export '%s'\n", path.c_str(),
               static_cast<unsigned long long>(file->size()), export_name.c_str());

  FloorServer server(*file, export_name);
  for (;;) {
    UniqueFd sock(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!sock) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      std::fprintf(stderr, "nbd-floor: accept: %s\n", std::strerror(errno));
      return 1;
    }
    const int one = 1;
    ::setsockopt(sock.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uint64_t requests = 0;
    const ConnectionEnd end = server.Serve(sock.get(), requests);
    std::fprintf(stderr, "nbd-floor: connection ended (%s) after %llu requests\n",
                 ConnectionEndName(end), static_cast<unsigned long long>(requests));
  }
}

}  // namespace
}  // namespace ringline::nbd_floor

int main(int argc, char** argv) { return ringline::nbd_floor::Main(argc, argv); }
