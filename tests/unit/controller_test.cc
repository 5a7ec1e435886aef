// The controller against a real RocksDB store, a FakeClock and sinks that record what it
// sends: scheduling, completion, retries, lease expiry, reconnects and restarts.
#include "tests/unit/controller_fixture.h"

namespace rung::testing {
namespace {

TEST_F(ControllerTest, AssignsNoMoreThanMaxConcurrentAndOnlyOfferedSlots) {
  std::string id = Create(5, 2);
  RecordingSink sink;
  int64_t s = Connect("w1", 3, &sink);
  ASSERT_TRUE(sink.sent.size() == 1 && sink.sent[0].has_registered());
  sink.sent.clear();
  ASSERT_TRUE(Pull(s, {0}).ok());
  auto a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 1u);  // only slot 0 was offered
  EXPECT_EQ(a[0].trial().id(), id + "-1");
  EXPECT_THAT(a[0].trial().slots(), ::testing::ElementsAre(0));
  ASSERT_TRUE(Pull(s, {1, 2}).ok());
  a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 1u);  // max_concurrent 2
  EXPECT_EQ(a[0].trial().id(), id + "-2");
  // The assignment carries the filled-in command and the trial contract's variables.
  EXPECT_EQ(a[0].argv(0), "train");
  EXPECT_EQ(a[0].argv(1), "--x");
  EXPECT_EQ(a[0].argv(2), FormatParam(a[0].trial().params().at("x")));
  EXPECT_EQ(a[0].env().at("RUNG_TRIAL_ID"), id + "-2");
  EXPECT_EQ(a[0].env().at("RUNG_EXPERIMENT_ID"), id);
  EXPECT_THAT(a[0].env().at("RUNG_PARAMS"), HasSubstr("\"x\": "));
  EXPECT_EQ(controller_->GetExperiment(id)->state(), v1::EXPERIMENT_RUNNING);
}

TEST_F(ControllerTest, RunsToCompletionAndPicksBest) {
  std::string id = Create(3, 3);
  RecordingSink sink;
  int64_t s = Connect("w1", 3, &sink);
  ASSERT_TRUE(Pull(s, {0, 1, 2}).ok());
  auto a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 3u);
  const double losses[] = {0.5, 0.2, 0.9};
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Started(s, a[i].trial()).ok());
    ASSERT_TRUE(Report(s, a[i].trial(), 1, 5.0).ok());
    ASSERT_TRUE(Report(s, a[i].trial(), 2, losses[i]).ok());
    ASSERT_TRUE(Report(s, a[i].trial(), 2, 123.0).ok());  // a resend: ignored
    ASSERT_TRUE(Exited(s, a[i].trial(), 0).ok());
  }
  auto e = controller_->GetExperiment(id);
  EXPECT_EQ(e->state(), v1::EXPERIMENT_COMPLETED);
  EXPECT_EQ(e->counts().completed(), 3);
  EXPECT_EQ(e->best_trial_id(), id + "-2");
  EXPECT_EQ(e->best_value(), 0.2);
  auto best = controller_->GetBestTrials(id, 2);
  ASSERT_EQ(best->size(), 2u);
  EXPECT_EQ((*best)[0].id(), id + "-2");
  EXPECT_EQ((*best)[1].id(), id + "-1");
  EXPECT_EQ(controller_->GetTrialMetrics(id + "-1")->size(), 2u);
  EXPECT_EQ(controller_->GetTrial(id + "-3")->result(), 0.9);
  // Every state-changing message was acknowledged.
  int acks = 0;
  for (const auto& m : sink.sent) acks += m.has_ack();
  EXPECT_EQ(acks, 3 * 5);
}

TEST_F(ControllerTest, GroupCommitAcknowledgesOnlyWhatIsOnDisk) {
  // A group delay longer than the test: nothing is fsynced by the syncer meanwhile.
  Open(ControllerOptions(), absl::Hours(1));
  std::string id = Create(2, 2);
  AckSink sink;
  int64_t s = Connect("w1", 1, &sink);
  ASSERT_TRUE(Pull(s, {0}).ok());
  // Decided and written, not yet on disk: the assignment has not gone out.
  EXPECT_EQ(sink.Assignments(), 0u);
  EXPECT_GT(store_->LastWrite(), store_->Durable());
  Create(1, 1);  // a client's request is fsynced before it is answered, and that covers it
  ASSERT_EQ(sink.Assignments(), 1u);
  ASSERT_TRUE(Started(s, sink.First().trial()).ok());
  ASSERT_TRUE(Report(s, sink.First().trial(), 1, 0.5).ok());
  EXPECT_EQ(sink.Acked(), 0);  // applied and written, not yet on disk: not acknowledged
  EXPECT_GT(store_->LastWrite(), store_->Durable());
  // A client's request is fsynced before it is answered, and that covers the reports too.
  Create(1, 1);
  EXPECT_EQ(store_->LastWrite(), store_->Durable());
  EXPECT_EQ(sink.Acked(), seq_);

  // With no delay the syncer fsyncs as soon as there is something to sync.
  Open(ControllerOptions(), absl::ZeroDuration());
  AckSink sink2;
  s = Connect("w2", 1, &sink2);
  ASSERT_TRUE(Pull(s, {0}).ok());
  ASSERT_TRUE(Started(s, sink2.First().trial()).ok());
  ASSERT_TRUE(Report(s, sink2.First().trial(), 1, 0.4).ok());
  sink2.AwaitAck(seq_);
  EXPECT_GE(store_->Durable(), 1u);
}

TEST_F(ControllerTest, AnInvalidWorkerMessageIsAcknowledgedAndDroppedNotResentForever) {
  std::string id = Create(1, 1);
  RecordingSink sink;
  int64_t s = Connect("w1", 1, &sink);
  ASSERT_TRUE(Pull(s, {0}).ok());
  auto a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 1u);
  ASSERT_TRUE(Started(s, a[0].trial()).ok());
  // A report with a 100 KB metric name: refused as invalid, yet acknowledged.
  v1::WorkerMessage bad;
  auto* r = bad.mutable_reports()->add_reports();
  r->set_trial_id(a[0].trial().id());
  r->set_attempt(1);
  r->set_seq(1);
  (*r->mutable_values())[std::string(100 << 10, 'x')] = 1;
  ASSERT_TRUE(Send(s, bad).ok());
  const int64_t bad_seq = seq_;
  bool acked = false;
  for (const auto& m : sink.sent) acked |= m.has_ack() && m.ack().seq() == bad_seq;
  EXPECT_TRUE(acked);
  EXPECT_EQ(controller_->Stats().worker_messages_dropped, 1);
  EXPECT_TRUE(controller_->GetTrialMetrics(a[0].trial().id())->empty());
  // A batch with one bad report is refused whole: the good one before it changes nothing
  // either, so the state in memory stays what is on disk.
  v1::WorkerMessage mixed;
  auto* good = mixed.mutable_reports()->add_reports();
  good->set_trial_id(a[0].trial().id());
  good->set_attempt(1);
  good->set_seq(1);
  (*good->mutable_values())["loss"] = 0.7;
  auto* nan = mixed.mutable_reports()->add_reports();
  *nan = *good;
  nan->set_seq(2);
  (*nan->mutable_values())["loss"] = std::nan("");
  ASSERT_TRUE(Send(s, mixed).ok());
  EXPECT_EQ(controller_->Stats().worker_messages_dropped, 2);
  EXPECT_EQ(controller_->GetTrial(a[0].trial().id())->last_report_seq(), 0);
  EXPECT_TRUE(controller_->GetTrialMetrics(a[0].trial().id())->empty());
  // The stream carries on.
  ASSERT_TRUE(Report(s, a[0].trial(), 1, 0.3).ok());
  ASSERT_TRUE(Exited(s, a[0].trial(), 0).ok());
  EXPECT_EQ(controller_->GetExperiment(id)->state(), v1::EXPERIMENT_COMPLETED);
}

TEST_F(ControllerTest, FailedProcessIsRetriedThenFailedWithReason) {
  std::string id = Create(1, 1, /*max_restarts=*/1);
  RecordingSink sink;
  int64_t s = Connect("w1", 1, &sink);
  ASSERT_TRUE(Pull(s, {0}).ok());
  auto a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 1u);
  ASSERT_TRUE(Exited(s, a[0].trial(), 3, "Traceback...\nValueError: bad").ok());
  auto t = controller_->GetTrial(id + "-1");
  EXPECT_EQ(t->state(), v1::TRIAL_PENDING);
  EXPECT_EQ(t->attempt(), 2);
  EXPECT_EQ(t->failures(), 1);
  ASSERT_TRUE(Pull(s, {0}).ok());
  a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].trial().attempt(), 2);
  EXPECT_EQ(a[0].env().at("RUNG_ATTEMPT"), "2");
  ASSERT_TRUE(Exited(s, a[0].trial(), 3, "ValueError: bad").ok());
  t = controller_->GetTrial(id + "-1");
  EXPECT_EQ(t->state(), v1::TRIAL_FAILED);
  EXPECT_THAT(t->message(), HasSubstr("exited with code 3"));
  EXPECT_THAT(t->message(), HasSubstr("ValueError: bad"));
  EXPECT_THAT(t->message(), HasSubstr("failed 2 times; max_restarts is 1"));
  // The attempt ledger: both attempts, on w1, and how each ended.
  ASSERT_EQ(t->attempts_size(), 2);
  EXPECT_EQ(t->attempts(0).attempt(), 1);
  EXPECT_EQ(t->attempts(0).worker_id(), "w1");
  EXPECT_EQ(t->attempts(0).outcome(), "retried");
  EXPECT_THAT(t->attempts(0).message(), HasSubstr("Traceback"));
  EXPECT_GT(t->attempts(0).ended_unix_ms(), 0);
  EXPECT_EQ(t->attempts(1).attempt(), 2);
  EXPECT_EQ(t->attempts(1).outcome(), "failed");
  EXPECT_THAT(t->attempts(1).message(), HasSubstr("failed 2 times"));
  auto e = controller_->GetExperiment(id);
  EXPECT_EQ(e->state(), v1::EXPERIMENT_FAILED);
  EXPECT_THAT(e->message(), HasSubstr("all 1 trials failed"));
}

TEST_F(ControllerTest, ExitZeroWithoutObjectiveFails) {
  std::string id = Create(1, 1);
  RecordingSink sink;
  int64_t s = Connect("w1", 1, &sink);
  ASSERT_TRUE(Pull(s, {0}).ok());
  auto a = sink.TakeAssignments();
  ASSERT_TRUE(Exited(s, a[0].trial(), 0).ok());
  auto t = controller_->GetTrial(id + "-1");
  EXPECT_EQ(t->state(), v1::TRIAL_FAILED);
  EXPECT_THAT(t->message(), HasSubstr("without reporting the objective metric 'loss'"));
}

TEST_F(ControllerTest, LeaseExpiryRequeuesToAnotherWorker) {
  std::string id = Create(1, 1, /*max_restarts=*/2);
  RecordingSink sink1, sink2;
  int64_t s1 = Connect("w1", 1, &sink1);
  ASSERT_TRUE(Pull(s1, {0}).ok());
  auto a = sink1.TakeAssignments();
  ASSERT_EQ(a.size(), 1u);
  ASSERT_TRUE(Started(s1, a[0].trial()).ok());
  controller_->WorkerDisconnected(s1);
  int64_t s2 = Connect("w2", 1, &sink2);
  ASSERT_TRUE(Pull(s2, {0}).ok());
  EXPECT_TRUE(sink2.TakeAssignments().empty());  // the lease still holds

  clock_.Advance(absl::Seconds(29));
  controller_->Tick();
  EXPECT_EQ(controller_->GetTrial(id + "-1")->state(), v1::TRIAL_RUNNING);
  ASSERT_TRUE(Pull(s2, {0}).ok());  // w2 stays alive; w1 is silent
  clock_.Advance(absl::Seconds(2));
  controller_->Tick();
  auto t = controller_->GetTrial(id + "-1");
  EXPECT_EQ(t->worker_id(), "w2");
  EXPECT_EQ(t->attempt(), 2);
  EXPECT_EQ(t->failures(), 1);
  EXPECT_THAT(t->message(), HasSubstr("lease expired: worker w1 silent for 31s"));
  ASSERT_EQ(t->attempts_size(), 2);
  EXPECT_EQ(t->attempts(0).worker_id(), "w1");
  EXPECT_EQ(t->attempts(0).outcome(), "retried");
  EXPECT_THAT(t->attempts(0).message(), HasSubstr("lease expired"));
  EXPECT_EQ(t->attempts(1).worker_id(), "w2");
  EXPECT_EQ(t->attempts(1).ended_unix_ms(), 0);  // it runs
  auto a2 = sink2.TakeAssignments();
  ASSERT_EQ(a2.size(), 1u);
  EXPECT_EQ(a2[0].trial().attempt(), 2);
  EXPECT_EQ(controller_->Stats().lease_expirations, 1);

  // w1 comes back still running attempt 1: it is told to kill it, and its news is ignored.
  RecordingSink sink1b;
  int64_t s1b = Connect("w1", 1, &sink1b, {{id + "-1", 1}});
  ASSERT_TRUE(sink1b.sent[0].has_registered());
  ASSERT_EQ(sink1b.sent[0].registered().kill_size(), 1);
  EXPECT_EQ(sink1b.sent[0].registered().kill(0).attempt(), 1);
  ASSERT_TRUE(Exited(s1b, a[0].trial(), 0).ok());
  EXPECT_EQ(controller_->GetTrial(id + "-1")->state(), v1::TRIAL_ASSIGNED);
}

TEST_F(ControllerTest, ReconnectKeepsReportedTrialsAndRequeuesLostAssignments) {
  std::string id = Create(2, 2);
  RecordingSink sink;
  int64_t s = Connect("w1", 2, &sink);
  ASSERT_TRUE(Pull(s, {0, 1}).ok());
  auto a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 2u);
  ASSERT_TRUE(Started(s, a[0].trial()).ok());
  controller_->WorkerDisconnected(s);
  // The worker got only the first assignment before the stream broke.
  RecordingSink sink2;
  int64_t s2 = Connect("w1", 2, &sink2, {{id + "-1", 1}});
  EXPECT_EQ(sink2.sent[0].registered().kill_size(), 0);
  EXPECT_EQ(controller_->GetTrial(id + "-1")->state(), v1::TRIAL_RUNNING);
  auto lost = controller_->GetTrial(id + "-2");
  EXPECT_EQ(lost->state(), v1::TRIAL_PENDING);
  EXPECT_EQ(lost->failures(), 0);  // not the trial's fault
  ASSERT_TRUE(Pull(s2, {1}).ok());
  auto again = sink2.TakeAssignments();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].trial().id(), id + "-2");
  EXPECT_EQ(again[0].trial().attempt(), 2);
}

TEST_F(ControllerTest, StateSurvivesRestartAndSearchContinues) {
  std::string id = Create(4, 2);
  std::vector<std::string> first_params;
  {
    RecordingSink sink;
    int64_t s = Connect("w1", 2, &sink);
    ASSERT_TRUE(Pull(s, {0, 1}).ok());
    auto a = sink.TakeAssignments();
    ASSERT_EQ(a.size(), 2u);
    ASSERT_TRUE(Started(s, a[0].trial()).ok());
    ASSERT_TRUE(Report(s, a[0].trial(), 1, 0.7).ok());
    ASSERT_TRUE(Exited(s, a[0].trial(), 0).ok());
    ASSERT_TRUE(Started(s, a[1].trial()).ok());
    ASSERT_TRUE(Report(s, a[1].trial(), 1, 0.4).ok());
  }
  // A second controller of the same seed, never restarted, says what comes next.
  Open();
  auto e = controller_->GetExperiment(id);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->state(), v1::EXPERIMENT_RUNNING);
  EXPECT_EQ(e->counts().completed(), 1);
  EXPECT_EQ(e->counts().running(), 1);
  EXPECT_EQ(controller_->GetTrial(id + "-2")->last_metrics().at("loss"), 0.4);
  EXPECT_EQ(controller_->GetTrialMetrics(id + "-1")->size(), 1u);
  RecordingSink sink;
  int64_t s = Connect("w1", 2, &sink, {{id + "-2", 1}});
  ASSERT_TRUE(Pull(s, {0}).ok());
  auto a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].trial().id(), id + "-3");

  testing::TempDir other;
  auto store2 = Store::Open(other.path(), {/*group_commit=*/false});  // answers before calls return
  FakeClock clock2;
  auto c2 = Controller::Create(store2->get(), &clock2, ControllerOptions());
  v1::ExperimentSpec same = controller_->GetExperiment(id)->spec();
  same.mutable_budget()->set_max_concurrent(4);  // all of the first three at once
  ASSERT_TRUE(
      Await<v1::Experiment>([&](auto done) { (*c2)->CreateExperiment(same, "", done); }).ok());
  RecordingSink sink2;
  v1::Register reg;
  reg.set_worker_id("w");
  for (int i = 0; i < 3; ++i) reg.add_slots()->set_id(i);
  int64_t s2 = *(*c2)->WorkerConnected(reg, &sink2);
  v1::WorkerMessage pull;
  for (int i = 0; i < 3; ++i) pull.mutable_pull()->add_free_slots(i);
  ASSERT_TRUE((*c2)->HandleWorkerMessage(s2, pull).ok());
  auto ref = sink2.TakeAssignments();
  ASSERT_GE(ref.size(), 3u);
  EXPECT_EQ(ref[2].trial().params().at("x").float_value(),
            a[0].trial().params().at("x").float_value());
}

TEST_F(ControllerTest, CancelStopsRunningAndPendingTrials) {
  std::string id = Create(3, 1);
  RecordingSink sink;
  int64_t s = Connect("w1", 1, &sink);
  ASSERT_TRUE(Pull(s, {0}).ok());
  auto a = sink.TakeAssignments();
  ASSERT_TRUE(Started(s, a[0].trial()).ok());
  sink.sent.clear();
  auto e = CancelExperiment(id);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->state(), v1::EXPERIMENT_CANCELLED);
  ASSERT_EQ(sink.sent.size(), 1u);
  ASSERT_TRUE(sink.sent[0].has_stop());
  EXPECT_EQ(sink.sent[0].stop().trial().trial_id(), id + "-1");
  v1::WorkerMessage m;
  m.mutable_exited()->mutable_trial()->set_trial_id(id + "-1");
  m.mutable_exited()->mutable_trial()->set_attempt(1);
  m.mutable_exited()->set_signal(15);
  m.mutable_exited()->set_stopped(true);
  ASSERT_TRUE(Send(s, m).ok());
  auto t = controller_->GetTrial(id + "-1");
  EXPECT_EQ(t->state(), v1::TRIAL_STOPPED);
  EXPECT_EQ(t->stop_reason(), "experiment cancelled");
  EXPECT_EQ(CancelExperiment(id).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(Pull(s, {0}).ok());
  EXPECT_TRUE(sink.TakeAssignments().empty());
}

TEST_F(ControllerTest, PauseFreesSlotsAndResumeRequeues) {
  std::string id = Create(2, 1);
  RecordingSink sink;
  int64_t s = Connect("w1", 1, &sink);
  ASSERT_TRUE(Pull(s, {0}).ok());
  auto a = sink.TakeAssignments();
  ASSERT_TRUE(Started(s, a[0].trial()).ok());
  ASSERT_TRUE(PauseExperiment(id).ok());
  ASSERT_TRUE(Exited(s, a[0].trial(), 0).ok());  // exits after the stop order
  auto t = controller_->GetTrial(id + "-1");
  EXPECT_EQ(t->state(), v1::TRIAL_PAUSED);
  ASSERT_TRUE(Pull(s, {0}).ok());
  EXPECT_TRUE(sink.TakeAssignments().empty());
  ASSERT_TRUE(ResumeExperiment(id).ok());
  ASSERT_TRUE(Pull(s, {0}).ok());
  auto b = sink.TakeAssignments();
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].trial().id(), id + "-1");
  EXPECT_EQ(b[0].trial().attempt(), 2);
  EXPECT_EQ(b[0].trial().failures(), 0);
}

TEST_F(ControllerTest, ResumeBeforeThePausedTrialExitedRequeuesIt) {
  std::string id = Create(1, 1);
  RecordingSink sink;
  int64_t s = Connect("w1", 1, &sink);
  ASSERT_TRUE(Pull(s, {0}).ok());
  auto a = sink.TakeAssignments();
  ASSERT_TRUE(Started(s, a[0].trial()).ok());
  ASSERT_TRUE(PauseExperiment(id).ok());
  ASSERT_TRUE(ResumeExperiment(id).ok());
  ASSERT_TRUE(Exited(s, a[0].trial(), 0).ok());  // the pause's stop lands after the resume
  auto t = controller_->GetTrial(id + "-1");
  EXPECT_EQ(t->state(), v1::TRIAL_PENDING);  // back in the queue, not stopped for good
  EXPECT_EQ(t->attempt(), 2);
  EXPECT_EQ(controller_->GetExperiment(id)->state(), v1::EXPERIMENT_RUNNING);
  ASSERT_TRUE(Pull(s, {0}).ok());  // the worker offers its slot again after the exit
  auto again = sink.TakeAssignments();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].trial().id(), id + "-1");
  EXPECT_EQ(again[0].trial().attempt(), 2);
}

TEST_F(ControllerTest, StaleCopyThatStillTalksIsStopped) {
  std::string id = Create(1, 1, /*max_restarts=*/1);
  RecordingSink sink1, sink2;
  int64_t s1 = Connect("w1", 1, &sink1);
  ASSERT_TRUE(Pull(s1, {0}).ok());
  auto a = sink1.TakeAssignments();
  ASSERT_TRUE(Started(s1, a[0].trial()).ok());
  int64_t s2 = Connect("w2", 1, &sink2);
  clock_.Advance(absl::Seconds(20));
  ASSERT_TRUE(Pull(s2, {0}).ok());
  clock_.Advance(absl::Seconds(20));  // w1 silent for 40s, its stream still open
  controller_->Tick();
  ASSERT_EQ(sink2.TakeAssignments().size(), 1u);
  sink1.sent.clear();
  ASSERT_TRUE(Report(s1, a[0].trial(), 1, 0.5).ok());  // the old copy speaks up
  bool stopped = false;
  for (const auto& m : sink1.sent) {
    if (m.has_stop() && m.stop().trial().trial_id() == id + "-1" &&
        m.stop().trial().attempt() == 1) {
      stopped = true;
    }
  }
  EXPECT_TRUE(stopped);
  EXPECT_EQ(controller_->GetTrial(id + "-1")->reports(), 0);  // its report did not count
}

TEST_F(ControllerTest, GpuTrialsTakeGpuSlotsAndLabelsMustMatch) {
  auto spec = ParseSpecYaml(R"(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
budget: {max_trials: 2, max_concurrent: 2}
trial: {command: [train]}
resources: {gpus: 2, labels: {zone: a}}
)",
                            "/w");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_TRUE(CreateExperiment(*spec).ok());
  auto reg = [](const std::string& id, const std::string& zone, int cpu, int gpus) {
    v1::Register r;
    r.set_worker_id(id);
    (*r.mutable_labels())["zone"] = zone;
    for (int i = 0; i < cpu; ++i) r.add_slots()->set_id(i);
    for (int i = 0; i < gpus; ++i) {
      auto* s = r.add_slots();
      s->set_id(cpu + i);
      s->set_gpu(absl::StrCat(i));
    }
    return r;
  };
  RecordingSink wrong_zone, cpu_only, gpu_node;
  int64_t s1 = *controller_->WorkerConnected(reg("b1", "b", 0, 4), &wrong_zone);
  int64_t s2 = *controller_->WorkerConnected(reg("a1", "a", 4, 0), &cpu_only);
  int64_t s3 = *controller_->WorkerConnected(reg("a2", "a", 1, 3), &gpu_node);
  ASSERT_TRUE(Pull(s1, {0, 1, 2, 3}).ok());
  ASSERT_TRUE(Pull(s2, {0, 1, 2, 3}).ok());
  ASSERT_TRUE(Pull(s3, {0, 1, 2, 3}).ok());
  EXPECT_TRUE(wrong_zone.TakeAssignments().empty());
  EXPECT_TRUE(cpu_only.TakeAssignments().empty());
  auto a = gpu_node.TakeAssignments();
  ASSERT_EQ(a.size(), 1u);  // 3 GPUs hold one 2-GPU trial, never the CPU slot
  EXPECT_THAT(a[0].trial().slots(), ::testing::ElementsAre(1, 2));
  EXPECT_EQ(controller_->Stats().slots_busy, 2);
}

TEST_F(ControllerTest, CpuTrialPrefersCpuSlots) {
  Create(2, 2);
  RecordingSink sink;
  v1::Register r;
  r.set_worker_id("mixed");
  r.add_slots()->set_id(0);
  r.mutable_slots(0)->set_gpu("0");
  r.add_slots()->set_id(1);
  int64_t s = *controller_->WorkerConnected(r, &sink);
  ASSERT_TRUE(Pull(s, {0, 1}).ok());
  auto a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 2u);
  EXPECT_THAT(a[0].trial().slots(), ::testing::ElementsAre(1));  // the CPU slot first
  EXPECT_THAT(a[1].trial().slots(), ::testing::ElementsAre(0));
}

TEST_F(ControllerTest, ExperimentsAreServedFirstInFirstOut) {
  std::string first = Create(2, 2);
  std::string second = Create(2, 2);
  RecordingSink sink;
  int64_t s = Connect("w1", 3, &sink);
  ASSERT_TRUE(Pull(s, {0, 1, 2}).ok());
  auto a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[0].trial().experiment_id(), first);
  EXPECT_EQ(a[1].trial().experiment_id(), first);
  EXPECT_EQ(a[2].trial().experiment_id(), second);  // only what the first cannot use
}

TEST_F(ControllerTest, WarmStartTakesCompletedTrialsOfEarlierExperiments) {
  std::string first = Create(3, 3);
  RecordingSink sink;
  int64_t s = Connect("w1", 3, &sink);
  ASSERT_TRUE(Pull(s, {0, 1, 2}).ok());
  for (const auto& a : sink.TakeAssignments()) {
    ASSERT_TRUE(Report(s, a.trial(), 1, a.trial().params().at("x").float_value()).ok());
    ASSERT_TRUE(Exited(s, a.trial(), 0).ok());
  }
  auto spec = [&](const std::string& warm, const std::string& goal) {
    return ParseSpecYaml(absl::StrCat(R"(
objective: {metric: loss, goal: )",
                                      goal, R"(}
search_space:
  x: {type: float, min: 0, max: 1}
algorithm: {name: tpe, seed: 3, warm_start: [)",
                                      warm, R"(]}
budget: {max_trials: 2}
trial: {command: [train]}
)"),
                         "/w")
        .value();
  };
  auto ok = CreateExperiment(spec(first, "minimize"));
  ASSERT_TRUE(ok.ok()) << ok.status();
  auto missing = CreateExperiment(spec("e9", "minimize"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(missing.status().message(), "algorithm.warm_start: no experiment e9");
  auto other = CreateExperiment(spec(first, "maximize"));
  EXPECT_THAT(std::string(other.status().message()),
              HasSubstr("optimises loss (MINIMIZE), this experiment loss (MAXIMIZE)"));
  // The warm-started experiment comes back after a restart.
  Open();
  EXPECT_TRUE(controller_->GetExperiment(ok->id()).ok());
}

TEST_F(ControllerTest, ModelProposalsRunOffTheLockAndFallBackAtTheDeadline) {
  // Model jobs queue here and run when the test says, as a pool thread would run them.
  std::vector<std::function<void()>> jobs;
  ControllerOptions o;
  o.run_job = [&](std::function<void()> job) { jobs.push_back(std::move(job)); };
  o.suggest_deadline = absl::Seconds(2);
  Open(o);
  auto spec = ParseSpecYaml(R"(
objective: {metric: loss, goal: minimize}
search_space:
  x: {type: float, min: 0, max: 1}
  y: {type: int, min: 1, max: 5}
algorithm: {name: gp, startup_trials: 1, seed: 5}
budget: {max_trials: 4, max_concurrent: 1}
trial: {command: [train]}
)",
                            "/w");
  ASSERT_TRUE(spec.ok()) << spec.status();
  const std::string id = CreateExperiment(*spec)->id();
  RecordingSink sink;
  int64_t s = Connect("w1", 1, &sink);
  auto finish = [&](const v1::Assignment& a) {
    ASSERT_TRUE(Report(s, a.trial(), 1, a.trial().params().at("x").float_value()).ok());
    ASSERT_TRUE(Exited(s, a.trial(), 0).ok());
    ASSERT_TRUE(Pull(s, {0}).ok());
  };
  // Trial 1 is a start-up trial: random, made at once.
  ASSERT_TRUE(Pull(s, {0}).ok());
  auto a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_TRUE(jobs.empty());
  finish(a[0]);
  // Trial 2 needs the model: the slot waits for the job, not the RPC thread.
  EXPECT_TRUE(sink.TakeAssignments().empty());
  ASSERT_EQ(jobs.size(), 1u);
  auto job = std::move(jobs[0]);
  jobs.clear();
  job();
  a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].trial().id(), id + "-2");
  EXPECT_EQ(controller_->Stats().suggestions, 1);
  finish(a[0]);
  // Trial 3's job misses its deadline: Tick() draws the trial at random.
  ASSERT_EQ(jobs.size(), 1u);
  clock_.Advance(absl::Seconds(1));
  controller_->Tick();
  EXPECT_TRUE(sink.TakeAssignments().empty());  // not yet due
  clock_.Advance(absl::Seconds(1));
  controller_->Tick();
  a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].trial().id(), id + "-3");
  const double x3 = a[0].trial().params().at("x").float_value();
  EXPECT_GE(x3, 0);
  EXPECT_LE(x3, 1);
  EXPECT_EQ(controller_->Stats().suggestion_fallbacks, 1);
  // The late job finds trial 3 made: it changes nothing.
  job = std::move(jobs[0]);
  jobs.clear();
  job();
  EXPECT_TRUE(sink.TakeAssignments().empty());
  EXPECT_EQ(controller_->ListTrials(id)->size(), 3u);
  EXPECT_EQ(controller_->GetTrial(id + "-3")->params().at("x").float_value(), x3);
  EXPECT_EQ(controller_->Stats().suggestions, 1);
  // Trial 4 comes from the model again, and the experiment completes.
  finish(a[0]);
  ASSERT_EQ(jobs.size(), 1u);
  jobs[0]();
  a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].trial().id(), id + "-4");
  finish(a[0]);
  EXPECT_EQ(controller_->GetExperiment(id)->state(), v1::EXPERIMENT_COMPLETED);
  controller_.reset();  // before `jobs`, which its options point into
}

TEST_F(ControllerTest, ParetoSetAndConstraintsDecideWhatIsBest) {
  auto spec = [](const std::string& objectives, int trials) {
    return ParseSpecYaml(absl::StrCat(objectives, R"(
constraints:
  - {metric: mem, max: 16}
search_space:
  x: {type: float, min: 0, max: 1}
budget: {max_trials: )",
                                      trials, ", max_concurrent: ", trials, R"(}
trial: {command: [train]}
)"),
                         "/w")
        .value();
  };
  const std::string multi =
      CreateExperiment(
          spec("objectives: [{metric: loss, goal: minimize}, {metric: acc, goal: maximize}]", 6))
          ->id();
  RecordingSink sink;
  int64_t s = Connect("w1", 6, &sink);
  ASSERT_TRUE(Pull(s, {0, 1, 2, 3, 4, 5}).ok());
  auto a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 6u);
  auto finish = [&](const v1::Trial& t, std::map<std::string, double> values) {
    v1::WorkerMessage m;
    auto* r = m.mutable_reports()->add_reports();
    r->set_trial_id(t.id());
    r->set_attempt(t.attempt());
    r->set_seq(1);
    for (const auto& [k, v] : values) (*r->mutable_values())[k] = v;
    ASSERT_TRUE(Send(s, m).ok());
    ASSERT_TRUE(Exited(s, t, 0).ok());
  };
  finish(a[0].trial(), {{"loss", 1}, {"acc", 0.5}, {"mem", 8}});      // on the front
  finish(a[1].trial(), {{"loss", 2}, {"acc", 0.9}, {"mem", 8}});      // on the front
  finish(a[2].trial(), {{"loss", 0.5}, {"acc", 0.95}, {"mem", 20}});  // dominates all, breaks mem
  finish(a[3].trial(), {{"loss", 3}, {"acc", 0.4}, {"mem", 8}});      // dominated by both
  finish(a[4].trial(), {{"loss", 0.1}, {"acc", 0.99}});               // never says its mem
  finish(a[5].trial(), {{"loss", 0.1}, {"mem", 1}});                  // never says its acc
  auto best = controller_->GetBestTrials(multi, 0);
  ASSERT_TRUE(best.ok()) << best.status();
  ASSERT_EQ(best->size(), 2u);
  EXPECT_EQ((*best)[0].id(), multi + "-1");  // by the first objective
  EXPECT_EQ((*best)[1].id(), multi + "-2");
  EXPECT_THAT((*best)[1].results(), ::testing::ElementsAre(2, 0.9));
  EXPECT_EQ(controller_->GetBestTrials(multi, 1)->size(), 1u);
  EXPECT_EQ(controller_->GetTrial(multi + "-3")->infeasible(), "mem 20 > max 16");
  EXPECT_EQ(controller_->GetTrial(multi + "-5")->infeasible(), "never reported mem");
  EXPECT_EQ(controller_->GetTrial(multi + "-6")->state(), v1::TRIAL_FAILED);
  EXPECT_THAT(controller_->GetTrial(multi + "-6")->message(), HasSubstr("objective metric 'acc'"));
  EXPECT_FALSE(controller_->GetExperiment(multi)->has_best());  // no single best

  // One objective: the constraint breaker is never best, however low its loss.
  const std::string single =
      CreateExperiment(spec("objective: {metric: loss, goal: minimize}", 2))->id();
  ASSERT_TRUE(Pull(s, {0, 1}).ok());
  a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 2u);
  finish(a[0].trial(), {{"loss", 0.1}, {"mem", 20}});
  finish(a[1].trial(), {{"loss", 0.5}, {"mem", 8}});
  EXPECT_EQ(controller_->GetExperiment(single)->best_trial_id(), single + "-2");
  EXPECT_EQ(controller_->GetBestTrials(single, 5)->size(), 1u);
}

TEST_F(ControllerTest, AnAblationStudyRunsEveryVariantRepeatsTimesAndEachTrialKnowsWhatItDrops) {
  // The base comes from the best trial of a finished search.
  const std::string search = Create(1, 1);
  RecordingSink sink;
  int64_t s = Connect("w1", 4, &sink);
  ASSERT_TRUE(Pull(s, {0}).ok());
  auto a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 1u);
  ASSERT_TRUE(Report(s, a[0].trial(), 1, 0.5).ok());
  ASSERT_TRUE(Exited(s, a[0].trial(), 0).ok());
  const double best_x = a[0].trial().params().at("x").float_value();

  auto spec = ParseSpecYaml(absl::StrCat(R"(
kind: ablation
objective: {metric: loss, goal: minimize}
base: {from_experiment: )",
                                         search, R"(}
components: {features: [area, rooms], groups: {attention: [attn1, attn2]}}
repeats: 2
budget: {max_concurrent: 4}
trial: {command: [train, --x, "{x}"]}
)"),
                            "/work");
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto e = CreateExperiment(*spec);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->spec().budget().max_trials(), 8);  // (base + 3 components) x 2 repeats
  EXPECT_EQ(e->spec().ablation().base_params().at("x").float_value(), best_x);
  std::vector<std::string> seen;
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE(Pull(s, {0, 1, 2, 3}).ok());
    a = sink.TakeAssignments();
    ASSERT_EQ(a.size(), 4u);
    for (const auto& as : a) {
      EXPECT_EQ(as.trial().params().at("x").float_value(), best_x);  // every variant runs the base
      EXPECT_EQ(as.argv(2), FormatParam(as.trial().params().at("x")));
      seen.push_back(absl::StrCat(as.env().at("RUNG_SEED"), " ", as.env().at("RUNG_ABLATION")));
      ASSERT_TRUE(Report(s, as.trial(), 1, 1.0).ok());
      ASSERT_TRUE(Exited(s, as.trial(), 0).ok());
    }
  }
  EXPECT_THAT(seen,
              ::testing::ElementsAre(
                  R"(1 {"kind": "base", "name": "base", "dropped": []})",
                  R"(1 {"kind": "feature", "name": "area", "dropped": ["area"]})",
                  R"(1 {"kind": "feature", "name": "rooms", "dropped": ["rooms"]})",
                  R"(1 {"kind": "group", "name": "attention", "dropped": ["attn1", "attn2"]})",
                  R"(2 {"kind": "base", "name": "base", "dropped": []})",
                  R"(2 {"kind": "feature", "name": "area", "dropped": ["area"]})",
                  R"(2 {"kind": "feature", "name": "rooms", "dropped": ["rooms"]})",
                  R"(2 {"kind": "group", "name": "attention", "dropped": ["attn1", "attn2"]})"));
  EXPECT_EQ(controller_->GetExperiment(e->id())->state(), v1::EXPERIMENT_COMPLETED);
  // What each trial dropped is stored with it, and survives a restart.
  Open();
  EXPECT_EQ(controller_->GetTrial(e->id() + "-8")->ablation(),
            R"({"kind": "group", "name": "attention", "dropped": ["attn1", "attn2"]})");
  EXPECT_EQ(controller_->GetTrial(e->id() + "-8")->seed(), 2);
  // A base from an experiment with no best trial is refused, with the reason.
  const std::string empty = Create(1, 1);
  spec->mutable_ablation()->set_base_from_experiment(empty);
  spec->mutable_ablation()->clear_base_params();
  EXPECT_THAT(std::string(CreateExperiment(*spec).status().message()),
              HasSubstr("has no best trial yet"));
}

TEST_F(ControllerTest, BadInputGetsClearErrors) {
  EXPECT_EQ(controller_->GetExperiment("e99").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(controller_->GetTrial("nonsense").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(controller_->GetTrial("e1-1").status().code(), absl::StatusCode::kNotFound);
  v1::Register reg;
  EXPECT_THAT(std::string(controller_->WorkerConnected(reg, nullptr).status().message()),
              HasSubstr("worker_id"));
  RecordingSink sink;
  int64_t s = Connect("w1", 1, &sink);
  EXPECT_THAT(std::string(Pull(s, {7}).message()), HasSubstr("slot 7 was not registered"));
  v1::WorkerMessage empty;
  EXPECT_EQ(controller_->HandleWorkerMessage(s, empty).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rung::testing
