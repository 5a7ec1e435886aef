// Ask and tell on the controller (execution: external): clients ask for trials, report and
// complete them; leases; waiting for a model; errors.
#include "tests/unit/controller_fixture.h"

namespace rung::testing {
namespace {

class AskTellTest : public ControllerTest {
 protected:
  std::string CreateExternal(const std::string& extra, int max_trials, int max_concurrent) {
    auto spec =
        ParseSpecYaml(absl::StrCat(R"(
execution: external
objective: {metric: loss, goal: minimize}
search_space:
  x: {type: float, min: 0, max: 1}
budget: {max_trials: )",
                                   max_trials, ", max_concurrent: ", max_concurrent, "}\n", extra),
                      "");
    EXPECT_TRUE(spec.ok()) << spec.status();
    auto e = CreateExperiment(*spec);
    EXPECT_TRUE(e.ok()) << e.status();
    return e->id();
  }
  // The answer, or DEADLINE_EXCEEDED when the controller has not answered yet (`*pending`
  // then gets it later).
  absl::StatusOr<v1::AskTrialsResponse> Ask(
      const std::string& id, const std::string& client, int count,
      std::optional<absl::StatusOr<v1::AskTrialsResponse>>* pending = nullptr) {
    v1::AskTrialsRequest req;
    req.set_experiment_id(id);
    req.set_client_id(client);
    req.set_count(count);
    auto got = std::make_shared<std::optional<absl::StatusOr<v1::AskTrialsResponse>>>();
    controller_->AskTrials(req, [got, pending](absl::StatusOr<v1::AskTrialsResponse> r) {
      if (pending != nullptr) *pending = r;
      *got = std::move(r);
    });
    if (!got->has_value()) return absl::DeadlineExceededError("not answered yet");
    return **got;
  }
  static std::vector<std::string> Ids(const v1::AskTrialsResponse& r) {
    std::vector<std::string> ids;
    for (const auto& t : r.trials()) ids.push_back(t.id());
    return ids;
  }
  absl::StatusOr<v1::ReportTrialResponse> Tell(const std::string& trial, const std::string& client,
                                               int64_t seq, double loss) {
    v1::ReportTrialRequest req;
    req.set_trial_id(trial);
    req.set_client_id(client);
    req.set_seq(seq);
    req.set_step(static_cast<double>(seq));
    (*req.mutable_values())["loss"] = loss;
    return Await<v1::ReportTrialResponse>([&](auto done) { controller_->ReportTrial(req, done); });
  }
  absl::StatusOr<v1::Trial> Complete(const std::string& trial, const std::string& client,
                                     std::optional<double> loss, bool failed = false) {
    v1::CompleteTrialRequest req;
    req.set_trial_id(trial);
    req.set_client_id(client);
    if (loss) (*req.mutable_values())["loss"] = *loss;
    req.set_failed(failed);
    req.set_message(failed ? "out of memory" : "");
    return Await<v1::Trial>([&](auto done) { controller_->CompleteTrial(req, done); });
  }
};

TEST_F(AskTellTest, ClientsAskReportAndCompleteAndARetriedAskReturnsTheSameTrials) {
  const std::string id = CreateExternal("", 3, 2);
  // A connected worker with free slots never gets an external experiment's trials.
  RecordingSink sink;
  int64_t s = Connect("w1", 4, &sink);
  ASSERT_TRUE(Pull(s, {0, 1, 2, 3}).ok());
  EXPECT_TRUE(sink.TakeAssignments().empty());

  auto a = Ask(id, "laptop", 2);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->trials_size(), 2);
  EXPECT_EQ(a->trials(0).state(), v1::TRIAL_RUNNING);
  EXPECT_EQ(a->trials(0).client_id(), "laptop");
  EXPECT_EQ(a->lease_timeout_ms(), 600000);
  // The answer was lost and the client asks again: the same trials, not new ones.
  auto again = Ask(id, "laptop", 2);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(Ids(*again), Ids(*a));
  // max_concurrent is 2: another client waits, and is told why.
  auto other = Ask(id, "desktop", 1);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->trials_size(), 0);
  EXPECT_FALSE(other->done());
  EXPECT_THAT(other->why(), HasSubstr("max_concurrent"));
  EXPECT_EQ(controller_->GetExperiment(id)->state(), v1::EXPERIMENT_RUNNING);

  const std::string t1 = a->trials(0).id(), t2 = a->trials(1).id();
  auto r = Tell(t1, "laptop", 1, 0.5);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->stop());
  ASSERT_TRUE(Tell(t1, "laptop", 1, 0.5).ok());  // a retried report is stored once
  EXPECT_EQ(controller_->GetTrial(t1)->reports(), 1);
  EXPECT_EQ(controller_->GetTrialMetrics(t1)->size(), 1u);
  EXPECT_THAT(std::string(Tell(t1, "desktop", 2, 0.1).status().message()),
              HasSubstr("held by client 'laptop', not 'desktop'"));
  EXPECT_THAT(std::string(Tell(t1, "laptop", 2, std::nan("")).status().message()),
              HasSubstr("not a finite number"));

  // Completed with what it reported; a repeated completion changes nothing.
  auto c = Complete(t1, "laptop", std::nullopt);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->state(), v1::TRIAL_COMPLETED);
  EXPECT_EQ(c->result(), 0.5);
  ASSERT_TRUE(Complete(t1, "laptop", std::nullopt).ok());
  // No objective yet: refused, and the trial keeps running.
  auto no_obj = Complete(t2, "laptop", std::nullopt);
  EXPECT_EQ(no_obj.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_obj.status().message()), HasSubstr("objective 'loss'"));
  EXPECT_EQ(controller_->GetTrial(t2)->state(), v1::TRIAL_RUNNING);
  // The client gives up on it: failed (max_restarts is 0), with its reason.
  auto f = Complete(t2, "laptop", std::nullopt, /*failed=*/true);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->state(), v1::TRIAL_FAILED);
  EXPECT_THAT(f->message(), HasSubstr("out of memory"));

  auto third = Ask(id, "desktop", 1);
  ASSERT_TRUE(third.ok());
  ASSERT_EQ(third->trials_size(), 1);
  auto c3 = Complete(third->trials(0).id(), "desktop", 0.25);
  ASSERT_TRUE(c3.ok()) << c3.status();
  auto e = controller_->GetExperiment(id);
  EXPECT_EQ(e->state(), v1::EXPERIMENT_COMPLETED);
  EXPECT_EQ(e->best_trial_id(), third->trials(0).id());
  auto last = Ask(id, "desktop", 1);
  ASSERT_TRUE(last.ok());
  EXPECT_TRUE(last->done());
  EXPECT_THAT(last->why(), HasSubstr("EXPERIMENT_COMPLETED"));
}

TEST_F(AskTellTest, AnAbandonedTrialsLeaseExpiresAndAnotherClientGetsItEvenAfterARestart) {
  const std::string id =
      CreateExternal("client_lease_seconds: 60\ntrial: {max_restarts: 1}\n", 2, 1);
  auto a = Ask(id, "gone", 1);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->trials_size(), 1);
  const std::string t1 = a->trials(0).id();
  clock_.Advance(absl::Seconds(59));
  controller_->Tick();
  ASSERT_TRUE(Tell(t1, "gone", 1, 0.9).ok());  // a report renews the lease
  clock_.Advance(absl::Seconds(59));
  controller_->Tick();
  EXPECT_EQ(controller_->GetTrial(t1)->state(), v1::TRIAL_RUNNING);
  clock_.Advance(absl::Seconds(2));
  controller_->Tick();
  auto t = controller_->GetTrial(t1);
  EXPECT_EQ(t->state(), v1::TRIAL_PENDING);
  EXPECT_EQ(t->attempt(), 2);
  EXPECT_EQ(t->client_id(), "");
  EXPECT_THAT(t->message(), HasSubstr("lease expired: client 'gone' silent for 1m1s"));
  EXPECT_EQ(controller_->Stats().lease_expirations, 1);
  // The client comes back too late: told to stop; nothing it says is stored.
  auto late = Tell(t1, "gone", 2, 0.1);
  ASSERT_TRUE(late.ok());
  EXPECT_TRUE(late->stop());
  EXPECT_THAT(late->reason(), HasSubstr("no longer holds"));
  EXPECT_EQ(Complete(t1, "gone", 0.1).status().code(), absl::StatusCode::kFailedPrecondition);

  auto b = Ask(id, "new", 1);
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(Ids(*b), std::vector<std::string>{t1});
  EXPECT_EQ(b->trials(0).attempt(), 2);
  // rungd restarts: the client's retried ask still returns the trial it holds.
  Open();
  auto after = Ask(id, "new", 1);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(Ids(*after), std::vector<std::string>{t1});
  ASSERT_TRUE(Complete(t1, "new", 0.3).ok());
}

TEST_F(AskTellTest, AnAskWaitsForTheModelAndAPauseTellsTheClientToStop) {
  std::vector<std::function<void()>> jobs;
  ControllerOptions o;
  o.run_job = [&](std::function<void()> job) { jobs.push_back(std::move(job)); };
  Open(o);
  const std::string id =
      CreateExternal("algorithm: {name: gp, startup_trials: 1, seed: 2}\n", 3, 1);
  auto a = Ask(id, "c", 1);  // a start-up trial: random, at once
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->trials_size(), 1);
  ASSERT_TRUE(Complete(a->trials(0).id(), "c", 0.4).ok());
  // The model proposes trial 2 off the lock: the ask is answered when it is done.
  std::optional<absl::StatusOr<v1::AskTrialsResponse>> pending;
  EXPECT_EQ(Ask(id, "c", 1, &pending).status().code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_FALSE(pending.has_value());
  jobs[0]();
  jobs.clear();
  ASSERT_TRUE(pending.has_value());
  ASSERT_TRUE(pending->ok()) << pending->status();
  ASSERT_EQ((*pending)->trials_size(), 1);
  const std::string t2 = (*pending)->trials(0).id();
  EXPECT_EQ(t2, id + "-2");

  // A pause: the next report says stop; the completion leaves it PAUSED, and the resume
  // hands it out again as a new attempt.
  ASSERT_TRUE(PauseExperiment(id).ok());
  auto r = Tell(t2, "c", 1, 0.3);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->stop());
  EXPECT_EQ(r->reason(), "experiment paused");
  auto paused = Ask(id, "c", 1);
  ASSERT_TRUE(paused.ok());
  EXPECT_EQ(paused->trials_size(), 0);
  EXPECT_EQ(paused->why(), "the experiment is paused");
  auto c = Complete(t2, "c", std::nullopt);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->state(), v1::TRIAL_PAUSED);
  ASSERT_TRUE(ResumeExperiment(id).ok());
  auto resumed = Ask(id, "c", 1);
  ASSERT_TRUE(resumed.ok());
  ASSERT_EQ(Ids(*resumed), std::vector<std::string>{t2});
  EXPECT_EQ(resumed->trials(0).attempt(), 2);
  // A waiting ask is answered when rungd shuts down, not left hanging.
  ASSERT_TRUE(Complete(t2, "c", 0.2).ok());
  pending.reset();
  EXPECT_EQ(Ask(id, "c", 1, &pending).status().code(), absl::StatusCode::kDeadlineExceeded);
  controller_->Shutdown(absl::UnavailableError("shutting down"));
  ASSERT_TRUE(pending.has_value());
  EXPECT_EQ(pending->status().code(), absl::StatusCode::kUnavailable);
  controller_.reset();  // before `jobs`, which its options point into
}

TEST_F(AskTellTest, BadAsksGetClearErrors) {
  const std::string workers = Create(2, 1);
  EXPECT_THAT(std::string(Ask(workers, "c", 1).status().message()),
              HasSubstr("execution: external"));
  const std::string id = CreateExternal("", 2, 1);
  EXPECT_THAT(std::string(Ask(id, "", 1).status().message()),
              HasSubstr("client_id: must not be empty"));
  EXPECT_EQ(Ask(id, "c", -1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Ask("e99", "c", 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Tell("e99-1", "c", 1, 0).status().code(), absl::StatusCode::kNotFound);
  auto spec = ParseSpecYaml(R"(
execution: external
objective: {metric: loss, goal: minimize}
search_space: {x: {type: float, min: 0, max: 1}}
budget: {max_trials: 2}
trial: {command: [train]}
)",
                            "");
  EXPECT_THAT(std::string(spec.status().message()),
              HasSubstr("run by the clients that ask for them"));
}

// TellTrials: many reports, then many completions, in one call and one durable change; each
// item answered as ReportTrial and CompleteTrial would, a refused one alone; a retried call
// stores each report once and repeats its completions' answers.
TEST_F(AskTellTest, ABatchOfReportsAndCompletionsIsAppliedItemByItemAndRetriesSafely) {
  const std::string id = CreateExternal("", 6, 6);
  auto a = Ask(id, "laptop", 4);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->trials_size(), 4);
  v1::TellTrialsRequest req;
  req.set_experiment_id(id);
  req.set_client_id("laptop");
  for (int i = 0; i < 4; ++i) {
    v1::ReportTrialRequest* r = req.add_reports();
    r->set_trial_id(a->trials(i).id());
    r->set_seq(1);
    r->set_step(1);
    (*r->mutable_values())["loss"] = 0.5 + i;
  }
  req.add_reports()->set_trial_id(id + "-9");          // no such trial
  req.add_reports()->set_trial_id("e77-1");            // another experiment's
  req.add_reports()->set_trial_id(a->trials(0).id());  // another client's
  req.mutable_reports(6)->set_client_id("phone");
  for (int i = 0; i < 3; ++i) req.add_completions()->set_trial_id(a->trials(i).id());
  req.add_completions()->set_trial_id(id + "-5");  // not held by anyone yet
  auto tell = [&] {
    return Await<v1::TellTrialsResponse>([&](auto done) { controller_->TellTrials(req, done); });
  };
  auto r = tell();
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->reports_size(), 7);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(r->reports(i).code(), 0) << r->reports(i).message();
    EXPECT_FALSE(r->reports(i).stop());
  }
  EXPECT_EQ(r->reports(4).code(), static_cast<int>(absl::StatusCode::kNotFound));
  EXPECT_THAT(r->reports(5).message(), HasSubstr("'e77-1' is not a trial of experiment " + id));
  EXPECT_THAT(r->reports(6).message(), HasSubstr("client_id: 'phone' is not the call's"));
  ASSERT_EQ(r->completions_size(), 4);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(r->completions(i).code(), 0) << r->completions(i).message();
    EXPECT_EQ(r->completions(i).trial().state(), v1::TRIAL_COMPLETED);
    EXPECT_EQ(r->completions(i).trial().result(), 0.5 + i);  // the batch's own report
  }
  EXPECT_NE(r->completions(3).code(), 0);
  // The whole call again (a retry after a lost answer): nothing is stored twice, and the
  // completions answer as before.
  auto again = tell();
  ASSERT_TRUE(again.ok()) << again.status();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(again->completions(i).code(), 0) << again->completions(i).message();
    EXPECT_EQ(again->completions(i).trial().reports(), 1);
  }
  EXPECT_EQ(again->reports(3).code(), 0);
  auto t4 = controller_->GetTrial(a->trials(3).id());
  ASSERT_TRUE(t4.ok());
  EXPECT_EQ(t4->reports(), 1);
  EXPECT_EQ(t4->state(), v1::TRIAL_RUNNING);
  auto e = controller_->GetExperiment(id);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->counts().completed(), 3);
  EXPECT_EQ(e->best_value(), 0.5);
}

// The searcher's state grows with the trials (ASHA keeps every trial's rung values), but a
// change writes only its journal entry: the snapshot goes to a checkpoint once as much journal
// has been written since the last one. A restart restores the checkpoint and replays the
// journal since, which is all that is kept besides the checkpoint before.
TEST_F(AskTellTest, TheSearchersCheckpointsKeepEachChangeSmallAndARestartReplaysTheJournal) {
  const std::string id = CreateExternal(
      "resource: {metric: step, min: 1, max: 9}\n"
      "algorithm: {name: asha, reduction_factor: 3, seed: 5}\n",
      4000, 100);
  // 100 trials at a time: each step's reports in one call, then the completions in one.
  auto run = [&](int batches, int64_t* bytes = nullptr) {
    const int64_t before = store_->bytes_written;
    for (int b = 0; b < batches; ++b) {
      auto a = Ask(id, "laptop", 100);
      ASSERT_TRUE(a.ok()) << a.status();
      std::vector<std::string> live = Ids(*a), ended;
      auto tell = [&](const v1::TellTrialsRequest& req) {
        return Await<v1::TellTrialsResponse>(
            [&](auto done) { controller_->TellTrials(req, done); });
      };
      for (int step = 1; step <= 9 && !live.empty(); ++step) {
        v1::TellTrialsRequest req;
        req.set_experiment_id(id);
        req.set_client_id("laptop");
        for (const std::string& t : live) {
          v1::ReportTrialRequest* r = req.add_reports();
          r->set_trial_id(t);
          r->set_seq(step);
          r->set_step(step);
          const double x = static_cast<double>(std::hash<std::string>()(t) % 1000) / 1000;
          (*r->mutable_values())["loss"] = x / step;
        }
        auto r = tell(req);
        ASSERT_TRUE(r.ok()) << r.status();
        std::vector<std::string> next;
        for (int i = 0; i < r->reports_size(); ++i) {
          ASSERT_EQ(r->reports(i).code(), 0) << r->reports(i).message();
          (r->reports(i).stop() ? ended : next).push_back(live[i]);
        }
        live = std::move(next);
      }
      // Every trial ends: those told to stop, and those that trained to the end.
      v1::TellTrialsRequest req;
      req.set_experiment_id(id);
      req.set_client_id("laptop");
      for (const std::string& t : ended) req.add_completions()->set_trial_id(t);
      for (const std::string& t : live) req.add_completions()->set_trial_id(t);
      auto r = tell(req);
      ASSERT_TRUE(r.ok()) << r.status();
      for (const auto& c : r->completions()) ASSERT_EQ(c.code(), 0) << c.message();
    }
    if (bytes != nullptr) *bytes = store_->bytes_written - before;
  };
  int64_t first = 0, last = 0;
  run(5, &first);
  run(25);
  run(5, &last);
  // The 500 trials after 3,000 cost what the first 500 did (journal entries name trials by
  // index, so they grow a little); with a snapshot in every change they cost 20 times more.
  EXPECT_LT(last, first * 3 / 2) << "first 500 trials: " << first << " bytes, last: " << last;

  // Only the journal since the checkpoint before the last one is kept.
  auto pointer = store_->GetSearcherState(id);
  ASSERT_TRUE(pointer.ok());
  ASSERT_THAT(*pointer, ::testing::StartsWith("checkpoint "));
  std::vector<Store::JournalRecord> journal;
  ASSERT_TRUE(store_->GetJournal(id, 0, &journal).ok());
  ASSERT_FALSE(journal.empty());
  EXPECT_GT(journal[0].seq, 0);
  EXPECT_EQ(journal[0].call, "checkpoint");
  auto replay = controller_->ReplaySearch(id);
  ASSERT_TRUE(replay.ok());
  EXPECT_TRUE(replay->identical()) << replay->mismatch();

  // A restart goes on exactly where the searcher was, and the trials go on.
  const std::string at_stop = [&] {
    auto e = controller_->GetExperiment(id);
    return e.ok() ? e->DebugString() : "";
  }();
  Open();
  auto e = controller_->GetExperiment(id);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->DebugString(), at_stop);
  run(5);
  replay = controller_->ReplaySearch(id);
  ASSERT_TRUE(replay.ok());
  EXPECT_TRUE(replay->identical()) << replay->mismatch();
  EXPECT_EQ(controller_->GetExperiment(id)->counts().completed() +
                controller_->GetExperiment(id)->counts().stopped(),
            4000);
}

// ListTrials orders, pages and filters on the server, as `rung trials --sort loss --top 10`
// and `rung show` ask it to: a million trials never travel to find ten.
TEST_F(AskTellTest, ListTrialsSortsPagesAndPicksTheFailedOnTheServer) {
  const std::string id = CreateExternal("", 4, 4);
  auto a = Ask(id, "laptop", 4);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->trials_size(), 4);
  auto report = [&](int i, double loss, std::optional<double> speed) {
    v1::ReportTrialRequest req;
    req.set_trial_id(a->trials(i).id());
    req.set_client_id("laptop");
    req.set_seq(1);
    (*req.mutable_values())["loss"] = loss;
    if (speed) (*req.mutable_values())["speed"] = *speed;
    auto r =
        Await<v1::ReportTrialResponse>([&](auto done) { controller_->ReportTrial(req, done); });
    ASSERT_TRUE(r.ok()) << r.status();
  };
  report(0, 0.5, 3);
  report(1, 0.1, 1);
  report(2, 0.3, std::nullopt);  // still running: its last value counts
  ASSERT_TRUE(Complete(a->trials(0).id(), "laptop", std::nullopt).ok());
  ASSERT_TRUE(Complete(a->trials(1).id(), "laptop", std::nullopt).ok());
  ASSERT_TRUE(Complete(a->trials(3).id(), "laptop", std::nullopt, /*failed=*/true).ok());
  auto list = [&](const std::string& sort, int limit, const std::string& page = "",
                  bool failures = false) {
    v1::ListTrialsRequest req;
    req.set_experiment_id(id);
    req.set_sort(sort);
    req.set_limit(limit);
    req.set_page(page);
    req.set_with_failures(failures);
    auto r = controller_->ListTrials(req);
    std::vector<std::string> ids;
    if (!r.ok()) return std::make_pair(std::string(r.status().message()), ids);
    for (const auto& t : r->trials()) ids.push_back(t.id().substr(id.size()));
    return std::make_pair(r->next_page(), ids);
  };
  using Ids = std::vector<std::string>;
  EXPECT_EQ(list("loss", 0).second, (Ids{"-2", "-3", "-1", "-4"}));  // best first, none last
  EXPECT_EQ(list("-loss", 2).second, (Ids{"-1", "-3"}));
  EXPECT_EQ(list("speed", 0).second, (Ids{"-2", "-1", "-3", "-4"}));  // ascending
  EXPECT_EQ(list("", 0).second, (Ids{"-1", "-2", "-3", "-4"}));
  // Pages: each answer says where the next begins, and the last says nothing.
  auto first = list("loss", 3);
  EXPECT_EQ(first.second, (Ids{"-2", "-3", "-1"}));
  EXPECT_EQ(list("loss", 3, first.first), std::make_pair(std::string(), Ids{"-4"}));
  auto by_index = list("", 1, "");
  EXPECT_EQ(by_index.second, Ids{"-1"});
  EXPECT_EQ(list("", 5, by_index.first).second, (Ids{"-2", "-3", "-4"}));
  EXPECT_EQ(list("", 0, "", /*failures=*/true).second, Ids{"-4"});
  EXPECT_THAT(list("", 0, "x").first, HasSubstr("page: 'x' is not a page ListTrials gave"));
  EXPECT_THAT(list("", -1).first, HasSubstr("limit: -1 is negative"));
}

}  // namespace
}  // namespace rung::testing
