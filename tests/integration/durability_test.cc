// Durability on a real rungd: a full disk (a small tmpfs in a private mount namespace) is
// refused with a clear error while reads and running trials carry on, and rungd recovers by
// itself when space returns; a backup taken while serving restores as a data folder.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"

namespace rung::testing {
namespace {

using ::testing::HasSubstr;

// Makes rungd's data folder a tmpfs of `size` (e.g. "256m") that only rungd's mount
// namespace sees (root in a new user namespace when not root); the test reaches it through
// /proc/PID/root. False when this machine refuses the namespace.
bool UseSmallDisk(Cluster* c, const std::string& size, std::string* data) {
  *data = c->dir().Sub("small-disk");
  std::filesystem::create_directories(*data);
  std::vector<std::string> prefix = {"/usr/bin/unshare"};
  if (geteuid() != 0) {
    prefix.push_back("--user");
    prefix.push_back("--map-root-user");
  }
  for (const std::string& a : {std::string("--mount"), std::string("--propagation"),
                               std::string("private"), std::string("/bin/sh"), std::string("-c"),
                               "mount -t tmpfs -o size=" + size + " tmpfs \"$0\" && exec \"$@\""}) {
    prefix.push_back(a);
  }
  prefix.push_back(*data);
  if (system(absl::StrCat(absl::StrJoin(prefix, " ",
                                        [](std::string* out, const std::string& a) {
                                          absl::StrAppend(out, "'", a, "'");
                                        }),
                          " /bin/true")
                 .c_str()) != 0) {
    return false;
  }
  c->set_rungd_prefix(prefix);
  c->set_data_dir(*data);
  return true;
}

// Writes `path` until the disk is full (or `bytes` when not 0); ENOSPC expected in the first case.
void Fill(const std::string& path, size_t bytes = 0) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0) << path << ": " << strerror(errno);
  std::vector<char> block(1 << 20, 'x');
  size_t written = 0;
  while ((bytes == 0 || written < bytes) && write(fd, block.data(), block.size()) > 0) {
    written += block.size();
  }
  if (bytes == 0) {
    EXPECT_EQ(errno, ENOSPC);
  }
  close(fd);
}

TEST(DurabilityTest, AFullDiskIsRefusedClearlyAndRungdRecoversWhenSpaceReturns) {
  Cluster c;
  std::string data;
  if (!UseSmallDisk(&c, "256m", &data)) {
    GTEST_SKIP() << "cannot mount a tmpfs in a private mount namespace here (unshare refused)";
  }
  c.StartRungd(0, "30s");
  c.StartWorker("w1", 2);
  auto e = c.Submit(ReportModuleSpec("full-disk", 2, 60, "0.05"), c.jobs_dir());
  std::set<std::string> reported;
  c.WatchEvents(e.id(), [&](const v1::WatchEvent& ev) {
    if (ev.has_report()) reported.insert(ev.report().trial_id());
    return reported.size() == 2;
  });
  ASSERT_EQ(reported.size(), 2u);

  // Fill the disk.
  const std::string filler = absl::StrCat("/proc/", c.rungd()->pid(), "/root", data, "/filler");
  Fill(filler);
  // The trials' next reports need a new page of the WAL, and fail.
  ASSERT_THAT(WaitForFileLine(c.rungd_log(), "not accepting changes"),
              HasSubstr("No space left on device"));
  // A change is refused, naming the problem; reads still work.
  CliRun submit = Rung(c, absl::StrCat("submit ", SourceDir(), "/config/examples/quickstart.yaml"));
  EXPECT_EQ(submit.code, 1) << submit.out;
  EXPECT_THAT(submit.out, HasSubstr("rungd is not accepting changes"));
  EXPECT_THAT(submit.out, HasSubstr("No space left on device"));
  EXPECT_THAT(submit.out, ::testing::Not(HasSubstr("cannot reach")));
  CliRun show = Rung(c, "show " + e.id());
  EXPECT_EQ(show.code, 0) << show.out;
  EXPECT_THAT(show.out, HasSubstr("full-disk"));
  // rungd has tried to recover and found the disk still full; the trials still run.
  ASSERT_THAT(WaitForFileLine(c.rungd_log(), "still cannot write"),
              HasSubstr("rungd resumes once "));
  for (const std::string& id : reported) {
    const std::string started =
        WaitForFileLine(c.dir().Sub("w1.log"), "trial " + id + " attempt 1 started, pid ");
    const int pid = std::atoi(started.substr(started.rfind(' ') + 1).c_str());
    ASSERT_GT(pid, 0) << started;
    EXPECT_EQ(kill(pid, 0), 0) << "trial " << id << " died while the disk was full";
  }

  // Space returns: rungd takes changes again by itself, and nothing was lost.
  ASSERT_EQ(unlink(filler.c_str()), 0) << strerror(errno);
  ASSERT_THAT(WaitForFileLine(c.rungd_log(), "work again"), HasSubstr("accepts changes"));
  e = c.Watch(e.id());
  EXPECT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  EXPECT_EQ(e.counts().completed(), 2);
  for (const auto& t : c.Trials(e.id())) {
    EXPECT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.id() << ": " << t.message();
    ExpectEveryReportStoredOnce(c, t, {"w1"});
  }
  CliRun again = Rung(c, absl::StrCat("submit ", SourceDir(), "/config/examples/quickstart.yaml"));
  EXPECT_EQ(again.code, 0) << again.out;
  CliRun ls = Rung(c, "ls");
  EXPECT_EQ(std::count(ls.out.begin(), ls.out.end(), '\n'), 3)
      << ls.out;  // header, e1, e2: the refused one never existed
}

TEST(DurabilityTest, OnASmallVolumeRungdSaysWhatItNeedsAndResumesWithLittleRoomFree) {
  // A 64 MiB volume: rungd warns at start-up that it is smaller than it needs. Filled, rungd
  // says in its error how much room it waits for, a figure relative to the volume and to what
  // RocksDB must write to open again (not a fixed 16 MiB); 4 MiB freed is enough.
  Cluster c;
  std::string data;
  if (!UseSmallDisk(&c, "64m", &data)) {
    GTEST_SKIP() << "cannot mount a tmpfs in a private mount namespace here (unshare refused)";
  }
  c.StartRungd(0, "30s");
  EXPECT_THAT(WaitForFileLine(c.rungd_log(), "rungd needs at least", 0),
              HasSubstr("holds 64.0 MiB; rungd needs at least 256.0 MiB"));
  c.StartWorker("w1", 2);
  auto e = c.Submit(ReportModuleSpec("small-disk", 2, 60, "0.05"), c.jobs_dir());
  std::set<std::string> reported;
  c.WatchEvents(e.id(), [&](const v1::WatchEvent& ev) {
    if (ev.has_report()) reported.insert(ev.report().trial_id());
    return reported.size() == 2;
  });
  const std::string root = absl::StrCat("/proc/", c.rungd()->pid(), "/root", data);
  Fill(root + "/spare",
       4 << 20);  // given back later: 4 MiB, less than the 16 MiB rungd once waited for
  Fill(root + "/filler");
  const std::string refused = WaitForFileLine(c.rungd_log(), "not accepting changes");
  ASSERT_THAT(refused, HasSubstr("No space left on device"));
  EXPECT_THAT(refused, ::testing::ContainsRegex(
                           "rungd resumes by itself once [0-9.]+ MiB are free on its data "
                           "folder's volume \\([0-9.]+ MiB now\\)"));
  EXPECT_THAT(
      WaitForFileLine(c.rungd_log(), "still cannot write"),
      ::testing::ContainsRegex("rungd resumes once [0-9.]+ MiB are free .* 64.0 MiB volume"));
  ASSERT_EQ(unlink((root + "/spare").c_str()), 0) << strerror(errno);
  ASSERT_THAT(WaitForFileLine(c.rungd_log(), "work again"), HasSubstr("accepts changes"));
  ASSERT_EQ(unlink((root + "/filler").c_str()), 0) << strerror(errno);
  e = c.Watch(e.id());
  EXPECT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  for (const auto& t : c.Trials(e.id())) ExpectEveryReportStoredOnce(c, t, {"w1"});
}

TEST(DurabilityTest, ABackupTakenWhileServingRestoresAsADataFolder) {
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 2);
  auto e = c.Submit(ReportModuleSpec("before-backup", 4, 5, "0.01"), c.jobs_dir());
  e = c.Watch(e.id());
  ASSERT_EQ(e.state(), v1::EXPERIMENT_COMPLETED) << e.message();
  // Taken while a second experiment runs.
  auto running = c.Submit(ReportModuleSpec("running", 2, 400, "0.01"), c.jobs_dir());
  c.WatchEvents(running.id(), [](const v1::WatchEvent& ev) { return ev.has_report(); });
  const std::string backup = c.dir().Sub("backup");
  CliRun b = Rung(c, "admin backup " + backup);
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_THAT(b.out, HasSubstr("backup in " + backup));
  CliRun twice = Rung(c, "admin backup " + backup);
  EXPECT_EQ(twice.code, 1);
  EXPECT_THAT(twice.out, HasSubstr(backup + " already exists"));
  auto after = c.Submit(ReportModuleSpec("after-backup", 1, 1, "0"), c.jobs_dir());

  // Restore: stop rungd, start it on the backup.
  const auto trials = c.Trials(e.id());
  const int port = c.port();
  c.KillRungd();
  c.set_data_dir(backup);
  c.StartRungd(port);
  auto restored = c.Trials(e.id());
  ASSERT_EQ(restored.size(), trials.size());
  for (size_t i = 0; i < trials.size(); ++i) {
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(restored[i], trials[i]))
        << trials[i].id();
    EXPECT_EQ(c.Metrics(trials[i].id()).size(), 5u);
  }
  CliRun ls = Rung(c, "ls");
  EXPECT_THAT(ls.out, HasSubstr("before-backup"));
  EXPECT_THAT(ls.out, HasSubstr("running"));
  EXPECT_THAT(ls.out, ::testing::Not(HasSubstr("after-backup")));
  CliRun replay = Rung(c, "admin replay " + e.id());
  EXPECT_EQ(replay.code, 0) << replay.out;
  EXPECT_THAT(replay.out, HasSubstr("replay identically"));
  // The experiment that was running at the backup carries on from it.
  running = c.Watch(running.id());
  EXPECT_EQ(running.state(), v1::EXPERIMENT_COMPLETED) << running.message();
}

}  // namespace
}  // namespace rung::testing
