// What the controller lets out, and when: nothing before its write is on disk, nothing at all
// when the write fails (and memory still equals the disk); who may register under a worker's
// name; why an experiment no worker can run waits.
#include "google/protobuf/util/message_differencer.h"
#include "tests/unit/controller_fixture.h"

namespace rung::testing {
namespace {

using ::google::protobuf::util::MessageDifferencer;

class RecordingWatch : public WatchSink {
 public:
  void Send(const v1::WatchEvent& e) override { events.push_back(e); }
  void Close() override { closed = true; }
  std::vector<v1::WatchEvent> events;
  bool closed = false;
};

v1::Register Registration(const std::string& id, const std::string& session_id, int cpu_slots,
                          const std::vector<std::string>& gpus = {}) {
  v1::Register reg;
  reg.set_worker_id(id);
  reg.set_host("node1");
  reg.set_session_id(session_id);
  int slot = 0;
  for (const std::string& g : gpus) {
    auto* s = reg.add_slots();
    s->set_id(slot++);
    s->set_gpu(g);
  }
  for (int i = 0; i < cpu_slots; ++i) reg.add_slots()->set_id(slot++);
  return reg;
}

class CommitTest : public ControllerTest {
 protected:
  // The controller's experiment and trials against what the store holds.
  void ExpectMemoryEqualsDisk(const std::string& id) {
    std::vector<v1::Experiment> stored;
    ASSERT_TRUE(store_
                    ->ForEachExperiment([&](v1::Experiment e) {
                      if (e.id() == id) stored.push_back(std::move(e));
                    })
                    .ok());
    ASSERT_EQ(stored.size(), 1u);
    auto mem = controller_->GetExperiment(id);
    ASSERT_TRUE(mem.ok());
    EXPECT_TRUE(MessageDifferencer::Equals(*mem, stored[0])) << mem->DebugString() << "\nvs disk\n"
                                                             << stored[0].DebugString();
    std::vector<v1::Trial> disk;
    ASSERT_TRUE(store_->ForEachTrial(id, [&](v1::Trial t) { disk.push_back(std::move(t)); }).ok());
    auto trials = controller_->ListTrials(id);
    ASSERT_TRUE(trials.ok());
    ASSERT_EQ(trials->size(), disk.size());
    for (size_t i = 0; i < disk.size(); ++i) {
      EXPECT_TRUE(MessageDifferencer::Equals((*trials)[i], disk[i]))
          << (*trials)[i].DebugString() << "\nvs disk\n"
          << disk[i].DebugString();
    }
  }
};

TEST_F(CommitTest, AFailedWriteSendsNothingAndLeavesMemoryEqualToTheDisk) {
  const std::string id = Create(3, 2);
  RecordingSink sink;
  int64_t s = Connect("w1", 2, &sink);
  ASSERT_TRUE(Pull(s, {0, 1}).ok());
  auto a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 2u);
  ASSERT_TRUE(Started(s, a[0].trial()).ok());
  ASSERT_TRUE(Started(s, a[1].trial()).ok());
  ASSERT_TRUE(Report(s, a[0].trial(), 1, 0.25).ok());
  RecordingWatch watch;
  ASSERT_TRUE(controller_->Watch(id, &watch).ok());
  ASSERT_EQ(watch.events.size(),
            3u);  // two trials so far (the third is not made yet), the experiment
  watch.events.clear();
  sink.sent.clear();

  store_->fail_writes = true;
  // Trial 1 exits well: that would complete it, hand its slot trial 3, acknowledge the exit
  // and tell the watcher. The write fails: none of it happens.
  absl::Status exited = Exited(s, a[0].trial(), 0);
  EXPECT_EQ(exited.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(exited.message()), HasSubstr("No space left on device"));
  // A cancel would stop both running trials: refused, and no stop order goes out.
  auto cancelled = CancelExperiment(id);
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(sink.sent.empty()) << sink.sent[0].DebugString();
  EXPECT_TRUE(watch.events.empty()) << watch.events[0].DebugString();
  EXPECT_FALSE(watch.closed);
  ExpectMemoryEqualsDisk(id);
  // A heartbeat changes nothing: the worker's stream stays up while nothing can be written.
  v1::WorkerMessage heartbeat;
  heartbeat.mutable_heartbeat();
  EXPECT_TRUE(controller_->HandleWorkerMessage(s, heartbeat).ok());
  EXPECT_EQ(controller_->GetTrial(id + "-1")->state(), v1::TRIAL_RUNNING);
  EXPECT_EQ(controller_->ListTrials(id)->size(), 2u);
  EXPECT_EQ(controller_->Stats().slots_busy, 2);

  // Space returns: the next Tick after a second reopens the store and reloads; the worker's
  // stream is no longer current, so it registers again with what it runs, and goes on.
  store_->fail_writes = false;
  clock_.Advance(absl::Seconds(1));
  controller_->Tick();
  EXPECT_EQ(controller_->Stats().store_recoveries, 1);
  EXPECT_TRUE(watch.closed);  // a watcher watches again and sees the reloaded state
  EXPECT_EQ(Exited(s, a[0].trial(), 0).code(), absl::StatusCode::kFailedPrecondition);
  RecordingSink sink2;
  s = Connect("w1", 2, &sink2, {{id + "-1", 1}, {id + "-2", 1}});
  ASSERT_TRUE(Exited(s, a[0].trial(), 0).ok());
  ASSERT_TRUE(Pull(s, {0}).ok());
  a = sink2.TakeAssignments();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].trial().id(), id + "-3");
  EXPECT_EQ(controller_->GetTrial(id + "-1")->state(), v1::TRIAL_COMPLETED);
  ExpectMemoryEqualsDisk(id);
}

TEST_F(CommitTest, NothingGoesOutBeforeItsWriteIsOnDisk) {
  // Group commit with a delay longer than the test: nothing is fsynced unless a caller asks.
  Open(ControllerOptions(), absl::Hours(1));
  const std::string id = Create(2, 2);  // a client's call: fsynced before its answer
  RecordingWatch watch;
  ASSERT_TRUE(controller_->Watch(id, &watch).ok());
  EXPECT_EQ(watch.events.size(), 1u);  // the experiment, durable already
  AckSink sink;
  int64_t s = Connect("w1", 1, &sink);
  ASSERT_TRUE(Pull(s, {0}).ok());
  // Trial 1 is made, assigned and written, but not on disk: no assignment, no watch event.
  EXPECT_EQ(sink.Assignments(), 0u);
  EXPECT_EQ(watch.events.size(), 1u);
  EXPECT_GT(store_->LastWrite(), store_->Durable());
  EXPECT_EQ(controller_->GetTrial(id + "-1")->state(), v1::TRIAL_ASSIGNED);
  // A caller's call fsyncs; everything before it goes out, in order.
  ASSERT_TRUE(PauseExperiment(id).ok());
  EXPECT_EQ(sink.Assignments(), 1u);
  std::vector<v1::TrialState> trial_events;
  for (const auto& e : watch.events) {
    if (e.has_trial()) trial_events.push_back(e.trial().state());
  }
  // Made, handed out, then stopped for the pause.
  EXPECT_THAT(trial_events,
              ::testing::ElementsAre(v1::TRIAL_PENDING, v1::TRIAL_ASSIGNED, v1::TRIAL_ASSIGNED));
  EXPECT_TRUE(controller_->GetTrial(id + "-1")->stop_requested());
  EXPECT_EQ(watch.events.back().experiment().state(), v1::EXPERIMENT_PAUSED);
}

TEST_F(CommitTest, ASecondLiveWorkerUnderOneNameIsRefusedAndARestartedOneIsRecognised) {
  const std::string id = Create(2, 1, /*max_restarts=*/1);
  RecordingSink first;
  auto s1 = controller_->WorkerConnected(Registration("vm", "process-a", 1), &first);
  ASSERT_TRUE(s1.ok());
  ASSERT_TRUE(Pull(*s1, {0}).ok());
  auto a = first.TakeAssignments();
  ASSERT_EQ(a.size(), 1u);
  ASSERT_TRUE(Started(*s1, a[0].trial()).ok());
  first.sent.clear();

  // Another process (two workers with the host name as --name) while the first is alive.
  clock_.Advance(absl::Seconds(3));
  RecordingSink second;
  auto s2 = controller_->WorkerConnected(Registration("vm", "process-b", 1), &second);
  ASSERT_EQ(s2.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(s2.status().message()),
              HasSubstr("worker name 'vm' is already connected"));
  EXPECT_THAT(std::string(s2.status().message()), HasSubstr("give each its own --name"));
  // The running worker keeps its trial and its stream.
  EXPECT_TRUE(first.sent.empty());
  EXPECT_TRUE(second.sent.empty());
  EXPECT_EQ(controller_->GetTrial(id + "-1")->state(), v1::TRIAL_RUNNING);
  EXPECT_EQ(controller_->GetTrial(id + "-1")->failures(), 0);
  ASSERT_TRUE(Report(*s1, a[0].trial(), 1, 0.5).ok());

  // The same process on a new stream (its old one broke) takes over at once.
  RecordingSink again;
  auto s3 = controller_->WorkerConnected(Registration("vm", "process-a", 1), &again);
  ASSERT_TRUE(s3.ok());
  ASSERT_TRUE(Report(*s3, a[0].trial(), 2, 0.4).ok());
  EXPECT_EQ(Report(*s1, a[0].trial(), 3, 0.3).code(), absl::StatusCode::kFailedPrecondition);

  // Silent for two heartbeats: the process died without its stream ending (a reboot). A new
  // process under the name is the worker restarted: it is let in, and the trial it lost runs
  // again.
  clock_.Advance(absl::Seconds(11));
  RecordingSink restarted;
  auto s4 = controller_->WorkerConnected(Registration("vm", "process-c", 1), &restarted);
  ASSERT_TRUE(s4.ok()) << s4.status();
  const v1::Trial t = *controller_->GetTrial(id + "-1");
  EXPECT_EQ(t.state(), v1::TRIAL_PENDING);
  EXPECT_EQ(t.attempt(), 2);
  EXPECT_THAT(t.message(), HasSubstr("worker vm restarted and lost it"));
}

TEST_F(CommitTest, AnExperimentNoConnectedWorkerCanRunSaysWhy) {
  auto spec = ParseSpecYaml(R"(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
budget: {max_trials: 2}
resources: {gpus: 2}
trial: {command: [train]}
)",
                            "/w");
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto e = CreateExperiment(*spec);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->unschedulable(), "no worker is connected");
  RecordingWatch watch;
  ASSERT_TRUE(controller_->Watch(e->id(), &watch).ok());
  RecordingSink one_gpu;
  auto s = controller_->WorkerConnected(Registration("small", "p1", 2, {"0"}), &one_gpu);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(Pull(*s, {0, 1, 2}).ok());
  EXPECT_TRUE(one_gpu.TakeAssignments().empty());
  EXPECT_EQ(controller_->GetExperiment(e->id())->unschedulable(),
            "no connected worker has 2 GPUs; the largest has 1");
  EXPECT_EQ(watch.events.back().experiment().unschedulable(),
            "no connected worker has 2 GPUs; the largest has 1");
  EXPECT_EQ(controller_->Stats().experiments_unschedulable, 1);
  // Labels no worker carries are named too.
  v1::ExperimentSpec labelled = *spec;
  labelled.mutable_trial()->set_gpus(0);
  (*labelled.mutable_trial()->mutable_labels())["zone"] = "b";
  auto l = CreateExperiment(labelled);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->unschedulable(), "no connected worker has the labels zone=b (resources.labels)");
  ASSERT_TRUE(CancelExperiment(l->id()).ok());
  EXPECT_EQ(controller_->GetExperiment(l->id())->unschedulable(), "");  // ended: no longer waits
  // A worker with two GPUs comes: the experiment can run, and runs.
  RecordingSink big;
  auto b = controller_->WorkerConnected(Registration("big", "p2", 0, {"0", "1"}), &big);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(controller_->GetExperiment(e->id())->unschedulable(), "");
  EXPECT_EQ(controller_->Stats().experiments_unschedulable, 0);
  ASSERT_TRUE(Pull(*b, {0, 1}).ok());
  auto a = big.TakeAssignments();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].trial().slots_size(), 2);
  // The big worker goes: the next Tick says so again, without waiting for its lease.
  controller_->WorkerDisconnected(*b);
  controller_->Tick();
  EXPECT_EQ(controller_->GetExperiment(e->id())->unschedulable(),
            "no connected worker has 2 GPUs; the largest has 1");
}

TEST_F(CommitTest, EachChangeIsWrittenOnceAndNothingNewStartsAfterShutdown) {
  // A creation writes the next id, the record, the searcher's snapshot and the journal's
  // start, then (dispatch, with no worker to run it) the record again saying why it waits:
  // five keys, each once.
  const int64_t before = store_->entries_written;
  const std::string id = Create(2, 1);
  EXPECT_EQ(store_->entries_written - before, 5);
  controller_->Shutdown(absl::UnavailableError("rungd is shutting down; ask again"));
  RecordingWatch watch;
  EXPECT_EQ(controller_->Watch(id, &watch).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(CancelExperiment(id).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace rung::testing
