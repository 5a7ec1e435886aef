// What rung-worker does when its stream to rungd ends: retry after a capped, jittered
// backoff, or give up for good (a refused token, a name another live worker holds).
//
// Pure decisions on an injected clock, so that they are tested by moving a FakeClock. The
// waiting itself is the stream thread's (worker/agent.cc): it waits for the gRPC channel to
// become ready, at most the delay decided here.
#ifndef RUNG_WORKER_RECONNECT_H_
#define RUNG_WORKER_RECONNECT_H_

#include <cstdint>
#include <random>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/log.h"

namespace rung {

struct BackoffOptions {
  absl::Duration initial = absl::Milliseconds(100);
  absl::Duration max = absl::Seconds(2);
  double multiplier = 2.0;
  // Each delay is the nominal one times a factor drawn uniformly from [1 - jitter, 1], so
  // that workers cut off together do not come back in step, and no delay exceeds `max`.
  double jitter = 0.2;
};

// Capped exponential backoff with jitter. Not thread-safe.
class Backoff {
 public:
  Backoff(const BackoffOptions& options, uint64_t seed);
  // The next delay: the nominal one (initial, then times multiplier each call, up to max)
  // with jitter.
  absl::Duration Next();
  // Back to `initial`, after a success.
  void Reset() { nominal_ = options_.initial; }

 private:
  const BackoffOptions options_;
  absl::Duration nominal_;
  std::mt19937_64 rng_;
};

struct ReconnectOptions {
  BackoffOptions backoff;
  // How long a name refused with ALREADY_EXISTS is retried before the worker gives up. It
  // covers a worker restarted (after a crash) before rungd noticed that its old stream died.
  absl::Duration name_clash_window = absl::Seconds(10);
};

// The decision after a stream ended.
struct ReconnectDecision {
  bool give_up = false;
  // give_up: why the worker exits, with rungd's own message; code as rungd sent it.
  absl::Status reason;
  // !give_up: open the next stream after this long at most (the stream thread goes earlier
  // when the channel becomes ready after having been down).
  absl::Duration delay;
  // What to log about it ("" for nothing: rungd unreachable once more is not news).
  LogLevel level = LogLevel::kInfo;
  std::string note;
};

class ReconnectPolicy {
 public:
  // `clock` must outlive the policy; `controller` names rungd in notes; `seed` drives the
  // jitter. Called by one thread (the stream thread).
  ReconnectPolicy(Clock* clock, std::string controller, const ReconnectOptions& options,
                  uint64_t seed);

  // `status`: how the stream ended. `registered`: rungd accepted the stream (sent at least
  // one message) before it ended.
  ReconnectDecision OnStreamEnded(const absl::Status& status, bool registered);

 private:
  ReconnectDecision Retry(LogLevel level, std::string note);

  Clock* const clock_;
  const std::string controller_;
  const ReconnectOptions options_;
  Backoff backoff_;
  // Since when rungd has refused our name without a stream accepted in between.
  absl::Time clash_since_ = absl::InfiniteFuture();
};

}  // namespace rung

#endif  // RUNG_WORKER_RECONNECT_H_
