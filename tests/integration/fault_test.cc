// The crash harness: a multi-worker TPE + ASHA experiment with real trial processes while rungd is
// killed with SIGKILL at random moments and workers are killed and restarted. At the end:
// exactly max_trials trials; no attempt launched twice and none beyond what the restarts
// allow; every report a trial made present exactly once (a killed worker may take its
// unsent reports with it, never invent one); and the searcher's journal replays
// identically through a fresh searcher, so the crashes changed no decision.
//
// CI runs the defaults (3 kills of rungd, 1 of a worker). The soak (bench/soak.sh) sets
// RUNG_FAULT_KILLS, RUNG_FAULT_TRIALS and RUNG_FAULT_SEED.
#include <signal.h>

#include <fstream>
#include <map>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "rung/v1/admin_service.grpc.pb.h"
#include "tests/integration/cluster.h"
#include "tests/integration/proxy.h"

namespace rung::testing {
namespace {

using ::testing::HasSubstr;

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

// Each line of a JSON-lines ledger as a Struct; none when the file is missing.
std::vector<google::protobuf::Struct> Ledger(const std::string& path) {
  std::vector<google::protobuf::Struct> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    google::protobuf::Struct s;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(line, &s).ok()) << path << ": " << line;
    out.push_back(std::move(s));
  }
  return out;
}

int Field(const google::protobuf::Struct& s, const char* name) {
  return static_cast<int>(s.fields().at(name).number_value());
}

// What the workers' ledgers say trial `t` launched and reported, against what rungd stored:
// no attempt launched twice or past the last; every report stored exactly once, all of them
// unless the worker died under them, none invented. Adds the attempts and points it checked.
void CheckLaunchesAndReports(Cluster& c, const v1::Trial& t, const std::vector<std::string>& names,
                             const std::set<pid_t>& killed_worker_pids, size_t* attempts_launched,
                             size_t* points) {
  // Launches, from every worker's folder: no attempt twice, none past the last.
  std::map<int, int> launches;     // attempt -> times launched
  std::set<int> lost_with_worker;  // attempts whose worker was killed under them
  std::map<std::pair<int, int>, double> made;
  for (const auto& n : names) {
    const std::string dir = c.dir().Sub(absl::StrCat(n, "/trials/", t.id()));
    for (const auto& l : Ledger(dir + "/launches.jsonl")) {
      ++launches[Field(l, "attempt")];
      if (killed_worker_pids.count(Field(l, "worker_pid")))
        lost_with_worker.insert(Field(l, "attempt"));
    }
    for (const auto& m : Ledger(dir + "/made.jsonl")) {
      made[{Field(m, "attempt"), Field(m, "epoch")}] = m.fields().at("loss").number_value();
    }
  }
  for (const auto& [attempt, n] : launches) {
    EXPECT_EQ(n, 1) << t.id() << " attempt " << attempt << " was launched " << n << " times";
    EXPECT_LE(attempt, t.attempt()) << t.id();
  }
  *attempts_launched += launches.size();
  // Reports: stored exactly once each, all of them unless the worker died under them.
  std::map<std::pair<int, int>, double> stored;
  for (const auto& r : c.Metrics(t.id())) {
    auto key = std::make_pair(r.attempt(), static_cast<int>(r.values().at("epoch")));
    EXPECT_EQ(stored.count(key), 0u)
        << t.id() << " duplicate report " << key.first << "/" << key.second;
    stored[key] = r.values().at("loss");
  }
  for (const auto& [key, loss] : made) {
    auto it = stored.find(key);
    if (it == stored.end()) {
      EXPECT_TRUE(lost_with_worker.count(key.first))
          << t.id() << " attempt " << key.first << " epoch " << key.second
          << " was reported and is missing";
      continue;
    }
    EXPECT_EQ(it->second, loss) << t.id();
    ++*points;
  }
  for (const auto& [key, loss] : stored) {
    EXPECT_TRUE(made.count(key)) << t.id() << " stored a report its trial never made";
  }
}

TEST(FaultTest, KillsOfRungdAndWorkersLoseNothingAndChangeNoDecision) {
  const int kills = EnvInt("RUNG_FAULT_KILLS", 3);
  const int max_trials = EnvInt("RUNG_FAULT_TRIALS", 30);
  const int seed = EnvInt("RUNG_FAULT_SEED", 1);
  const int worker_kills = std::max(1, kills / 5);
  const int max_restarts = 2 * worker_kills + 1;
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::printf("fault test: seed %d, %d trials, %d kills of rungd, %d of a worker\n", seed,
              max_trials, kills, worker_kills);

  Cluster c;
  c.StartRungd(0, /*lease_timeout=*/"10s");
  const std::vector<std::string> names = {"w1", "w2", "w3"};
  std::vector<size_t> slot_of;  // Cluster's index of each name's current process
  for (const auto& n : names) {
    c.StartWorker(n, 2);
    slot_of.push_back(slot_of.size());
  }
  std::set<pid_t> killed_worker_pids;
  const std::string script = SourceDir() + "/tests/integration/crash_trial.py";
  auto e = c.Submit(absl::StrCat(R"(
name: crash-harness
objective: {metric: loss, goal: minimize}
resource: {metric: epoch, min: 1, max: 27}
search_space: {x: {type: float, min: -1, max: 1}}
algorithm: {name: tpe, startup_trials: 6, seed: )",
                                 seed, R"(, early_stopping: {rule: asha, reduction_factor: 3}}
budget: {max_trials: )",
                                 max_trials, R"(, max_concurrent: 6}
trial:
  command: [/usr/bin/python3, )",
                                 script, R"(]
  max_restarts: )",
                                 max_restarts, R"(
)"),
                    c.jobs_dir());
  ASSERT_FALSE(e.id().empty());

  // The moments: after a random number of metric reports (as the watch stream shows them),
  // kill -9 rungd and start it again on the same port and data folder; now and then also
  // kill -9 a worker (its trial processes die with it) and start it again under its name.
  std::set<int> with_worker;  // which kills of rungd also kill a worker
  while (static_cast<int>(with_worker.size()) < std::min(worker_kills, kills)) {
    with_worker.insert(std::uniform_int_distribution<int>(0, kills - 1)(rng));
  }
  int rungd_kills = 0, workers_killed = 0;
  for (bool ended = false; !ended;) {
    // Spread over the run: a trial makes about 4 reports before ASHA decides on it, so
    // 3 * max_trials / kills reports at most between kills leaves room for every kill.
    const int wait_for =
        std::uniform_int_distribution<int>(3, std::max(3, 3 * max_trials / kills))(rng);
    int seen = 0;
    bool kill_now = false;
    c.WatchEvents(e.id(), [&](const v1::WatchEvent& ev) {
      if (ev.has_experiment() && (ev.experiment().state() == v1::EXPERIMENT_COMPLETED ||
                                  ev.experiment().state() == v1::EXPERIMENT_FAILED)) {
        ended = true;
      }
      if (ev.has_report()) ++seen;
      kill_now = !ended && rungd_kills < kills && seen >= wait_for;
      return ended || kill_now;
    });
    if (ended) break;
    ASSERT_TRUE(kill_now) << "the watch stream ended while rungd was up; see "
                          << c.dir().Sub("rungd.log");
    const int port = c.port();
    c.KillRungd();
    if (with_worker.count(rungd_kills)) {
      const size_t w = std::uniform_int_distribution<size_t>(0, names.size() - 1)(rng);
      killed_worker_pids.insert(c.WorkerPid(slot_of[w]));
      c.KillWorker(slot_of[w]);
      ++workers_killed;
      c.StartRungd(port);
      c.StartWorker(names[w], 2);
      slot_of[w] = c.workers_started() - 1;
    } else {
      c.StartRungd(port);
    }
    ++rungd_kills;
  }
  e = c.Watch(e.id());  // until every trial process has gone
  EXPECT_EQ(rungd_kills, kills);
  EXPECT_EQ(workers_killed, worker_kills);
  EXPECT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();

  // Exactly max_trials trials, each ended for good, none failed.
  auto trials = c.Trials(e.id());
  ASSERT_EQ(static_cast<int>(trials.size()), max_trials);
  size_t points = 0, attempts_launched = 0;
  int stopped = 0;
  for (const auto& t : trials) {
    EXPECT_TRUE(t.state() == v1::TRIAL_COMPLETED || t.state() == v1::TRIAL_STOPPED)
        << t.id() << ": " << v1::TrialState_Name(t.state()) << " " << t.message();
    stopped += t.state() == v1::TRIAL_STOPPED;
    EXPECT_LE(t.failures(), max_restarts) << t.id();
    CheckLaunchesAndReports(c, t, names, killed_worker_pids, &attempts_launched, &points);
  }
  EXPECT_GT(stopped, 0) << "ASHA stopped nothing: the harness did not exercise early stopping";

  // The searcher decided exactly what an uninterrupted searcher decides from the same events:
  // the journal kept since the older of its last two checkpoints replays identically, through
  // the checkpoints, to the live searcher's state (restarts restored it from a checkpoint).
  auto admin =
      v1::AdminService::NewStub(grpc::CreateChannel(c.addr(), grpc::InsecureChannelCredentials()));
  v1::ReplaySearchRequest req;
  req.set_experiment_id(e.id());
  v1::ReplaySearchResponse replay;
  grpc::ClientContext ctx;
  ASSERT_TRUE(admin->ReplaySearch(&ctx, req, &replay).ok());
  EXPECT_TRUE(replay.identical()) << replay.mismatch();
  EXPECT_GT(replay.entries(), 0);
  std::printf(
      "fault test: survived %d kills of rungd and %d of a worker; %d trials (%d stopped early), "
      "%zu attempts launched, %zu metric points checked, %lld searcher decisions replayed "
      "identically\n",
      rungd_kills, workers_killed, max_trials, stopped, attempts_launched, points,
      static_cast<long long>(replay.entries()));
}

// A worker cut off from rungd longer than its lease: its trial goes to another worker (attempt
// 2); when the network heals the worker is told to kill its stale copy, and nothing that copy
// reported during the cut counts.
TEST(FaultTest, APartitionedWorkerKillsItsStaleCopyWhenTheNetworkHeals) {
  Cluster c;
  c.StartRungd(0, /*lease_timeout=*/"2s");
  Proxy proxy(c.port());
  c.StartWorker("cut-off", 1, proxy.addr());
  auto e =
      c.Submit(ReportModuleSpec("partition", 1, 150, "0.04", "  max_restarts: 1\n"), c.jobs_dir());
  const std::string id = e.id() + "-1";
  c.WatchEvents(e.id(), [](const v1::WatchEvent& ev) { return ev.has_report(); });
  proxy.Cut();
  c.StartWorker("survivor", 1);
  // The lease runs out; the trial starts again on the survivor.
  c.WatchEvents(e.id(), [&](const v1::WatchEvent& ev) {
    return ev.has_trial() && ev.trial().worker_id() == "survivor" &&
           ev.trial().state() == v1::TRIAL_RUNNING;
  });
  proxy.Heal();
  EXPECT_THAT(WaitForFileLine(c.dir().Sub("cut-off.log"), "to others; killing our copy"),
              HasSubstr("trial " + id + " attempt 1"));
  e = c.Watch(e.id());
  EXPECT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  auto trials = c.Trials(e.id());
  ASSERT_EQ(trials.size(), 1u);
  const v1::Trial& t = trials[0];
  EXPECT_EQ(t.attempt(), 2);
  EXPECT_EQ(t.worker_id(), "survivor");
  EXPECT_THAT(t.message(), HasSubstr("lease expired: worker cut-off silent for"));
  // Attempt 1's reports: only those that arrived before the cut; attempt 2's: all.
  std::map<std::pair<int, int>, double> made, stored;
  for (const char* w : {"cut-off", "survivor"}) {
    for (const auto& m : Ledger(c.dir().Sub(absl::StrCat(w, "/trials/", id, "/made.jsonl")))) {
      made[{Field(m, "attempt"), Field(m, "step")}] = m.fields().at("loss").number_value();
    }
  }
  int first = 0, second = 0;
  for (const auto& r : c.Metrics(id)) {
    auto key = std::make_pair(r.attempt(), static_cast<int>(r.step()));
    ASSERT_TRUE(made.count(key)) << "attempt " << key.first << " step " << key.second;
    EXPECT_EQ(made[key], r.values().at("loss"));
    (r.attempt() == 1 ? first : second) += 1;
  }
  int made_first = 0;
  for (const auto& [key, loss] : made) made_first += key.first == 1;
  EXPECT_GT(first, 0);
  EXPECT_LT(first, made_first) << "reports the stale copy made during the cut were counted";
  EXPECT_EQ(second, 150);
}

// rungd stays away longer than the worker's --orphan-timeout: the worker stops its trial
// rather than run it for nobody, and when rungd is back the trial runs again, not counted as
// a failure of its own.
TEST(FaultTest, TrialsStopPastTheOrphanTimeoutAndRunAgainWhenRungdReturns) {
  Cluster c;
  c.StartRungd();
  c.set_worker_flags({"--orphan-timeout", "1s"});
  c.StartWorker("w1", 1);
  auto e = c.Submit(ReportModuleSpec("orphan", 1, 40, "0.05"), c.jobs_dir());
  c.WatchEvents(e.id(), [](const v1::WatchEvent& ev) { return ev.has_report(); });
  const int port = c.port();
  c.KillRungd();
  EXPECT_THAT(WaitForFileLine(c.dir().Sub("w1.log"), "(--orphan-timeout): stopping trial"),
              HasSubstr(e.id() + "-1"));
  EXPECT_THAT(WaitForFileLine(c.dir().Sub("w1.log"), "attempt 1 exited"), HasSubstr(e.id() + "-1"));
  c.StartRungd(port);
  e = c.Watch(e.id());
  EXPECT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  auto t = c.Trials(e.id()).at(0);
  EXPECT_EQ(t.attempt(), 2);
  EXPECT_EQ(t.failures(), 0) << t.message();
  EXPECT_THAT(t.message(), HasSubstr("unreachable longer than the worker's --orphan-timeout"));
}

TEST(FaultTest, RungdStopsPromptlyOnSigtermAndSaysHowLong) {
  // The quickstart's cleanup, systemd's stop and Kubernetes' termination all wait on rungd.
  // With a worker's stream and a watch open, SIGTERM ends both at once (rather than waiting
  // on them until a deadline cuts them off), and the log says what it ended and how long it took.
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 1);
  ASSERT_FALSE(WaitForFileLine(c.dir().Sub("w1.log"), "registered with").empty());
  const v1::Experiment e = c.Submit(R"(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
budget: {max_trials: 1}
trial: {command: [sleep, "60"]}
)",
                                    c.dir().path());
  ASSERT_FALSE(
      WaitForFileLine(c.dir().Sub("w1.log"), "trial " + e.id() + "-1 attempt 1 started").empty());
  SpawnOptions watch;
  watch.argv = {BinDir() + "/client/rung", "--addr", c.addr(), "watch", e.id()};
  watch.env = CurrentEnvironment();
  watch.stderr_path = c.dir().Sub("watch.log");
  auto watcher = Subprocess::Spawn(watch);
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  ASSERT_FALSE(
      WaitForLine(watcher->get(), e.id()).empty());  // its first progress line: the watch is open

  ASSERT_EQ(kill(c.rungd()->pid(), SIGTERM), 0);
  int status = 0;
  ASSERT_TRUE(AwaitExit(c.rungd(), &status, 30000)) << "rungd still runs 30 s after SIGTERM";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  const std::string stopped = WaitForFileLine(c.rungd_log(), "stopped in ", 0);
  EXPECT_THAT(stopped, HasSubstr(" ms; it ended worker streams: 1, watches: 1, waiting asks: 0"));
  // The worker heard why its stream ended (and keeps its trial running, to reconnect).
  EXPECT_FALSE(WaitForFileLine(c.dir().Sub("w1.log"), "rungd is shutting down").empty());
}

}  // namespace
}  // namespace rung::testing
