#include "blockserve/request_log.h"

#include "absl/strings/str_format.h"
#include "blockserve/nbd/request.h"
#include "ringline/log.h"

namespace blockserve {

void RequestLog::Record(const char* what, uint16_t command, uint64_t offset, uint32_t length,
                        const char* error, const std::string& reason) {
  std::string line =
      absl::StrFormat("%s: export '%s': %s offset %u length %u %s with %s: %s", client_, export_,
                      nbd::CommandName(command), offset, length, what, error, reason);
  if (logged_ < kLoggedPerConnection) {
    ++logged_;
    RL_LOG_WARN(
        "%s%s", line,
        logged_ == kLoggedPerConnection ? " (further ones on this connection are counted)" : "");
    window_start_ = ringline::Clock::now();
    return;
  }
  ++suppressed_;
  ++suppressed_total_;
  last_ = std::move(line);
  if (ringline::Clock::now() - window_start_ >= kSummaryInterval) Summarize();
}

void RequestLog::Summarize() {
  if (suppressed_ == 0) return;
  const auto now = ringline::Clock::now();
  const double seconds = std::chrono::duration<double>(now - window_start_).count();
  RL_LOG_WARN(
      "%s: export '%s': %u more refused or failed requests in the last %.0f s; the last: %s",
      client_, export_, suppressed_, seconds, last_);
  suppressed_ = 0;
  last_.clear();
  window_start_ = now;
}

}  // namespace blockserve
