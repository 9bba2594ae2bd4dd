#pragma once
// Result<T>: the value of a network operation, or why there is none.
//
// Errors on the I/O path are values (DESIGN.md "Tasks"): a Result holds either a
// T or an errno. errno 0 without a value means a clean end of stream (the peer
// closed at a message boundary). Codes the network layer itself produces:
//   ENODATA     the stream ended inside a message (truncated)
//   EMSGSIZE    a message outgrew the connection's accumulator cap (closed)
//   ETIMEDOUT   connect, handshake or idle timeout
//   ENOTCONN    the connection was closed locally
//   EBUSY       another task is already receiving on this connection
//   ECONNABORTED an earlier read_exact was abandoned mid-way (stream out of sync)
//   EPROTO      TLS failure (the reason is logged)
// Thread-safety: a plain value.

#include <cstring>
#include <optional>
#include <string>
#include <utility>

namespace ringline::net {

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit on purpose
  static Result Error(int errnum) { return Result(errnum); }
  static Result Eof() { return Result(0); }

  bool ok() const { return value_.has_value(); }
  explicit operator bool() const { return ok(); }
  // True for a clean end of stream.
  bool eof() const { return !ok() && error_ == 0; }
  // The errno when !ok() (0 for a clean end of stream).
  int error() const { return error_; }
  std::string ErrorString() const { return eof() ? "end of stream" : std::strerror(error_); }

  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T&& operator*() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  explicit Result(int errnum) : error_(errnum) {}
  std::optional<T> value_;
  int error_ = 0;
};

}  // namespace ringline::net
