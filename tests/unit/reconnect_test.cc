// When rung-worker retries rungd and when it gives up, on a fake clock.
#include "worker/reconnect.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rung {
namespace {

using ::testing::HasSubstr;

TEST(BackoffTest, GrowsToTheCapWithJitterThatNeverExceedsIt) {
  BackoffOptions o;  // 100 ms, doubling, 2 s cap, 20% jitter
  Backoff b(o, /*seed=*/7);
  const std::vector<int> nominal_ms = {100, 200, 400, 800, 1600, 2000, 2000, 2000, 2000, 2000};
  std::vector<absl::Duration> seen;
  for (int n : nominal_ms) {
    const absl::Duration d = b.Next();
    EXPECT_LE(d, absl::Milliseconds(n));
    EXPECT_GE(d, absl::Milliseconds(n) * 0.8);
    seen.push_back(d);
  }
  // Jittered: the capped delays are not all the same.
  EXPECT_NE(seen[6], seen[7]);
  b.Reset();
  const absl::Duration d = b.Next();
  EXPECT_LE(d, absl::Milliseconds(100));
  EXPECT_GE(d, absl::Milliseconds(80));
}

TEST(BackoffTest, TheSeedDecidesTheJitter) {
  Backoff a(BackoffOptions(), 1), b(BackoffOptions(), 1), c(BackoffOptions(), 2);
  bool c_differs = false;
  for (int i = 0; i < 5; ++i) {
    const absl::Duration da = a.Next();
    EXPECT_EQ(da, b.Next());
    c_differs |= da != c.Next();
  }
  EXPECT_TRUE(c_differs);
}

class ReconnectPolicyTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  ReconnectPolicy policy_{&clock_, "rungd:7411", ReconnectOptions(), /*seed=*/3};
};

// rungd down: the stream thread retries at growing, capped intervals, and starts over
// quickly once a stream was accepted.
TEST_F(ReconnectPolicyTest, UnreachableIsRetriedForEverWithBackoffThatResetsOnceAccepted) {
  const absl::Status down = absl::UnavailableError("failed to connect to all addresses");
  std::vector<absl::Time> attempts = {clock_.Now()};
  while (clock_.Now() - attempts.front() < absl::Seconds(60)) {
    ReconnectDecision d = policy_.OnStreamEnded(down, /*registered=*/false);
    ASSERT_FALSE(d.give_up);
    EXPECT_EQ(d.level, LogLevel::kDebug) << "rungd still down is not worth a line each time";
    clock_.Advance(d.delay);
    attempts.push_back(clock_.Now());
  }
  EXPECT_LE(attempts[1] - attempts[0], absl::Milliseconds(100));
  EXPECT_GE(attempts[1] - attempts[0], absl::Milliseconds(80));
  for (size_t i = 1; i < attempts.size(); ++i) {
    EXPECT_LE(attempts[i] - attempts[i - 1], absl::Seconds(2)) << "attempt " << i;
  }
  // Not hammering: at the cap one try every 1.6 to 2 s.
  EXPECT_GE(attempts.size(), 30u);
  EXPECT_LE(attempts.size(), 44u);

  ReconnectDecision lost = policy_.OnStreamEnded(down, /*registered=*/true);
  EXPECT_FALSE(lost.give_up);
  EXPECT_LE(lost.delay, absl::Milliseconds(100));
  EXPECT_EQ(lost.level, LogLevel::kWarning);
  EXPECT_EQ(lost.note,
            "lost the controller at rungd:7411: failed to connect to all addresses; reconnecting");
}

TEST_F(ReconnectPolicyTest, ARefusedTokenGivesUpAtOnceWithRungdsReason) {
  ReconnectDecision d = policy_.OnStreamEnded(
      absl::UnauthenticatedError("WorkerService.Connect: unknown token"), false);
  EXPECT_TRUE(d.give_up);
  EXPECT_EQ(d.reason.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(d.reason.message(),
            "rungd at rungd:7411 refused this worker: WorkerService.Connect: unknown token "
            "(see --token or RUNG_TOKEN)");
  EXPECT_EQ(d.note, "controller refused the stream: WorkerService.Connect: unknown token");

  ReconnectDecision role = policy_.OnStreamEnded(
      absl::PermissionDeniedError("WorkerService.Connect: alice has role user"), true);
  EXPECT_TRUE(role.give_up);
  EXPECT_EQ(role.reason.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(role.reason.message(), HasSubstr("alice has role user"));
}

TEST_F(ReconnectPolicyTest, OtherRefusalsAreRetriedAndLogged) {
  ReconnectDecision d = policy_.OnStreamEnded(
      absl::InvalidArgumentError("register.worker_id: must not be empty"), false);
  EXPECT_FALSE(d.give_up);
  EXPECT_EQ(d.level, LogLevel::kError);
  EXPECT_EQ(d.note, "controller refused the stream: register.worker_id: must not be empty");
}

// Another live worker has the name: retried for name_clash_window (10 s), then given up.
TEST_F(ReconnectPolicyTest, ANameClashIsRetriedForItsWindowThenGivenUp) {
  const absl::Status clash =
      absl::AlreadyExistsError("worker w1 is connected from another process (session 9f2c)");
  const absl::Time t0 = clock_.Now();
  int retries = 0;
  ReconnectDecision d;
  while (true) {
    d = policy_.OnStreamEnded(clash, false);
    if (d.give_up) break;
    ++retries;
    EXPECT_EQ(d.level, LogLevel::kWarning);
    EXPECT_THAT(d.note, HasSubstr("worker w1 is connected from another process (session 9f2c)"));
    EXPECT_LT(clock_.Now() - t0, absl::Seconds(10));
    clock_.Advance(d.delay);
  }
  EXPECT_GE(clock_.Now() - t0, absl::Seconds(10));
  EXPECT_LT(clock_.Now() - t0, absl::Seconds(12));  // no later than one delay past it
  EXPECT_GE(retries, 5);
  EXPECT_EQ(d.reason.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(d.reason.message(),
            "rungd at rungd:7411 refused this worker's name for 10s: worker w1 is connected "
            "from another process (session 9f2c); give each worker its own --name");
}

TEST_F(ReconnectPolicyTest, TheClashWindowStartsOverOnceAStreamWasAccepted) {
  const absl::Status clash = absl::AlreadyExistsError("w1 is taken");
  for (int round = 0; round < 3; ++round) {
    const absl::Time start = clock_.Now();
    while (clock_.Now() - start < absl::Seconds(8)) {
      ReconnectDecision d = policy_.OnStreamEnded(clash, false);
      ASSERT_FALSE(d.give_up) << "round " << round;
      clock_.Advance(d.delay);
    }
    policy_.OnStreamEnded(absl::UnavailableError("rungd restarted"), /*registered=*/true);
  }
}

}  // namespace
}  // namespace rung
