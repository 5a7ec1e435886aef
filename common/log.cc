#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace rung {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::string* g_tag = new std::string("rung");
}  // namespace

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view s) {
  if (s == "debug") return LogLevel::kDebug;
  if (s == "info") return LogLevel::kInfo;
  if (s == "warning" || s == "warn") return LogLevel::kWarning;
  if (s == "error") return LogLevel::kError;
  return absl::InvalidArgumentError(
      absl::StrCat("--log-level: unknown level '", s, "' (known: debug, info, warning, error)"));
}

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }
void SetLogTag(absl::string_view tag) { *g_tag = std::string(tag); }

void Log(LogLevel level, absl::string_view message) {
  if (static_cast<int>(level) < g_level) return;
  static const char kLetters[] = "DIWE";
  std::string line = absl::StrCat(
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()), " ",
      std::string(1, kLetters[static_cast<int>(level)]), " ", *g_tag, ": ", message, "\n");
  ssize_t unused = write(STDERR_FILENO, line.data(), line.size());
  (void)unused;
}

}  // namespace rung
