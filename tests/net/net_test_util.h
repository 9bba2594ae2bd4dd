#pragma once
// Helpers for the network tests: a worker per test, blocking-socket peers that
// run on their own threads (real peers the engine does not drive), byte
// patterns and checksums. Loopback only.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ringline/net/net.h"
#include "ringline/ringline.h"

namespace ringline::net::testing {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAsan = true;
#else
inline constexpr bool kAsan = false;
#endif
#else
inline constexpr bool kAsan = false;
#endif

// Byte i of stream `seed`: cheap, position-dependent, never all-equal. The
// stream is made of 8-byte words so it can be generated and checked fast.
inline uint64_t PatternWord(uint64_t seed, uint64_t word) {
  uint64_t x = word * 0x9E3779B97F4A7C15ull + seed * 0xD1B54A32D192ED03ull + 1;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  return x ^ (x >> 32);
}
inline uint8_t PatternByte(uint64_t seed, uint64_t i) {
  return static_cast<uint8_t>(PatternWord(seed, i >> 3) >> (8 * (i & 7)));
}
inline void FillPattern(uint64_t seed, uint64_t offset, uint8_t* p, std::size_t n) {
  std::size_t i = 0;
  for (; i < n && ((offset + i) & 7); ++i) p[i] = PatternByte(seed, offset + i);
  for (; i + 8 <= n; i += 8) {
    const uint64_t w = PatternWord(seed, (offset + i) >> 3);
    std::memcpy(p + i, &w, 8);
  }
  for (; i < n; ++i) p[i] = PatternByte(seed, offset + i);
}

// A position-independent stream hash (pieces of any size give the same result):
// bytes are gathered into 8-byte words, each mixed in.
struct Checksum {
  uint64_t h = 1469598103934665603ull;
  uint64_t bytes = 0;
  uint64_t partial = 0;
  void Mix(uint64_t w) { h = (h ^ w) * 0x100000001B3ull ^ (h >> 31); }
  void Update(const uint8_t* p, std::size_t n) {
    std::size_t i = 0;
    for (; i < n && (bytes & 7); ++i, ++bytes) {
      partial |= uint64_t{p[i]} << (8 * (bytes & 7));
      if ((bytes & 7) == 7) {
        Mix(partial);
        partial = 0;
      }
    }
    for (; i + 8 <= n; i += 8, bytes += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      Mix(w);
    }
    for (; i < n; ++i, ++bytes) {
      partial |= uint64_t{p[i]} << (8 * (bytes & 7));
      if ((bytes & 7) == 7) {
        Mix(partial);
        partial = 0;
      }
    }
  }
};
inline uint64_t PatternChecksum(uint64_t seed, uint64_t total) {
  Checksum c;
  std::vector<uint8_t> buf(1 << 16);
  for (uint64_t off = 0; off < total;) {
    const std::size_t n = static_cast<std::size_t>(std::min<uint64_t>(buf.size(), total - off));
    FillPattern(seed, off, buf.data(), n);
    c.Update(buf.data(), n);
    off += n;
  }
  return c.h;
}
// True when p[0, n) is stream `seed` from `offset`.
inline bool MatchesPattern(uint64_t seed, uint64_t offset, const uint8_t* p, std::size_t n) {
  std::vector<uint8_t> want(n);
  FillPattern(seed, offset, want.data(), n);
  return std::memcmp(want.data(), p, n) == 0;
}

inline double ThreadCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// ---- blocking peers (run on std::threads) -------------------------------------

inline int BlockingConnect(const SocketAddress& a) {
  int fd = ::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, a.sockaddr_ptr(), a.length()) != 0) {
    ::close(fd);
    return -1;
  }
  if (a.is_ip()) {
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

// Bounded by `timeout_ms` per wait; returns false on error, EOF or timeout.
inline bool WriteAll(int fd, const uint8_t* p, std::size_t n, int timeout_ms = 20000) {
  while (n > 0) {
    pollfd pfd{fd, POLLOUT, 0};
    if (::poll(&pfd, 1, timeout_ms) <= 0) return false;
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return false;
    }
    p += k;
    n -= static_cast<std::size_t>(k);
  }
  return true;
}
inline bool WriteAll(int fd, std::string_view s) {
  return WriteAll(fd, reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

inline bool ReadAll(int fd, uint8_t* p, std::size_t n, int timeout_ms = 20000) {
  while (n > 0) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, timeout_ms) <= 0) return false;
    const ssize_t k = ::recv(fd, p, n, MSG_DONTWAIT);
    if (k == 0) return false;
    if (k < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return false;
    }
    p += k;
    n -= static_cast<std::size_t>(k);
  }
  return true;
}

// Reads until EOF (true) or error/timeout (false); appends to `out`.
inline bool ReadToEof(int fd, std::string* out, int timeout_ms = 20000) {
  char buf[65536];
  for (;;) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, timeout_ms) <= 0) return false;
    const ssize_t k = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (k == 0) return true;
    if (k < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return false;
    }
    out->append(buf, static_cast<std::size_t>(k));
  }
}

// A loopback TCP port nobody listens on (bound, then released).
inline uint16_t FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin);
  socklen_t len = sizeof sin;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  ::close(fd);
  return ntohs(sin.sin_port);
}

inline std::unique_ptr<Worker> NewWorker() {
  auto w = Worker::Create(Config{});
  if (!w.ok()) {
    ADD_FAILURE() << w.status();
    return nullptr;
  }
  return std::move(*w);
}

inline uint64_t Metric(NetMetrics& m, const std::string& name) {
  for (const auto& list : {m.Counters(), m.Gauges()}) {
    for (const auto& [n, v] : list) {
      if (n == name) return v;
    }
  }
  return 0;
}

// A line parser: yields the line without its '\n'.
inline ParseResult<std::string> ParseLine(std::span<const uint8_t> b) {
  const auto* nl = static_cast<const uint8_t*>(std::memchr(b.data(), '\n', b.size()));
  if (!nl) return ParseResult<std::string>::NeedMore();
  const std::size_t n = static_cast<std::size_t>(nl - b.data());
  return ParseResult<std::string>::Done(std::string(reinterpret_cast<const char*>(b.data()), n),
                                        n + 1);
}

inline std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace ringline::net::testing
