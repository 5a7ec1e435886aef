// Checkpoints that travel through rungd, and model hopper parallelism (execution: hopper),
// with real rungd and rung-worker processes on loopback and scikit-learn trials.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"
#include "tests/integration/proxy.h"

namespace rung::testing {
namespace {

using ::testing::HasSubstr;

// The value of a metric line "NAME{LABELS} VALUE" (or "NAME VALUE") of a Prometheus scrape.
double MetricValue(const std::string& text, const std::string& name_and_labels) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, name_and_labels + " ")) {
      return std::stod(std::string(line.substr(name_and_labels.size() + 1)));
    }
  }
  return -1;
}

std::string HopperSpec(int partitions, int epochs, int configs, bool warm) {
  return absl::StrCat(R"(
name: hopper-test
objective: {metric: accuracy, goal: maximize}
execution: {mode: hopper, partitions: )",
                      partitions, ", epochs: ", epochs, R"(}
search_space:
  lr: {type: float, min: 0.005, max: 0.05, log: true}
  alpha: {type: float, min: 0.00001, max: 0.001, log: true}
  hidden: {type: categorical, values: ["16", "32"]}
algorithm: {name: random, seed: 11}
budget: {max_trials: )",
                      configs, R"(}
trial:
  command: [/usr/bin/python3, )",
                      SourceDir(), R"(/config/examples/hopper_train.py]
  max_restarts: 3
  reuse_process: )",
                      warm ? "true" : "false", "\n");
}

// The ledger's invariants: every unit a trial trained is one hop; per epoch a trial trained
// on every partition exactly once; no two units of any trials overlapped on one partition,
// and a trial never trained two units at once.
void ExpectLedgerInvariants(const std::vector<v1::Trial>& trials, int partitions, int epochs) {
  std::map<int, std::vector<std::pair<int64_t, int64_t>>> by_partition;
  for (const v1::Trial& t : trials) {
    ASSERT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.id() << ": " << t.message();
    EXPECT_EQ(t.epoch(), epochs) << t.id();
    std::map<int, std::vector<int>> done;  // epoch -> partitions, in order
    int64_t last_end = 0;
    for (const v1::Hop& h : t.hops()) {
      EXPECT_GT(h.ended_unix_ms(), 0) << t.id();
      EXPECT_GE(h.started_unix_ms(), last_end) << t.id() << ": two units at once";
      last_end = h.ended_unix_ms();
      if (!h.done()) continue;
      done[h.epoch()].push_back(h.partition());
      by_partition[h.partition()].push_back({h.started_unix_ms(), h.ended_unix_ms()});
    }
    ASSERT_EQ(done.size(), static_cast<size_t>(epochs)) << t.id();
    for (auto& [epoch, ps] : done) {
      std::vector<int> sorted = ps;
      std::sort(sorted.begin(), sorted.end());
      std::vector<int> all(partitions);
      for (int p = 0; p < partitions; ++p) all[p] = p;
      EXPECT_EQ(sorted, all) << t.id() << " epoch " << epoch << ": " << absl::StrJoin(ps, ",");
    }
  }
  for (auto& [p, spans] : by_partition) {
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i) {
      EXPECT_GE(spans[i].first, spans[i - 1].second) << "partition " << p << " trained two units";
    }
  }
}

// One model, one partition, one epoch: a single unit of `script`, whose checkpoint travels.
std::string OneUnitSpec(const std::string& script) {
  return absl::StrCat(R"(
objective: {metric: loss, goal: minimize}
execution: {mode: hopper, partitions: 1, epochs: 1}
search_space: {x: {type: float, min: -1, max: 1}}
budget: {max_trials: 1}
trial: {command: [/usr/bin/python3, )",
                      script, "]}\n");
}

// The partitions a trial trained on, in order (its done hops).
std::vector<int> Order(const v1::Trial& t) {
  std::vector<int> order;
  for (const v1::Hop& h : t.hops()) {
    if (h.done()) order.push_back(h.partition());
  }
  return order;
}

// Training the trial's model sequentially over its recorded order, in one process.
double Replay(const v1::Trial& t, int partitions) {
  std::vector<std::string> params;
  for (const auto& [k, v] : t.params()) {
    params.push_back(absl::StrCat("\"", k, "\": ",
                                  v.has_float_value()
                                      ? absl::StrFormat("%.17g", v.float_value())
                                      : absl::StrCat("\"", v.categorical_value(), "\"")));
  }
  const std::string spec =
      absl::StrCat("{\"params\": {", absl::StrJoin(params, ", "), "}, \"partitions\": ", partitions,
                   ", \"order\": [", absl::StrJoin(Order(t), ", "), "]}");
  CliRun r = Sh(absl::StrCat("/usr/bin/python3 ", SourceDir(),
                             "/config/examples/hopper_train.py --replay '", spec, "'"));
  EXPECT_EQ(r.code, 0) << r.out;
  const size_t at = r.out.find("\"accuracy\": ");
  if (at == std::string::npos) return -1;
  return std::stod(r.out.substr(at + 12));
}

TEST(HopperTest, EightModelsHopOverFourPartitionsHeldByTwoWorkers) {
  Cluster c;
  c.StartRungd();
  c.set_worker_flags({"--partitions", "0,1"});
  c.StartWorker("w1", 2);
  c.set_worker_flags({"--partitions", "2,3"});
  c.StartWorker("w2", 2);
  auto e = c.Submit(HopperSpec(4, 3, 8, /*warm=*/true), c.jobs_dir());
  e = c.Watch(e.id());
  ASSERT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  auto trials = c.Trials(e.id());
  ASSERT_EQ(trials.size(), 8u);
  ExpectLedgerInvariants(trials, 4, 3);
  for (const v1::Trial& t : trials) {
    // Partitions 0 and 1 are only on w1, 2 and 3 only on w2: each epoch's model state crossed
    // between them, through rungd.
    std::set<std::string> workers;
    for (const v1::Hop& h : t.hops()) workers.insert(h.worker_id());
    EXPECT_EQ(workers, (std::set<std::string>{"w1", "w2"})) << t.id();
    EXPECT_GT(t.checkpoint().bytes(), 0) << t.id();
  }
  const std::string metrics = HttpGet(c.metrics_url());
  EXPECT_GT(MetricValue(metrics, "rung_checkpoint_bytes_moved_total{direction=\"download\"}"), 0);
  EXPECT_GT(MetricValue(metrics, "rung_checkpoint_bytes_moved_total{direction=\"upload\"}"), 0);
  // A model that hopped is the model trained in one process over the same order.
  for (int i : {0, 3, 7}) {
    EXPECT_NEAR(Replay(trials[i], 4), trials[i].result(), 1e-9) << trials[i].id();
  }
  // The CLI shows where each model went.
  CliRun r = Rung(c, absl::StrCat("trials ", e.id()));
  EXPECT_THAT(r.out, HasSubstr("epoch 3 done, partitions "));
  r = Rung(c, absl::StrCat("show ", trials[0].id()));
  EXPECT_THAT(r.out, HasSubstr("epochs      3 done"));
  EXPECT_THAT(r.out, HasSubstr("@w2"));
  r = Rung(c, absl::StrCat("export ", e.id()));
  EXPECT_THAT(r.out, HasSubstr("trial,state,attempt,worker,result,epoch,partitions,"));
}

TEST(HopperTest, AshaStopsModelsAtEpochEndsAndTheyLeaveTheRotation) {
  Cluster c;
  c.StartRungd();
  c.set_worker_flags({"--partitions", "0,1"});
  c.StartWorker("w1", 2);
  std::string spec = HopperSpec(2, 4, 6, /*warm=*/true);
  spec.replace(spec.find("algorithm: {name: random, seed: 11}"),
               strlen("algorithm: {name: random, seed: 11}"),
               "algorithm: {name: asha, reduction_factor: 2, seed: 5}");
  auto e = c.Submit(spec, c.jobs_dir());
  e = c.Watch(e.id());
  ASSERT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  int stopped = 0;
  for (const v1::Trial& t : c.Trials(e.id())) {
    int done = 0;
    for (const v1::Hop& h : t.hops()) done += h.done();
    if (t.state() == v1::TRIAL_STOPPED) {
      ++stopped;
      EXPECT_THAT(t.stop_reason(), HasSubstr("rung"));
      // Stopped on an epoch's validation: it trained fewer than 4 epochs, and no unit after.
      EXPECT_LT(done, 8) << t.id();
      EXPECT_TRUE(t.hops(t.hops_size() - 1).validated()) << t.id();
      EXPECT_EQ(t.hops(t.hops_size() - 1).ended_unix_ms() > 0, true) << t.id();
    } else {
      EXPECT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.id() << ": " << t.message();
      EXPECT_EQ(done, 8) << t.id();
    }
  }
  EXPECT_GE(stopped, 1);
  EXPECT_EQ(e.counts().stopped(), stopped);
}

TEST(HopperTest, KillingAWorkerAndRungdLosesNoUnitAndTrainsNoModelTwice) {
  Cluster c;
  c.StartRungd(0, "3s");
  c.set_worker_flags({"--partitions", "0,1"});
  c.StartWorker("w1", 1);
  c.set_worker_flags({"--partitions", "0,1,2,3"});
  c.StartWorker("w2", 2);
  auto e = c.Submit(HopperSpec(4, 2, 4, /*warm=*/false), c.jobs_dir());
  // Once some units are done, kill -9 a worker in the middle of things, then rungd.
  int done = 0;
  c.WatchEvents(e.id(), [&](const v1::WatchEvent& ev) {
    if (ev.has_trial()) done = std::max(done, ev.trial().attempt());
    return done >= 3;
  });
  c.KillWorker(0);
  c.KillRungd();
  c.StartRungd(c.port(), "3s");
  c.set_worker_flags({"--partitions", "0,1"});
  c.StartWorker("w3", 1);
  e = c.Watch(e.id());
  ASSERT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  auto trials = c.Trials(e.id());
  ASSERT_EQ(trials.size(), 4u);
  ExpectLedgerInvariants(trials, 4, 2);
  for (const v1::Trial& t : trials) {
    EXPECT_NEAR(Replay(t, 4), t.result(), 1e-9) << t.id();
  }
}

TEST(CheckpointTest, PromoteModeResumesOnAnyWorkerFromTheCheckpointInRungd) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 2);
  c.StartWorker("w2", 2);
  auto e = c.Submit(absl::StrCat(R"(
objective: {metric: loss, goal: minimize}
resource: {metric: epoch, min: 1, max: 9}
search_space: {x: {type: float, min: -1, max: 1}}
algorithm: {name: asha, reduction_factor: 3, mode: promote, seed: 8}
budget: {max_trials: 9, max_concurrent: 4}
trial:
  command: [/usr/bin/python3, )",
                                 SourceDir(), R"(/tests/integration/resume.py]
)"),
                    c.jobs_dir());
  e = c.Watch(e.id());
  ASSERT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  int promoted = 0;
  for (const v1::Trial& t : c.Trials(e.id())) {
    promoted += t.attempt() > 1;
    // Every epoch was trained once, whichever worker each leg ran on: the last worker's
    // folder holds the whole log, carried from leg to leg.
    std::ifstream log(absl::StrCat(c.dir().path(), "/",
                                   t.worker_id().empty() ? "w1" : t.worker_id(), "/trials/", t.id(),
                                   "/checkpoint/trained.log"));
    std::vector<int> epochs;
    for (int epoch; log >> epoch;) epochs.push_back(epoch);
    if (t.state() == v1::TRIAL_COMPLETED) {
      ASSERT_EQ(epochs.size(), 9u) << t.id();
      for (size_t i = 0; i < epochs.size(); ++i) EXPECT_EQ(epochs[i], static_cast<int>(i) + 1);
    }
  }
  EXPECT_GE(promoted, 3);
  // Once the trials have ended only the best one's checkpoint is kept (keep_checkpoints: 1).
  std::string metrics;
  for (int i = 0; i < 200; ++i) {
    metrics = HttpGet(c.metrics_url());
    if (MetricValue(metrics, "rung_checkpoints_stored") == 1) break;
    WaitForFileLine(c.rungd_log(), "never appears", 100);
  }
  EXPECT_EQ(MetricValue(metrics, "rung_checkpoints_stored"), 1) << metrics;
  // The kept one is the best trial's, and `rung checkpoint` brings it back whole.
  const std::string best = c.dir().Sub("best");
  CliRun r = Rung(c, absl::StrCat("checkpoint ", e.best_trial_id(), " ", best));
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream log(best + "/trained.log");
  std::vector<int> epochs;
  for (int epoch; log >> epoch;) epochs.push_back(epoch);
  EXPECT_EQ(epochs, (std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9}));
  r = Rung(c, absl::StrCat("checkpoint ", e.best_trial_id(), " ", best));
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("is not empty"));
  const std::string other = e.best_trial_id() == e.id() + "-1" ? e.id() + "-2" : e.id() + "-1";
  r = Rung(c, absl::StrCat("checkpoint ", other, " ", c.dir().Sub("other")));
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("best completed trials (trial.keep_checkpoints) once they end; " +
                               other + " is not one of them"));
}

TEST(CheckpointTest, AnUploadCutMidwayResumesWhereItStopped) {
  Cluster c;
  c.StartRungd();
  Proxy proxy(c.port());
  c.set_worker_flags({"--partitions", "0"});
  c.StartWorker("w1", 1, proxy.addr());
  const std::string script = c.dir().Sub("big.py");
  std::ofstream(script) << "import os, rung\n"
                           "with open(os.path.join(rung.checkpoint_dir(), 'w'), 'wb') as f:\n"
                           "    f.write(os.urandom(1 << 20) * 200)\n"
                           "rung.report(loss=1.0)\n";
  auto e = c.Submit(OneUnitSpec(script), c.jobs_dir());
  // Once rungd holds part of the upload, the network breaks; the worker's next try resumes.
  const std::string part = c.dir().Sub("data/checkpoints/" + e.id() + "/" + e.id() + "-1/1.part");
  for (int i = 0; i < 60000 && !std::filesystem::exists(part); ++i) {
    WaitForFileLine(c.rungd_log(), "never appears", 1);
  }
  ASSERT_TRUE(std::filesystem::exists(part));
  proxy.Cut();
  proxy.Heal();
  e = c.Watch(e.id());
  ASSERT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  auto trials = c.Trials(e.id());
  const int64_t size = trials[0].checkpoint().bytes();
  EXPECT_GT(size, 200 << 20);
  // The call that completed the upload carried less than the whole archive.
  const std::string metrics = HttpGet(c.metrics_url());
  const double moved =
      MetricValue(metrics, "rung_checkpoint_bytes_moved_total{direction=\"upload\"}");
  EXPECT_GT(moved, 0);
  EXPECT_LT(moved, static_cast<double>(size)) << "the upload started again from the beginning";
}

TEST(CheckpointTest, ACheckpointOverTheLimitFailsTheTrialSayingWhy) {
  Cluster c;
  c.set_rungd_flags({"--checkpoint-max-bytes", "1KiB"});
  c.StartRungd();
  c.set_worker_flags({"--partitions", "0"});
  c.StartWorker("w1", 1);
  const std::string script = c.dir().Sub("big.py");
  std::ofstream(script) << "import os\n"
                           "open(os.path.join(os.environ['RUNG_CHECKPOINT_DIR'], 'w'), 'wb')"
                           ".write(b'x' * 4096)\n";
  auto e = c.Submit(OneUnitSpec(script), c.jobs_dir());
  e = c.Watch(e.id());
  EXPECT_EQ(e.state(), v1::EXPERIMENT_FAILED);
  auto trials = c.Trials(e.id());
  ASSERT_EQ(trials.size(), 1u);
  EXPECT_EQ(trials[0].state(), v1::TRIAL_FAILED);
  EXPECT_THAT(trials[0].message(), HasSubstr("--checkpoint-max-bytes"));
  EXPECT_THAT(trials[0].message(), HasSubstr("4 KiB"));
}

}  // namespace
}  // namespace rung::testing
