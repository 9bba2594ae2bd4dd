#pragma once
// The result family of the I/O path: errors are values, never exceptions.
//
// ONE SIGN CONVENTION for every member of the family:
//   error()  the errno as a POSITIVE number (EINVAL), 0 when there is none;
//   res      where a member keeps the kernel's raw field: >= 0 a value or a
//            count, < 0 a NEGATED errno. Never a positive error code (an NVMe
//            status is mapped to an errno; its raw value has its own field);
//   status   the reason as an absl::Status: the detail the producer gave (the
//            alignment that was required, the NVMe status name, ...), else one
//            made from the errno.
// Print an error with ErrnoName(r.error()); map it with r.error().
//
// Members:
//   Result<T>   a T, or an errno with an optional detail; for every T, int too
//               (net::Result<T> is this type).
//   IoStatus    res + status: the base of the results that hand something back
//               whether or not they failed (block::BlockResult and its Buffer,
//               block::ExtentResult, block::NvmeCommandResult).
//   IoResult    one io_uring completion as the kernel reported it (res, flags;
//               io_result.h), the raw form the others are made from.
// absl::Status / StatusOr stay for set-up (opening, registering, configuring),
// where a reason matters more than an errno.
// Thread-safety: plain values.

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "ringline/io_result.h"

namespace ringline {

// The failure half of the family, for results that carry something back
// either way. Producers set `status` whenever they set a negative `res`.
struct IoStatus {
  int32_t res = 0;      // >= 0 a count (or 0), < 0 a negated errno
  absl::Status status;  // OK, or the reason res < 0

  bool ok() const { return res >= 0; }
  // The errno when !ok() (positive), else 0.
  int error() const { return res < 0 ? -res : 0; }
  // Records a failure: `errnum` > 0, `detail` says why (an empty detail is
  // filled from the errno).
  void Fail(int errnum, absl::Status detail = absl::OkStatus()) {
    res = -errnum;
    status = detail.ok() ? ErrnoToStatus(-errnum, "I/O") : std::move(detail);
  }
};

template <typename T>
class [[nodiscard]] Result {
 public:
  using value_type = T;

  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit on purpose
  // A failure: `errnum` > 0; `detail` (optional) says why.
  static Result Error(int errnum, absl::Status detail = absl::OkStatus()) {
    return Result(ErrorTag{}, errnum, std::move(detail));
  }
  // A clean end of stream (no value, errno 0), e.g. the peer closed at a
  // message boundary.
  static Result Eof() { return Result(ErrorTag{}, 0, absl::OkStatus()); }

  bool ok() const { return value_.has_value(); }
  explicit operator bool() const { return ok(); }
  // True for a clean end of stream.
  bool eof() const { return !ok() && error_ == 0; }
  // The errno when !ok() (positive; 0 for a clean end of stream).
  int error() const { return error_; }
  // OK with a value; else the detail the producer gave, or one from the errno.
  absl::Status status() const {
    if (ok()) return absl::OkStatus();
    if (!detail_.ok()) return detail_;
    if (eof()) return absl::OutOfRangeError("end of stream");
    return ErrnoToStatus(-error_, "I/O");
  }
  std::string ErrorString() const {
    if (eof()) return "end of stream";
    if (!detail_.ok()) return std::string(detail_.message());
    return std::strerror(error_);
  }

  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T&& operator*() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  // The tag keeps the error constructor apart from the value constructor, so
  // Result<int> (and any T constructible from int) is unambiguous.
  struct ErrorTag {};
  Result(ErrorTag, int errnum, absl::Status detail) : error_(errnum), detail_(std::move(detail)) {}

  std::optional<T> value_;
  int error_ = 0;
  absl::Status detail_;  // OK unless the producer gave a reason
};

}  // namespace ringline
