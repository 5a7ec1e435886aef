// rung-worker as a process: back soon after rungd restarts.

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"

namespace rung::testing {
namespace {

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

// The time at the start of a log line ("2026-11-22T10:00:00.123Z I ...").
absl::Time LogTime(const std::string& line) {
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime("%Y-%m-%dT%H:%M:%E*SZ", line.substr(0, line.find(' ')), &t, &err))
      << err << ": " << line;
  return t;
}

// rungd killed and started again on its port, after down times from 0.2 s to 5 s: the worker
// registers again each time (it took 8 to 11 s before) and then runs trials. The delays
// from rungd serving to the worker registered are printed, not asserted (a loaded CI machine
// is slow); RUNG_RECONNECT_RESTARTS sets how many restarts (bench/RESULTS.md).
TEST(WorkerTest, TheWorkerRegistersAgainAfterEachRestartOfRungdAndRunsTrials) {
  const int restarts = EnvInt("RUNG_RECONNECT_RESTARTS", 5);
  const absl::Duration down[] = {absl::Milliseconds(200), absl::Milliseconds(700), absl::Milliseconds(1500),
                                 absl::Seconds(3), absl::Seconds(5)};
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 2);
  const std::string log = c.dir().Sub("w1.log");
  ASSERT_FALSE(WaitForFileLine(log, "registered with", 30000).empty());
  std::vector<double> delays_ms;
  for (int i = 0; i < restarts; ++i) {
    const int port = c.port();
    c.KillRungd();
    absl::SleepFor(down[i % std::size(down)]);  // rungd stays down this long
    c.StartRungd(port);
    const absl::Time serving = absl::Now();
    const std::string line = WaitForFileLine(log, "registered with", 30000, i + 2);
    ASSERT_FALSE(line.empty()) << "restart " << i << ": the worker did not register again; see " << log;
    delays_ms.push_back(absl::ToDoubleMilliseconds(LogTime(line) - serving));
  }
  auto e = c.Submit(ReportModuleSpec("after-restarts", 4, 3, "0.01"), c.jobs_dir());
  e = c.Watch(e.id());
  EXPECT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  for (const auto& t : c.Trials(e.id())) {
    EXPECT_EQ(t.worker_id(), "w1");
    EXPECT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.id() << ": " << t.message();
  }
  std::vector<double> sorted = delays_ms;
  std::sort(sorted.begin(), sorted.end());
  std::printf("worker registered again after rungd served: min %.0f ms, median %.0f ms, max %.0f ms over %d "
              "restarts (%s)\n",
              sorted.front(), sorted[sorted.size() / 2], sorted.back(), restarts,
              absl::StrJoin(delays_ms, ", ", [](std::string* out, double d) { absl::StrAppend(out, d); }).c_str());
}

}  // namespace
}  // namespace rung::testing
