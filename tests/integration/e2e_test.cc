// rungd and two rung-workers on loopback running real Python trial processes.
// The trial scripts use Debian's interpreter, /usr/bin/python3, and only its standard library.
#include <signal.h>
#include <cmath>
#include <fstream>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"

namespace rung::testing {
namespace {

using ::testing::HasSubstr;

std::string Spec(const std::string& name, const std::string& command, int max_trials,
                 const std::string& extra = "") {
  return absl::StrCat(R"(
name: )",
                      name, R"(
objective: {metric: loss, goal: minimize}
search_space:
  x: {type: float, min: -1, max: 1}
  depth: {type: int, min: 1, max: 4}
  act: {type: categorical, values: [relu, tanh]}
algorithm: {name: random, seed: 11}
budget: {max_trials: )",
                      max_trials, R"(, max_concurrent: 4}
trial:
  command: )",
                      command, R"(
  workdir: .
  max_restarts: 1
)",
                      extra);
}

double Expected(const v1::Trial& t) {
  double x = t.params().at("x").float_value();
  int64_t depth = t.params().at("depth").int_value();
  return (x - 0.3) * (x - 0.3) + 0.1 * static_cast<double>(depth);
}

void ExpectAllCompletedWithBestFirst(Cluster& c, const v1::Experiment& e, int trials, int steps) {
  EXPECT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  EXPECT_EQ(e.counts().completed(), trials);
  auto all = c.Trials(e.id());
  ASSERT_EQ(static_cast<int>(all.size()), trials);
  const v1::Trial* lowest = nullptr;
  for (const auto& t : all) {
    EXPECT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.id() << ": " << t.message();
    EXPECT_NEAR(t.result(), Expected(t), 1e-9) << t.id();
    EXPECT_EQ(c.Metrics(t.id()).size(), static_cast<size_t>(steps)) << t.id();
    if (lowest == nullptr || t.result() < lowest->result()) lowest = &t;
  }
  ASSERT_NE(lowest, nullptr);
  EXPECT_EQ(e.best_trial_id(), lowest->id());
  v1::GetBestTrialsRequest req;
  req.set_experiment_id(e.id());
  v1::GetBestTrialsResponse best;
  grpc::ClientContext ctx;
  ASSERT_TRUE(c.stub()->GetBestTrials(&ctx, req, &best).ok());
  ASSERT_EQ(best.trials_size(), 1);
  EXPECT_EQ(best.trials(0).id(), lowest->id());
}

TEST(EndToEndTest, RandomSearchReportingThroughTheModule) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 2);
  c.StartWorker("w2", 2);
  std::string script = SourceDir() + "/tests/integration/report_module.py";
  auto e =
      c.Submit(Spec("module", absl::StrCat("[/usr/bin/python3, ", script, "]"), 16), c.jobs_dir());
  ASSERT_EQ(e.id(), "e1");
  e = c.Watch(e.id());
  ExpectAllCompletedWithBestFirst(c, e, 16, 6);
  // Both workers took part.
  std::set<std::string> workers;
  for (const auto& t : c.Trials(e.id())) workers.insert(t.worker_id());
  EXPECT_EQ(workers, (std::set<std::string>{"w1", "w2"}));
}

TEST(EndToEndTest, RandomSearchReportingThroughStdoutLines) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 2);
  c.StartWorker("w2", 2);
  std::string script = SourceDir() + "/tests/integration/report_stdout.py";
  auto e = c.Submit(
      Spec("stdout",
           absl::StrCat("[/usr/bin/python3, ", script, ", --x, \"{x}\", --depth, \"{depth}\"]"),
           16),
      c.jobs_dir());
  e = c.Watch(e.id());
  ExpectAllCompletedWithBestFirst(c, e, 16, 4);
}

// Model-based search on a real rungd: suggestions come from the controller's job pool, off
// the RPC threads; the searches complete with every trial valid.
TEST(EndToEndTest, GpSearchCompletesWithModelSuggestionsOffTheRpcThreads) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 4);
  std::string script = SourceDir() + "/tests/integration/report_module.py";
  std::string gp = Spec("gp", absl::StrCat("[/usr/bin/python3, ", script, "]"), 16);
  gp = absl::StrReplaceAll(gp,
                           {{"name: random, seed: 11", "name: gp, seed: 11, startup_trials: 4"}});
  auto e = c.Watch(c.Submit(gp, c.jobs_dir()).id());
  ExpectAllCompletedWithBestFirst(c, e, 16, 6);
  // Every model suggestion is in the latency histogram, under its algorithm.
  const std::string metrics = HttpGet(c.metrics_url());
  const size_t at = metrics.find("\nrung_suggestions_total ");
  ASSERT_NE(at, std::string::npos);
  const int suggestions = std::stoi(metrics.substr(at + strlen("\nrung_suggestions_total ")));
  EXPECT_GE(suggestions, 1);
  EXPECT_THAT(metrics,
              HasSubstr(absl::StrCat("rung_suggestion_duration_seconds_count{algorithm=\"gp\"} ",
                                     suggestions)));
  EXPECT_THAT(metrics, HasSubstr(absl::StrCat(
                           "rung_suggestion_duration_seconds_bucket{algorithm=\"gp\",le=\"+Inf\"} ",
                           suggestions)));
}

// Two objectives and a constraint, end to end: the Pareto set holds only trials that kept
// the constraint and that no other trial beats on both objectives.
TEST(EndToEndTest, SeveralObjectivesGiveAParetoSetWithinTheConstraints) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 4);
  std::string script = SourceDir() + "/tests/integration/report_objectives.py";
  auto e = c.Submit(absl::StrCat(R"(
objectives:
  - {metric: loss, goal: minimize}
  - {metric: latency_ms, goal: minimize}
constraints:
  - {metric: mem, max: 16}
search_space:
  x: {type: float, min: 0, max: 1}
algorithm: {name: tpe, seed: 5, startup_trials: 6}
budget: {max_trials: 20, max_concurrent: 4}
trial: {command: [/usr/bin/python3, )",
                                 script, "]}\n"),
                    c.jobs_dir());
  e = c.Watch(e.id());
  ASSERT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  EXPECT_FALSE(e.has_best());
  for (const auto& t : c.Trials(e.id())) {
    const double x = t.params().at("x").float_value();
    EXPECT_EQ(t.infeasible().empty(), x <= 0.8) << t.id() << " x=" << x << ": " << t.infeasible();
  }
  v1::GetBestTrialsRequest req;
  req.set_experiment_id(e.id());
  v1::GetBestTrialsResponse best;
  grpc::ClientContext ctx;
  ASSERT_TRUE(c.stub()->GetBestTrials(&ctx, req, &best).ok());
  // Exactly the feasible trials that no feasible trial beats on both objectives (here every
  // trial completed; loss and latency_ms are the script's formulas).
  auto objectives = [](const v1::Trial& t) {
    const double x = t.params().at("x").float_value();
    return std::pair<double, double>((x - 0.3) * (x - 0.3), 10 * (1 - x));
  };
  std::set<std::string> front;
  const auto all = c.Trials(e.id());
  for (const auto& t : all) {
    if (!t.infeasible().empty()) continue;
    auto [l, m] = objectives(t);
    bool dominated = false;
    for (const auto& u : all) {
      if (!u.infeasible().empty()) continue;
      auto [ul, um] = objectives(u);
      dominated = dominated || (ul <= l && um <= m && (ul < l || um < m));
    }
    if (!dominated) front.insert(t.id());
  }
  std::set<std::string> got;
  double last_loss = -1;
  for (const auto& t : best.trials()) {
    got.insert(t.id());
    ASSERT_EQ(t.results_size(), 2);
    EXPECT_NEAR(t.results(0), objectives(t).first, 1e-12);
    EXPECT_NEAR(t.results(1), objectives(t).second, 1e-12);
    EXPECT_GE(t.results(0), last_loss) << "sorted by the first objective";
    last_loss = t.results(0);
  }
  EXPECT_EQ(got, front);
  EXPECT_GE(front.size(), 2u);
}

TEST(EndToEndTest, FailingTrialsAreRetriedAndExplained) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 2);
  auto e = c.Submit(
      Spec("failing", R"([sh, -c, "echo starting; echo 'ValueError: x was {x}' >&2; exit 3"])", 2),
      c.jobs_dir());
  e = c.Watch(e.id());
  EXPECT_EQ(e.state(), v1::EXPERIMENT_FAILED);
  EXPECT_THAT(e.message(), HasSubstr("all 2 trials failed"));
  for (const auto& t : c.Trials(e.id())) {
    EXPECT_EQ(t.state(), v1::TRIAL_FAILED);
    EXPECT_EQ(t.attempt(), 2);  // max_restarts: 1
    EXPECT_THAT(t.message(), HasSubstr("exited with code 3"));
    EXPECT_THAT(t.message(), HasSubstr("ValueError: x was"));
  }
  // A program that does not exist is a launch failure with the reason.
  auto missing = c.Submit(Spec("missing", "[no-such-trainer-rung]", 1), c.jobs_dir());
  missing = c.Watch(missing.id());
  auto trials = c.Trials(missing.id());
  ASSERT_EQ(trials.size(), 1u);
  EXPECT_THAT(trials[0].message(), HasSubstr("could not start"));
  EXPECT_THAT(trials[0].message(), HasSubstr("no-such-trainer-rung: No such file"));
}

TEST(EndToEndTest, Kill9OfRungdLosesNothing) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 2);
  c.StartWorker("w2", 2);
  std::string script = SourceDir() + "/tests/integration/report_module.py";
  const int kSteps = 10;
  auto e = c.Submit(Spec("crash", absl::StrCat("[/usr/bin/python3, ", script, "]"), 16,
                         absl::StrCat("  env: {STEPS: \"", kSteps, "\", STEP_SECONDS: \"0.1\"}\n")),
                    c.jobs_dir());
  // Wait until some trials are done and others are mid-way, then kill -9 the controller.
  auto mid = c.Watch(e.id(), [](const v1::Experiment& x) { return x.counts().completed() >= 5; });
  ASSERT_GE(mid.counts().completed(), 5);
  ASSERT_LT(mid.counts().completed(), 16);
  int port = c.port();
  c.KillRungd();
  c.StartRungd(port);  // same data folder, same address: the workers reconnect
  e = c.Watch(e.id());
  EXPECT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  auto trials = c.Trials(e.id());
  ASSERT_EQ(trials.size(), 16u);  // exactly its trials
  for (const auto& t : trials) {
    EXPECT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.id() << ": " << t.message();
    EXPECT_EQ(t.failures(), 0) << t.id() << ": " << t.message();
    EXPECT_NEAR(t.result(), Expected(t), 1e-9);
    // Every report the trial made (its own log) is stored, exactly once.
    EXPECT_GE(ExpectEveryReportStoredOnce(c, t, {"w1", "w2"}), static_cast<size_t>(kSteps));
  }
}

}  // namespace
}  // namespace rung::testing

namespace rung::testing {
namespace {

TEST(StopPathTest, CancelStopsCooperativelyThenBySigkill) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 2);
  std::string script = SourceDir() + "/tests/integration/stop_me.py";
  auto e = c.Submit(absl::StrCat(R"(
objective: {metric: loss, goal: minimize}
search_space: {mode: {type: categorical, values: [polite, stubborn]}}
algorithm: {name: grid}
trial: {command: [/usr/bin/python3, )",
                                 script, R"(, "{mode}"]}
)"),
                    c.jobs_dir());
  // Wait until both trials run and have reported (their signal handling is in place).
  std::set<std::string> reported;
  c.WatchEvents(e.id(), [&](const v1::WatchEvent& ev) {
    if (ev.has_report()) reported.insert(ev.report().trial_id());
    return reported.size() == 2;
  });
  ASSERT_EQ(reported.size(), 2u);
  v1::ExperimentRequest req;
  req.set_id(e.id());
  v1::Experiment cancelled;
  grpc::ClientContext ctx;
  ASSERT_TRUE(c.stub()->CancelExperiment(&ctx, req, &cancelled).ok());
  EXPECT_EQ(cancelled.state(), v1::EXPERIMENT_CANCELLED);
  // The watch of a cancelled experiment lasts until its trials have stopped.
  e = c.Watch(e.id());
  EXPECT_EQ(e.state(), v1::EXPERIMENT_CANCELLED);
  EXPECT_EQ(e.counts().stopped(), 2);
  for (const auto& t : c.Trials(e.id())) {
    EXPECT_EQ(t.state(), v1::TRIAL_STOPPED) << t.id();
    EXPECT_EQ(t.stop_reason(), "experiment cancelled");
    std::ifstream pid_file(c.dir().Sub("w1/trials/" + t.id() + "/pid"));
    int pid = 0;
    pid_file >> pid;
    ASSERT_GT(pid, 0);
    EXPECT_NE(kill(pid, 0), 0) << "trial process " << pid << " outlived its stop";
  }
  std::ifstream polite(c.dir().Sub("w1/trials/" + e.id() + "-1/attempt-1/stdout.log"));
  std::string line;
  std::getline(polite, line);
  EXPECT_EQ(line, "rung asked us to stop");
  std::ifstream log(c.dir().Sub("w1.log"));
  std::string worker_log((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_THAT(worker_log, HasSubstr("trial " + e.id() + "-2 ignored SIGTERM; sending SIGKILL"));
}

}  // namespace
}  // namespace rung::testing

namespace rung::testing {
namespace {

TEST(FaultTest, TrialsOfAKilledWorkerRunAgainElsewhere) {
  Cluster c;
  c.StartRungd(0, /*lease_timeout=*/"2s");
  c.StartWorker("doomed", 2);
  std::string script = SourceDir() + "/tests/integration/report_module.py";
  auto e = c.Submit(Spec("fault", absl::StrCat("[/usr/bin/python3, ", script, "]"), 6,
                         "  env: {STEPS: \"20\", STEP_SECONDS: \"0.05\"}\n"),
                    c.jobs_dir());
  // Both trials on the doomed worker have reported: kill it mid-trial.
  std::set<std::string> reported;
  c.WatchEvents(e.id(), [&](const v1::WatchEvent& ev) {
    if (ev.has_report()) reported.insert(ev.report().trial_id());
    return reported.size() == 2;
  });
  c.KillWorker(0);
  c.StartWorker("survivor", 2);
  e = c.Watch(e.id());
  EXPECT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  auto trials = c.Trials(e.id());
  ASSERT_EQ(trials.size(), 6u);
  int requeued = 0;
  for (const auto& t : trials) {
    EXPECT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.id() << ": " << t.message();
    EXPECT_EQ(t.worker_id(), "survivor");
    if (reported.count(t.id())) {
      ++requeued;
      EXPECT_EQ(t.attempt(), 2) << t.id();
      EXPECT_EQ(t.failures(), 1) << t.id();
      EXPECT_THAT(t.message(), ::testing::HasSubstr("lease expired: worker doomed silent for"));
    }
  }
  EXPECT_EQ(requeued, 2);
}

}  // namespace
}  // namespace rung::testing

namespace rung::testing {
namespace {

TEST(EarlyStoppingTest, AshaStopsBadTrialsAndReusesTheirSlots) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 2);
  c.StartWorker("w2", 2);
  std::string script = SourceDir() + "/tests/integration/curve.py";
  auto e = c.Submit(absl::StrCat(R"(
objective: {metric: loss, goal: minimize}
resource: {metric: epoch, min: 1, max: 27}
search_space: {x: {type: float, min: -1, max: 1}}
algorithm: {name: asha, reduction_factor: 3, seed: 4}
budget: {max_trials: 16, max_concurrent: 4}
trial: {command: [/usr/bin/python3, )",
                                 script, R"(]}
)"),
                    c.jobs_dir());
  e = c.Watch(e.id());
  EXPECT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  auto trials = c.Trials(e.id());
  ASSERT_EQ(trials.size(), 16u);
  int stopped = 0, completed = 0, not_reused = 0;
  for (const auto& t : trials) {
    if (t.state() == v1::TRIAL_STOPPED) {
      ++stopped;
      EXPECT_THAT(t.stop_reason(), HasSubstr("is not in the top 1/3"));
      EXPECT_LT(t.resource_reached(), 27) << t.id();
      EXPECT_EQ(t.failures(), 0);
      // Its slot went to a later trial, unless nothing was left to start.
      bool reused = false;
      for (const auto& u : trials) {
        reused |= u.worker_id() == t.worker_id() && u.slots(0) == t.slots(0) &&
                  u.started_unix_ms() >= t.ended_unix_ms() && u.id() != t.id();
      }
      not_reused += !reused;
    } else {
      EXPECT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.id() << ": " << t.message();
      EXPECT_EQ(t.resource_reached(), 27);
      EXPECT_EQ(t.budget(), 27);
      ++completed;
    }
  }
  EXPECT_GE(stopped, 6);     // with eta 3, most of 16 trials cannot stay in the top third
  EXPECT_LE(not_reused, 4);  // only the last trial of each of the 4 slots has no successor
  EXPECT_EQ(e.counts().stopped(), stopped);
  // The best trial trained to max and is the completed one with the lowest loss.
  const v1::Trial* best = nullptr;
  for (const auto& t : trials) {
    if (t.state() == v1::TRIAL_COMPLETED && (!best || t.result() < best->result())) best = &t;
  }
  ASSERT_NE(best, nullptr);
  EXPECT_EQ(e.best_trial_id(), best->id());
  EXPECT_EQ(best->resource_reached(), 27);
}

}  // namespace
}  // namespace rung::testing

namespace rung::testing {
namespace {

TEST(EarlyStoppingTest, PromoteModeResumesPromotedTrialsFromTheirCheckpoints) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 2);
  c.StartWorker("w2", 2);
  std::string script = SourceDir() + "/tests/integration/resume.py";
  auto e = c.Submit(absl::StrCat(R"(
objective: {metric: loss, goal: minimize}
resource: {metric: epoch, min: 1, max: 9}
search_space: {x: {type: float, min: -1, max: 1}}
algorithm: {name: asha, reduction_factor: 3, mode: promote, seed: 8}
budget: {max_trials: 9, max_concurrent: 4}
trial:
  command: [/usr/bin/python3, )",
                                 script, R"(]
  checkpoint_root: ckpt
)"),
                    c.jobs_dir());
  e = c.Watch(e.id());
  EXPECT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  auto trials = c.Trials(e.id());
  ASSERT_EQ(trials.size(), 9u);
  int promoted = 0, to_max = 0;
  for (const auto& t : trials) {
    if (t.state() == v1::TRIAL_COMPLETED) {
      ++to_max;
      EXPECT_EQ(t.resource_reached(), 9);
    } else {
      EXPECT_EQ(t.state(), v1::TRIAL_STOPPED) << t.id() << ": " << t.message();
      EXPECT_THAT(t.stop_reason(), HasSubstr("not promoted past rung"));
    }
    promoted += t.attempt() > 1;
    // Every epoch was trained once, whatever worker each leg ran on: legs resumed.
    std::ifstream log(c.jobs_dir() + "/ckpt/" + e.id() + "/" + t.id() + "/trained.log");
    std::vector<int> epochs;
    int epoch;
    while (log >> epoch) epochs.push_back(epoch);
    ASSERT_FALSE(epochs.empty()) << t.id();
    for (size_t i = 0; i < epochs.size(); ++i)
      EXPECT_EQ(epochs[i], static_cast<int>(i) + 1) << t.id();
    EXPECT_EQ(static_cast<double>(epochs.size()), t.resource_reached()) << t.id();
  }
  // Rung 1 (epoch 1) promotes floor(9/3) = 3 of 9 and rung 3 at least floor(3/3) = 1 of those.
  // Asynchronous ASHA may promote more: a trial promoted while a rung held few results can
  // fall out of its top third later.
  EXPECT_GE(promoted, 3);
  EXPECT_GE(to_max, 1);
  EXPECT_LT(to_max, promoted);
  EXPECT_EQ(e.counts().completed(), to_max);
}

}  // namespace
}  // namespace rung::testing
