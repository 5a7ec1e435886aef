#include "worker/reconnect.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace rung {

Backoff::Backoff(const BackoffOptions& options, uint64_t seed)
    : options_(options), nominal_(options.initial), rng_(seed) {}

absl::Duration Backoff::Next() {
  const absl::Duration nominal = std::min(nominal_, options_.max);
  nominal_ = std::min(nominal_ * options_.multiplier, options_.max);
  std::uniform_real_distribution<double> factor(1.0 - options_.jitter, 1.0);
  return nominal * factor(rng_);
}

ReconnectPolicy::ReconnectPolicy(Clock* clock, std::string controller,
                                 const ReconnectOptions& options, uint64_t seed)
    : clock_(clock),
      controller_(std::move(controller)),
      options_(options),
      backoff_(options.backoff, seed) {}

ReconnectDecision ReconnectPolicy::Retry(LogLevel level, std::string note) {
  ReconnectDecision d;
  d.delay = backoff_.Next();
  d.level = level;
  d.note = std::move(note);
  return d;
}

ReconnectDecision ReconnectPolicy::OnStreamEnded(const absl::Status& status, bool registered) {
  const absl::Time now = clock_->Now();
  if (registered) {
    // rungd took us; whatever ends the stream now starts a fresh round of retries.
    backoff_.Reset();
    clash_since_ = absl::InfiniteFuture();
  }
  const std::string msg(status.message());
  switch (status.code()) {
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied: {
      // The token is wrong for good: retrying cannot help, and a worker that retries
      // forever looks alive to whoever started it.
      ReconnectDecision d;
      d.give_up = true;
      d.reason = absl::Status(status.code(),
                              absl::StrCat("rungd at ", controller_, " refused this worker: ", msg,
                                           " (see --token or RUNG_TOKEN)"));
      d.level = LogLevel::kError;
      d.note = absl::StrCat("controller refused the stream: ", msg);
      return d;
    }
    case absl::StatusCode::kAlreadyExists: {
      if (clash_since_ == absl::InfiniteFuture()) clash_since_ = now;
      if (now - clash_since_ >= options_.name_clash_window) {
        ReconnectDecision d;
        d.give_up = true;
        d.reason = absl::AlreadyExistsError(
            absl::StrCat("rungd at ", controller_, " refused this worker's name for ",
                         absl::FormatDuration(options_.name_clash_window), ": ", msg,
                         "; give each worker its own --name"));
        d.level = LogLevel::kError;
        d.note = absl::StrCat("controller refused the stream: ", msg);
        return d;
      }
      const absl::Duration left = clash_since_ + options_.name_clash_window - now;
      return Retry(LogLevel::kWarning,
                   absl::StrCat("controller refused the stream: ", msg, "; retrying for up to ",
                                absl::FormatDuration(left),
                                " (a restarted worker's old stream may not have closed yet)"));
    }
    default:
      break;
  }
  if (registered) {
    return Retry(LogLevel::kWarning,
                 absl::StrCat("lost the controller at ", controller_, ": ", msg, "; reconnecting"));
  }
  if (!status.ok() && status.code() != absl::StatusCode::kUnavailable) {
    return Retry(LogLevel::kError, absl::StrCat("controller refused the stream: ", msg));
  }
  return Retry(LogLevel::kDebug, absl::StrCat("cannot reach the controller at ", controller_, ": ",
                                              msg.empty() ? "stream ended" : msg));
}

}  // namespace rung
