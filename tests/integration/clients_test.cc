// The client libraries against a real rungd and rung-worker on loopback: the Python package
// installed with pip into a venv of Debian's /usr/bin/python3 (which has python3-grpcio).
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
}

}  // namespace
}  // namespace rung::testing
