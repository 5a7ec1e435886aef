// Distributed trials with real workers on loopback: two ranks on two rung-workers join with
// gloo (Debian's python3-torch) and all-reduce; each rank sees torchrun's variables; killing one
// rank, or the worker that holds it, ends and retries the whole attempt; and the DDP example
// runs by hand, under torchrun, in a search and in an ablation study.
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"

namespace rung::testing {
namespace {

using ::testing::HasSubstr;

std::string RankSpec(const std::string& name, int max_trials, int max_restarts,
                     const std::string& env) {
  return absl::StrCat(R"(
name: )",
                      name, R"(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
algorithm: {name: random, seed: 2}
budget: {max_trials: )",
                      max_trials, R"(, max_concurrent: 1}
resources: {ranks: 2}
trial:
  command: [/usr/bin/python3, )",
                      SourceDir(), R"(/tests/integration/rank_trial.py]
  max_restarts: )",
                      max_restarts, R"(
  env: {)",
                      env, "}\n");
}

// What rank_trial.py wrote about itself: its variables and pid.
std::map<std::string, std::string> RankFile(const Cluster& c, const std::string& worker,
                                            const v1::Trial& t, int attempt, int rank) {
  std::ifstream in(c.dir().Sub(
      absl::StrCat(worker, "/trials/", t.id(), "/attempt-", attempt, "/rank-", rank, ".json")));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(text, &s).ok()) << worker << " " << text;
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : s.fields()) {
    out[k] = v.has_number_value() ? absl::StrCat(static_cast<int64_t>(v.number_value()))
                                  : v.string_value();
  }
  return out;
}

// Waits for rank 0's report of the all-reduce (HOLD=1: the attempt then holds).
void AwaitReduced(Cluster& c, const std::string& id) {
  bool seen = false;
  c.WatchEvents(id, [&](const v1::WatchEvent& ev) {
    seen = ev.has_report() && ev.report().values().count("reduced") > 0;
    return seen;
  });
  ASSERT_TRUE(seen) << "the ranks never all-reduced; see " << c.dir().path();
}

TEST(RanksTest, TwoRanksOnTwoWorkersAllReduceAndEachSeesItsVariables) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 1);
  c.StartWorker("w2", 1);
  auto e = c.Submit(RankSpec("ranks", 2, 0, ""), c.jobs_dir());
  e = c.Watch(e.id());
  ASSERT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message() << "; see " << c.dir().path();
  for (const v1::Trial& t : c.Trials(e.id())) {
    ASSERT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.id() << ": " << t.message();
    ASSERT_EQ(t.placements_size(), 2);
    EXPECT_NE(t.placements(0).worker_id(), t.placements(1).worker_id());
    EXPECT_FALSE(t.master_addr().empty());     // rank 0's worker's (this host's) address
    EXPECT_EQ(t.last_metrics().at("sum"), 3);  // ranks 0 and 1 gave 1 + 2
    EXPECT_EQ(t.last_metrics().at("world"), 2);
    std::vector<std::string> tf;
    for (int rank = 0; rank < 2; ++rank) {
      auto v = RankFile(c, t.placements(rank).worker_id(), t, 1, rank);
      EXPECT_EQ(v["RANK"], absl::StrCat(rank));
      EXPECT_EQ(v["WORLD_SIZE"], "2");
      EXPECT_EQ(v["LOCAL_RANK"], "0");
      EXPECT_EQ(v["LOCAL_WORLD_SIZE"], "1");
      EXPECT_EQ(v["NODE_RANK"], absl::StrCat(rank));
      EXPECT_EQ(v["MASTER_ADDR"], t.master_addr());
      EXPECT_EQ(v["MASTER_PORT"], absl::StrCat(t.master_port()));
      EXPECT_EQ(v["CUDA_VISIBLE_DEVICES"], "");
      EXPECT_EQ(v["RUNG_TRIAL_ID"], t.id());
      EXPECT_EQ(v["RUNG_WORKER"], t.placements(rank).worker_id());
      EXPECT_THAT(v["TF_CONFIG"], HasSubstr(absl::StrCat("\"index\": ", rank)));
      EXPECT_THAT(v["TF_CONFIG"],
                  HasSubstr(absl::StrCat("\"", t.master_addr(), ":", t.master_port() + 1, "\", \"",
                                         t.master_addr(), ":", t.master_port() + 2, "\"")));
    }
  }
}

// The pid of `worker`'s process for attempt 1 of `t`, from what the rank wrote.
pid_t RankPid(const Cluster& c, const std::string& worker, const v1::Trial& t, int rank) {
  int64_t pid = 0;
  EXPECT_TRUE(absl::SimpleAtoi(RankFile(c, worker, t, 1, rank)["pid"], &pid));
  return static_cast<pid_t>(pid);
}

TEST(RanksTest, KillingOneRankEndsAndRetriesTheWholeAttempt) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 1);
  c.StartWorker("w2", 1);
  auto e = c.Submit(RankSpec("kill-a-rank", 1, 1, "HOLD: \"1\""), c.jobs_dir());
  AwaitReduced(c, e.id());
  v1::Trial t = c.Trials(e.id()).at(0);
  ASSERT_EQ(t.placements_size(), 2);
  const std::string w0 = t.placements(0).worker_id(), w1 = t.placements(1).worker_id();
  const pid_t rank0 = RankPid(c, w0, t, 0);
  ASSERT_EQ(kill(RankPid(c, w1, t, 1), SIGKILL), 0);
  e = c.Watch(e.id());
  ASSERT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  t = c.Trials(e.id()).at(0);
  EXPECT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.message();
  EXPECT_EQ(t.attempt(), 2);
  EXPECT_EQ(t.failures(), 1);  // the attempt counts once, not once per rank
  EXPECT_THAT(t.message(), HasSubstr(absl::StrCat("rank 1 (worker ", w1, ") killed by SIGKILL")));
  EXPECT_EQ(t.last_metrics().at("sum"), 3);
  // Rank 0 of the first attempt did not wait in its collective: its worker ended it.
  EXPECT_FALSE(WaitForFileLine(c.dir().Sub(w0 + ".log"),
                               absl::StrCat("trial ", t.id(), " attempt 1 exited"), 5000)
                   .empty());
  EXPECT_NE(kill(rank0, 0), 0);
}

TEST(RanksTest, KillingTheWorkerOfOneRankRetriesTheWholeAttemptAfterItsLease) {
  Cluster c;
  c.StartRungd(0, "3s");
  c.StartWorker("w1", 1);
  c.StartWorker("w2", 1);
  auto e = c.Submit(RankSpec("kill-a-worker", 1, 1, "HOLD: \"1\""), c.jobs_dir());
  AwaitReduced(c, e.id());
  v1::Trial t = c.Trials(e.id()).at(0);
  const std::string lost = t.placements(1).worker_id(), kept = t.placements(0).worker_id();
  c.KillWorker(lost == "w1" ? 0 : 1);  // kill -9: its rank goes with it
  // After the lease the attempt ends everywhere; a fresh worker makes room for the retry.
  ASSERT_FALSE(WaitForFileLine(c.dir().Sub(kept + ".log"),
                               absl::StrCat("trial ", t.id(), " attempt 1 exited"), 30000)
                   .empty());
  c.StartWorker("w3", 1);
  e = c.Watch(e.id());
  ASSERT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  t = c.Trials(e.id()).at(0);
  EXPECT_EQ(t.attempt(), 2);
  EXPECT_THAT(t.message(), HasSubstr(absl::StrCat("lease expired: worker ", lost, " silent")));
  EXPECT_EQ(t.last_metrics().at("sum"), 3);
  EXPECT_NE(t.placements(0).worker_id(), lost);
  EXPECT_NE(t.placements(1).worker_id(), lost);
}

TEST(RanksTest, AKilledRungdFindsTheTrialWholeWhenItsWorkersComeBack) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 1);
  c.StartWorker("w2", 1);
  const std::string go = c.dir().Sub("go");
  auto e = c.Submit(RankSpec("rungd-restart", 1, 1, absl::StrCat("HOLD: \"1\", GO_FILE: ", go)),
                    c.jobs_dir());
  AwaitReduced(c, e.id());
  const int port = c.port();
  c.KillRungd();  // kill -9 while both ranks run
  c.StartRungd(port);
  for (const char* w : {"w1", "w2"}) {
    ASSERT_FALSE(
        WaitForFileLine(c.dir().Sub(absl::StrCat(w, ".log")), "1 trials known", 30000).empty())
        << w << " did not register again with its rank";
  }
  v1::Trial t = c.Trials(e.id()).at(0);
  EXPECT_EQ(t.state(), v1::TRIAL_RUNNING);
  EXPECT_EQ(t.attempt(), 1);  // carried on, not retried, and not half of it
  std::ofstream(go) << "go\n";
  e = c.Watch(e.id());
  ASSERT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  t = c.Trials(e.id()).at(0);
  EXPECT_EQ(t.attempt(), 1);
  EXPECT_EQ(t.failures(), 0);
  EXPECT_EQ(t.last_metrics().at("sum"), 3);
}

}  // namespace
}  // namespace rung::testing
