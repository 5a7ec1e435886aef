// Time, injected: production code takes a Clock*, tests pass a FakeClock and move it.
#ifndef RUNG_COMMON_CLOCK_H_
#define RUNG_COMMON_CLOCK_H_

#include <cstdint>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace rung {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
  int64_t NowUnixMs() { return absl::ToUnixMillis(Now()); }

  // The process-wide real clock. Never deleted; safe from any thread.
  static Clock* Real();
};

// A clock that moves only when told to. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000)) : now_(start) {}
  absl::Time Now() override {
    absl::MutexLock l(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock l(&mu_);
    now_ += d;
  }

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rung

#endif  // RUNG_COMMON_CLOCK_H_
