#pragma once
// Minimal leveled logging to stderr (abseil 20220623 has no logging library).
// Thread-safe: each line is written with a single write(2).

#include <string_view>

#include "absl/strings/str_format.h"

namespace ringline {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kOff = 4 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Parses "debug", "info", "warn"/"warning", "error", "off".
bool ParseLogLevel(std::string_view text, LogLevel* out);
void LogLine(LogLevel level, std::string_view message);

template <typename... Args>
void Log(LogLevel level, const absl::FormatSpec<Args...>& format, const Args&... args) {
  if (level < GetLogLevel()) return;
  LogLine(level, absl::StrFormat(format, args...));
}

}  // namespace ringline

#define RL_LOG_DEBUG(...) ::ringline::Log(::ringline::LogLevel::kDebug, __VA_ARGS__)
#define RL_LOG_INFO(...) ::ringline::Log(::ringline::LogLevel::kInfo, __VA_ARGS__)
#define RL_LOG_WARN(...) ::ringline::Log(::ringline::LogLevel::kWarning, __VA_ARGS__)
#define RL_LOG_ERROR(...) ::ringline::Log(::ringline::LogLevel::kError, __VA_ARGS__)
