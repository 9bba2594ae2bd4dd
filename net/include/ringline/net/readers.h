#pragma once
// Stream readers: lines, delimited records and length-prefixed frames on a
// Connection, with bounded memory and at most one copy of each byte.
//
//   LineReader lines({.max_line = 4096});
//   for (;;) {
//     Result<std::string_view> line = co_await lines.Next(conn);
//     if (!line) break;            // eof(): peer closed between lines; else an error
//     Handle(*line);               // valid until the next call on `lines`
//   }
//
// How they receive. Every reader is a parser of the shape Connection::recv takes
// (ParseResult<V>(std::span<const uint8_t>)), so it runs over the bytes of the
// multishot provided-buffer receive path in place; pass it by reference,
// `conn.recv(std::ref(reader))`, or call Next(conn), which does that and turns
// an overlong record into an error naming the bound. The one copy: a complete
// record is copied out of the receive buffers into the reader's own storage
// (the receive buffers are recycled as soon as recv consumes the record), and
// the value points into that storage. LengthPrefixedReader::ReadFrame copies
// nothing extra: the payload goes from the socket (or the receive buffer it
// already landed in) straight into the caller's Buffer via read_exact.
//
// Memory. A reader holds at most one record (its bound) in its storage, which
// grows on demand up to the bound and is then reused: no allocation per record
// in steady state. While a record is incomplete its bytes wait in the
// connection's accumulator, which closes the connection with EMSGSIZE past
// ConnectionOptions::accumulator_cap (1 MiB by default): keep a reader's bound
// below that cap (ReadFrame needs only the prefix to fit).
//
// Errors (Result::error()): eof() when the peer closed at a record boundary,
// ENODATA when it closed inside a record, EMSGSIZE for a record over the bound
// (the detail names the bound and the option that sets it; nothing is
// consumed, so the stream cannot continue: close the connection), or the
// connection's error. Cancelling (destroying) a Next/ReadFrame consumes
// nothing (ReadFrame after the prefix: the stream is out of sync and later
// receives fail with ECONNABORTED, as for read_exact).
//
// Thread-safety: a reader belongs to one connection's receiving task; use it on
// that connection's worker thread. Readers are movable, not copyable.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ringline/buffer.h"
#include "ringline/net/connection.h"
#include "ringline/net/result.h"
#include "ringline/task.h"

namespace ringline::net {

// Records ended by a delimiter of one or more bytes. The value is the record
// without its delimiter.
class DelimitedReader {
 public:
  struct Options {
    // Longest record (delimiter excluded); a longer one is an EMSGSIZE error.
    std::size_t max_record = 64 * 1024;
  };
  // `delimiter` must not be empty (asserted); it is copied.
  explicit DelimitedReader(std::string_view delimiter, Options options);
  explicit DelimitedReader(std::string_view delimiter) : DelimitedReader(delimiter, Options{}) {}
  DelimitedReader(DelimitedReader&&) = default;
  DelimitedReader& operator=(DelimitedReader&&) = default;
  DelimitedReader(const DelimitedReader&) = delete;
  DelimitedReader& operator=(const DelimitedReader&) = delete;

  // The parser: Done(record, record + delimiter), NeedMore, or Invalid(EMSGSIZE).
  // The view points into this reader and is valid until its next call.
  ParseResult<std::string_view> operator()(std::span<const uint8_t> bytes);
  // The next record from `conn`; the view is valid until the next call on this
  // reader. `conn` must outlive the returned task.
  Task<Result<std::string_view>> Next(Connection& conn);
  // Forgets the scan position: call after a cancelled recv of this reader when
  // another parser consumed bytes before the reader's next use (Next does this
  // itself).
  void Reset() { scanned_ = 0; }

  std::string_view delimiter() const { return delimiter_; }
  std::size_t max_record() const { return options_.max_record; }

 private:
  friend class LineReader;
  // Where the first delimiter starts in `bytes`, or npos; resumes the scan
  // where the previous call on the same (grown) bytes stopped, so byte-by-byte
  // arrivals cost O(n) in all, not O(n^2).
  std::size_t Find(std::span<const uint8_t> bytes);
  std::string_view Keep(std::span<const uint8_t> record);

  std::string delimiter_;
  Options options_;
  std::size_t scanned_ = 0;    // bytes already known to hold no delimiter start
  std::vector<char> storage_;  // the last record (one copy), at most max_record
  bool overlong_ = false;      // the last Invalid was the bound, not the connection
};

// Lines ended by LF or CRLF (the CR is removed). The value is the line without
// its terminator; a CR elsewhere in a line is kept.
class LineReader {
 public:
  struct Options {
    // Longest line, terminator excluded; a longer one is an EMSGSIZE error.
    std::size_t max_line = 8 * 1024;
  };
  explicit LineReader(Options options);
  LineReader() : LineReader(Options{}) {}
  LineReader(LineReader&&) = default;
  LineReader& operator=(LineReader&&) = default;

  ParseResult<std::string_view> operator()(std::span<const uint8_t> bytes);
  Task<Result<std::string_view>> Next(Connection& conn);
  void Reset() { records_.Reset(); }
  std::size_t max_line() const { return max_line_; }

 private:
  std::size_t max_line_;
  DelimitedReader records_;  // "\n", one byte more for the CR
};

// Frames of a length prefix (1, 2, 4 or 8 bytes, big or little endian)
// followed by that many payload bytes.
class LengthPrefixedReader {
 public:
  enum class Endian : uint8_t { kBig, kLittle };
  struct Options {
    uint8_t prefix_bytes = 4;  // 1, 2, 4 or 8
    Endian endian = Endian::kBig;
    // Longest payload; a prefix announcing more is an EMSGSIZE error.
    std::size_t max_frame = 64 * 1024;
    // The prefix counts itself as well as the payload (some protocols do).
    bool length_includes_prefix = false;
  };
  // Options are checked by Validate(); the constructor asserts them.
  explicit LengthPrefixedReader(Options options);
  LengthPrefixedReader() : LengthPrefixedReader(Options{}) {}
  LengthPrefixedReader(LengthPrefixedReader&&) = default;
  LengthPrefixedReader& operator=(LengthPrefixedReader&&) = default;
  LengthPrefixedReader(const LengthPrefixedReader&) = delete;
  LengthPrefixedReader& operator=(const LengthPrefixedReader&) = delete;
  // InvalidArgument naming the field when `options` is unusable.
  static absl::Status Validate(const Options& options);

  // The parser: the payload (prefix consumed with it). It tells recv the whole
  // frame's size as soon as the prefix is in, so recv waits for all of it.
  ParseResult<std::span<const uint8_t>> operator()(std::span<const uint8_t> bytes);
  // The next payload; the span is valid until the next call on this reader.
  Task<Result<std::span<const uint8_t>>> Next(Connection& conn);
  // The next payload into `buf` (buf.size() set to it): the prefix through the
  // parser, the payload by read_exact straight into the Buffer, with no copy
  // in this reader. EMSGSIZE (nothing of the payload consumed) when the
  // payload is over max_frame or over buf.capacity(). `buf` is lent to the
  // connection while bytes may land in it (see Connection::read_exact).
  Task<Result<std::size_t>> ReadFrame(Connection& conn, Buffer& buf);

  // Encodes `payload_size` as this reader's prefix into out[0, prefix_bytes)
  // (for the sending side and tests). False when it does not fit the prefix.
  bool EncodePrefix(uint64_t payload_size, std::span<uint8_t> out) const;
  const Options& options() const { return options_; }

 private:
  // The payload size the prefix at `p` announces; false when the prefix is
  // smaller than itself (length_includes_prefix with a length < prefix_bytes).
  bool Decode(const uint8_t* p, uint64_t* payload_size) const;
  // Turns the parser's EMSGSIZE/EPROTO into an error naming the bound or the
  // prefix; passes every other failure through.
  template <typename T>
  Result<T> Explain(Result<T> r, std::size_t buffer_capacity) const;

  Options options_;
  std::vector<uint8_t> storage_;  // the last payload (one copy), at most max_frame
  uint64_t overlong_size_ = 0;    // the size of the last frame refused for its bound
  bool bad_prefix_ = false;       // the last Invalid was a prefix < its own size
};

}  // namespace ringline::net
