// The worker's supervisor on a fake clock with fake processes: which signals go to which
// process and when, which messages are queued for rungd and when. No real process, no
// stream, no waiting.
#include "tests/unit/supervisor_fixture.h"

#include <signal.h>
#include <stdlib.h>

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "tests/unit/fake_launcher.h"

namespace rung {
namespace {

TEST_F(SupervisorTest, RegistersWithItsSessionThenPullsForItsFreeSlots) {
  sup_->OnStreamStarted();
  std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kRegister));
  const v1::Register& r = out[0].register_();
  EXPECT_EQ(r.worker_id(), "w1");
  EXPECT_EQ(r.session_id(), "session-1");
  EXPECT_EQ(r.work_dir(), dir_.path());
  EXPECT_EQ(r.slots_size(), 2);
  // Nothing but Register until rungd answers.
  sup_->Tick();
  EXPECT_THAT(sup_->TakeOutgoing(), IsEmpty());
  EXPECT_FALSE(sup_->stats().connected);

  v1::ControllerMessage reply;
  reply.mutable_registered()->set_heartbeat_interval_ms(1000);
  sup_->HandleControllerMessage(reply);
  EXPECT_TRUE(sup_->stats().connected);
  sup_->Tick();
  out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kPull));
  EXPECT_THAT(out[0].pull().free_slots(), ElementsAre(0, 1));
  sup_->Tick();  // the same free slots are not offered twice
  EXPECT_THAT(sup_->TakeOutgoing(), IsEmpty());
  // Heartbeats on the interval rungd gave.
  EXPECT_EQ(sup_->NextWake(), clock_.Now() + absl::Seconds(1));
  clock_.Advance(absl::Milliseconds(999));
  sup_->Tick();
  EXPECT_THAT(sup_->TakeOutgoing(), IsEmpty());
  clock_.Advance(absl::Milliseconds(1));
  sup_->Tick();
  EXPECT_THAT(Kinds(sup_->TakeOutgoing()), ElementsAre(Kind::kHeartbeat));
}

TEST_F(SupervisorTest, RunsAnAssignmentAndReportsStartReportsAndExitInOrder) {
  Register();
  sup_->Tick();
  sup_->TakeOutgoing();
  Assign("e1-1", 1, 1);
  ASSERT_EQ(launcher_.spawned().size(), 1u);
  testing::FakeProcessState* p = launcher_.spawned()[0].get();
  EXPECT_THAT(p->options.argv, ElementsAre("train", "--fast"));
  EXPECT_EQ(p->options.workdir, "/jobs");
  const std::string trial_dir = dir_.Sub("trials/e1-1");
  EXPECT_EQ(p->options.env.at("RUNG_TRIAL_DIR"), trial_dir);
  EXPECT_EQ(p->options.env.at("RUNG_PARAMS_FILE"), trial_dir + "/attempt-1/params.json");
  EXPECT_EQ(p->options.env.at("RUNG_CHECKPOINT_DIR"), trial_dir + "/checkpoint");
  EXPECT_EQ(p->options.env.at("RUNG_REPORT_SOCKET"), dir_.Sub("report.sock"));
  EXPECT_EQ(p->options.env.at("RUNG_WORKER"), "w1");
  EXPECT_EQ(p->options.env.at("CUDA_VISIBLE_DEVICES"), "");
  EXPECT_THAT(p->options.env.at("PYTHONPATH"), ::testing::StartsWith(dir_.Sub("python")));
  EXPECT_EQ(p->options.env.count("RUNG_TOKEN"), 0u);
  EXPECT_EQ(p->options.stderr_path, trial_dir + "/attempt-1/stderr.log");

  std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kStarted));
  EXPECT_EQ(out[0].seq(), 1);
  EXPECT_EQ(out[0].started().pid(), p->pid);
  EXPECT_EQ(sup_->stats().slots_busy, 1);

  // A report on stdout and one on the socket go out together, stamped with the clock.
  clock_.Advance(absl::Milliseconds(300));  // before the first heartbeat
  p->WriteStdout("epoch 1 done\n@rung {\"step\": 1, \"loss\": 0.5}\n");
  const std::vector<int> fds = sup_->StdoutFds();
  ASSERT_EQ(fds.size(), 1u);
  sup_->ReadStdout(fds[0]);
  EXPECT_EQ(sup_->HandleReportLine(R"({"trial_id": "e1-1", "attempt": 1, "loss": 0.4})"),
            "{\"stop\": false}\n");
  EXPECT_THAT(sup_->HandleReportLine(R"({"trial_id": "e1-1", "attempt": 2, "loss": 0.4})"),
              HasSubstr("\"stop\": true, \"error\": \"trial e1-1 attempt 2 is not running"));
  sup_->Tick();
  out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kReports));
  EXPECT_EQ(out[0].seq(), 2);
  ASSERT_EQ(out[0].reports().reports_size(), 2);
  EXPECT_EQ(out[0].reports().reports(0).values().at("loss"), 0.5);
  EXPECT_EQ(out[0].reports().reports(0).unix_ms(), clock_.NowUnixMs());
  EXPECT_EQ(out[0].reports().reports(1).seq(), 2);

  p->Exit(0);
  sup_->Tick();
  out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kExited, Kind::kPull));
  EXPECT_EQ(out[0].seq(), 3);
  EXPECT_EQ(out[0].exited().exit_code(), 0);
  EXPECT_FALSE(out[0].exited().stopped());
  EXPECT_EQ(out[0].exited().exit_unix_us(), absl::ToUnixMicros(clock_.Now()));
  EXPECT_THAT(out[1].pull().free_slots(), ElementsAre(0, 1));
  // The group is killed once the leader exited, so nothing it started lives on.
  EXPECT_THAT(p->signal_numbers(), ElementsAre(SIGKILL));
  EXPECT_EQ(sup_->outbox_size(), 3u);
  Ack(3);
  EXPECT_EQ(sup_->outbox_size(), 0u);
  EXPECT_EQ(sup_->trials_known(), 0u);
}

TEST_F(SupervisorTest, AStopGetsStopGraceThenSigtermThenSigkillAfterKillGrace) {
  testing::FakeProcessState* p = StartOne();
  p->ignore_sigterm = true;
  const absl::Time t0 = clock_.Now();
  Stop("e1-1", 1);
  // The trial hears of it through its next report.
  EXPECT_EQ(sup_->HandleReportLine(R"({"trial_id": "e1-1", "attempt": 1, "loss": 1})"),
            "{\"stop\": true}\n");
  EXPECT_EQ(sup_->NextWake(), t0 + absl::Seconds(1));  // the heartbeat comes first
  clock_.Advance(absl::Milliseconds(4999));
  sup_->Tick();
  EXPECT_THAT(p->signals, IsEmpty());
  EXPECT_EQ(sup_->NextWake(), t0 + absl::Seconds(5));
  clock_.Advance(absl::Milliseconds(1));
  sup_->Tick();
  EXPECT_THAT(p->signals, ElementsAre(Pair(SIGTERM, t0 + absl::Seconds(5))));
  clock_.Advance(absl::Milliseconds(9999));
  sup_->Tick();
  EXPECT_EQ(p->signals.size(), 1u);
  EXPECT_EQ(sup_->NextWake(), t0 + absl::Seconds(15));
  clock_.Advance(absl::Milliseconds(1));
  sup_->Tick();  // SIGKILL, and the fake dies of it
  sup_->Tick();  // reaped
  EXPECT_THAT(p->signals, ElementsAre(Pair(SIGTERM, t0 + absl::Seconds(5)),
                                      Pair(SIGKILL, t0 + absl::Seconds(15)),
                                      Pair(SIGKILL, t0 + absl::Seconds(15))));  // the group
  std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
  int exited = 0;
  for (const auto& m : out) {
    if (m.kind_case() != Kind::kExited) continue;
    ++exited;
    EXPECT_EQ(m.exited().signal(), SIGKILL);
    EXPECT_TRUE(m.exited().stopped());
    EXPECT_FALSE(m.exited().worker_shutdown());
  }
  EXPECT_EQ(exited, 1);
}

TEST_F(SupervisorTest, APoliteTrialEndsOnSigtermAndIsNotKilledLater) {
  testing::FakeProcessState* p = StartOne();
  const absl::Time t0 = clock_.Now();
  Stop("e1-1", 1);
  clock_.Advance(absl::Seconds(5));
  sup_->Tick();  // SIGTERM; the fake exits
  sup_->Tick();
  clock_.Advance(absl::Seconds(60));
  sup_->Tick();
  EXPECT_THAT(p->signals, ElementsAre(Pair(SIGTERM, t0 + absl::Seconds(5)),
                                      Pair(SIGKILL, t0 + absl::Seconds(5))));  // the group
}

TEST_F(SupervisorTest, PastTheOrphanTimeoutTrialsStopAndRungdHearsWhyOnReturn) {
  testing::FakeProcessState* p = StartOne();
  sup_->TakeOutgoing();
  const absl::Time lost = clock_.Now();
  sup_->OnStreamLost();
  EXPECT_FALSE(sup_->stats().connected);
  EXPECT_EQ(sup_->NextWake(), lost + absl::Hours(1));
  clock_.Advance(absl::Hours(1) - absl::Milliseconds(1));
  sup_->Tick();
  EXPECT_THAT(p->signals, IsEmpty());
  clock_.Advance(absl::Milliseconds(1));
  sup_->Tick();  // stop requested: the trial gets stop grace, as for rungd's own stop
  EXPECT_THAT(p->signals, IsEmpty());
  EXPECT_EQ(sup_->HandleReportLine(R"({"trial_id": "e1-1", "attempt": 1, "loss": 1})"),
            "{\"stop\": true}\n");
  clock_.Advance(absl::Seconds(5));
  sup_->Tick();
  sup_->Tick();
  EXPECT_THAT(p->signal_numbers(), ElementsAre(SIGTERM, SIGKILL));
  EXPECT_EQ(p->signals[0].second, lost + absl::Hours(1) + absl::Seconds(5));
  // Nothing is written while unregistered; it waits in the outbox.
  EXPECT_THAT(sup_->TakeOutgoing(), IsEmpty());
  EXPECT_EQ(sup_->outbox_size(), 2u);  // the report, the exit

  // rungd is back: the trial is still listed (its exit is not acknowledged), then the
  // outbox goes again, in order.
  Register();
  ASSERT_EQ(last_register_.trials_size(), 1);
  EXPECT_EQ(last_register_.trials(0).trial_id(), "e1-1");
  std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kReports, Kind::kExited));
  EXPECT_TRUE(out[1].exited().worker_shutdown());
  EXPECT_TRUE(out[1].exited().stopped());
  EXPECT_THAT(out[1].exited().message(), HasSubstr("longer than the worker's --orphan-timeout"));
}

TEST_F(SupervisorTest, AShortAbsenceResendsWhatRungdHasNotAcknowledged) {
  testing::FakeProcessState* p = StartOne();
  p->WriteStdout("@rung {\"loss\": 2}\n");
  sup_->ReadStdout(sup_->StdoutFds()[0]);
  sup_->Tick();
  std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kReports));
  sup_->OnStreamLost();
  clock_.Advance(absl::Seconds(30));
  sup_->Tick();
  EXPECT_THAT(p->signals, IsEmpty());
  Register();
  sup_->Tick();
  out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kReports, Kind::kPull));
  EXPECT_EQ(out[0].seq(), 2);
  EXPECT_THAT(out[1].pull().free_slots(), ElementsAre(1));
}

TEST_F(SupervisorTest, AStaleCopyRungdGaveToOthersIsKilledAndForgotten) {
  testing::FakeProcessState* p = StartOne();
  sup_->OnStreamLost();
  Register({{"e1-1", 1}});
  EXPECT_THAT(p->signal_numbers(), ElementsAre(SIGKILL));
  sup_->Tick();
  std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
  for (const auto& m : out) EXPECT_NE(m.kind_case(), Kind::kExited) << "a dropped copy's exit";
  Ack(1);
  EXPECT_EQ(sup_->trials_known(), 0u);
}

TEST_F(SupervisorTest, ALaunchFailureIsReportedWithTheReasonAndFreesTheSlot) {
  Register();
  sup_->Tick();
  sup_->TakeOutgoing();
  launcher_.FailNextSpawn(absl::NotFoundError("train: No such file or directory"));
  Assign("e1-1", 1, 0);
  sup_->Tick();
  std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kExited, Kind::kPull));
  EXPECT_TRUE(out[0].exited().launch_failed());
  EXPECT_EQ(out[0].exited().message(), "train --fast: train: No such file or directory");
  EXPECT_THAT(out[1].pull().free_slots(), ElementsAre(0, 1));
  EXPECT_EQ(sup_->stats().launch_failures, 1);
}

TEST_F(SupervisorTest, ShutdownSendsSigtermThenSigkillAndWaitsForTheAck) {
  testing::FakeProcessState* p = StartOne();
  p->ignore_sigterm = true;
  const absl::Time t0 = clock_.Now();
  sup_->BeginShutdown();
  EXPECT_THAT(p->signals, ElementsAre(Pair(SIGTERM, t0)));
  sup_->Tick();
  EXPECT_FALSE(sup_->ShutdownComplete());
  clock_.Advance(absl::Seconds(10));
  sup_->Tick();
  sup_->Tick();
  EXPECT_THAT(p->signal_numbers(), ElementsAre(SIGTERM, SIGKILL, SIGKILL));
  std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
  ASSERT_FALSE(out.empty());
  ASSERT_EQ(out.back().kind_case(), Kind::kExited);
  EXPECT_TRUE(out.back().exited().worker_shutdown());
  EXPECT_FALSE(sup_->ShutdownComplete());  // rungd has not acknowledged the exit yet
  Ack(out.back().seq());
  EXPECT_TRUE(sup_->ShutdownComplete());
}

TEST_F(SupervisorTest, ShutdownWithoutRungdDoesNotWaitForAcknowledgements) {
  testing::FakeProcessState* p = StartOne();
  sup_->OnStreamLost();
  sup_->BeginShutdown(/*deliver=*/false);
  sup_->Tick();
  EXPECT_THAT(p->signal_numbers(), ElementsAre(SIGTERM, SIGKILL));
  EXPECT_EQ(sup_->outbox_size(), 1u);
  EXPECT_TRUE(sup_->ShutdownComplete());
}

// Ranks 2 and 3 of a 4-rank trial on this worker's two slots: a process each, with torchrun's
// variables; rank 2's stdout reports are not the trial's; when rank 3 fails, rank 2 is ended
// at once and rungd hears of rank 3's failure.
TEST_F(SupervisorTest, AShareOfRanksRunsAProcessPerRankAndOneFailureEndsThemAll) {
  Register();
  sup_->Tick();
  sup_->TakeOutgoing();
  v1::RankLayout layout;
  v1::RankLayout* r = &layout;
  r->set_world_size(4);
  r->set_node_rank(1);
  r->set_nnodes(2);
  r->set_first_rank(2);
  r->set_local_world_size(2);
  r->set_master_addr("10.0.0.1");
  r->set_master_port(29500);
  for (const char* addr : {"10.0.0.1:29501", "10.0.0.1:29502", "10.0.0.2:29503", "10.0.0.2:29504"})
    r->add_rank_addrs(addr);
  AssignRanks(layout);
  ASSERT_EQ(launcher_.spawned().size(), 2u);
  testing::FakeProcessState* rank2 = launcher_.spawned()[0].get();
  testing::FakeProcessState* rank3 = launcher_.spawned()[1].get();
  for (int i = 0; i < 2; ++i) {
    auto& env = launcher_.spawned()[i]->options.env;
    EXPECT_EQ(env["RANK"], absl::StrCat(2 + i));
    EXPECT_EQ(env["LOCAL_RANK"], absl::StrCat(i));
    EXPECT_EQ(env["WORLD_SIZE"], "4");
    EXPECT_EQ(env["LOCAL_WORLD_SIZE"], "2");
    EXPECT_EQ(env["NODE_RANK"], "1");
    EXPECT_EQ(env["MASTER_ADDR"], "10.0.0.1");
    EXPECT_EQ(env["MASTER_PORT"], "29500");
    EXPECT_THAT(env["TF_CONFIG"], HasSubstr(absl::StrCat("\"index\": ", 2 + i, "}")));
    EXPECT_THAT(env["TF_CONFIG"], HasSubstr("\"10.0.0.2:29504\"]"));
    EXPECT_EQ(env["RUNG_WORKER"], "w1");
  }
  EXPECT_THAT(rank2->options.stderr_path, HasSubstr("rank-2.stderr.log"));
  // Only rank 0 reports for the trial: rank 2's report line (stdout or socket) is not stored.
  rank2->WriteStdout("@rung {\"loss\": 1}\n");
  EXPECT_EQ(sup_->HandleReportLine(R"({"trial_id": "e1-1", "attempt": 1, "rank": 3, "loss": 2})"),
            "{\"stop\": false}\n");
  sup_->Tick();
  std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kStarted));
  Ack(out[0].seq());
  rank3->Exit(1);
  sup_->Tick();
  EXPECT_THAT(rank2->signal_numbers(), ElementsAre(SIGTERM));  // at once, no stop grace
  sup_->Tick();                                                // rank 2's exit is reaped (SIGCHLD)
  out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kExited, Kind::kPull));
  EXPECT_EQ(out[0].exited().exit_code(), 1);
  EXPECT_EQ(out[0].exited().rank(), 3);
  EXPECT_THAT(out[1].pull().free_slots(), ElementsAre(0, 1));
}

// rungd ends an attempt at once (another rank failed elsewhere): SIGTERM without stop grace,
// even when a polite stop was already out.
TEST_F(SupervisorTest, AStopNowSkipsTheStopGrace) {
  testing::FakeProcessState* p = StartOne();
  p->ignore_sigterm = true;
  Stop("e1-1", 1);
  sup_->Tick();
  EXPECT_THAT(p->signal_numbers(), IsEmpty());  // the polite stop waits for its grace
  v1::ControllerMessage m;
  m.mutable_stop()->mutable_trial()->set_trial_id("e1-1");
  m.mutable_stop()->mutable_trial()->set_attempt(1);
  m.mutable_stop()->set_now(true);
  sup_->HandleControllerMessage(m);
  sup_->Tick();
  EXPECT_THAT(p->signal_numbers(), ElementsAre(SIGTERM));
}

// rungd gave up on attempt 1 and sent attempt 2 to the other slot: attempt 1's slot comes back
// once its process is reaped, not before and not never.
TEST_F(SupervisorTest, AReplacedAttemptGivesItsSlotBackOnceReaped) {
  testing::FakeProcessState* old = StartOne();  // e1-1 attempt 1 on slot 0
  old->ignore_sigterm = true;
  Assign("e1-1", 2, 1);
  EXPECT_THAT(old->signal_numbers(), ElementsAre(SIGKILL));
  sup_->Tick();
  std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
  ASSERT_THAT(Kinds(out), ElementsAre(Kind::kStarted, Kind::kPull));
  EXPECT_EQ(out[0].started().trial().attempt(), 2);
  EXPECT_THAT(out[1].pull().free_slots(), ElementsAre(0));  // nothing of attempt 1 goes out
  EXPECT_EQ(sup_->stats().slots_busy, 1);
}

// A trial of one rank is the trial's own reporter, whatever RANK its process was given.
TEST_F(SupervisorTest, ATrialOfOneRankReportsWhateverRankItClaims) {
  StartOne();
  EXPECT_EQ(sup_->HandleReportLine(R"({"trial_id": "e1-1", "attempt": 1, "rank": 3, "loss": 2})"),
            "{\"stop\": false}\n");
  sup_->Tick();
  EXPECT_THAT(Kinds(sup_->TakeOutgoing()), ElementsAre(Kind::kReports));
}

// Rank 0 ending well decides the attempt: the ranks beside it on its worker get the stop
// grace, then SIGTERM, rather than keeping the trial running.
TEST_F(SupervisorTest, WhenRankZeroEndsTheRanksBesideItFollowAfterTheGrace) {
  Register();
  sup_->Tick();
  sup_->TakeOutgoing();
  v1::RankLayout layout;
  layout.set_world_size(2);
  layout.set_nnodes(1);
  layout.set_local_world_size(2);
  AssignRanks(layout);
  testing::FakeProcessState* rank0 = launcher_.spawned()[0].get();
  testing::FakeProcessState* rank1 = launcher_.spawned()[1].get();
  rank1->ignore_sigterm = true;
  rank0->Exit(0);
  sup_->Tick();
  EXPECT_TRUE(rank1->signal_numbers().empty());
  clock_.Advance(o_.stop_grace);
  sup_->Tick();
  EXPECT_THAT(rank1->signal_numbers(), ElementsAre(SIGTERM));
  clock_.Advance(o_.kill_grace);
  sup_->Tick();
  sup_->Tick();
  std::vector<v1::WorkerMessage> out = sup_->TakeOutgoing();
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.front().kind_case(), Kind::kStarted);
  bool exited = false;
  for (const auto& msg : out) exited |= msg.has_exited();
  EXPECT_TRUE(exited);
}

}  // namespace
}  // namespace rung
