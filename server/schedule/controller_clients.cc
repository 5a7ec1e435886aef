// The Controller's client calls: experiments, reads, watches, and ask and tell.
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/spec.h"
#include "common/status.h"
#include "server/schedule/controller.h"
#include "server/schedule/curves.h"
#include "server/schedule/results.h"
#include "server/schedule/search_config.h"
#include "server/search/journal.h"

namespace rung {
namespace {

using v1::Experiment;
using v1::Trial;

std::string FirstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

absl::Status CheckClientId(const std::string& client_id) {
  if (client_id.empty()) {
    return absl::InvalidArgumentError(
        "client_id: must not be empty (it names the client, e.g. its host)");
  }
  if (client_id.size() > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("client_id: ", client_id.size(), " bytes; at most 128"));
  }
  return absl::OkStatus();
}

absl::Status CheckValues(const google::protobuf::Map<std::string, double>& values) {
  for (const auto& [k, v] : values) {
    if (k.empty()) return absl::InvalidArgumentError("values: a metric name is empty");
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("values: metric '", k, "' is not a finite number"));
    }
  }
  return absl::OkStatus();
}

absl::Status NoExperiment(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("no experiment ", id));
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Experiments

absl::Status Controller::PrepareAblationLocked(v1::ExperimentSpec* spec) {
  v1::Ablation* a = spec->mutable_ablation();
  RETURN_IF_ERROR(search::NewAblationPolicy(a->policy()).status());
  if (!a->base_from_experiment().empty()) {
    // The base is the best completed trial of an earlier experiment, copied now: the study
    // does not change when that experiment goes on.
    ExperimentRun* src = FindRunLocked(a->base_from_experiment());
    if (src == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("base.from_experiment: no experiment ", a->base_from_experiment()));
    }
    if (!src->experiment().has_best()) {
      return absl::FailedPreconditionError(
          absl::StrCat("base.from_experiment: experiment ", a->base_from_experiment(),
                       " has no best trial yet (none completed within its constraints)"));
    }
    ASSIGN_OR_RETURN(Trial * best, FindTrialLocked(src->experiment().best_trial_id(), nullptr));
    *a->mutable_base_params() = best->params();
    RETURN_IF_ERROR(CheckPlaceholders(spec->trial(), a->base_params(), {}));
  }
  const int variants = static_cast<int>(AblationVariants(*spec).size());
  const int64_t trials = int64_t{variants} * a->repeats();
  if (trials > kMaxTrials) {
    return absl::InvalidArgumentError(absl::StrCat("the study needs ", variants, " variants x ",
                                                   a->repeats(), " repeats = ", trials,
                                                   " trials; at most ", kMaxTrials));
  }
  spec->mutable_budget()->set_max_trials(static_cast<int32_t>(trials));
  if (spec->budget().max_concurrent() == 0)
    spec->mutable_budget()->set_max_concurrent(static_cast<int32_t>(trials));
  return absl::OkStatus();
}

absl::StatusOr<Experiment> Controller::CreateLocked(v1::ExperimentSpec spec,
                                                    const std::string& owner, Change* c) {
  RETURN_IF_ERROR(store_error_);
  if (spec.kind() == "ablation") RETURN_IF_ERROR(PrepareAblationLocked(&spec));
  if (const search::Config config = SearchConfig(spec);
      config.sampler == search::Config::Sampler::kGrid) {
    const int64_t size = search::GridSize(config.space);
    if (spec.budget().max_trials() == 0 || spec.budget().max_trials() > size) {
      spec.mutable_budget()->set_max_trials(static_cast<int32_t>(size));
    }
    if (spec.budget().max_concurrent() == 0)
      spec.mutable_budget()->set_max_concurrent(spec.budget().max_trials());
  }
  if (spec.algorithm().seed() == 0) {
    // No seed given: take one from the clock and keep it, so the run can be repeated.
    spec.mutable_algorithm()->set_seed(static_cast<uint64_t>(absl::ToUnixNanos(c->now)));
  }
  ASSIGN_OR_RETURN(auto searcher, NewSearcher(spec, runs_));
  Experiment e;
  e.set_id(absl::StrCat("e", next_experiment_));
  e.set_seq(next_experiment_);
  *e.mutable_spec() = std::move(spec);
  e.set_state(v1::EXPERIMENT_PENDING);
  e.set_owner(owner);
  e.set_created_unix_ms(c->now_ms());
  e.set_updated_unix_ms(e.created_unix_ms());
  SetRungLevels(&e);
  auto run = std::make_unique<ExperimentRun>(e, std::move(searcher));
  c->batch.PutNextExperiment(next_experiment_ + 1);
  run->Start(c);
  RETURN_IF_ERROR(CommitLocked(c));
  ++next_experiment_;
  fifo_.push_back(run.get());
  runs_[e.id()] = std::move(run);
  recheck_unschedulable_ = true;
  Log(LogLevel::kInfo, absl::StrCat("experiment ", e.id(), " (", e.spec().name(),
                                    ") created: ", e.spec().algorithm().name(), ", ",
                                    e.spec().budget().max_trials(), " trials"));
  return e;
}

void Controller::CreateExperiment(v1::ExperimentSpec spec, const std::string& owner,
                                  Done<Experiment> done) {
  {
    absl::MutexLock l(&mu_);
    auto c = NewChange();
    absl::StatusOr<Experiment> e = CreateLocked(std::move(spec), owner, c.get());
    if (e.ok()) {
      // Dispatch may give its first trials out at once; the answer says what it is now.
      DispatchLocked(c.get());
      e = runs_[e->id()]->experiment();
    }
    Answer(c.get(), std::move(done), std::move(e));
    (void)CommitLocked(c.get());
  }
  Flush(/*sync=*/true);
}

void Controller::ControlExperiment(const std::string& id,
                                   absl::Status (ExperimentRun::*op)(Change*),
                                   Done<Experiment> done) {
  {
    absl::MutexLock l(&mu_);
    auto c = NewChange();
    ExperimentRun* run = FindRunLocked(id);
    absl::Status s = store_error_;
    if (s.ok()) s = run == nullptr ? NoExperiment(id) : (run->*op)(c.get());
    if (s.ok()) {
      recheck_unschedulable_ = true;
      DispatchLocked(c.get());
      ServeAsksLocked(run, /*may_wait=*/false, c.get());
    }
    Answer(c.get(), std::move(done), s.ok() ? absl::StatusOr<Experiment>(run->experiment()) : s);
    (void)CommitLocked(c.get());
  }
  Flush(/*sync=*/true);
}

void Controller::CancelExperiment(const std::string& id, Done<Experiment> done) {
  ControlExperiment(id, &ExperimentRun::Cancel, std::move(done));
}
void Controller::PauseExperiment(const std::string& id, Done<Experiment> done) {
  ControlExperiment(id, &ExperimentRun::Pause, std::move(done));
}
void Controller::ResumeExperiment(const std::string& id, Done<Experiment> done) {
  ControlExperiment(id, &ExperimentRun::Resume, std::move(done));
}

// ---------------------------------------------------------------------------------------
// Reads

absl::StatusOr<Experiment> Controller::GetExperiment(const std::string& id) {
  absl::MutexLock l(&mu_);
  ExperimentRun* run = FindRunLocked(id);
  if (run == nullptr) return NoExperiment(id);
  return run->experiment();
}

std::vector<Experiment> Controller::ListExperiments() {
  absl::MutexLock l(&mu_);
  std::vector<Experiment> out;
  for (ExperimentRun* run : fifo_) out.push_back(run->experiment());
  return out;
}

absl::StatusOr<std::vector<Trial>> Controller::ListTrials(const std::string& experiment_id) {
  absl::MutexLock l(&mu_);
  ExperimentRun* run = FindRunLocked(experiment_id);
  if (run == nullptr) return NoExperiment(experiment_id);
  std::vector<Trial> out;
  run->trials().ForEach([&](const Trial& t) {
    if (!t.id().empty()) out.push_back(t);
  });
  return out;
}

absl::StatusOr<v1::ListTrialsResponse> Controller::ListTrials(const v1::ListTrialsRequest& req) {
  constexpr int kPage = 10000;
  if (req.limit() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("limit: ", req.limit(), " is negative"));
  }
  int64_t from = 0;  // the page: trials to skip (sorted) or the index to start after
  if (!req.page().empty() && (!absl::SimpleAtoi(req.page(), &from) || from < 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page: '", req.page(), "' is not a page ListTrials gave"));
  }
  const size_t limit = static_cast<size_t>(req.limit() == 0 ? kPage : std::min(req.limit(), kPage));
  absl::MutexLock l(&mu_);
  ExperimentRun* run = FindRunLocked(req.experiment_id());
  if (run == nullptr) return NoExperiment(req.experiment_id());
  const TrialTable& trials = run->trials();
  auto wanted = [&](const TrialTable::Summary& s) {
    return !req.with_failures() || s.state == v1::TRIAL_FAILED || s.failures > 0;
  };
  v1::ListTrialsResponse out;
  if (req.sort().empty()) {
    for (int i = static_cast<int>(std::min<int64_t>(from, trials.size())) + 1; i <= trials.size();
         ++i) {
      if (!trials.Has(i) || !wanted(trials.SummaryOf(i))) continue;
      if (static_cast<size_t>(out.trials_size()) == limit) {
        out.set_next_page(absl::StrCat(i - 1));
        break;
      }
      *out.add_trials() = trials.Copy(i);
    }
    return out;
  }
  // By a metric: (key, index) of every trial, the first from + limit of them in order.
  std::vector<TrialKey> keys = SortKeys(run->spec(), trials, req.sort(), wanted);
  const size_t end = std::min(keys.size(), static_cast<size_t>(from) + limit);
  if (static_cast<size_t>(from) < end) {
    std::partial_sort(keys.begin(), keys.begin() + static_cast<ptrdiff_t>(end), keys.end());
    for (size_t k = static_cast<size_t>(from); k < end; ++k) {
      *out.add_trials() = trials.Copy(keys[k].index);
    }
  }
  if (end < keys.size()) out.set_next_page(absl::StrCat(end));
  return out;
}

absl::StatusOr<Trial> Controller::GetTrial(const std::string& trial_id) {
  absl::MutexLock l(&mu_);
  ASSIGN_OR_RETURN(Trial * t, FindTrialLocked(trial_id, nullptr));
  return *t;
}

absl::StatusOr<std::vector<v1::MetricReport>> Controller::GetTrialMetrics(
    const std::string& trial_id) {
  {
    absl::MutexLock l(&mu_);
    RETURN_IF_ERROR(FindTrialLocked(trial_id, nullptr).status());
  }
  return store_->GetReports(trial_id);
}

absl::StatusOr<v1::GetCurvesResponse> Controller::GetCurves(const v1::GetCurvesRequest& req) {
  std::string metric = req.metric(), x_metric = "step";
  {
    absl::MutexLock l(&mu_);
    ExperimentRun* run = FindRunLocked(req.experiment_id());
    if (run == nullptr) return NoExperiment(req.experiment_id());
    const v1::ExperimentSpec& spec = run->spec();
    if (metric.empty()) {
      metric = FirstObjectiveMetric(spec);
    }
    if (!spec.resource().metric().empty()) x_metric = spec.resource().metric();
  }
  // The reports are read outside the lock: they are only ever added, and a report stored
  // after the scan passed its trial comes to a watcher as an event.
  CurveBuilder curves(metric, x_metric);
  RETURN_IF_ERROR(store_->ForEachReport(req.experiment_id(), [&](const v1::MetricReport& r) {
    curves.Add(r);
    return absl::OkStatus();
  }));
  return curves.Finish(req.max_points());
}

absl::StatusOr<std::vector<Trial>> Controller::GetBestTrials(const std::string& experiment_id,
                                                             int count) {
  absl::MutexLock l(&mu_);
  ExperimentRun* run = FindRunLocked(experiment_id);
  if (run == nullptr) return NoExperiment(experiment_id);
  return BestTrials(run->spec(), run->trials(), count);
}

absl::StatusOr<v1::AblationResults> Controller::GetAblation(const std::string& experiment_id) {
  absl::MutexLock l(&mu_);
  ExperimentRun* run = FindRunLocked(experiment_id);
  if (run == nullptr) return NoExperiment(experiment_id);
  return AblationResultsOf(run->experiment(), run->trials());
}

absl::StatusOr<v1::BackupResponse> Controller::Backup(const std::string& dir) {
  namespace fs = std::filesystem;
  if (dir.empty() || dir[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("dir: '", dir, "' is not an absolute path on rungd's machine"));
  }
  std::error_code ec;
  if (fs::exists(dir, ec))
    return absl::AlreadyExistsError(absl::StrCat("dir: ", dir, " already exists"));
  RETURN_IF_ERROR(store_->Checkpoint(dir));
  v1::BackupResponse out;
  out.set_dir(dir);
  for (const auto& f : fs::recursive_directory_iterator(dir, ec)) {
    if (!f.is_regular_file()) continue;
    out.set_files(out.files() + 1);
    out.set_bytes(out.bytes() + static_cast<int64_t>(f.file_size()));
  }
  Log(LogLevel::kInfo, absl::StrCat("backup of the data folder in ", dir, ": ", out.files(),
                                    " files, ", out.bytes(), " bytes"));
  return out;
}

absl::StatusOr<v1::ReplaySearchResponse> Controller::ReplaySearch(
    const std::string& experiment_id) {
  v1::ExperimentSpec spec;
  std::string snapshot;
  std::vector<Store::JournalRecord> records;
  {
    absl::MutexLock l(&mu_);
    ExperimentRun* run = FindRunLocked(experiment_id);
    if (run == nullptr) return NoExperiment(experiment_id);
    spec = run->spec();
    // The journal as it is written now (changes are written under mu_: a checkpoint cannot
    // drop its beginning meanwhile), and the live searcher that its replay must end in.
    snapshot = run->SearcherSnapshot();
    RETURN_IF_ERROR(store_->GetJournal(experiment_id, 0, &records));
  }
  std::vector<search::JournalEntry> journal;
  for (Store::JournalRecord& r : records)
    journal.push_back({std::move(r.call), std::move(r.answer)});
  v1::ReplaySearchResponse out;
  int64_t replayed = 0;
  const absl::Status s = search::Replay(SearchConfig(spec), journal, snapshot, &replayed);
  out.set_entries(replayed);
  out.set_identical(s.ok());
  out.set_mismatch(std::string(s.message()));
  return out;
}

absl::StatusOr<int64_t> Controller::Watch(const std::string& experiment_id, WatchSink* sink) {
  int64_t handle;
  {
    absl::MutexLock l(&mu_);
    if (shutting_down_) return store_error_;  // no stream would be ended for it
    ExperimentRun* run = FindRunLocked(experiment_id);
    if (run == nullptr) return NoExperiment(experiment_id);
    std::vector<v1::WatchEvent> first;
    run->trials().ForEach([&](const Trial& t) {
      if (!t.id().empty()) *first.emplace_back().mutable_trial() = t;
    });
    *first.emplace_back().mutable_experiment() = run->experiment();
    handle = next_handle_++;
    // It sees the experiment as it is now once the writes that made it so are durable, then
    // every later change, in order.
    outbox_.AddWatcher(handle, experiment_id, sink, std::move(first), run->Settled(),
                       store_->LastWrite());
  }
  Flush(/*sync=*/false);
  return handle;
}

void Controller::Unwatch(int64_t handle) { outbox_.RemoveWatcher(handle); }

// ---------------------------------------------------------------------------------------
// Ask and tell

void Controller::AskTrials(const v1::AskTrialsRequest& req, Done<v1::AskTrialsResponse> done) {
  {
    absl::MutexLock l(&mu_);
    auto c = NewChange();
    ExperimentRun* run = FindRunLocked(req.experiment_id());
    absl::Status s = CheckClientId(req.client_id());
    if (s.ok() && (req.count() < 0 || req.count() > 1000)) {
      s = absl::InvalidArgumentError(
          absl::StrCat("count: ", req.count(), " is not between 0 and 1000"));
    }
    if (s.ok()) s = store_error_;
    if (s.ok() && run == nullptr) s = NoExperiment(req.experiment_id());
    if (s.ok() && !run->external()) {
      s = absl::FailedPreconditionError(
          absl::StrCat("experiment ", req.experiment_id(),
                       " runs its trials on rung workers; only an experiment with "
                       "`execution: external` hands trials to clients"));
    }
    if (!s.ok()) {
      Answer(c.get(), std::move(done), absl::StatusOr<v1::AskTrialsResponse>(s));
    } else {
      clients_[req.client_id()] = c->now;
      Ask ask{req.client_id(), req.count(), std::move(done)};
      if (!ServeAskLocked(run, &ask, /*may_wait=*/true, c.get()))
        asks_[run->id()].push_back(std::move(ask));
    }
    (void)CommitLocked(c.get());
  }
  Flush(/*sync=*/true);
}

bool Controller::ServeAskLocked(ExperimentRun* run, Ask* ask, bool may_wait, Change* c) {
  // Indexes, not pointers: handing out a trial may grow the trials.
  std::vector<int> held;
  for (int index : run->active()) {
    const Trial& t = *run->trial(index);
    if (!t.stop_requested() && t.client_id() == ask->client_id) held.push_back(index);
  }
  v1::AskTrialsResponse resp;
  std::string why;
  const auto state = run->experiment().state();
  if (state == v1::EXPERIMENT_PAUSED) why = "the experiment is paused";
  if (ExperimentTerminal(state)) {
    resp.set_done(true);
    why = absl::StrCat("the experiment has ended (", v1::ExperimentState_Name(state), ")");
  }
  bool handed = false;
  while (run->open() && static_cast<int>(held.size()) < ask->count && store_error_.ok()) {
    const int index = NextTrialLocked(run, c, &why);
    if (index == 0) break;
    run->HandOut(index, ask->client_id, c);
    held.push_back(index);
    handed = true;
  }
  if (held.empty() && may_wait && run->proposal_ticket() != 0 && store_error_.ok()) {
    return false;  // nothing to give until the model has proposed: answered then
  }
  if (handed) run->PutExperiment(c);
  for (int index : held) *resp.add_trials() = *run->trial(index);
  if (held.empty()) resp.set_why(why);
  resp.set_lease_timeout_ms(int64_t{run->spec().client_lease_seconds()} * 1000);
  Answer(c, std::move(ask->done), absl::StatusOr<v1::AskTrialsResponse>(std::move(resp)));
  return true;
}

void Controller::ServeAsksLocked(ExperimentRun* run, bool may_wait, Change* c) {
  auto it = asks_.find(run->id());
  if (it == asks_.end()) return;
  std::vector<Ask> waiting;
  waiting.swap(it->second);
  asks_.erase(it);
  for (Ask& a : waiting) {
    if (!ServeAskLocked(run, &a, may_wait, c)) asks_[run->id()].push_back(std::move(a));
  }
}

absl::StatusOr<Trial*> Controller::ClientTrialLocked(const std::string& trial_id,
                                                     const std::string& client_id,
                                                     ExperimentRun** run) {
  RETURN_IF_ERROR(CheckClientId(client_id));
  ASSIGN_OR_RETURN(Trial * t, FindTrialLocked(trial_id, run));
  if (!(*run)->external()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "trial ", trial_id,
        " belongs to an experiment that rung workers run; its reports come from the worker"));
  }
  if (TrialActive(t->state()) && t->client_id() != client_id) {
    return absl::FailedPreconditionError(absl::StrCat("trial ", trial_id, " is held by client '",
                                                      t->client_id(), "', not '", client_id, "'"));
  }
  clients_[client_id] = Now();
  return t;
}

absl::StatusOr<v1::ReportTrialResponse> Controller::ReportLocked(const v1::ReportTrialRequest& req,
                                                                 Change* c) {
  RETURN_IF_ERROR(store_error_);
  RETURN_IF_ERROR(CheckValues(req.values()));
  if (!std::isfinite(req.step())) return absl::InvalidArgumentError("step: not a finite number");
  if (req.seq() < 0) return absl::InvalidArgumentError("seq: must not be negative");
  ExperimentRun* run = nullptr;
  ASSIGN_OR_RETURN(Trial * t, ClientTrialLocked(req.trial_id(), req.client_id(), &run));
  v1::ReportTrialResponse resp;
  resp.set_stop(true);
  if (TrialTerminal(t->state())) {
    resp.set_reason(absl::StrCat("the trial has ended (", v1::TrialState_Name(t->state()),
                                 t->stop_reason().empty() ? "" : ": ", t->stop_reason(), ")"));
    return resp;
  }
  if (!TrialActive(t->state())) {
    resp.set_reason(absl::StrCat("client '", req.client_id(), "' no longer holds the trial (",
                                 v1::TrialState_Name(t->state()), t->message().empty() ? "" : ": ",
                                 FirstLine(t->message()), ")"));
    return resp;
  }
  if (req.seq() == 0 || req.seq() > t->last_report_seq()) {  // else a retry, stored already
    v1::MetricReport r;
    r.set_trial_id(t->id());
    r.set_attempt(t->attempt());
    r.set_seq(req.seq() > 0 ? req.seq() : t->last_report_seq() + 1);
    r.set_step(req.step());
    *r.mutable_values() = req.values();
    run->Report(t, std::move(r), c);
    run->SaveTrial(t->index(), c);
  }
  resp.set_stop(t->stop_requested());
  resp.set_reason(t->stop_requested() ? t->stop_reason() : "");
  return resp;
}

void Controller::ReportTrial(const v1::ReportTrialRequest& req,
                             Done<v1::ReportTrialResponse> done) {
  {
    absl::MutexLock l(&mu_);
    auto c = NewChange();
    Answer(c.get(), std::move(done), ReportLocked(req, c.get()));
    (void)CommitLocked(c.get());
  }
  Flush(/*sync=*/true);
}

absl::StatusOr<Trial> Controller::CompleteLocked(const v1::CompleteTrialRequest& req, Change* c) {
  RETURN_IF_ERROR(store_error_);
  RETURN_IF_ERROR(CheckValues(req.values()));
  ExperimentRun* run = nullptr;
  ASSIGN_OR_RETURN(Trial * t, ClientTrialLocked(req.trial_id(), req.client_id(), &run));
  if (!TrialActive(t->state())) {
    if (t->state() == v1::TRIAL_COMPLETED && t->client_id() == req.client_id())
      return *t;  // a retry
    return absl::FailedPreconditionError(
        absl::StrCat("trial ", t->id(), " is not held by client '", req.client_id(), "' (",
                     v1::TrialState_Name(t->state()), t->message().empty() ? "" : ": ",
                     FirstLine(t->message()), ")"));
  }
  auto missing = [&](const std::string& metric) {
    return absl::InvalidArgumentError(
        absl::StrCat("trial ", t->id(), ": no value of objective '", metric,
                     "'; complete it with that metric, or with failed"));
  };
  if (req.failed()) {
    run->RetryOrFail(t,
                     absl::StrCat("client '", req.client_id(), "' failed it",
                                  req.message().empty() ? "" : ": ", req.message()),
                     /*count_failure=*/true, c);
  } else {
    if (!req.values().empty()) {
      Trial check = *t;  // refused whole when an objective is still missing
      for (const auto& [k, v] : req.values()) (*check.mutable_last_metrics())[k] = v;
      if (!t->stop_requested() && !MissingObjective(run->spec(), check).empty()) {
        return missing(MissingObjective(run->spec(), check));
      }
      v1::MetricReport r;
      r.set_trial_id(t->id());
      r.set_attempt(t->attempt());
      r.set_seq(t->last_report_seq() + 1);
      r.set_step(t->last_step());
      *r.mutable_values() = req.values();
      r.set_final(true);
      run->Report(t, std::move(r), c);
    }
    if (t->stop_requested()) {
      run->EndStopped(t, c);  // a stop was out: it ends as the stop said
    } else if (std::string metric = MissingObjective(run->spec(), *t); !metric.empty()) {
      return missing(metric);
    } else {
      run->Finish(t, c);
    }
  }
  run->PutExperiment(c);
  return *t;
}

void Controller::CompleteTrial(const v1::CompleteTrialRequest& req, Done<Trial> done) {
  {
    absl::MutexLock l(&mu_);
    auto c = NewChange();
    Answer(c.get(), std::move(done), CompleteLocked(req, c.get()));
    (void)CommitLocked(c.get());
  }
  Flush(/*sync=*/true);
}

void Controller::TellTrials(const v1::TellTrialsRequest& req, Done<v1::TellTrialsResponse> done) {
  {
    absl::MutexLock l(&mu_);
    auto c = NewChange();
    v1::TellTrialsResponse resp;
    // An item's refusal is its own: the others go on.
    auto refused = [](v1::TellResult* r, const absl::Status& s) {
      r->set_code(static_cast<int>(s.code()));
      r->set_message(std::string(s.message()));
    };
    // Every item names a trial of the request's experiment (the caller was allowed that one)
    // and is the request's client's.
    auto check = [&](const std::string& trial_id, std::string* client_id) -> absl::Status {
      std::string exp;
      int index;
      if (!ParseTrialId(trial_id, &exp, &index) || exp != req.experiment_id()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "trial_id: '", trial_id, "' is not a trial of experiment ", req.experiment_id()));
      }
      if (client_id->empty()) *client_id = req.client_id();
      if (*client_id != req.client_id()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "client_id: '", *client_id, "' is not the call's ('", req.client_id(), "')"));
      }
      return absl::OkStatus();
    };
    for (v1::ReportTrialRequest item : req.reports()) {
      v1::TellResult* r = resp.add_reports();
      absl::Status s = check(item.trial_id(), item.mutable_client_id());
      absl::StatusOr<v1::ReportTrialResponse> done_item =
          s.ok() ? ReportLocked(item, c.get()) : absl::StatusOr<v1::ReportTrialResponse>(s);
      if (!done_item.ok()) {
        refused(r, done_item.status());
        continue;
      }
      r->set_stop(done_item->stop());
      r->set_reason(done_item->reason());
    }
    for (v1::CompleteTrialRequest item : req.completions()) {
      v1::TellResult* r = resp.add_completions();
      absl::Status s = check(item.trial_id(), item.mutable_client_id());
      absl::StatusOr<Trial> done_item =
          s.ok() ? CompleteLocked(item, c.get()) : absl::StatusOr<Trial>(s);
      if (!done_item.ok()) {
        refused(r, done_item.status());
        continue;
      }
      *r->mutable_trial() = *std::move(done_item);
    }
    Answer(c.get(), std::move(done), absl::StatusOr<v1::TellTrialsResponse>(std::move(resp)));
    (void)CommitLocked(c.get());
  }
  Flush(/*sync=*/true);
}

}  // namespace rung
