// Distributed trials in the controller: ranks placed whole across workers, rank layouts, an
// attempt that ends on every worker when one rank fails, and gang scheduling that neither
// deadlocks nor starves (a fake clock and fake workers that answer as real ones would).
#include "absl/strings/match.h"
#include "tests/unit/controller_fixture.h"

namespace rung::testing {
namespace {

using ::testing::ElementsAre;

class GangTest : public ControllerTest {
 protected:
  std::string CreateRanks(int ranks, int max_trials, int max_concurrent, int max_restarts = 0,
                          const std::string& extra = "") {
    auto spec = ParseSpecYaml(absl::StrCat(R"(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
algorithm: {name: random, seed: 3}
budget: {max_trials: )",
                                           max_trials, ", max_concurrent: ", max_concurrent, R"(}
trial: {command: [train], max_restarts: )",
                                           max_restarts, R"(}
resources: {ranks: )",
                                           ranks, extra, "}\n"),
                              "/work");
    EXPECT_TRUE(spec.ok()) << spec.status();
    auto e = CreateExperiment(*spec);
    EXPECT_TRUE(e.ok()) << e.status();
    return e->id();
  }

  int64_t ConnectAt(const std::string& id, int slots, WorkerSink* sink, const std::string& addr) {
    v1::Register reg;
    reg.set_worker_id(id);
    reg.set_addr(addr);
    reg.set_ports_first(40000);
    reg.set_ports_last(40100);
    for (int i = 0; i < slots; ++i) reg.add_slots()->set_id(i);
    auto s = controller_->WorkerConnected(reg, sink);
    EXPECT_TRUE(s.ok()) << s.status();
    return *s;
  }

  absl::Status ExitedWith(int64_t session, const v1::Trial& t, int code, int rank) {
    v1::WorkerMessage m;
    m.mutable_exited()->mutable_trial()->set_trial_id(t.id());
    m.mutable_exited()->mutable_trial()->set_attempt(t.attempt());
    m.mutable_exited()->set_exit_code(code);
    m.mutable_exited()->set_rank(rank);
    return Send(session, m);
  }

  // Workers w1 and w2 with a slot each, and the experiment's first trial of 2 ranks started
  // on both (rank 0 on w1).
  v1::Trial StartTwoRanks() {
    s1_ = ConnectAt("w1", 1, &sink1_, "h1");
    s2_ = ConnectAt("w2", 1, &sink2_, "h2");
    EXPECT_TRUE(Pull(s1_, {0}).ok());
    EXPECT_TRUE(Pull(s2_, {0}).ok());
    auto a = sink1_.TakeAssignments();
    EXPECT_EQ(a.size(), 1u);
    EXPECT_EQ(sink2_.TakeAssignments().size(), 1u);
    v1::Trial t = a.empty() ? v1::Trial() : a[0].trial();
    EXPECT_TRUE(Started(s1_, t).ok());
    EXPECT_TRUE(Started(s2_, t).ok());
    return t;
  }

  static std::vector<v1::StopTrial> Stops(RecordingSink* sink) {
    std::vector<v1::StopTrial> out;
    for (const auto& m : sink->sent) {
      if (m.has_stop()) out.push_back(m.stop());
    }
    return out;
  }

  RecordingSink sink1_, sink2_;
  int64_t s1_ = 0, s2_ = 0;
};

TEST_F(GangTest, RanksArePlacedWholeAcrossWorkersWithTheirLayout) {
  const std::string id = CreateRanks(2, 1, 1);
  RecordingSink sink1, sink2;
  int64_t s1 = ConnectAt("w1", 1, &sink1, "10.0.0.1");
  ASSERT_TRUE(Pull(s1, {0}).ok());
  EXPECT_TRUE(sink1.TakeAssignments().empty());  // half of it never starts
  EXPECT_THAT(controller_->GetExperiment(id)->unschedulable(),
              HasSubstr("needs 2 ranks of one slot each; the connected workers have room for 1"));
  int64_t s2 = ConnectAt("w2", 1, &sink2, "10.0.0.2");
  ASSERT_TRUE(Pull(s2, {0}).ok());
  auto a1 = sink1.TakeAssignments();
  auto a2 = sink2.TakeAssignments();
  ASSERT_EQ(a1.size(), 1u);
  ASSERT_EQ(a2.size(), 1u);
  EXPECT_EQ(controller_->GetExperiment(id)->unschedulable(), "");
  const v1::RankLayout& r1 = a1[0].ranks();
  const v1::RankLayout& r2 = a2[0].ranks();
  EXPECT_EQ(r1.world_size(), 2);
  EXPECT_EQ(r1.nnodes(), 2);
  EXPECT_EQ(r1.local_world_size(), 1);
  EXPECT_EQ(r1.node_rank() + r2.node_rank(), 1);
  EXPECT_EQ(r1.first_rank(), r1.node_rank());
  const v1::RankLayout& rank0 = r1.node_rank() == 0 ? r1 : r2;
  EXPECT_EQ(r1.master_addr(), r2.master_addr());
  EXPECT_EQ(r1.master_port(), 40000);
  EXPECT_EQ(r2.master_port(), 40000);
  EXPECT_EQ(rank0.rank_addrs_size(), 2);
  EXPECT_EQ(rank0.rank_addrs(0), absl::StrCat(rank0.master_addr(), ":40001"));
  auto t = controller_->GetTrial(id + "-1");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->placements_size(), 2);
  EXPECT_EQ(t->worker_id(), t->placements(0).worker_id());
  EXPECT_EQ(t->master_port(), 40000);
  EXPECT_EQ(controller_->Stats().slots_busy, 2);
}

TEST_F(GangTest, RanksPerNodePacksExactlyThatManyOnEachWorker) {
  CreateRanks(4, 1, 1, 0, ", ranks_per_node: 2");
  RecordingSink big, small1;
  int64_t s = ConnectAt("big", 3, &big, "a");
  int64_t s1 = ConnectAt("small1", 2, &small1, "b");
  ASSERT_TRUE(Pull(s, {0, 1, 2}).ok());
  ASSERT_TRUE(Pull(s1, {0, 1}).ok());
  auto a = big.TakeAssignments();
  auto b = small1.TakeAssignments();
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(a[0].ranks().local_world_size(), 2);  // 2 of its 3 slots, not 3
  EXPECT_THAT(a[0].trial().slots(), ElementsAre(0, 1));
  EXPECT_EQ(b[0].ranks().local_world_size(), 2);
}

TEST_F(GangTest, AFailedRankEndsTheAttemptEverywhereAndCountsOnce) {
  const std::string id = CreateRanks(2, 1, 1, /*max_restarts=*/1);
  v1::Trial t = StartTwoRanks();
  // Rank 1 (on w2) dies: w1's rank 0 is stopped at once, and the attempt is retried whole.
  ASSERT_TRUE(ExitedWith(s2_, t, 1, 1).ok());
  auto stops = Stops(&sink1_);
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_TRUE(stops[0].now());
  EXPECT_EQ(stops[0].trial().attempt(), 1);
  auto after = controller_->GetTrial(id + "-1");
  EXPECT_EQ(after->state(), v1::TRIAL_PENDING);
  EXPECT_EQ(after->attempt(), 2);
  EXPECT_EQ(after->failures(), 1);
  EXPECT_THAT(after->message(), HasSubstr("rank 1 (worker w2) exited with code 1"));
  EXPECT_EQ(after->placements_size(), 0);
  EXPECT_EQ(controller_->Stats().slots_busy, 0);
  // w1's rank 0 exits from the kill: news of an attempt that is over changes nothing.
  ASSERT_TRUE(ExitedWith(s1_, t, 143, 0).ok());
  EXPECT_EQ(controller_->GetTrial(id + "-1")->failures(), 1);
  // Attempt 2 on both again. Rank 1 ends first and well: it waits for rank 0, which decides.
  sink1_.sent.clear();
  ASSERT_TRUE(Pull(s1_, {0}).ok());
  ASSERT_TRUE(Pull(s2_, {0}).ok());
  t = sink1_.TakeAssignments().at(0).trial();
  ASSERT_EQ(t.attempt(), 2);
  EXPECT_NE(t.master_port(), 40000);  // the first attempt's rank 0 may still hold its ports
  ASSERT_EQ(sink2_.TakeAssignments().size(), 1u);
  ASSERT_TRUE(Started(s1_, t).ok());
  ASSERT_TRUE(Started(s2_, t).ok());
  ASSERT_TRUE(ExitedWith(s2_, t, 0, 1).ok());
  EXPECT_EQ(controller_->GetTrial(id + "-1")->state(), v1::TRIAL_RUNNING);
  ASSERT_TRUE(Report(s1_, t, 1, 0.25).ok());
  ASSERT_TRUE(ExitedWith(s1_, t, 0, 0).ok());
  after = controller_->GetTrial(id + "-1");
  EXPECT_EQ(after->state(), v1::TRIAL_COMPLETED);
  EXPECT_EQ(after->failures(), 1);
  EXPECT_DOUBLE_EQ(after->result(), 0.25);
  EXPECT_EQ(controller_->GetExperiment(id)->state(), v1::EXPERIMENT_COMPLETED);
}

TEST_F(GangTest, ALostWorkerEndsTheWholeAttemptAfterItsLease) {
  const std::string id = CreateRanks(2, 1, 1, /*max_restarts=*/2);
  v1::Trial t = StartTwoRanks();
  // w2 goes silent (kill -9); w1 keeps sending heartbeats.
  for (int i = 0; i < 4; ++i) {
    clock_.Advance(absl::Seconds(10));
    v1::WorkerMessage hb;
    hb.mutable_heartbeat();
    ASSERT_TRUE(controller_->HandleWorkerMessage(s1_, hb).ok());
    controller_->Tick();
  }
  auto after = controller_->GetTrial(id + "-1");
  EXPECT_EQ(after->state(), v1::TRIAL_PENDING);
  EXPECT_EQ(after->attempt(), 2);
  EXPECT_THAT(after->message(), HasSubstr("worker w2 silent"));
  auto stops = Stops(&sink1_);
  ASSERT_EQ(stops.size(), 1u);  // rank 0 on w1 goes too
  EXPECT_TRUE(stops[0].now());
}

// A slot with an idle runner (trial.reuse_process) goes to its experiment's next trial; other
// experiments take slots without one. When the experiment ends, every worker hears it.
TEST_F(GangTest, WarmSlotsGoToTheirExperimentAndEndedExperimentsReleaseTheirRunners) {
  const std::string cold = CreateRanks(1, 1, 1);
  auto spec = ParseSpecYaml(R"(
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
budget: {max_trials: 1, max_concurrent: 1}
trial: {command: [train], reuse_process: true}
)",
                            "/work");
  ASSERT_TRUE(spec.ok()) << spec.status();
  const std::string warm = CreateExperiment(*spec)->id();
  RecordingSink sink;
  int64_t s = ConnectAt("w1", 2, &sink, "h");
  v1::WorkerMessage m;
  m.mutable_pull()->add_free_slots(0);
  m.mutable_pull()->add_free_slots(1);
  (*m.mutable_pull()->mutable_warm())[0] = warm;
  ASSERT_TRUE(controller_->HandleWorkerMessage(s, m).ok());
  auto a = sink.TakeAssignments();
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].trial().experiment_id(), cold);
  EXPECT_THAT(a[0].trial().slots(), ElementsAre(1));  // not the other experiment's runner
  EXPECT_EQ(a[1].trial().experiment_id(), warm);
  EXPECT_THAT(a[1].trial().slots(), ElementsAre(0));  // its own runner's slot
  EXPECT_TRUE(a[1].reuse_process());
  ASSERT_TRUE(CancelExperiment(warm).ok());
  int done = 0;
  for (const auto& msg : sink.sent) done += msg.runners_done().experiment_id() == warm;
  EXPECT_EQ(done, 1);
}

TEST_F(GangTest, APausedTrialEndsWhenEveryShareHasExited) {
  const std::string id = CreateRanks(2, 1, 1);
  v1::Trial t = StartTwoRanks();
  ASSERT_TRUE(PauseExperiment(id).ok());
  EXPECT_EQ(Stops(&sink1_).size(), 1u);
  EXPECT_EQ(Stops(&sink2_).size(), 1u);
  ASSERT_TRUE(ResumeExperiment(id).ok());
  // Rank 1 stops first; rank 0 is still saving its checkpoint: the attempt is not over.
  ASSERT_TRUE(ExitedWith(s2_, t, 0, 1).ok());
  EXPECT_EQ(controller_->GetTrial(id + "-1")->attempt(), 1);
  EXPECT_TRUE(TrialActive(controller_->GetTrial(id + "-1")->state()));
  ASSERT_TRUE(ExitedWith(s1_, t, 0, 0).ok());
  auto after = controller_->GetTrial(id + "-1");
  EXPECT_EQ(after->attempt(), 2);  // back in the queue, from a finished checkpoint
  EXPECT_EQ(after->failures(), 0);
}

TEST_F(GangTest, AShareThatEndedIsNotLostWhenItsWorkerComesBack) {
  const std::string id = CreateRanks(2, 1, 1, /*max_restarts=*/1);
  v1::Trial t = StartTwoRanks();
  // Rank 1 is done (its slot is free at once) while rank 0 still evaluates...
  ASSERT_TRUE(ExitedWith(s2_, t, 0, 1).ok());
  EXPECT_EQ(controller_->Stats().slots_busy, 1);
  // ...and w2 reconnects, having forgotten the attempt it finished: nothing is lost.
  controller_->WorkerDisconnected(s2_);
  RecordingSink sink2b;
  ConnectAt("w2", 1, &sink2b, "h2");
  auto after = controller_->GetTrial(id + "-1");
  EXPECT_EQ(after->state(), v1::TRIAL_RUNNING);
  EXPECT_EQ(after->attempt(), 1);
  EXPECT_TRUE(Stops(&sink1_).empty());
  // Nor after w2's lease would have run out.
  for (int i = 0; i < 4; ++i) {
    clock_.Advance(absl::Seconds(10));
    v1::WorkerMessage hb;
    hb.mutable_heartbeat();
    ASSERT_TRUE(controller_->HandleWorkerMessage(s1_, hb).ok());
    controller_->Tick();
  }
  EXPECT_EQ(controller_->GetTrial(id + "-1")->attempt(), 1);
  ASSERT_TRUE(Report(s1_, t, 1, 0.5).ok());
  ASSERT_TRUE(ExitedWith(s1_, t, 0, 0).ok());
  EXPECT_EQ(controller_->GetTrial(id + "-1")->state(), v1::TRIAL_COMPLETED);
}

// Fake workers for the scheduling test: each runs what it is assigned for `duration` of the
// fake clock, then reports and exits 0, and offers its free slots again.
struct FakeWorker {
  std::string id;
  int slots = 0;
  int64_t session = 0;
  RecordingSink sink;
  struct Running {
    v1::Trial trial;
    std::vector<int> slots;
    absl::Time until;
    int rank = 0;
  };
  std::vector<Running> running;
  std::set<int> free;
};

TEST_F(GangTest, MixedSizesNeitherDeadlockNorStarve) {
  Open([] {
    ControllerOptions o;
    o.reserve_after = absl::Seconds(60);
    return o;
  }());
  // First in line: a long stream of one-rank trials that would take every slot that frees up.
  const std::string small = CreateRanks(1, 1000, 4);
  // Then two experiments whose 3-rank trials each fit only alone on the 4 slots.
  const std::string big1 = CreateRanks(3, 2, 1);
  const std::string big2 = CreateRanks(3, 2, 1);
  std::vector<std::unique_ptr<FakeWorker>> workers;
  for (const char* id : {"w1", "w2"}) {
    auto w = std::make_unique<FakeWorker>();
    w->id = id;
    w->slots = 2;
    w->session = ConnectAt(id, 2, &w->sink, id);
    w->free = {0, 1};
    workers.push_back(std::move(w));
  }
  std::map<std::string, int> most_ranks_running;  // trial id -> ranks seen at once
  int64_t report_seq = 0;
  for (int step = 0; step < 400; ++step) {
    for (auto& w : workers) {
      for (const v1::Assignment& a : w->sink.TakeAssignments()) {
        FakeWorker::Running r{a.trial(),
                              {a.trial().slots().begin(), a.trial().slots().end()},
                              clock_.Now() + absl::Seconds(25),
                              a.ranks().first_rank()};
        for (int s : r.slots) ASSERT_TRUE(w->free.erase(s)) << "slot " << s << " given twice";
        w->running.push_back(r);
        ASSERT_TRUE(Started(w->session, r.trial).ok());
      }
    }
    // Every assigned trial has all its ranks running: nothing holds half a gang.
    std::map<std::string, int> ranks;
    for (auto& w : workers) {
      for (auto& r : w->running) ranks[r.trial.id()] += static_cast<int>(r.slots.size());
    }
    for (auto& [trial, n] : ranks) {
      const int want = absl::StartsWith(trial, small + "-") ? 1 : 3;
      ASSERT_EQ(n, want) << trial << " runs with " << n << " of its " << want << " ranks";
    }
    clock_.Advance(absl::Seconds(5));
    for (auto& w : workers) {
      std::vector<FakeWorker::Running> still;
      for (auto& r : w->running) {
        if (clock_.Now() < r.until) {
          still.push_back(r);
          continue;
        }
        if (r.rank == 0) {
          ASSERT_TRUE(Report(w->session, r.trial, ++report_seq, 0.5).ok());
        }
        ASSERT_TRUE(ExitedWith(w->session, r.trial, 0, r.rank).ok());
        w->free.insert(r.slots.begin(), r.slots.end());
      }
      w->running = std::move(still);
      ASSERT_TRUE(Pull(w->session, {w->free.begin(), w->free.end()}).ok());
    }
    controller_->Tick();
    if (controller_->GetExperiment(big1)->state() == v1::EXPERIMENT_COMPLETED &&
        controller_->GetExperiment(big2)->state() == v1::EXPERIMENT_COMPLETED) {
      break;
    }
  }
  // Both distributed experiments finished while the small one, first in line, still had trials
  // to run (without the reservation they would wait for all 1,000 of them), and the small one
  // used what the big ones could not (backfill).
  EXPECT_EQ(controller_->GetExperiment(big1)->state(), v1::EXPERIMENT_COMPLETED);
  EXPECT_EQ(controller_->GetExperiment(big2)->state(), v1::EXPERIMENT_COMPLETED);
  EXPECT_EQ(controller_->GetExperiment(big1)->counts().completed(), 2);
  EXPECT_EQ(controller_->GetExperiment(big2)->counts().completed(), 2);
  const v1::Experiment s = *controller_->GetExperiment(small);
  EXPECT_EQ(s.state(), v1::EXPERIMENT_RUNNING);
  EXPECT_GT(s.counts().completed(), 4);
}

}  // namespace
}  // namespace rung::testing
