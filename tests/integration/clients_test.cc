// The client libraries against a real rungd and rung-worker on loopback: the Python package
// installed with pip into a venv of Debian's /usr/bin/python3 (which has python3-grpcio), and
// the C++ library installed with CMake and used by a project outside the tree.
#include <chrono>
#include <fstream>
#include <iostream>
#include <set>
#include <thread>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "rung/client.h"
#include "tests/integration/cluster.h"

namespace rung::testing {
namespace {

TEST(PythonClientTest, PipInstallsItOfflineAndItDrivesARealRungd) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 2);
  const std::string venv = c.dir().Sub("venv");
  CliRun made = Sh("/usr/bin/python3 -m venv --system-site-packages " + venv);
  ASSERT_EQ(made.code, 0) << made.out;
  // --no-index: nothing may come from the network, build tools included.
  CliRun pip = Sh(absl::StrCat(venv, "/bin/pip install --no-index --no-cache-dir ", SourceDir(),
                               "/client/python"));
  ASSERT_EQ(pip.code, 0) << pip.out;
  EXPECT_NE(pip.out.find("Successfully installed rung"), std::string::npos) << pip.out;

  const std::string spec = c.jobs_dir() + "/worker-run.yaml";
  std::ofstream(spec) << ReportModuleSpec("worker-run", 2, 3, "0");
  CliRun run = Sh(absl::StrCat("cd ", c.dir().path(), " && ", venv, "/bin/python ", SourceDir(),
                               "/tests/integration/python_client.py ", c.addr(), " ", spec));
  EXPECT_EQ(run.code, 0) << run.out;
  EXPECT_NE(run.out.find("python client: OK"), std::string::npos) << run.out;
  // What the client did is what rungd holds: the CLI sees the same experiments.
  CliRun ls = Rung(c, "trials e1");
  EXPECT_NE(ls.out.find("client:laptop"), std::string::npos) << ls.out;
  // Ask and tell goes through the searcher's journal like any experiment: replaying it
  // reaches the same decisions.
  CliRun replay = Rung(c, "admin replay e1");
  EXPECT_EQ(replay.code, 0) << replay.out;
  // The study the script ran is the one rung ablation shows.
  CliRun table = Rung(c, "ablation e4");
  EXPECT_NE(table.out.find("py-ablation"), std::string::npos) << table.out;

  // A call retried across a restart of rungd on the same port gets through once it serves.
  const std::string flags = c.dir().Sub("flags");
  std::filesystem::create_directories(flags);
  std::ofstream(flags + "/connected").close();
  CliRun reconnect;
  std::thread script([&] {
    reconnect = Sh(absl::StrCat(venv, "/bin/python ", SourceDir(),
                                "/tests/integration/python_reconnect.py ", c.addr(), " ", flags));
  });
  ASSERT_NE(WaitForFileLine(flags + "/connected", "connected"), "");
  const int port = c.port();
  c.KillRungd();
  std::ofstream(flags + "/killed").close();
  std::this_thread::sleep_for(std::chrono::seconds(3));  // long enough for gRPC's backoff to grow
  c.StartRungd(port);
  const double serving =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  script.join();
  EXPECT_EQ(reconnect.code, 0) << reconnect.out;
  EXPECT_NE(reconnect.out.find("python reconnect: OK"), std::string::npos) << reconnect.out;
  const size_t at = reconnect.out.find("through at ");
  ASSERT_NE(at, std::string::npos) << reconnect.out;
  // A figure for the record, not a check: the time it took depends on the machine's load.
  std::cout << absl::StrFormat(
      "reconnect: the Python client got through %.3f s after rungd served again\n",
      std::stod(reconnect.out.substr(at + 11)) - serving);
}

TEST(CppClientTest, AnOutsideProjectFindsTheInstalledLibraryAndRunsAskAndTell) {
  Cluster c;
  c.StartRungd();
  const std::string prefix = c.dir().Sub("prefix"), build = c.dir().Sub("example");
  CliRun install =
      Sh(absl::StrCat("cmake --install ", BinDir(), " --component dev --prefix ", prefix));
  ASSERT_EQ(install.code, 0) << install.out;
  // The example's own CMakeLists: find_package(rung) and rung::client, nothing from the tree.
  std::string flags;
#ifdef RUNG_TEST_SANITIZE
  flags = " -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined";  // the library is instrumented
#endif
  CliRun configure = Sh(absl::StrCat("cmake -S ", SourceDir(), "/client/cpp/example -B ", build,
                                     " -DCMAKE_PREFIX_PATH=", prefix, flags));
  ASSERT_EQ(configure.code, 0) << configure.out;
  CliRun compile = Sh(absl::StrCat("cmake --build ", build));
  ASSERT_EQ(compile.code, 0) << compile.out;
  CliRun run = Sh(absl::StrCat(build, "/ask_tell ", c.addr()));
  ASSERT_EQ(run.code, 0) << run.out;
  EXPECT_NE(run.out.find("experiment e1 completed after 20 trials; best e1-"), std::string::npos)
      << run.out;
  // rungd holds what the program did: 20 trials completed by its client, each with 3 reports.
  auto trials = c.Trials("e1");
  ASSERT_EQ(trials.size(), 20u);
  for (const auto& t : trials) {
    EXPECT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.id();
    EXPECT_EQ(t.reports(), 3) << t.id();
    EXPECT_FALSE(t.client_id().empty()) << t.id();
  }
  // A wrong address is a clear error, not a hang: the library gives up after its retry time.
  CliRun down = Sh(absl::StrCat(build, "/ask_tell 127.0.0.1:1"));
  EXPECT_EQ(down.code, 1);
  EXPECT_NE(down.out.find("cannot reach rungd at 127.0.0.1:1"), std::string::npos) << down.out;
}

TEST(CppClientTest, TheInstalledTrialsLoopRunsTrialAfterTrialInOneProcess) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 1);
  const std::string prefix = c.dir().Sub("prefix"), build = c.dir().Sub("example");
  ASSERT_EQ(
      Sh(absl::StrCat("cmake --install ", BinDir(), " --component dev --prefix ", prefix)).code, 0);
  std::string flags;
#ifdef RUNG_TEST_SANITIZE
  flags = " -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined";
#endif
  ASSERT_EQ(Sh(absl::StrCat("cmake -S ", SourceDir(), "/client/cpp/example -B ", build,
                            " -DCMAKE_PREFIX_PATH=", prefix, flags))
                .code,
            0);
  CliRun compile = Sh(absl::StrCat("cmake --build ", build, " --target warm_trial"));
  ASSERT_EQ(compile.code, 0) << compile.out;
  // By hand: one trial with the defaults.
  CliRun alone = Sh(build + "/warm_trial");
  EXPECT_EQ(alone.code, 0) << alone.out;
  EXPECT_NE(alone.out.find("trial (by hand) done"), std::string::npos) << alone.out;
  auto e = c.Submit(absl::StrCat(R"(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
algorithm: {name: random, seed: 2}
budget: {max_trials: 4, max_concurrent: 1}
trial: {command: [)",
                                 build, R"(/warm_trial], reuse_process: true}
)"),
                    c.jobs_dir());
  e = c.Watch(e.id());
  ASSERT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  std::set<int> pids;
  for (const auto& t : c.Trials(e.id())) {
    EXPECT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.id() << ": " << t.message();
    EXPECT_EQ(t.reports(), 3) << t.id();
    EXPECT_EQ(t.last_metrics().at("pid"), t.pid()) << t.id();
    pids.insert(t.pid());
  }
  EXPECT_EQ(pids.size(), 1u);
}

// The C++ client linked into this test, against a real rungd.
class CppClientCallsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    c_.StartRungd();
    ClientOptions o;
    o.address = c_.addr();
    auto client = Client::Connect(o);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  Cluster c_;
  std::unique_ptr<Client> client_;
};

TEST_F(CppClientCallsTest, AnAblationStudyRunByTheClientIsRankedByRungd) {
  auto study = client_->CreateExperiment(R"(
name: cpp-ablation
kind: ablation
execution: external
objective: {metric: loss, goal: minimize}
base: {params: {lr: 0.01}}
components: {features: [area, floors], layers: [conv2]}
repeats: 3
)");
  ASSERT_TRUE(study.ok()) << study.status();
  EXPECT_EQ(study->kind, "ablation");
  EXPECT_EQ(study->algorithm.name, "ablation");
  const std::map<std::string, double> cost = {{"area", 1.0}, {"floors", 0.0}, {"conv2", 0.3}};
  int runs = 0;
  for (;;) {
    auto trials = client_->Suggest(study->id, 4);
    ASSERT_TRUE(trials.ok()) << trials.status();
    if (trials->empty()) break;
    for (const Trial& t : *trials) {
      double loss = 0.5 + 0.01 * ((t.index * 7) % 5);  // a spread between runs, for the t-test
      for (const auto& [part, c] : cost) {
        if (t.ablation.find("\"" + part + "\"]") != std::string::npos)
          loss += c;  // "dropped": ["area"]
      }
      ASSERT_TRUE(client_->Complete(t.id, {{"loss", loss}}).ok());
      ++runs;
    }
  }
  EXPECT_EQ(runs, 12);  // (the base and 3 components) x 3 repeats
  auto a = client_->Ablation(study->id);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->experiment_id, study->id);
  EXPECT_EQ(a->name, "cpp-ablation");
  EXPECT_EQ(a->state, "completed");
  EXPECT_EQ(a->objective, "loss");
  EXPECT_EQ(a->goal, "minimize");
  EXPECT_EQ(a->repeats, 3);
  EXPECT_DOUBLE_EQ(a->alpha, 0.05);
  ASSERT_EQ(a->variants.size(), 4u);
  const std::vector<std::pair<std::string, int>> ranked = {
      {"base", 0}, {"area", 1}, {"conv2", 2}, {"floors", 3}};
  for (size_t i = 0; i < ranked.size(); ++i) {
    const AblationVariant& v = a->variants[i];
    EXPECT_EQ(v.name, ranked[i].first);
    EXPECT_EQ(v.rank, ranked[i].second) << v.name;
    EXPECT_EQ(v.runs, 3) << v.name;
    ASSERT_TRUE(v.mean.has_value()) << v.name;
  }
  EXPECT_EQ(a->variants[0].kind, "base");
  EXPECT_FALSE(a->variants[0].delta.has_value());
  EXPECT_EQ(a->variants[1].kind, "feature");
  EXPECT_EQ(a->variants[1].dropped, std::vector<std::string>{"area"});
  EXPECT_NEAR(*a->variants[1].delta, 1.0, 0.05);
  EXPECT_GT(*a->variants[1].harm, 0);
  EXPECT_EQ(a->variants[1].test, "paired t");
  EXPECT_EQ(a->variants[2].kind, "layer");
  EXPECT_NEAR(*a->variants[2].delta, 0.3, 0.05);
  EXPECT_NE(a->Json().find("\"name\":\"area\""), std::string::npos) << a->Json();
  // A search has no ablation results.
  auto search = client_->CreateExperiment(R"(
execution: external
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
budget: {max_trials: 1}
)");
  ASSERT_TRUE(search.ok()) << search.status();
  auto none = client_->Ablation(search->id);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(none.status().message().find("is a search, not an ablation study"), std::string::npos)
      << none.status();
}

TEST_F(CppClientCallsTest, ASpecOverTheSizeLimitIsRefusedBeforeItIsSent) {
  const std::string spec =
      "objective: {metric: loss, goal: minimize}\n# " + std::string(Client::kMaxSpecBytes, 'x');
  auto e = client_->CreateExperiment(spec);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e.status().message(),
            absl::StrCat("spec: ", spec.size(), " bytes of YAML; at most 1048576"));
  EXPECT_FALSE(IsUnreachable(e.status()));
  auto listed = client_->ListExperiments();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_TRUE(listed->empty());
  EXPECT_EQ(HttpGet(c_.metrics_url()).find("ExperimentService.CreateExperiment"),
            std::string::npos);
}

TEST_F(CppClientCallsTest, ARetriedCallGetsThroughWhenRungdComesBackOnItsPort) {
  auto before = client_->ListExperiments();
  ASSERT_TRUE(before.ok()) << before.status();  // connected
  const int port = c_.port();
  c_.KillRungd();
  absl::StatusOr<std::vector<Experiment>> after;
  std::chrono::system_clock::time_point through;
  std::thread caller([&] {
    after = client_->ListExperiments();  // rungd is down: retried until it is back
    through = std::chrono::system_clock::now();
  });
  std::this_thread::sleep_for(std::chrono::seconds(3));  // long enough for gRPC's backoff to grow
  c_.StartRungd(port);
  const auto serving = std::chrono::system_clock::now();
  caller.join();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(after->empty());
  // A figure for the record, not a check: the time it took depends on the machine's load.
  std::cout << absl::StrFormat(
      "reconnect: the C++ client got through %.3f s after rungd served again\n",
      std::chrono::duration<double>(through - serving).count());
  // Without retries, an unreachable rungd is an error at once, and says so.
  ClientOptions once;
  once.address = "127.0.0.1:1";
  once.retry_seconds = 0;
  auto down = Client::Connect(once);
  ASSERT_TRUE(down.ok());
  auto refused = (*down)->ListExperiments();
  EXPECT_TRUE(IsUnreachable(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("cannot reach rungd at 127.0.0.1:1 ("),
            std::string::npos)
      << refused.status();
}

}  // namespace
}  // namespace rung::testing
