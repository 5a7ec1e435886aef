// The client libraries against a real rungd and rung-worker on loopback: the Python package
// installed with pip into a venv of Debian's /usr/bin/python3 (which has python3-grpcio), and
// the C++ library installed with CMake and used by a project outside the tree.
#include <fstream>

#include "gtest/gtest.h"
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
  CliRun pip = Sh(absl::StrCat(venv, "/bin/pip install --no-index --no-cache-dir ", SourceDir(), "/client/python"));
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
}

TEST(CppClientTest, AnOutsideProjectFindsTheInstalledLibraryAndRunsAskAndTell) {
  Cluster c;
  c.StartRungd();
  const std::string prefix = c.dir().Sub("prefix"), build = c.dir().Sub("example");
  CliRun install = Sh(absl::StrCat("cmake --install ", BinDir(), " --component dev --prefix ", prefix));
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
  EXPECT_NE(run.out.find("experiment e1 completed after 20 trials; best e1-"), std::string::npos) << run.out;
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

}  // namespace
}  // namespace rung::testing
