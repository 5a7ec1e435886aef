#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "worker/gpus.h"
#include "worker/report_parse.h"
#include "worker/subprocess.h"
#include "worker/work_dir_lock.h"

namespace rung {
namespace {

using ::testing::HasSubstr;

TEST(ReportParseTest, StdoutLineForm) {
  auto r = ParseReportJson(R"({"step": 3, "loss": 0.41, "acc": 0.9})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->has_step);
  EXPECT_EQ(r->step, 3);
  EXPECT_EQ(r->values, (std::map<std::string, double>{{"acc", 0.9}, {"loss", 0.41}}));
  EXPECT_FALSE(r->final);
}

TEST(ReportParseTest, SocketFormAndFinal) {
  auto r = ParseReportJson(R"({"trial_id": "e1-2", "attempt": 2, "loss": 1.5, "final": true})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->trial_id, "e1-2");
  EXPECT_EQ(r->attempt, 2);
  EXPECT_TRUE(r->final);
  EXPECT_FALSE(r->has_step);
  EXPECT_EQ(r->values.size(), 1u);
}

TEST(ReportParseTest, GarbageRejectedWithTheKey) {
  EXPECT_THAT(std::string(ParseReportJson("not json").status().message()),
              HasSubstr("not a JSON object"));
  EXPECT_THAT(std::string(ParseReportJson(R"({"loss": "low"})").status().message()),
              HasSubstr("'loss' must be a number"));
  EXPECT_THAT(std::string(ParseReportJson(R"({"final": 1})").status().message()),
              HasSubstr("final must be true or false"));
}

TEST(GpusTest, ParsesNvidiaSmiAndFlag) {
  EXPECT_EQ(ParseNvidiaSmi("0\n1\n\n3\nNo devices were found\n"),
            (std::vector<std::string>{"0", "1", "3"}));
  EXPECT_EQ(*ParseGpuList("0, 2"), (std::vector<std::string>{"0", "2"}));
  EXPECT_TRUE(ParseGpuList("none")->empty());
  EXPECT_THAT(std::string(ParseGpuList("0,0").status().message()), HasSubstr("appears twice"));
}

class SubprocessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &s, nullptr);
  }
  SpawnOptions Sh(const std::string& script) {
    SpawnOptions o;
    o.argv = {"sh", "-c", script};
    o.env = {{"PATH", "/usr/bin:/bin"}, {"GREETING", "hi"}};
    o.workdir = dir_.path();
    o.stderr_path = dir_.Sub("err.log");
    return o;
  }
  int WaitExit(Subprocess* p) {
    int status = 0;
    while (!p->Poll(&status)) {
      sigset_t s;
      sigemptyset(&s);
      sigaddset(&s, SIGCHLD);
      timespec ts{0, 50'000'000};
      sigtimedwait(&s, nullptr, &ts);  // wakes when a child changes state
    }
    return status;
  }
  std::string ReadAll(int fd) {
    std::string out;
    char buf[256];
    while (true) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n > 0) {
        out.append(buf, n);
      } else if (n == 0) {
        return out;
      } else {
        pollfd p{fd, POLLIN, 0};
        poll(&p, 1, 1000);
      }
    }
  }
  testing::TempDir dir_;
};

TEST_F(SubprocessTest, EnvWorkdirStdoutStderrAndExitCode) {
  auto p = Subprocess::Spawn(Sh("echo $GREETING from $(pwd); echo oops >&2; exit 3"));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(ReadAll((*p)->stdout_fd()), "hi from " + dir_.path() + "\n");
  int status = WaitExit(p->get());
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3);
  std::ifstream err(dir_.Sub("err.log"));
  std::string line;
  std::getline(err, line);
  EXPECT_EQ(line, "oops");
}

TEST_F(SubprocessTest, MissingProgramIsAClearError) {
  SpawnOptions o = Sh("");
  o.argv = {"no-such-program-rung"};
  auto p = Subprocess::Spawn(o);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("no-such-program-rung: No such file"));
}

TEST_F(SubprocessTest, SignalReachesTheWholeGroup) {
  // The shell starts a grandchild; SIGTERM to the group must end both.
  auto p = Subprocess::Spawn(Sh("sleep 300 & echo $!; wait"));
  ASSERT_TRUE(p.ok());
  std::string first;
  char c;
  pollfd pf{(*p)->stdout_fd(), POLLIN, 0};
  while (first.empty() || first.back() != '\n') {
    poll(&pf, 1, 5000);
    if (read((*p)->stdout_fd(), &c, 1) == 1) first += c;
  }
  pid_t grandchild = std::stoi(first);
  (*p)->SignalGroup(SIGTERM);
  int status = WaitExit(p->get());
  EXPECT_TRUE(WIFSIGNALED(status) || WIFEXITED(status));
  // The grandchild ends too: its pidfd turns readable when it exits (ESRCH: already gone).
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, grandchild, 0));
  if (pidfd >= 0) {
    pollfd pf2{pidfd, POLLIN, 0};
    EXPECT_EQ(poll(&pf2, 1, 30000), 1) << "grandchild " << grandchild << " survived SIGTERM";
    close(pidfd);
  } else {
    EXPECT_EQ(errno, ESRCH);
  }
}

TEST_F(SubprocessTest, DestructorKillsARunningChild) {
  pid_t pid;
  {
    auto p = Subprocess::Spawn(Sh("exec sleep 300"));
    ASSERT_TRUE(p.ok());
    pid = (*p)->pid();
  }
  EXPECT_NE(kill(pid, 0), 0);  // reaped and gone
}

TEST(WorkDirLockTest, OneHolderAtATimeAndTheRefusalNamesFolderAndPid) {
  testing::TempDir dir;
  auto first = WorkDirLock::Acquire(dir.path());
  ASSERT_TRUE(first.ok()) << first.status();
  // flock locks belong to the open file, so a second open in this process is refused too.
  auto second = WorkDirLock::Acquire(dir.path());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(second.status().message(),
            absl::StrCat("--work-dir ", dir.path(), " is in use by another rung-worker (pid ",
                         getpid(), "); give each worker its own --work-dir and --name"));
  first->reset();
  EXPECT_TRUE(WorkDirLock::Acquire(dir.path()).ok());
}

TEST(WorkDirLockTest, ChildProcessesDoNotKeepTheLock) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &s, nullptr);
  testing::TempDir dir;
  auto lock = WorkDirLock::Acquire(dir.path());
  ASSERT_TRUE(lock.ok()) << lock.status();
  SpawnOptions o;
  o.argv = {"sleep", "300"};
  o.env = {{"PATH", "/usr/bin:/bin"}};
  auto child = Subprocess::Spawn(o);  // a trial that outlives its worker's lock
  ASSERT_TRUE(child.ok()) << child.status();
  lock->reset();
  EXPECT_TRUE(WorkDirLock::Acquire(dir.path()).ok());
}

}  // namespace
}  // namespace rung
