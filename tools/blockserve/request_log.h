#pragma once
// RequestLog: what an operator sees of the requests one connection got wrong
// or the backend failed. Each refused or failed request is logged at warn with
// client, export, command, offset, length and reason, the first
// kLoggedPerConnection of them on a connection; after that they are counted,
// and a summary line ("N more ... in the last S s, the last: ...") is logged at
// most once per kSummaryInterval (when the next one arrives) and when the
// connection closes. A client looping on a bad request therefore cannot flood
// the log, and nothing goes unmentioned. Counting per reason for /metrics is
// the caller's (stats.h).
//
// Ownership: one per Session. Thread-safety: worker-local.

#include <chrono>
#include <cstdint>
#include <string>

#include "ringline/timer_queue.h"

namespace blockserve {

class RequestLog {
 public:
  static constexpr uint32_t kLoggedPerConnection = 5;
  static constexpr std::chrono::seconds kSummaryInterval{10};

  // `client` and `export_name` must outlive the log (the session's strings).
  RequestLog(const std::string& client, const std::string& export_name)
      : client_(client), export_(export_name) {}
  RequestLog(const RequestLog&) = delete;
  RequestLog& operator=(const RequestLog&) = delete;
  ~RequestLog() { Summarize(); }

  // `what` is "refused" or "failed"; `error` the NBD error name sent;
  // `reason` why (static or the backend's message).
  void Record(const char* what, uint16_t command, uint64_t offset, uint32_t length,
              const char* error, const std::string& reason);
  // Logs the count of suppressed lines, if any (also done at destruction).
  void Summarize();

  uint64_t logged() const { return logged_; }
  uint64_t suppressed_total() const { return suppressed_total_; }

 private:
  const std::string& client_;
  const std::string& export_;
  uint64_t logged_ = 0;
  uint64_t suppressed_ = 0;        // since the last summary
  uint64_t suppressed_total_ = 0;  // over the connection
  std::string last_;               // the last suppressed line, for the summary
  ringline::Clock::time_point window_start_{};
};

}  // namespace blockserve
