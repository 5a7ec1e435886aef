// config/examples/ddp_train.py, unchanged, the four ways the README shows: by hand, as two
// local ranks under torch.distributed.run, in a search of 2-rank trials across two workers
// (config/examples/ddp.yaml), and in an ablation study (ddp_ablation.yaml). On CPU with gloo
// and Debian's python3-torch.
#include <stdlib.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"

namespace rung::testing {
namespace {

using ::testing::HasSubstr;

std::string Examples() { return SourceDir() + "/config/examples"; }

// In every run each rank all-reduces rank + 1 and reports the sum (RUNG_DDP_CHECK).
std::string InExamples(const std::string& command) {
  return absl::StrCat("cd ", Examples(), " && PYTHONPATH=", SourceDir(),
                      "/client/python RUNG_DDP_CHECK=1 ", command);
}

TEST(DdpExampleTest, ByHandAndUnderTorchrun) {
  CliRun alone = Sh(InExamples("/usr/bin/python3 ddp_train.py"));
  ASSERT_EQ(alone.code, 0) << alone.out;
  EXPECT_THAT(alone.out, HasSubstr("world_size 1"));
  // Debian's torch 1.13 on Python 3.11: torchrun's default log redirection fails in to_map
  // before any rank starts; --redirects 1 --tee 1 avoids that code.
  CliRun two = Sh(InExamples(
      "/usr/bin/python3 -m torch.distributed.run --nproc_per_node 2 --redirects 1 --tee 1 "
      "ddp_train.py"));
  ASSERT_EQ(two.code, 0) << two.out;
  EXPECT_THAT(two.out, HasSubstr("world_size 2"));
}

TEST(DdpExampleTest, ASearchOfTwoRankTrialsAcrossTwoWorkersAndAnAblationStudy) {
  setenv("RUNG_DDP_CHECK", "1", 1);  // the workers pass it on to every rank
  Cluster c;
  c.StartRungd();
  c.StartWorker("w1", 1);
  c.StartWorker("w2", 1);
  CliRun submit = Rung(c, absl::StrCat("submit ", Examples(), "/ddp.yaml"));
  ASSERT_EQ(submit.code, 0) << submit.out;
  CliRun watch = Rung(c, "watch e1");
  ASSERT_EQ(watch.code, 0) << watch.out;
  int completed = 0;
  for (const v1::Trial& t : c.Trials("e1")) {
    ASSERT_TRUE(t.state() == v1::TRIAL_COMPLETED || t.state() == v1::TRIAL_STOPPED)
        << t.id() << ": " << t.message();
    ASSERT_EQ(t.placements_size(), 2) << t.id();
    EXPECT_NE(t.placements(0).worker_id(), t.placements(1).worker_id()) << t.id();
    EXPECT_EQ(t.last_metrics().at("world_size"), 2) << t.id();
    EXPECT_EQ(t.last_metrics().at("allreduce_sum"), 3) << t.id();
    completed += t.state() == v1::TRIAL_COMPLETED;
  }
  EXPECT_GE(completed, 1);
  CliRun best = Rung(c, "best e1");
  EXPECT_EQ(best.code, 0) << best.out;

  submit = Rung(c, absl::StrCat("submit ", Examples(), "/ddp_ablation.yaml"));
  ASSERT_EQ(submit.code, 0) << submit.out;
  watch = Rung(c, "watch e2");
  ASSERT_EQ(watch.code, 0) << watch.out;
  auto trials = c.Trials("e2");
  ASSERT_EQ(trials.size(), 6u);  // (base + hidden2 + dropout) x 2 repeats
  for (const v1::Trial& t : trials) {
    EXPECT_EQ(t.state(), v1::TRIAL_COMPLETED) << t.id() << ": " << t.message();
    EXPECT_EQ(t.last_metrics().at("world_size"), 2) << t.id();
  }
  CliRun table = Rung(c, "ablation e2");
  ASSERT_EQ(table.code, 0) << table.out;
  EXPECT_THAT(table.out, HasSubstr("3 variants x 2 repeats")) << table.out;
  unsetenv("RUNG_DDP_CHECK");
}

}  // namespace
}  // namespace rung::testing
