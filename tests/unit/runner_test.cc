// Runners (trial.reuse_process) in the worker's supervisor, on a fake clock with fake
// processes: one process takes trial after trial of its experiment on its slot through its
// stdin; it ends when its slot goes elsewhere, when it idles too long, or when its experiment
// ends; one that dies fails only its trial. And a trial that reports only on stdout, which
// cannot hear a cooperative stop, is stopped at once.
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "tests/unit/supervisor_fixture.h"

namespace rung {
namespace {

class RunnerTest : public SupervisorTest {
 protected:
  void SetUp() override {
    Register();
    sup_->Tick();
    sup_->TakeOutgoing();
  }

  void AssignTo(const std::string& id, int slot, bool reuse = true) {
    v1::ControllerMessage m;
    v1::Assignment* a = m.mutable_assignment();
    a->mutable_trial()->set_id(id);
    a->mutable_trial()->set_experiment_id(id.substr(0, id.find('-')));
    a->mutable_trial()->set_attempt(1);
    a->mutable_trial()->add_slots(slot);
    a->add_argv("train");
    a->set_workdir("/jobs");
    (*a->mutable_env())["RUNG_TRIAL_ID"] = id;
    (*a->mutable_env())["RUNG_PARAMS"] = "{\"x\": 1}";
    a->set_reuse_process(reuse);
    sup_->HandleControllerMessage(m);
  }

  // The trials a runner was handed on its stdin since the last call: their ids.
  static std::vector<std::string> Handed(testing::FakeProcessState* p) {
    std::vector<std::string> ids;
    for (absl::string_view line : absl::StrSplit(p->ReadStdin(), '\n', absl::SkipEmpty())) {
      google::protobuf::Struct s;
      EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(std::string(line), &s).ok());
      const auto& env = s.fields().at("env").struct_value().fields();
      EXPECT_EQ(env.at("RUNG_TRIAL_ID").string_value(), s.fields().at("trial_id").string_value());
      EXPECT_NE(env.at("RUNG_PARAMS_FILE").string_value(), "");
      ids.push_back(s.fields().at("trial_id").string_value());
    }
    return ids;
  }

  // The runner reports and says the trial is done.
  void Finish(testing::FakeProcessState* p, double loss) {
    p->WriteStdout(absl::StrCat("@rung {\"loss\": ", loss, "}\n@rung-end {}\n"));
    for (int fd : sup_->StdoutFds()) sup_->ReadStdout(fd);
    sup_->Tick();
  }
};

TEST_F(RunnerTest, OneProcessRunsTrialAfterTrialOfItsExperimentOnItsSlot) {
  AssignTo("e1-1", 0);
  ASSERT_EQ(launcher_.spawned().size(), 1u);
  testing::FakeProcessState* p = launcher_.spawned()[0].get();
  EXPECT_TRUE(p->options.pipe_stdin);
  EXPECT_EQ(p->options.env.at("RUNG_RUNNER"), "1");
  EXPECT_THAT(Handed(p), ElementsAre("e1-1"));
  std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kStarted));
  EXPECT_EQ(out[0].started().pid(), p->pid);

  Finish(p, 0.5);
  out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kReports, Kind::kExited, Kind::kPull));
  EXPECT_EQ(out[1].exited().exit_code(), 0);
  EXPECT_THAT(out[2].pull().warm(), ElementsAre(Pair(0, "e1")));  // slot 0 is warm for e1
  EXPECT_EQ(sup_->runners(), 1u);

  AssignTo("e1-2", 0);  // the same process takes the next one
  EXPECT_EQ(launcher_.spawned().size(), 1u);
  EXPECT_THAT(Handed(p), ElementsAre("e1-2"));
  out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kStarted));
  EXPECT_EQ(out[0].started().pid(), p->pid);
  Finish(p, 0.25);
  out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kReports, Kind::kExited, Kind::kPull));
  EXPECT_EQ(out[0].reports().reports(0).trial_id(), "e1-2");
  EXPECT_TRUE(p->signal_numbers().empty());
}

TEST_F(RunnerTest, AnIdleRunnerEndsWhenItsSlotGoesElsewhereItIdlesOrItsExperimentEnds) {
  AssignTo("e1-1", 0);
  testing::FakeProcessState* first = launcher_.spawned()[0].get();
  Finish(first, 1);
  // Slot 0 goes to a trial of another experiment: e1's runner ends (its stdin closes).
  AssignTo("e2-1", 0, /*reuse=*/false);
  EXPECT_TRUE(first->stdin_closed);
  first->Exit(0);
  sup_->Tick();
  EXPECT_EQ(sup_->runners(), 0u);

  // Idle past --runner-idle-timeout: its stdin closes, and SIGKILL follows the kill grace.
  AssignTo("e3-1", 1);
  testing::FakeProcessState* idle = launcher_.spawned().back().get();
  Finish(idle, 1);
  clock_.Advance(o_.runner_idle_timeout);
  sup_->Tick();
  EXPECT_TRUE(idle->stdin_closed);
  EXPECT_TRUE(idle->signal_numbers().empty());
  clock_.Advance(o_.kill_grace);
  sup_->Tick();
  EXPECT_THAT(idle->signal_numbers(), ElementsAre(SIGKILL));
  sup_->Tick();
  EXPECT_EQ(sup_->runners(), 0u);

  // rungd says the experiment ended: its idle runner goes at once.
  AssignTo("e4-1", 1);
  testing::FakeProcessState* done = launcher_.spawned().back().get();
  Finish(done, 1);
  v1::ControllerMessage m;
  m.mutable_runners_done()->set_experiment_id("e4");
  sup_->HandleControllerMessage(m);
  EXPECT_TRUE(done->stdin_closed);

  // One that is busy when it hears ends after its trial.
  AssignTo("e5-1", 0);
  testing::FakeProcessState* busy = launcher_.spawned().back().get();
  m.mutable_runners_done()->set_experiment_id("e5");
  sup_->HandleControllerMessage(m);
  EXPECT_FALSE(busy->stdin_closed);
  Finish(busy, 1);
  EXPECT_TRUE(busy->stdin_closed);
}

TEST_F(RunnerTest, ARunnerThatDiesFailsOnlyItsTrialAndTheNextTrialGetsAFreshOne) {
  AssignTo("e1-1", 0);
  testing::FakeProcessState* p = launcher_.spawned()[0].get();
  Finish(p, 1);
  sup_->TakeOutgoing();
  AssignTo("e1-2", 0);
  sup_->TakeOutgoing();
  p->Exit(3);  // a crash in the middle of e1-2
  sup_->Tick();
  std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kExited, Kind::kPull));
  EXPECT_EQ(out[0].exited().trial().trial_id(), "e1-2");
  EXPECT_EQ(out[0].exited().exit_code(), 3);
  EXPECT_EQ(sup_->runners(), 0u);
  AssignTo("e1-3", 0);
  ASSERT_EQ(launcher_.spawned().size(), 2u);
  EXPECT_THAT(Handed(launcher_.spawned()[1].get()), ElementsAre("e1-3"));
}

TEST_F(RunnerTest, ATrialThatReportsOnlyOnStdoutIsStoppedAtOnce) {
  AssignTo("e1-1", 0, /*reuse=*/false);
  testing::FakeProcessState* p = launcher_.spawned()[0].get();
  p->WriteStdout("@rung {\"loss\": 1}\n");
  sup_->ReadStdout(sup_->StdoutFds()[0]);
  Stop("e1-1", 1);
  sup_->Tick();
  // It cannot hear rung.report() answer stop, so the stop grace would only waste its slot.
  EXPECT_THAT(p->signal_numbers(), ElementsAre(SIGTERM));
}

}  // namespace
}  // namespace rung
