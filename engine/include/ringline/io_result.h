#pragma once
// Results of operations on the I/O path: values, never exceptions.
// IoResult is the raw member of the result family that ringline/result.h
// describes (one sign convention: error() is a positive errno).

#include <cstdint>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace ringline {

// The result of one io_uring completion: `res` is what the kernel returned
// (>= 0 a count or value, < 0 a negated errno). `flags` are the CQE flags.
struct IoResult {
  int32_t res = 0;
  uint32_t flags = 0;

  bool ok() const { return res >= 0; }
  // The errno of a failed result (0 when ok).
  int error() const { return res < 0 ? -res : 0; }
};

// absl::Status for a negated errno, with `context` naming what failed.
absl::Status ErrnoToStatus(int negated_errno, absl::string_view context);

// The errno's symbolic name ("ENOBUFS") or "E<n>" when unknown.
const char* ErrnoName(int errnum);

}  // namespace ringline
