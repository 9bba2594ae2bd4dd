#pragma once
// Helpers for the NBD codec tests: a byte-string builder for hand-derived wire
// images, a fake export catalog, and a driver that runs a Negotiator over a
// client byte stream, and the constants and expectations the handshake tests
// share.
//
// The builder appends fields in network byte order itself (it does not use
// the codec's byte_order.h), so expected bytes are derived independently of
// the code under test.

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "blockserve/nbd/export.h"
#include "blockserve/nbd/negotiation.h"
#include "blockserve/nbd/protocol.h"

namespace blockserve::nbd::test_util {

using Bytes = std::vector<uint8_t>;

// Fluent builder for wire images.
class Wire {
 public:
  Wire& U8(uint8_t v) {
    bytes_.push_back(v);
    return *this;
  }
  Wire& U16(uint16_t v) { return U8(static_cast<uint8_t>(v >> 8)).U8(static_cast<uint8_t>(v)); }
  Wire& U32(uint32_t v) {
    return U16(static_cast<uint16_t>(v >> 16)).U16(static_cast<uint16_t>(v));
  }
  Wire& U64(uint64_t v) {
    return U32(static_cast<uint32_t>(v >> 32)).U32(static_cast<uint32_t>(v));
  }
  Wire& Str(std::string_view s) {
    bytes_.insert(bytes_.end(), s.begin(), s.end());
    return *this;
  }
  Wire& Raw(const Bytes& b) {
    bytes_.insert(bytes_.end(), b.begin(), b.end());
    return *this;
  }
  Wire& Zeroes(size_t n) {
    bytes_.insert(bytes_.end(), n, 0);
    return *this;
  }
  // A client option: IHAVEOPT, option, length, data.
  Wire& Option(uint32_t option, const Bytes& data = {}) {
    return Str("IHAVEOPT").U32(option).U32(static_cast<uint32_t>(data.size())).Raw(data);
  }
  // NBD_OPT_INFO / NBD_OPT_GO data: name length, name, count, requests.
  static Bytes InfoData(std::string_view name, std::vector<uint16_t> requests = {}) {
    Wire w;
    w.U32(static_cast<uint32_t>(name.size())).Str(name).U16(static_cast<uint16_t>(requests.size()));
    for (uint16_t r : requests) w.U16(r);
    return w.bytes();
  }
  // A server option reply: magic 0x3e889045565a9, option, type, length, data.
  Wire& Reply(uint32_t option, uint32_t type, const Bytes& data = {}) {
    return U64(0x0003e889045565a9ULL)
        .U32(option)
        .U32(type)
        .U32(static_cast<uint32_t>(data.size()))
        .Raw(data);
  }
  Wire& Reply(uint32_t option, uint32_t type, std::string_view message) {
    return Reply(option, type, Bytes(message.begin(), message.end()));
  }
  // NBD_REP_INFO / NBD_INFO_EXPORT.
  Wire& InfoExport(uint32_t option, uint64_t size, uint16_t flags) {
    return Reply(option, 3, Wire().U16(0).U64(size).U16(flags).bytes());
  }
  // NBD_REP_INFO / NBD_INFO_BLOCK_SIZE.
  Wire& InfoBlockSize(uint32_t option, uint32_t min, uint32_t preferred, uint32_t max) {
    return Reply(option, 3, Wire().U16(3).U32(min).U32(preferred).U32(max).bytes());
  }

  const Bytes& bytes() const { return bytes_; }
  operator Bytes() const { return bytes_; }  // NOLINT: builder converts implicitly.

 private:
  Bytes bytes_;
};

// The 18-byte server greeting with FIXED_NEWSTYLE | NO_ZEROES.
inline Bytes Greeting() { return Wire().Str("NBDMAGIC").Str("IHAVEOPT").U16(3); }

// Expected server output of a handshake: the greeting followed by `rest`.
inline Bytes AfterGreeting(const Bytes& rest) { return Wire().Raw(Greeting()).Raw(rest); }

// The client flags a modern client sends: FIXED_NEWSTYLE | NO_ZEROES.
constexpr uint32_t kBoth = kClientFlagFixedNewstyle | kClientFlagNoZeroes;

// An in-memory catalog. Exports are listed in insertion order.
class FakeCatalog : public ExportCatalog {
 public:
  FakeCatalog& Add(std::string name, std::string description, ExportInfo info) {
    exports_.push_back(Export{std::move(name), std::move(description), info});
    return *this;
  }
  // The name that the empty (default) name resolves to.
  FakeCatalog& SetDefault(std::string name) {
    default_ = std::move(name);
    return *this;
  }

  std::optional<Export> Find(std::string_view name) const override {
    ++find_calls;
    const std::string_view wanted = name.empty() ? std::string_view(default_) : name;
    if (wanted.empty()) return std::nullopt;
    for (const Export& e : exports_) {
      if (e.name == wanted) return e;
    }
    return std::nullopt;
  }
  std::vector<ExportListing> List() const override {
    std::vector<ExportListing> out;
    for (const Export& e : exports_) out.push_back({e.name, e.description, e.info.tls_only});
    return out;
  }

  mutable int find_calls = 0;

 private:
  std::vector<Export> exports_;
  std::string default_;
};

// Size and transmission flags of WritableInfo(): HAS_FLAGS | SEND_FLUSH |
// SEND_FUA | SEND_TRIM | SEND_WRITE_ZEROES = 0x01 | 0x04 | 0x08 | 0x20 | 0x40.
constexpr uint64_t kDiskSize = 1 << 20;
constexpr uint16_t kDiskFlags = 0x006d;

// A typical writable export: 1 MiB, flush/FUA/trim/zeroes, 512-byte blocks.
inline ExportInfo WritableInfo() {
  ExportInfo info;
  info.size = kDiskSize;
  info.can_flush = true;
  info.can_fua = true;
  info.can_trim = true;
  info.can_write_zeroes = true;
  info.block_size = {512, 4096, 1 << 20};
  return info;
}

// The outcome of driving a Negotiator over a stream.
struct DriveResult {
  Bytes output;                          // Everything the server sent.
  std::vector<NegotiationEvent> events;  // Non-NeedInput events, in order.
  std::vector<size_t> boundaries;        // Stream offset at each event.
  size_t consumed = 0;                   // Stream bytes consumed in total.
};

// Feeds `stream` in pieces of `chunk` bytes (0 = all at once), draining output
// after each call, calling TlsEstablished() after StartTls and stopping at
// EnterTransmission or Close. `on_feed` runs after each Feed (e.g. to start a
// shutdown).
template <typename OnFeed>
DriveResult Drive(Negotiator& n, const Bytes& stream, size_t chunk, OnFeed on_feed) {
  DriveResult run;
  run.output.insert(run.output.end(), n.PendingOutput().begin(), n.PendingOutput().end());
  n.ConsumeOutput(n.PendingOutput().size());
  size_t pos = 0;
  for (;;) {
    const size_t len = chunk == 0 ? stream.size() - pos : std::min(chunk, stream.size() - pos);
    FeedResult r = n.Feed(std::span<const uint8_t>(stream).subspan(pos, len));
    pos += r.consumed;
    on_feed(n);
    const std::vector<uint8_t> out = n.TakeOutput();
    run.output.insert(run.output.end(), out.begin(), out.end());
    if (std::holds_alternative<NeedInput>(r.event)) {
      if (pos == stream.size()) break;
      continue;
    }
    run.events.push_back(r.event);
    run.boundaries.push_back(pos);
    if (std::holds_alternative<StartTls>(r.event)) {
      n.TlsEstablished();
      continue;
    }
    break;
  }
  run.consumed = pos;
  return run;
}

inline DriveResult Drive(Negotiator& n, const Bytes& stream, size_t chunk = 0) {
  return Drive(n, stream, chunk, [](Negotiator&) {});
}

// The i-th event of `run`, which must be a T (a test failure otherwise).
template <typename T>
const T& EventAs(const DriveResult& run, size_t i = 0) {
  EXPECT_LT(i, run.events.size());
  EXPECT_TRUE(std::holds_alternative<T>(run.events.at(i))) << "event " << i;
  return std::get<T>(run.events.at(i));
}

}  // namespace blockserve::nbd::test_util
