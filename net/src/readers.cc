#include "ringline/net/readers.h"

#include <cassert>
#include <cerrno>
#include <cstring>
#include <functional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace ringline::net {

// The coroutines below keep every co_await a plain statement or an
// initializer of a named local: g++ 12 miscompiles co_await inside a
// condition and on temporaries (docs/gcc12-coroutines.md).

// ---- DelimitedReader --------------------------------------------------------

DelimitedReader::DelimitedReader(std::string_view delimiter, Options options)
    : delimiter_(delimiter), options_(options) {
  assert(!delimiter_.empty() && "DelimitedReader: the delimiter must not be empty");
}

std::size_t DelimitedReader::Find(std::span<const uint8_t> bytes) {
  const std::size_t d = delimiter_.size();
  if (scanned_ > bytes.size()) scanned_ = 0;  // not the bytes we scanned before
  if (bytes.size() < d) return std::string_view::npos;
  const std::size_t last_start = bytes.size() - d;  // the last place a delimiter can start
  const auto first = static_cast<uint8_t>(delimiter_[0]);
  std::size_t pos = scanned_;
  while (pos <= last_start) {
    const void* hit = std::memchr(bytes.data() + pos, first, last_start + 1 - pos);
    if (hit == nullptr) break;
    const auto at = static_cast<std::size_t>(static_cast<const uint8_t*>(hit) - bytes.data());
    if (d == 1 || std::memcmp(bytes.data() + at, delimiter_.data(), d) == 0) return at;
    pos = at + 1;
  }
  scanned_ = last_start + 1;
  return std::string_view::npos;
}

std::string_view DelimitedReader::Keep(std::span<const uint8_t> record) {
  storage_.assign(record.begin(), record.end());  // reuses the capacity: no allocation
  return {storage_.data(), storage_.size()};
}

ParseResult<std::string_view> DelimitedReader::operator()(std::span<const uint8_t> bytes) {
  const std::size_t at = Find(bytes);
  if (at == std::string_view::npos) {
    // With max_record + delimiter bytes in and no delimiter starting at or
    // before max_record, the record is already too long.
    if (bytes.size() >= options_.max_record + delimiter_.size()) {
      scanned_ = 0;
      overlong_ = true;
      return ParseResult<std::string_view>::Invalid(EMSGSIZE);
    }
    return ParseResult<std::string_view>::NeedMore();
  }
  scanned_ = 0;
  if (at > options_.max_record) {
    overlong_ = true;
    return ParseResult<std::string_view>::Invalid(EMSGSIZE);
  }
  return ParseResult<std::string_view>::Done(Keep(bytes.first(at)), at + delimiter_.size());
}

Task<Result<std::string_view>> DelimitedReader::Next(Connection& conn) {
  Reset();
  overlong_ = false;
  Result<std::string_view> r = co_await conn.recv(std::ref(*this));
  if (!r.ok() && r.error() == EMSGSIZE && overlong_) {
    co_return Result<std::string_view>::Error(
        EMSGSIZE, absl::InvalidArgumentError(absl::StrCat(
                      "record longer than ", options_.max_record,
                      " bytes before the delimiter (DelimitedReader::Options::max_record)")));
  }
  co_return r;
}

// ---- LineReader -------------------------------------------------------------

LineReader::LineReader(Options options)
    : max_line_(options.max_line), records_("\n", {.max_record = options.max_line + 1}) {}

ParseResult<std::string_view> LineReader::operator()(std::span<const uint8_t> bytes) {
  ParseResult<std::string_view> r = records_(bytes);
  if (!r.done()) return r;
  std::string_view line = r.take();
  const std::size_t consumed = r.consumed();
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > max_line_) {
    records_.overlong_ = true;
    return ParseResult<std::string_view>::Invalid(EMSGSIZE);
  }
  return ParseResult<std::string_view>::Done(line, consumed);
}

Task<Result<std::string_view>> LineReader::Next(Connection& conn) {
  Reset();
  records_.overlong_ = false;
  Result<std::string_view> r = co_await conn.recv(std::ref(*this));
  if (!r.ok() && r.error() == EMSGSIZE && records_.overlong_) {
    co_return Result<std::string_view>::Error(
        EMSGSIZE, absl::InvalidArgumentError(absl::StrCat("line longer than ", max_line_,
                                                          " bytes without a line feed "
                                                          "(LineReader::Options::max_line)")));
  }
  co_return r;
}

// ---- LengthPrefixedReader ---------------------------------------------------

absl::Status LengthPrefixedReader::Validate(const Options& o) {
  if (o.prefix_bytes != 1 && o.prefix_bytes != 2 && o.prefix_bytes != 4 && o.prefix_bytes != 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LengthPrefixedReader::Options::prefix_bytes is ", o.prefix_bytes, "; use 1, 2, 4 or 8"));
  }
  if (o.max_frame == 0) {
    return absl::InvalidArgumentError(
        "LengthPrefixedReader::Options::max_frame is 0; give the largest payload to accept");
  }
  return absl::OkStatus();
}

LengthPrefixedReader::LengthPrefixedReader(Options options) : options_(options) {
  assert(Validate(options_).ok());
}

bool LengthPrefixedReader::Decode(const uint8_t* p, uint64_t* payload_size) const {
  const std::size_t n = options_.prefix_bytes;
  uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t k = options_.endian == Endian::kBig ? i : n - 1 - i;
    v = (v << 8) | p[k];
  }
  if (options_.length_includes_prefix) {
    if (v < n) return false;
    v -= n;
  }
  *payload_size = v;
  return true;
}

bool LengthPrefixedReader::EncodePrefix(uint64_t payload_size, std::span<uint8_t> out) const {
  const std::size_t n = options_.prefix_bytes;
  if (out.size() < n) return false;
  uint64_t v = payload_size;
  if (options_.length_includes_prefix) v += n;
  if (n < 8 && (v >> (8 * n)) != 0) return false;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t k = options_.endian == Endian::kBig ? n - 1 - i : i;
    out[k] = static_cast<uint8_t>(v >> (8 * i));
  }
  return true;
}

ParseResult<std::span<const uint8_t>> LengthPrefixedReader::operator()(
    std::span<const uint8_t> bytes) {
  using R = ParseResult<std::span<const uint8_t>>;
  const std::size_t n = options_.prefix_bytes;
  if (bytes.size() < n) return R::NeedMore(n);
  uint64_t size = 0;
  if (!Decode(bytes.data(), &size)) {
    bad_prefix_ = true;
    return R::Invalid(EPROTO);
  }
  if (size > options_.max_frame) {
    overlong_size_ = size;
    return R::Invalid(EMSGSIZE);
  }
  const std::size_t total = n + static_cast<std::size_t>(size);
  if (bytes.size() < total) return R::NeedMore(total);
  storage_.assign(bytes.begin() + static_cast<std::ptrdiff_t>(n),
                  bytes.begin() + static_cast<std::ptrdiff_t>(total));
  return R::Done(std::span<const uint8_t>(storage_.data(), storage_.size()), total);
}

template <typename T>
Result<T> LengthPrefixedReader::Explain(Result<T> r, std::size_t buffer_capacity) const {
  if (r.ok()) return r;
  if (r.error() == EPROTO && bad_prefix_) {
    return Result<T>::Error(
        EPROTO, absl::InvalidArgumentError(absl::StrCat(
                    "length prefix smaller than its own ", options_.prefix_bytes,
                    " bytes (LengthPrefixedReader::Options::length_includes_prefix is set)")));
  }
  if (r.error() == EMSGSIZE && overlong_size_ != 0) {
    if (overlong_size_ > options_.max_frame) {
      return Result<T>::Error(
          EMSGSIZE, absl::InvalidArgumentError(absl::StrCat(
                        "frame of ", overlong_size_, " bytes exceeds ", options_.max_frame,
                        " bytes (LengthPrefixedReader::Options::max_frame)")));
    }
    return Result<T>::Error(EMSGSIZE, absl::InvalidArgumentError(absl::StrCat(
                                          "frame of ", overlong_size_, " bytes exceeds the ",
                                          buffer_capacity, "-byte buffer given to ReadFrame")));
  }
  return r;
}

Task<Result<std::span<const uint8_t>>> LengthPrefixedReader::Next(Connection& conn) {
  overlong_size_ = 0;
  bad_prefix_ = false;
  Result<std::span<const uint8_t>> r = co_await conn.recv(std::ref(*this));
  co_return Explain(std::move(r), 0);
}

Task<Result<std::size_t>> LengthPrefixedReader::ReadFrame(Connection& conn, Buffer& buf) {
  overlong_size_ = 0;
  bad_prefix_ = false;
  const std::size_t capacity = buf.capacity();
  // The prefix alone through the parser path; the payload stays in the stream.
  auto prefix = [this, capacity](std::span<const uint8_t> bytes) -> ParseResult<uint64_t> {
    const std::size_t n = options_.prefix_bytes;
    if (bytes.size() < n) return ParseResult<uint64_t>::NeedMore(n);
    uint64_t size = 0;
    if (!Decode(bytes.data(), &size)) {
      bad_prefix_ = true;
      return ParseResult<uint64_t>::Invalid(EPROTO);
    }
    if (size > options_.max_frame || size > capacity) {
      overlong_size_ = size;
      return ParseResult<uint64_t>::Invalid(EMSGSIZE);
    }
    return ParseResult<uint64_t>::Done(size, n);
  };
  Result<uint64_t> header = co_await conn.recv(prefix);
  if (header.eof()) co_return Result<std::size_t>::Eof();
  if (!header.ok()) {
    Result<uint64_t> explained = Explain(std::move(header), capacity);
    co_return Result<std::size_t>::Error(explained.error(), explained.status());
  }
  const auto size = static_cast<std::size_t>(*header);
  if (size == 0) {
    buf.set_size(0);
    co_return Result<std::size_t>(0);
  }
  IoResult got = co_await conn.read_exact(buf, size);
  if (!got.ok()) co_return Result<std::size_t>::Error(-got.res);
  co_return Result<std::size_t>(size);
}

}  // namespace ringline::net
