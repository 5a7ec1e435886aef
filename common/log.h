// A small leveled logger to stderr: "2026-11-22T10:00:00.123Z I rungd: message".
#ifndef RUNG_COMMON_LOG_H_
#define RUNG_COMMON_LOG_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rung {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Parses debug|info|warning|error.
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view s);
// Set once at start-up, before other threads run.
void SetLogLevel(LogLevel level);
void SetLogTag(absl::string_view tag);
// Thread-safe: each call writes one line with one write().
void Log(LogLevel level, absl::string_view message);

}  // namespace rung

#endif  // RUNG_COMMON_LOG_H_
