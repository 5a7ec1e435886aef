// Long-lived trial processes (trial: {reuse_process: true}) with a real rungd and worker:
// one process runs trial after trial (its pid in each trial's record), a crash fails only the
// trial it was in and a fresh runner takes the next, and an ASHA promotion resumes from its
// checkpoint inside the runner.
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"

namespace rung::testing {
namespace {

using ::testing::HasSubstr;

std::string WarmSpec(const std::string& name, const std::string& algorithm, int max_trials,
                     const std::string& extra) {
  return absl::StrCat(R"(
name: )",
                      name, R"(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
algorithm: )",
                      algorithm, R"(
budget: {max_trials: )",
                      max_trials, R"(, max_concurrent: 1}
trial:
  command: [/usr/bin/python3, )",
                      SourceDir(), R"(/tests/integration/warm_trial.py]
  reuse_process: true
)",
                      extra);
}

TEST(WarmTest, OneProcessRunsSeveralTrials) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 1);
  auto e = c.Submit(WarmSpec("warm", "{name: random, seed: 1}", 5, ""), c.jobs_dir());
  e = c.Watch(e.id());
  ASSERT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  std::set<int> pids;
  for (const v1::Trial& t : c.Trials(e.id())) {
    EXPECT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.id() << ": " << t.message();
    EXPECT_GT(t.pid(), 0);
    EXPECT_EQ(t.last_metrics().at("pid"), t.pid());  // the process that reported it
    pids.insert(t.pid());
  }
  EXPECT_EQ(pids.size(), 1u) << "each trial should run in the same process";
}

TEST(WarmTest, ACrashFailsOnlyItsTrialAndAFreshRunnerTakesTheNext) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 1);
  auto e = c.Submit(WarmSpec("crash", "{name: random, seed: 1}", 4,
                             "  max_restarts: 1\n  env: {CRASH_TRIAL: e1-2}\n"),
                    c.jobs_dir());
  e = c.Watch(e.id());
  ASSERT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  auto trials = c.Trials(e.id());
  ASSERT_EQ(trials.size(), 4u);
  for (const v1::Trial& t : trials) {
    EXPECT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.id() << ": " << t.message();
    EXPECT_EQ(t.failures(), t.id() == "e1-2" ? 1 : 0) << t.id();
  }
  EXPECT_THAT(trials[1].message(), HasSubstr("exited with code 3"));
  EXPECT_EQ(trials[1].attempt(), 2);
  // e1-1 ran in the first runner; the crash took it down, and the next one ran the rest.
  EXPECT_NE(trials[0].pid(), trials[1].pid());
  EXPECT_EQ(trials[1].pid(), trials[2].pid());
  EXPECT_EQ(trials[2].pid(), trials[3].pid());
}

TEST(WarmTest, AnAshaPromotionResumesFromItsCheckpointInsideTheRunner) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 1);
  auto e = c.Submit(WarmSpec("promote", "{name: asha, reduction_factor: 3, mode: promote, seed: 4}",
                             9, "resource: {metric: step, min: 1, max: 9}\n"),
                    c.jobs_dir());
  e = c.Watch(e.id());
  ASSERT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  std::set<int> pids;
  int promoted = 0;
  for (const v1::Trial& t : c.Trials(e.id())) {
    pids.insert(t.pid());
    if (t.attempt() < 2) continue;
    ++promoted;
    // It went on from the step its last rung ended at, not from the start.
    EXPECT_GE(t.last_metrics().at("resumed_from"), 1) << t.id();
    EXPECT_EQ(c.Metrics(t.id()).front().step(), 1) << t.id();  // its first rung's first step
  }
  EXPECT_GE(promoted, 1);
  EXPECT_EQ(pids.size(), 1u) << "promotions should run in the same runner";
}

}  // namespace
}  // namespace rung::testing
