#include "server/schedule/controller.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/spec.h"
#include "common/status.h"
#include "server/search/ablation.h"
#include "server/search/journal.h"

namespace rung {
namespace {

using v1::Experiment;
using v1::Trial;

constexpr char kPaused[] = "experiment paused";
constexpr char kCancelled[] = "experiment cancelled";

// An objective metric the trial has no value of (its last report, or its declared result),
// or "" when it has them all.
std::string MissingObjective(const v1::ExperimentSpec& spec, const Trial& t) {
  for (const v1::Objective& o : spec.objectives()) {
    if (!t.last_metrics().contains(o.metric())) return o.metric();
  }
  const std::string& metric = spec.objective().metric();
  return t.has_result() || t.last_metrics().contains(metric) ? "" : metric;
}

bool TrialTerminal(v1::TrialState s) {
  return s == v1::TRIAL_COMPLETED || s == v1::TRIAL_STOPPED || s == v1::TRIAL_FAILED;
}
bool TrialActive(v1::TrialState s) { return s == v1::TRIAL_ASSIGNED || s == v1::TRIAL_RUNNING; }
bool ExperimentTerminal(v1::ExperimentState s) {
  return s == v1::EXPERIMENT_COMPLETED || s == v1::EXPERIMENT_CANCELLED ||
         s == v1::EXPERIMENT_FAILED;
}

// Whether `a` is a better objective value than `b`.
bool Better(v1::Objective::Goal goal, double a, double b) {
  return goal == v1::Objective::MAXIMIZE ? a > b : a < b;
}

// The constraints a completed trial breaks, judged on the last value of each metric, e.g.
// "memory_gb 17.5 > max 16; never reported latency_ms"; empty when it keeps them all.
std::string BrokenConstraints(const v1::ExperimentSpec& spec, const Trial& t) {
  std::vector<std::string> broken;
  for (const v1::Constraint& c : spec.constraints()) {
    auto it = t.last_metrics().find(c.metric());
    if (it == t.last_metrics().end()) {
      broken.push_back(absl::StrCat("never reported ", c.metric()));
    } else if (c.has_max() && !(it->second <= c.max())) {
      broken.push_back(absl::StrCat(c.metric(), " ", FormatDouble(it->second), " > max ", FormatDouble(c.max())));
    } else if (c.has_min() && !(it->second >= c.min())) {
      broken.push_back(absl::StrCat(c.metric(), " ", FormatDouble(it->second), " < min ", FormatDouble(c.min())));
    }
  }
  return absl::StrJoin(broken, "; ");
}

search::ParamValue ToSearch(const v1::ParamValue& v) {
  switch (v.kind_case()) {
    case v1::ParamValue::kIntValue:
      return v.int_value();
    case v1::ParamValue::kCategoricalValue:
      return v.categorical_value();
    default:
      return v.float_value();
  }
}

v1::ParamValue FromSearch(const search::ParamValue& v) {
  v1::ParamValue out;
  if (const auto* d = std::get_if<double>(&v)) out.set_float_value(*d);
  if (const auto* i = std::get_if<int64_t>(&v)) out.set_int_value(*i);
  if (const auto* s = std::get_if<std::string>(&v)) out.set_categorical_value(*s);
  return out;
}

std::string FirstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

// The variants of a validated ablation study, the base first (its policy is known: the
// study was refused at creation otherwise).
std::vector<search::Variant> AblationVariants(const v1::ExperimentSpec& spec) {
  std::vector<search::Component> components;
  for (const auto& c : spec.ablation().components()) {
    components.push_back({c.kind(), c.name(), {c.members().begin(), c.members().end()}});
  }
  auto policy = search::NewAblationPolicy(spec.ablation().policy());
  return policy.ok() ? (*policy)->Variants(components) : std::vector<search::Variant>{{"base", "base", {}}};
}

std::string LowerStateName(v1::ExperimentState s) {
  std::string n = v1::ExperimentState_Name(s);
  n = n.substr(n.find('_') + 1);
  for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return n;
}

// The study's results: every variant's statistics over its completed runs, the base first,
// then by rank, then the variants with no completed run.
absl::StatusOr<v1::AblationResults> AblationResultsOf(const Experiment& e, const std::vector<Trial>& trials) {
  if (e.spec().kind() != "ablation") {
    return absl::FailedPreconditionError(
        absl::StrCat("experiment ", e.id(), " is a search, not an ablation study (kind: ablation)"));
  }
  const std::vector<search::Variant> variants = AblationVariants(e.spec());
  std::vector<search::Run> runs;
  for (const Trial& t : trials) {
    if (t.state() != v1::TRIAL_COMPLETED || !t.has_result()) continue;
    runs.push_back({search::VariantOf(t.index() - 1, variants.size()), search::RepeatOf(t.index() - 1, variants.size()),
                    t.result()});
  }
  const bool minimize = e.spec().objective().goal() != v1::Objective::MAXIMIZE;
  constexpr double kAlpha = 0.05;
  const std::vector<search::VariantResult> results = search::Summarize(variants, runs, minimize, kAlpha);
  std::vector<const search::VariantResult*> rows = {&results[0]};
  for (size_t rank = 1; rank < results.size(); ++rank) {
    for (const auto& r : results) {
      if (r.rank == static_cast<int>(rank)) rows.push_back(&r);
    }
  }
  for (size_t v = 1; v < results.size(); ++v) {
    if (results[v].rank == 0) rows.push_back(&results[v]);
  }
  v1::AblationResults out;
  out.set_experiment(e.id());
  out.set_name(e.spec().name());
  out.set_state(LowerStateName(e.state()));
  out.set_objective(e.spec().objective().metric());
  out.set_goal(minimize ? "minimize" : "maximize");
  out.set_repeats(e.spec().ablation().repeats());
  out.set_alpha(kAlpha);
  for (const search::VariantResult* r : rows) {
    v1::AblationVariant* v = out.add_variants();
    v->set_kind(r->variant.kind);
    v->set_name(r->variant.name);
    for (const std::string& d : r->variant.dropped) v->add_dropped(d);
    v->set_runs(r->runs);
    if (!std::isnan(r->mean)) v->set_mean(r->mean);
    if (!std::isnan(r->stddev)) v->set_stddev(r->stddev);
    if (!std::isnan(r->delta)) v->set_delta(r->delta);
    if (!std::isnan(r->harm)) v->set_harm(r->harm);
    v->set_test(r->test);
    if (!std::isnan(r->p)) v->set_p(r->p);
    v->set_significant(r->significant);
    v->set_rank(r->rank);
  }
  return out;
}

// The rung levels of an asha or hyperband rule, then resource.max; empty for other searches.
void SetRungLevels(Experiment* e) {
  e->clear_rung_levels();
  const v1::EarlyStopping& es = e->spec().algorithm().early_stopping();
  if (es.rule() != "asha" && es.rule() != "hyperband") return;
  const v1::Resource& r = e->spec().resource();
  for (double level : search::Rungs(r.min(), r.max(), es.reduction_factor(), es.max_rungs())) e->add_rung_levels(level);
  e->add_rung_levels(r.max());
}

std::string SignalName(int sig) {
  const char* name = sigabbrev_np(sig);
  return name ? absl::StrCat("SIG", name) : absl::StrCat("signal ", sig);
}

}  // namespace

Controller::Controller(Store* store, Clock* clock, ControllerOptions options)
    : store_(store), clock_(clock), options_(options) {
  if (!options_.run_job) {
    const int threads = static_cast<int>(std::clamp(std::thread::hardware_concurrency() / 2, 1u, 4u));
    pool_ = std::make_unique<JobPool>(threads);
  }
}

Controller::~Controller() {
  store_->SetDurableCallback(nullptr);
  pool_.reset();  // its jobs finish while the rest still exists
  AnswerWaitingAsks(absl::UnavailableError("rungd is shutting down; ask again"));
}

void Controller::AnswerWaitingAsks(const absl::Status& why) {
  absl::MutexLock l(&mu_);
  for (auto& [id, rec] : experiments_) {
    for (ExperimentRec::Ask& a : rec->asks) a.done(why);
    rec->asks.clear();
  }
}

absl::StatusOr<std::unique_ptr<Controller>> Controller::Create(Store* store, Clock* clock,
                                                               ControllerOptions options) {
  std::unique_ptr<Controller> c(new Controller(store, clock, options));
  {
    absl::MutexLock l(&c->mu_);
    RETURN_IF_ERROR(c->LoadLocked());
  }
  Controller* raw = c.get();
  store->SetDurableCallback([raw](uint64_t durable, const absl::Status& error) { raw->OnDurable(durable, error); });
  return c;
}

void Controller::OnDurable(uint64_t durable, const absl::Status& error) {
  absl::MutexLock l(&mu_);
  if (!error.ok()) {
    LatchStoreErrorLocked(error);
    return;
  }
  SendAcksLocked(durable);
}

void Controller::SendAcksLocked(uint64_t durable) {
  while (!pending_acks_.empty() && pending_acks_.front().ticket <= durable) {
    const PendingAck a = pending_acks_.front();
    pending_acks_.pop_front();
    auto it = sessions_.find(a.session);
    if (it == sessions_.end()) continue;  // the worker resends after it reconnects
    v1::ControllerMessage ack;
    ack.mutable_ack()->set_seq(a.seq);
    it->second->sink->Send(ack);
  }
}

void Controller::LatchStoreErrorLocked(const absl::Status& s) {
  if (!store_error_.ok()) return;
  store_error_ = absl::UnavailableError(absl::StrCat(
      "rungd is not accepting changes: a write to its data folder failed (", s.message(),
      "); reads still work, nothing acknowledged is lost, and rungd resumes by itself once the "
      "write succeeds again (free disk space)"));
  next_recovery_ = clock_->Now() + absl::Seconds(1);
  pending_acks_.clear();  // not durable: the workers resend after they reconnect
  Log(LogLevel::kError, std::string(store_error_.message()));
}

absl::Status Controller::ReloadLocked() {
  for (auto& [id, rec] : experiments_) {
    for (auto& [handle, sink] : rec->watchers) sink->Close();
    for (ExperimentRec::Ask& a : rec->asks) a.done(absl::UnavailableError("rungd reloaded its state; ask again"));
  }
  // Worker streams end on their next message ("stream is no longer current"); the workers
  // reconnect and register again, which reconciles their trials with what is on disk.
  experiments_.clear();
  fifo_.clear();
  workers_.clear();
  sessions_.clear();
  watch_handles_.clear();
  pending_acks_.clear();
  return LoadLocked();
}

search::Config Controller::SearchConfig(const v1::ExperimentSpec& spec) {
  search::Config c;
  for (const auto& p : spec.search_space()) {
    search::Param q;
    q.name = p.name();
    q.kind = p.type() == v1::ParamSpec::INT           ? search::Param::Kind::kInt
             : p.type() == v1::ParamSpec::CATEGORICAL ? search::Param::Kind::kCategorical
                                                      : search::Param::Kind::kFloat;
    q.min = p.min();
    q.max = p.max();
    q.log = p.log();
    q.values.assign(p.values().begin(), p.values().end());
    q.grid_values.assign(p.grid_values().begin(), p.grid_values().end());
    q.grid_points = p.grid_points();
    q.parent = p.parent();
    q.parent_values.assign(p.parent_values().begin(), p.parent_values().end());
    c.space.push_back(std::move(q));
  }
  c.goal = spec.objective().goal() == v1::Objective::MAXIMIZE ? search::Goal::kMaximize
                                                              : search::Goal::kMinimize;
  for (const v1::Objective& o : spec.objectives()) {
    c.objectives.push_back(o.goal() == v1::Objective::MAXIMIZE ? search::Goal::kMaximize
                                                               : search::Goal::kMinimize);
  }
  c.constrained = spec.constraints_size() > 0;
  c.max_trials = spec.budget().max_trials();
  c.seed = spec.algorithm().seed();
  for (const auto& [k, v] : spec.ablation().base_params()) c.fixed[k] = ToSearch(v);
  c.sampler = spec.kind() == "ablation"          ? search::Config::Sampler::kFixed
              : spec.algorithm().name() == "grid"  ? search::Config::Sampler::kGrid
              : spec.algorithm().name() == "tpe" || spec.algorithm().name() == "bohb"
                  ? search::Config::Sampler::kTpe
              : spec.algorithm().name() == "gp"  ? search::Config::Sampler::kGp
                                                 : search::Config::Sampler::kRandom;
  if (spec.algorithm().startup_trials() > 0) c.tpe_startup = spec.algorithm().startup_trials();
  c.tpe_multivariate = spec.algorithm().multivariate();
  c.gp_ucb = spec.algorithm().acquisition() == "ucb";
  c.resource_min = spec.resource().min();
  c.resource_max = spec.resource().max();
  const v1::EarlyStopping& es = spec.algorithm().early_stopping();
  c.stopping.rule = es.rule() == "asha"        ? search::Stopping::Rule::kAsha
                    : es.rule() == "hyperband" ? search::Stopping::Rule::kHyperband
                    : es.rule() == "median"    ? search::Stopping::Rule::kMedian
                                               : search::Stopping::Rule::kNone;
  if (es.reduction_factor() > 0) c.stopping.reduction_factor = es.reduction_factor();
  c.stopping.max_rungs = es.max_rungs();
  c.stopping.promote = es.mode() == "promote";
  if (es.min_trials() > 0) c.stopping.min_trials = es.min_trials();
  c.stopping.grace = es.grace();
  return c;
}

absl::StatusOr<std::unique_ptr<search::Searcher>> Controller::NewSearcherLocked(
    const v1::ExperimentSpec& spec) {
  search::Config c = SearchConfig(spec);
  for (const std::string& id : spec.algorithm().warm_start()) {
    ExperimentRec* src = FindExperimentLocked(id);
    if (src == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("algorithm.warm_start: no experiment ", id));
    }
    const auto& a = src->exp.spec().objective();
    const auto& b = spec.objective();
    if (a.metric() != b.metric() || a.goal() != b.goal()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "algorithm.warm_start: ", id, " optimises ", a.metric(), " (", v1::Objective::Goal_Name(a.goal()),
          "), this experiment ", b.metric(), " (", v1::Objective::Goal_Name(b.goal()), ")"));
    }
    // A trial helps when every parameter this space gives it has a value that fits here.
    for (const Trial& t : src->trials) {
      if (t.state() != v1::TRIAL_COMPLETED || !t.has_result() || !t.infeasible().empty()) continue;
      search::Params params;
      bool fits = true;
      for (const search::Param& p : c.space) {
        if (!search::Active(p, params)) continue;
        auto it = t.params().find(p.name);
        if (it == t.params().end() || !search::Fits(p, ToSearch(it->second))) {
          fits = false;
          break;
        }
        params[p.name] = ToSearch(it->second);
      }
      if (fits) c.warm_start.emplace_back(std::move(params), t.result());
    }
  }
  return search::NewSearcher(c);
}

absl::Status Controller::LoadLocked() {
  ASSIGN_OR_RETURN(next_experiment_, store_->GetNextExperiment());
  std::vector<Experiment> exps;
  RETURN_IF_ERROR(store_->ForEachExperiment([&](Experiment e) { exps.push_back(std::move(e)); }));
  std::sort(exps.begin(), exps.end(),
            [](const Experiment& a, const Experiment& b) { return a.seq() < b.seq(); });
  for (Experiment& e : exps) {
    auto rec = std::make_unique<ExperimentRec>();
    rec->exp = std::move(e);
    if (rec->exp.rung_levels().empty()) SetRungLevels(&rec->exp);  // stored before rungd kept them
    auto searcher = NewSearcherLocked(rec->exp.spec());
    if (!searcher.ok()) {
      return absl::DataLossError(absl::StrCat("experiment ", rec->exp.id(),
                                              ": cannot rebuild its searcher: ",
                                              searcher.status().message()));
    }
    rec->searcher = std::move(*searcher);
    auto state = store_->GetSearcherState(rec->exp.id());
    if (state.ok()) {
      RETURN_IF_ERROR(rec->searcher->Restore(*state));
    } else if (!absl::IsNotFound(state.status())) {
      return state.status();
    }
    ASSIGN_OR_RETURN(rec->journal_next, store_->JournalEnd(rec->exp.id()));
    if (rec->journal_next == 0) {
      // Made before searchers kept a journal: it starts from here.
      Store::Batch batch;
      batch.PutJournal(rec->exp.id(), rec->journal_next++, "start", rec->searcher->Snapshot());
      RETURN_IF_ERROR(store_->Write(&batch));
    }
    RETURN_IF_ERROR(store_->ForEachTrial(rec->exp.id(), [&](Trial t) {
      rec->trials.resize(std::max<size_t>(rec->trials.size(), t.index()));
      rec->trials[t.index() - 1] = std::move(t);
    }));
    for (const Trial& t : rec->trials) {
      if (t.state() == v1::TRIAL_PENDING) rec->queue.push_back(t.index());
    }
    fifo_.push_back(rec.get());
    experiments_[rec->exp.id()] = std::move(rec);
  }
  // Workers come back as disconnected; their leases run from now, so trials they still run
  // survive a controller restart if they reconnect in time.
  absl::Time now = clock_->Now();
  std::vector<v1::Worker> workers;
  RETURN_IF_ERROR(store_->ForEachWorker([&](v1::Worker w) { workers.push_back(std::move(w)); }));
  for (v1::Worker& w : workers) {
    auto rec = std::make_unique<WorkerRec>();
    rec->worker = std::move(w);
    rec->worker.set_state(v1::WORKER_DISCONNECTED);
    rec->last_seen = now;
    workers_[rec->worker.id()] = std::move(rec);
  }
  for (auto& [id, rec] : experiments_) {
    for (const Trial& t : rec->trials) {
      if (!TrialActive(t.state())) continue;
      if (!t.client_id().empty()) clients_[t.client_id()] = now;  // like workers: from now
      auto it = workers_.find(t.worker_id());
      if (it != workers_.end()) it->second->busy.insert(t.slots().begin(), t.slots().end());
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// Persistence and notification helpers

absl::Status Controller::CommitLocked(Store::Batch* batch, bool durable) {
  if (batch->Count() == 0) return absl::OkStatus();
  absl::Status s = store_->Write(batch, durable);
  if (!s.ok()) {
    LatchStoreErrorLocked(s);
    return store_error_;
  }
  if (durable) SendAcksLocked(store_->Durable());  // its fsync covered every earlier write
  return absl::OkStatus();
}

void Controller::PutTrialLocked(ExperimentRec* rec, const Trial& t, Store::Batch* batch) {
  batch->PutTrial(t);
  v1::WatchEvent e;
  *e.mutable_trial() = t;
  BroadcastLocked(rec, e);
}

void Controller::RecountLocked(ExperimentRec* rec) {
  v1::TrialCounts c;
  for (const Trial& t : rec->trials) {
    switch (t.state()) {
      case v1::TRIAL_PENDING:
      case v1::TRIAL_PAUSED:
        c.set_pending(c.pending() + 1);
        break;
      case v1::TRIAL_ASSIGNED:
      case v1::TRIAL_RUNNING:
        c.set_running(c.running() + 1);
        break;
      case v1::TRIAL_COMPLETED:
        c.set_completed(c.completed() + 1);
        break;
      case v1::TRIAL_FAILED:
        c.set_failed(c.failed() + 1);
        break;
      case v1::TRIAL_STOPPED:
        c.set_stopped(c.stopped() + 1);
        break;
      case v1::TRIAL_WAITING:
        c.set_waiting(c.waiting() + 1);
        break;
      default:
        break;
    }
  }
  *rec->exp.mutable_counts() = c;
}

void Controller::PutExperimentLocked(ExperimentRec* rec, Store::Batch* batch) {
  RecountLocked(rec);
  rec->exp.set_updated_unix_ms(clock_->NowUnixMs());
  batch->PutExperiment(rec->exp);
  v1::WatchEvent e;
  *e.mutable_experiment() = rec->exp;
  BroadcastLocked(rec, e);
}

// Whether nothing more will happen to `rec`: it has ended and none of its trials still runs
// (a cancelled experiment's trials take a moment to stop).
static bool Settled(const std::vector<Trial>& trials, v1::ExperimentState state) {
  if (!ExperimentTerminal(state)) return false;
  for (const Trial& t : trials) {
    if (TrialActive(t.state())) return false;
  }
  return true;
}

void Controller::BroadcastLocked(ExperimentRec* rec, const v1::WatchEvent& e) {
  for (auto& [handle, sink] : rec->watchers) sink->Send(e);
  if (e.has_experiment() && Settled(rec->trials, e.experiment().state())) {
    for (auto& [handle, sink] : rec->watchers) {
      sink->Close();
      watch_handles_.erase(handle);
    }
    rec->watchers.clear();
  }
}

void Controller::SetExperimentStateLocked(ExperimentRec* rec, v1::ExperimentState state,
                                          const std::string& message, Store::Batch* batch) {
  Log(LogLevel::kInfo, absl::StrCat("experiment ", rec->exp.id(), " is now ",
                                    v1::ExperimentState_Name(state),
                                    message.empty() ? "" : absl::StrCat(": ", message)));
  rec->exp.set_state(state);
  rec->exp.set_message(message);
  PutExperimentLocked(rec, batch);
}

// ---------------------------------------------------------------------------------------
// Searcher

std::vector<search::Action> Controller::SearchLocked(ExperimentRec* rec,
                                                     const search::Event& event,
                                                     Store::Batch* batch) {
  std::vector<search::Action> actions = rec->searcher->Handle(event);
  batch->PutSearcherState(rec->exp.id(), rec->searcher->Snapshot());
  batch->PutJournal(rec->exp.id(), rec->journal_next++, search::EventText(event), search::ActionsText(actions));
  return actions;
}

// Closing a trial may stop others (promote mode) but never creates one (only TrialsWanted
// does), so rec->trials does not grow under a caller that holds a Trial& across a close.
void Controller::ApplyActionsLocked(ExperimentRec* rec, const std::vector<search::Action>& actions,
                                    Store::Batch* batch) {
  for (const search::Action& a : actions) {
    if (const auto* create = std::get_if<search::Create>(&a)) {
      Trial t;
      t.set_index(create->index + 1);
      t.set_experiment_id(rec->exp.id());
      t.set_id(TrialId(rec->exp.id(), t.index()));
      for (const auto& [k, v] : create->params) (*t.mutable_params())[k] = FromSearch(v);
      t.set_state(v1::TRIAL_PENDING);
      t.set_attempt(1);
      t.set_budget(create->budget);
      t.set_created_unix_ms(clock_->NowUnixMs());
      if (rec->exp.spec().kind() == "ablation") {
        const std::vector<search::Variant> variants = AblationVariants(rec->exp.spec());
        t.set_ablation(variants[search::VariantOf(create->index, variants.size())].Json());
        t.set_seed(search::RepeatOf(create->index, variants.size()) + 1);
      }
      rec->trials.resize(std::max<size_t>(rec->trials.size(), t.index()));
      rec->trials[t.index() - 1] = t;
      rec->queue.push_back(t.index());
      rec->exp.set_trials_created(std::max(rec->exp.trials_created(), t.index()));
      PutTrialLocked(rec, t, batch);
    } else if (const auto* stop = std::get_if<search::Stop>(&a)) {
      if (stop->index < 0 || stop->index >= static_cast<int>(rec->trials.size())) continue;
      Trial& t = rec->trials[stop->index];
      if (TrialTerminal(t.state())) continue;
      t.set_stop_reason(stop->reason);
      ++trials_stopped_early_;
      if (TrialActive(t.state())) {
        t.set_stop_requested(true);
        t.set_stop_decided_unix_us(absl::ToUnixMicros(clock_->Now()));
        PutTrialLocked(rec, t, batch);
        SendStopLocked(t, stop->reason);
        continue;
      }
      // Not running (queued for a retry, or waiting at a rung): it ends here.
      rec->queue.erase(std::remove(rec->queue.begin(), rec->queue.end(), t.index()),
                       rec->queue.end());
      t.set_state(v1::TRIAL_STOPPED);
      CloseTrialLocked(rec, &t, batch);
    } else if (const auto* cont = std::get_if<search::Continue>(&a)) {
      if (cont->index < 0 || cont->index >= static_cast<int>(rec->trials.size())) continue;
      Trial& t = rec->trials[cont->index];
      if (t.state() != v1::TRIAL_WAITING) continue;
      // Promoted: it runs again, resuming from its checkpoint folder, to the next rung.
      t.set_state(v1::TRIAL_PENDING);
      t.set_budget(cont->budget);
      t.set_attempt(t.attempt() + 1);
      t.set_last_report_seq(0);
      t.clear_worker_id();
      t.clear_client_id();
      t.clear_slots();
      rec->queue.push_front(t.index());
      PutTrialLocked(rec, t, batch);
    } else if (std::holds_alternative<search::Done>(a)) {
      rec->exp.set_search_done(true);
    }
  }
  MaybeFinishLocked(rec, batch);
  PutExperimentLocked(rec, batch);
}

void Controller::MaybeFinishLocked(ExperimentRec* rec, Store::Batch* batch) {
  if (ExperimentTerminal(rec->exp.state()) || !rec->exp.search_done()) return;
  for (const Trial& t : rec->trials) {
    if (!TrialTerminal(t.state())) return;
  }
  RecountLocked(rec);
  if (rec->exp.counts().completed() == 0 && rec->exp.counts().failed() > 0) {
    SetExperimentStateLocked(rec, v1::EXPERIMENT_FAILED,
                             absl::StrCat("all ", rec->exp.counts().failed(),
                                          " trials failed; see `rung trials ", rec->exp.id(), "`"),
                             batch);
  } else {
    SetExperimentStateLocked(rec, v1::EXPERIMENT_COMPLETED, "", batch);
  }
}

// ---------------------------------------------------------------------------------------
// Clients

Controller::ExperimentRec* Controller::FindExperimentLocked(const std::string& id) {
  auto it = experiments_.find(id);
  return it == experiments_.end() ? nullptr : it->second.get();
}

absl::StatusOr<Trial*> Controller::FindTrialLocked(const std::string& trial_id,
                                                   ExperimentRec** rec_out) {
  std::string exp_id;
  int index;
  if (!ParseTrialId(trial_id, &exp_id, &index)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", trial_id, "' is not a trial id (expected EXPERIMENT-N, e.g. e1-3)"));
  }
  ExperimentRec* rec = FindExperimentLocked(exp_id);
  if (rec == nullptr || index < 1 || index > static_cast<int>(rec->trials.size()) ||
      rec->trials[index - 1].id().empty()) {
    return absl::NotFoundError(absl::StrCat("no trial ", trial_id));
  }
  if (rec_out) *rec_out = rec;
  return &rec->trials[index - 1];
}

absl::Status Controller::PrepareAblationLocked(v1::ExperimentSpec* spec) {
  v1::Ablation* a = spec->mutable_ablation();
  RETURN_IF_ERROR(search::NewAblationPolicy(a->policy()).status());
  if (!a->base_from_experiment().empty()) {
    // The base is the best completed trial of an earlier experiment, copied now: the study
    // does not change when that experiment goes on.
    ExperimentRec* src = FindExperimentLocked(a->base_from_experiment());
    if (src == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("base.from_experiment: no experiment ", a->base_from_experiment()));
    }
    if (!src->exp.has_best()) {
      return absl::FailedPreconditionError(absl::StrCat("base.from_experiment: experiment ", a->base_from_experiment(),
                                                        " has no best trial yet (none completed within its constraints)"));
    }
    ASSIGN_OR_RETURN(Trial * best, FindTrialLocked(src->exp.best_trial_id(), nullptr));
    *a->mutable_base_params() = best->params();
    RETURN_IF_ERROR(CheckPlaceholders(spec->trial(), a->base_params(), {}));
  }
  const int variants = static_cast<int>(AblationVariants(*spec).size());
  const int64_t trials = int64_t{variants} * a->repeats();
  if (trials > kMaxTrials) {
    return absl::InvalidArgumentError(absl::StrCat("the study needs ", variants, " variants x ", a->repeats(),
                                                   " repeats = ", trials, " trials; at most ", kMaxTrials));
  }
  spec->mutable_budget()->set_max_trials(static_cast<int32_t>(trials));
  if (spec->budget().max_concurrent() == 0) spec->mutable_budget()->set_max_concurrent(static_cast<int32_t>(trials));
  return absl::OkStatus();
}

absl::StatusOr<Experiment> Controller::CreateExperiment(v1::ExperimentSpec spec, const std::string& owner) {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(store_error_);
  if (spec.kind() == "ablation") RETURN_IF_ERROR(PrepareAblationLocked(&spec));
  if (spec.algorithm().name() == "grid") {
    int64_t size = search::GridSize(SearchConfig(spec).space);
    if (spec.budget().max_trials() == 0 || spec.budget().max_trials() > size) {
      spec.mutable_budget()->set_max_trials(static_cast<int32_t>(size));
    }
    if (spec.budget().max_concurrent() == 0) {
      spec.mutable_budget()->set_max_concurrent(spec.budget().max_trials());
    }
  }
  if (spec.algorithm().seed() == 0) {
    // No seed given: take one from the clock and keep it, so the run can be repeated.
    spec.mutable_algorithm()->set_seed(static_cast<uint64_t>(absl::ToUnixNanos(clock_->Now())));
  }
  ASSIGN_OR_RETURN(auto searcher, NewSearcherLocked(spec));
  auto rec = std::make_unique<ExperimentRec>();
  rec->searcher = std::move(searcher);
  Experiment& e = rec->exp;
  e.set_id(absl::StrCat("e", next_experiment_));
  e.set_seq(next_experiment_);
  *e.mutable_spec() = std::move(spec);
  e.set_state(v1::EXPERIMENT_PENDING);
  e.set_owner(owner);
  SetRungLevels(&e);
  e.set_created_unix_ms(clock_->NowUnixMs());
  e.set_updated_unix_ms(e.created_unix_ms());
  Store::Batch batch;
  batch.PutNextExperiment(next_experiment_ + 1);
  batch.PutExperiment(e);
  batch.PutSearcherState(e.id(), rec->searcher->Snapshot());
  batch.PutJournal(e.id(), rec->journal_next++, "start", rec->searcher->Snapshot());
  RETURN_IF_ERROR(CommitLocked(&batch, /*durable=*/true));
  ++next_experiment_;
  Experiment out = e;
  fifo_.push_back(rec.get());
  experiments_[out.id()] = std::move(rec);
  Log(LogLevel::kInfo, absl::StrCat("experiment ", out.id(), " (", out.spec().name(), ") created: ",
                                    out.spec().algorithm().name(), ", ", out.spec().budget().max_trials(),
                                    " trials"));
  DispatchLocked();
  return experiments_[out.id()]->exp;
}

absl::StatusOr<Experiment> Controller::GetExperiment(const std::string& id) {
  absl::MutexLock l(&mu_);
  ExperimentRec* rec = FindExperimentLocked(id);
  if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no experiment ", id));
  return rec->exp;
}

std::vector<Experiment> Controller::ListExperiments() {
  absl::MutexLock l(&mu_);
  std::vector<Experiment> out;
  for (ExperimentRec* rec : fifo_) out.push_back(rec->exp);
  return out;
}

absl::StatusOr<Experiment> Controller::CancelExperiment(const std::string& id) {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(store_error_);
  ExperimentRec* rec = FindExperimentLocked(id);
  if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no experiment ", id));
  if (ExperimentTerminal(rec->exp.state())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "experiment ", id, " has already ended (", v1::ExperimentState_Name(rec->exp.state()), ")"));
  }
  Store::Batch batch;
  for (Trial& t : rec->trials) {
    if (t.state() == v1::TRIAL_PENDING || t.state() == v1::TRIAL_PAUSED ||
        t.state() == v1::TRIAL_WAITING) {
      t.set_state(v1::TRIAL_STOPPED);
      t.set_stop_reason(kCancelled);
      t.set_ended_unix_ms(clock_->NowUnixMs());
      PutTrialLocked(rec, t, &batch);
    } else if (TrialActive(t.state())) {
      t.set_stop_requested(true);
      t.set_stop_reason(kCancelled);
      PutTrialLocked(rec, t, &batch);
      SendStopLocked(t, kCancelled);
    }
  }
  rec->queue.clear();
  SetExperimentStateLocked(rec, v1::EXPERIMENT_CANCELLED, "cancelled by request", &batch);
  RETURN_IF_ERROR(CommitLocked(&batch, /*durable=*/true));
  ServeAsksLocked(rec, /*may_wait=*/false);
  return rec->exp;
}

absl::StatusOr<Experiment> Controller::PauseExperiment(const std::string& id) {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(store_error_);
  ExperimentRec* rec = FindExperimentLocked(id);
  if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no experiment ", id));
  if (ExperimentTerminal(rec->exp.state()) || rec->exp.state() == v1::EXPERIMENT_PAUSED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "experiment ", id, " is ", v1::ExperimentState_Name(rec->exp.state()),
        "; only a pending or running experiment can be paused"));
  }
  // Running trials are stopped to free their slots and come back, from their checkpoint
  // folder, on resume.
  Store::Batch batch;
  for (Trial& t : rec->trials) {
    if (TrialActive(t.state())) {
      t.set_stop_requested(true);
      t.set_stop_reason(kPaused);
      PutTrialLocked(rec, t, &batch);
      SendStopLocked(t, kPaused);
    }
  }
  SetExperimentStateLocked(rec, v1::EXPERIMENT_PAUSED, "paused by request", &batch);
  RETURN_IF_ERROR(CommitLocked(&batch, /*durable=*/true));
  ServeAsksLocked(rec, /*may_wait=*/false);
  return rec->exp;
}

absl::StatusOr<Experiment> Controller::ResumeExperiment(const std::string& id) {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(store_error_);
  ExperimentRec* rec = FindExperimentLocked(id);
  if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no experiment ", id));
  if (rec->exp.state() != v1::EXPERIMENT_PAUSED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "experiment ", id, " is ", v1::ExperimentState_Name(rec->exp.state()), ", not paused"));
  }
  Store::Batch batch;
  for (Trial& t : rec->trials) {
    if (t.state() == v1::TRIAL_PAUSED) {
      t.set_state(v1::TRIAL_PENDING);
      t.set_attempt(t.attempt() + 1);
      t.set_last_report_seq(0);
      rec->queue.push_back(t.index());
      PutTrialLocked(rec, t, &batch);
    }
  }
  SetExperimentStateLocked(rec, v1::EXPERIMENT_RUNNING, "", &batch);
  RETURN_IF_ERROR(CommitLocked(&batch, /*durable=*/true));
  DispatchLocked();
  return rec->exp;
}

absl::StatusOr<std::vector<Trial>> Controller::ListTrials(const std::string& experiment_id) {
  absl::MutexLock l(&mu_);
  ExperimentRec* rec = FindExperimentLocked(experiment_id);
  if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no experiment ", experiment_id));
  std::vector<Trial> out;
  for (const Trial& t : rec->trials) {
    if (!t.id().empty()) out.push_back(t);
  }
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

absl::StatusOr<v1::BackupResponse> Controller::Backup(const std::string& dir) {
  namespace fs = std::filesystem;
  if (dir.empty() || dir[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat("dir: '", dir, "' is not an absolute path on rungd's machine"));
  }
  std::error_code ec;
  if (fs::exists(dir, ec)) return absl::AlreadyExistsError(absl::StrCat("dir: ", dir, " already exists"));
  RETURN_IF_ERROR(store_->Checkpoint(dir));
  v1::BackupResponse out;
  out.set_dir(dir);
  for (const auto& f : fs::recursive_directory_iterator(dir, ec)) {
    if (!f.is_regular_file()) continue;
    out.set_files(out.files() + 1);
    out.set_bytes(out.bytes() + static_cast<int64_t>(f.file_size()));
  }
  Log(LogLevel::kInfo, absl::StrCat("backup of the data folder in ", dir, ": ", out.files(), " files, ",
                                    out.bytes(), " bytes"));
  return out;
}

absl::StatusOr<v1::AblationResults> Controller::GetAblation(const std::string& experiment_id) {
  absl::MutexLock l(&mu_);
  ExperimentRec* rec = FindExperimentLocked(experiment_id);
  if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no experiment ", experiment_id));
  return AblationResultsOf(rec->exp, rec->trials);
}

absl::StatusOr<v1::ReplaySearchResponse> Controller::ReplaySearch(const std::string& experiment_id) {
  v1::ExperimentSpec spec;
  {
    absl::MutexLock l(&mu_);
    ExperimentRec* rec = FindExperimentLocked(experiment_id);
    if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no experiment ", experiment_id));
    spec = rec->exp.spec();
  }
  std::vector<std::pair<std::string, std::string>> entries;
  std::string snapshot;
  RETURN_IF_ERROR(store_->GetJournal(experiment_id, &entries, &snapshot));
  std::vector<search::JournalEntry> journal;
  for (auto& [call, answer] : entries) journal.push_back({std::move(call), std::move(answer)});
  v1::ReplaySearchResponse out;
  int64_t replayed = 0;
  const absl::Status s = search::Replay(SearchConfig(spec), journal, snapshot, &replayed);
  out.set_entries(replayed);
  out.set_identical(s.ok());
  out.set_mismatch(std::string(s.message()));
  return out;
}

absl::StatusOr<std::vector<Trial>> Controller::GetBestTrials(const std::string& experiment_id,
                                                             int count) {
  absl::MutexLock l(&mu_);
  ExperimentRec* rec = FindExperimentLocked(experiment_id);
  if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no experiment ", experiment_id));
  std::vector<Trial> done;
  for (const Trial& t : rec->trials) {
    // A trial that broke a constraint is never best.
    if (t.state() == v1::TRIAL_COMPLETED && t.has_result() && t.infeasible().empty()) done.push_back(t);
  }
  auto goal = rec->exp.spec().objective().goal();
  const auto& objectives = rec->exp.spec().objectives();
  if (!objectives.empty()) {
    // The Pareto set, by the first objective; `count` > 0 caps it.
    std::vector<std::vector<double>> points;
    for (const Trial& t : done) {
      std::vector<double> p;
      for (int i = 0; i < objectives.size() && i < t.results_size(); ++i) {
        p.push_back(objectives[i].goal() == v1::Objective::MAXIMIZE ? -t.results(i) : t.results(i));
      }
      points.push_back(std::move(p));
    }
    std::vector<Trial> front;
    for (size_t i : search::ParetoFront(points)) front.push_back(done[i]);
    std::stable_sort(front.begin(), front.end(), [goal](const Trial& a, const Trial& b) {
      return Better(goal, a.result(), b.result());
    });
    if (count > 0 && static_cast<int>(front.size()) > count) front.resize(count);
    return front;
  }
  std::stable_sort(done.begin(), done.end(), [goal](const Trial& a, const Trial& b) {
    return Better(goal, a.result(), b.result());
  });
  if (count <= 0) count = 1;
  if (static_cast<int>(done.size()) > count) done.resize(count);
  return done;
}

absl::StatusOr<int64_t> Controller::Watch(const std::string& experiment_id, WatchSink* sink) {
  absl::MutexLock l(&mu_);
  ExperimentRec* rec = FindExperimentLocked(experiment_id);
  if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no experiment ", experiment_id));
  for (const Trial& t : rec->trials) {
    if (t.id().empty()) continue;
    v1::WatchEvent e;
    *e.mutable_trial() = t;
    sink->Send(e);
  }
  v1::WatchEvent e;
  *e.mutable_experiment() = rec->exp;
  sink->Send(e);
  int64_t handle = next_handle_++;
  if (Settled(rec->trials, rec->exp.state())) {
    sink->Close();
    return handle;
  }
  rec->watchers[handle] = sink;
  watch_handles_[handle] = rec;
  return handle;
}

void Controller::Unwatch(int64_t handle) {
  absl::MutexLock l(&mu_);
  auto it = watch_handles_.find(handle);
  if (it == watch_handles_.end()) return;
  it->second->watchers.erase(handle);
  watch_handles_.erase(it);
}

// ---------------------------------------------------------------------------------------
// Scheduling

bool Controller::Matches(const ExperimentRec& rec, const WorkerRec& w, std::vector<int>* slots) {
  const v1::TrialTemplate& tt = rec.exp.spec().trial();
  for (const auto& [k, v] : tt.labels()) {
    auto it = w.worker.labels().find(k);
    if (it == w.worker.labels().end() || it->second != v) return false;
  }
  slots->clear();
  const int gpus = tt.gpus();
  // A CPU trial prefers a CPU slot and takes a GPU slot only when no CPU slot is free.
  for (int pass = 0; pass < 2 && slots->empty(); ++pass) {
    for (const v1::Slot& s : w.worker.slots()) {
      if (!w.offered.count(s.id()) || w.busy.count(s.id())) continue;
      bool is_gpu = !s.gpu().empty();
      if (gpus > 0) {
        if (!is_gpu) continue;
        slots->push_back(s.id());
        if (static_cast<int>(slots->size()) == gpus) return true;
      } else if (is_gpu == (pass == 1)) {
        slots->push_back(s.id());
        return true;
      }
    }
    if (gpus > 0) break;
  }
  slots->clear();
  return false;
}

v1::Assignment Controller::MakeAssignmentLocked(const ExperimentRec& rec, const Trial& t) {
  v1::Assignment a;
  *a.mutable_trial() = t;
  const v1::TrialTemplate& tt = rec.exp.spec().trial();
  // Placeholders were checked when the spec was accepted, so filling cannot fail here.
  for (const std::string& arg : tt.command()) {
    a.add_argv(FillPlaceholders(arg, t.params()).value_or(arg));
  }
  a.set_workdir(tt.workdir());
  auto& env = *a.mutable_env();
  for (const auto& [k, v] : tt.env()) env[k] = FillPlaceholders(v, t.params()).value_or(v);
  env["RUNG_TRIAL_ID"] = t.id();
  env["RUNG_EXPERIMENT_ID"] = t.experiment_id();
  env["RUNG_ATTEMPT"] = absl::StrCat(t.attempt());
  env["RUNG_PARAMS"] = ParamsToJson(t.params());
  env["RUNG_OBJECTIVE"] = rec.exp.spec().objective().metric();
  if (!t.ablation().empty()) {
    env["RUNG_ABLATION"] = t.ablation();
    env["RUNG_SEED"] = absl::StrCat(t.seed());
  }
  if (!tt.checkpoint_root().empty()) {
    env["RUNG_CHECKPOINT_DIR"] = absl::StrCat(tt.checkpoint_root(), "/", t.experiment_id(), "/", t.id());
  }
  if (t.budget() > 0) {
    env["RUNG_BUDGET"] = FormatDouble(t.budget());
    env["RUNG_RESOURCE"] = rec.exp.spec().resource().metric();
  }
  a.set_lease_deadline_unix_ms(
      absl::ToUnixMillis(clock_->Now() + options_.lease_timeout));
  return a;
}

int Controller::NextTrialLocked(ExperimentRec* rec, Store::Batch* batch, std::string* why) {
  if (rec->queue.empty()) {
    // Ask the searcher for one trial now, so it decides with everything known so far.
    int open = 0;  // trials that hold or want a slot
    for (const Trial& t : rec->trials) {
      open += !TrialTerminal(t.state()) && t.state() != v1::TRIAL_WAITING;
    }
    if (rec->exp.search_done()) {
      *why = "the search has handed out every trial; the experiment ends when they do";
      return 0;
    }
    const int max_concurrent = rec->exp.spec().budget().max_concurrent();
    if (open >= max_concurrent) {
      *why = absl::StrCat("budget.max_concurrent (", max_concurrent, ") trials are out; one must end first");
      return 0;
    }
    *why = "the model is proposing the next trial";
    if (rec->proposal_ticket != 0) return 0;  // a model is already working it out
    if (auto job = rec->searcher->Propose()) {
      // Propose() draws the job's seed from the searcher's generator: journalled and saved
      // before the job starts, so a restart cannot hand out the same seed twice.
      Store::Batch propose;
      propose.PutSearcherState(rec->exp.id(), rec->searcher->Snapshot());
      propose.PutJournal(rec->exp.id(), rec->journal_next++, "propose", "");
      if (CommitLocked(&propose).ok()) StartProposalLocked(rec, std::move(job));
      return 0;
    }
    ApplyActionsLocked(rec, SearchLocked(rec, search::TrialsWanted{1}, batch), batch);
    if (rec->queue.empty()) {
      *why = "the searcher has no trial to give now";
      return 0;
    }
  }
  const int index = rec->queue.front();
  rec->queue.pop_front();
  return index;
}

bool Controller::TryAssignLocked(WorkerRec* w) {
  std::vector<int> slots;
  for (ExperimentRec* rec : fifo_) {
    auto state = rec->exp.state();
    if (state != v1::EXPERIMENT_PENDING && state != v1::EXPERIMENT_RUNNING) continue;
    if (rec->exp.spec().execution() == "external") continue;  // its clients ask for trials
    if (!Matches(*rec, *w, &slots)) continue;
    Store::Batch batch;
    std::string why;
    const int index = NextTrialLocked(rec, &batch, &why);
    if (index == 0) {
      if (!CommitLocked(&batch).ok() || !store_error_.ok()) return false;
      continue;
    }
    Trial& t = rec->trials[index - 1];
    t.set_state(v1::TRIAL_ASSIGNED);
    t.set_worker_id(w->worker.id());
    t.clear_slots();
    for (int s : slots) {
      t.add_slots(s);
      w->busy.insert(s);
      w->offered.erase(s);
    }
    t.set_stop_requested(false);
    t.clear_stop_reason();
    PutTrialLocked(rec, t, &batch);
    if (rec->exp.state() == v1::EXPERIMENT_PENDING) rec->exp.set_state(v1::EXPERIMENT_RUNNING);
    PutExperimentLocked(rec, &batch);
    if (!CommitLocked(&batch).ok()) return false;
    v1::ControllerMessage m;
    *m.mutable_assignment() = MakeAssignmentLocked(*rec, t);
    w->sink->Send(m);
    return true;
  }
  return false;
}

void Controller::StartProposalLocked(ExperimentRec* rec, std::function<search::Proposal()> job) {
  const int64_t ticket = next_ticket_++;
  rec->proposal_ticket = ticket;
  rec->proposal_started = clock_->Now();
  rec->proposal_deadline = rec->proposal_started + options_.suggest_deadline;
  auto run = [this, id = rec->exp.id(), ticket, job = std::move(job)] { ProposalDone(id, ticket, job()); };
  pool_ ? pool_->Run(std::move(run)) : options_.run_job(std::move(run));
}

void Controller::ProposalDone(const std::string& experiment_id, int64_t ticket,
                              search::Proposal proposal) {
  absl::MutexLock l(&mu_);
  ExperimentRec* rec = FindExperimentLocked(experiment_id);
  if (rec == nullptr || rec->proposal_ticket != ticket) return;  // Tick() fell back already
  rec->proposal_ticket = 0;
  const auto state = rec->exp.state();
  if (!store_error_.ok() || (state != v1::EXPERIMENT_PENDING && state != v1::EXPERIMENT_RUNNING)) {
    return;  // paused or ended meanwhile: a later slot asks the model again
  }
  ++suggestions_;
  const double seconds = absl::ToDoubleSeconds(clock_->Now() - rec->proposal_started);
  suggestion_seconds_ += seconds;
  ControllerStats::Histogram& h = suggestion_hist_[rec->exp.spec().algorithm().name()];
  const auto& bounds = SuggestionBuckets();
  h.counts.resize(bounds.size() + 1);
  ++h.counts[static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), seconds) - bounds.begin())];
  h.sum += seconds;
  Store::Batch batch;
  ApplyActionsLocked(rec, SearchLocked(rec, search::TrialsWanted{1, std::move(proposal), true}, &batch),
                     &batch);
  if (!CommitLocked(&batch).ok()) return;
  DispatchLocked();
  ServeAsksLocked(rec, /*may_wait=*/true);
}

void Controller::DispatchLocked() {
  if (!store_error_.ok()) return;
  for (auto& [id, w] : workers_) {
    if (w->sink == nullptr) continue;
    while (!w->offered.empty() && TryAssignLocked(w.get())) {
    }
  }
}

void Controller::SendStopLocked(const Trial& t, const std::string& reason) {
  auto it = workers_.find(t.worker_id());
  if (!TrialActive(t.state()) || it == workers_.end() || it->second->sink == nullptr) return;
  v1::ControllerMessage m;
  m.mutable_stop()->mutable_trial()->set_trial_id(t.id());
  m.mutable_stop()->mutable_trial()->set_attempt(t.attempt());
  m.mutable_stop()->set_reason(reason);
  it->second->sink->Send(m);
}

void Controller::ReleaseSlotsLocked(Trial* t) {
  auto it = workers_.find(t->worker_id());
  if (it != workers_.end()) {
    for (int s : t->slots()) it->second->busy.erase(s);
  }
}

void Controller::CloseTrialLocked(ExperimentRec* rec, Trial* t, Store::Batch* batch) {
  t->set_ended_unix_ms(clock_->NowUnixMs());
  PutTrialLocked(rec, *t, batch);
  auto goal = rec->exp.spec().objective().goal();
  // With several objectives there is no single best; `rung best` gives the Pareto set.
  if (t->state() == v1::TRIAL_COMPLETED && t->infeasible().empty() && rec->exp.spec().objectives().empty() &&
      (!rec->exp.has_best() || Better(goal, t->result(), rec->exp.best_value()))) {
    rec->exp.set_has_best(true);
    rec->exp.set_best_value(t->result());
    rec->exp.set_best_trial_id(t->id());
  }
  if (ExperimentTerminal(rec->exp.state())) {
    PutExperimentLocked(rec, batch);
    return;
  }
  search::TrialClosed closed;
  closed.index = t->index() - 1;
  closed.outcome = t->state() == v1::TRIAL_COMPLETED ? search::TrialClosed::Outcome::kCompleted
                   : t->state() == v1::TRIAL_FAILED  ? search::TrialClosed::Outcome::kFailed
                                                     : search::TrialClosed::Outcome::kStopped;
  closed.has_result = t->has_result();
  closed.result = t->result();
  closed.results.assign(t->results().begin(), t->results().end());
  closed.feasible = t->infeasible().empty();
  ApplyActionsLocked(rec, SearchLocked(rec, closed, batch), batch);
}

void Controller::EndStoppedLocked(ExperimentRec* rec, Trial* t, Store::Batch* batch) {
  ReleaseSlotsLocked(t);
  if (t->stop_reason() == kPaused && !ExperimentTerminal(rec->exp.state())) {
    // Stopped to free its slot for a pause: it waits for the resume, or, when the resume
    // came before it exited, goes back to the queue now.
    bool paused = rec->exp.state() == v1::EXPERIMENT_PAUSED;
    t->set_state(paused ? v1::TRIAL_PAUSED : v1::TRIAL_PENDING);
    if (!paused) {
      t->set_attempt(t->attempt() + 1);
      t->set_last_report_seq(0);
      rec->queue.push_back(t->index());
    }
    t->set_stop_requested(false);
    t->clear_worker_id();
    t->clear_client_id();
    t->clear_slots();
    PutTrialLocked(rec, *t, batch);
    PutExperimentLocked(rec, batch);
    return;
  }
  t->set_state(v1::TRIAL_STOPPED);
  CloseTrialLocked(rec, t, batch);
}

void Controller::RetryOrFailLocked(ExperimentRec* rec, Trial* t, const std::string& reason,
                                   bool count_failure, Store::Batch* batch) {
  ReleaseSlotsLocked(t);
  if (count_failure) t->set_failures(t->failures() + 1);
  t->set_message(reason);
  const int max_restarts = rec->exp.spec().trial().max_restarts();
  Log(LogLevel::kInfo, absl::StrCat("trial ", t->id(), " attempt ", t->attempt(), ": ", FirstLine(reason)));
  if (t->failures() > max_restarts || ExperimentTerminal(rec->exp.state())) {
    t->set_state(v1::TRIAL_FAILED);
    if (count_failure && max_restarts > 0) {
      t->set_message(absl::StrCat(reason, " (failed ", t->failures(), " times; max_restarts is ",
                                  max_restarts, ")"));
    }
    CloseTrialLocked(rec, t, batch);
    return;
  }
  t->set_state(rec->exp.state() == v1::EXPERIMENT_PAUSED ? v1::TRIAL_PAUSED : v1::TRIAL_PENDING);
  t->set_attempt(t->attempt() + 1);
  t->set_last_report_seq(0);
  t->clear_worker_id();
  t->clear_client_id();
  t->clear_slots();
  if (t->state() == v1::TRIAL_PENDING) rec->queue.push_back(t->index());
  PutTrialLocked(rec, *t, batch);
  PutExperimentLocked(rec, batch);
}

// ---------------------------------------------------------------------------------------
// Ask and tell

namespace {

absl::Status CheckClientId(const std::string& client_id) {
  if (client_id.empty()) {
    return absl::InvalidArgumentError("client_id: must not be empty (it names the client, e.g. its host)");
  }
  if (client_id.size() > 128) {
    return absl::InvalidArgumentError(absl::StrCat("client_id: ", client_id.size(), " bytes; at most 128"));
  }
  return absl::OkStatus();
}

absl::Status CheckValues(const google::protobuf::Map<std::string, double>& values) {
  for (const auto& [k, v] : values) {
    if (k.empty()) return absl::InvalidArgumentError("values: a metric name is empty");
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrCat("values: metric '", k, "' is not a finite number"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

void Controller::AskTrials(const v1::AskTrialsRequest& req, AskDone done) {
  absl::MutexLock l(&mu_);
  if (absl::Status s = CheckClientId(req.client_id()); !s.ok()) return done(s);
  if (req.count() < 0 || req.count() > 1000) {
    return done(absl::InvalidArgumentError(absl::StrCat("count: ", req.count(), " is not between 0 and 1000")));
  }
  if (!store_error_.ok()) return done(store_error_);
  ExperimentRec* rec = FindExperimentLocked(req.experiment_id());
  if (rec == nullptr) return done(absl::NotFoundError(absl::StrCat("no experiment ", req.experiment_id())));
  if (rec->exp.spec().execution() != "external") {
    return done(absl::FailedPreconditionError(absl::StrCat(
        "experiment ", req.experiment_id(), " runs its trials on rung workers; only an experiment with "
        "`execution: external` hands trials to clients")));
  }
  clients_[req.client_id()] = clock_->Now();
  ExperimentRec::Ask ask{req.client_id(), req.count(), std::move(done)};
  if (!ServeAskLocked(rec, &ask, /*may_wait=*/true)) rec->asks.push_back(std::move(ask));
}

bool Controller::ServeAskLocked(ExperimentRec* rec, ExperimentRec::Ask* ask, bool may_wait) {
  // Indexes, not pointers: handing out a trial may grow rec->trials.
  std::vector<int> held;
  for (const Trial& t : rec->trials) {
    if (TrialActive(t.state()) && !t.stop_requested() && t.client_id() == ask->client_id) held.push_back(t.index());
  }
  v1::AskTrialsResponse resp;
  Store::Batch batch;
  std::string why;
  const auto state = rec->exp.state();
  if (state == v1::EXPERIMENT_PAUSED) why = "the experiment is paused";
  if (ExperimentTerminal(state)) {
    resp.set_done(true);
    why = absl::StrCat("the experiment has ended (", v1::ExperimentState_Name(state), ")");
  }
  const bool open = state == v1::EXPERIMENT_PENDING || state == v1::EXPERIMENT_RUNNING;
  while (open && static_cast<int>(held.size()) < ask->count && store_error_.ok()) {
    const int index = NextTrialLocked(rec, &batch, &why);
    if (index == 0) break;
    Trial& t = rec->trials[index - 1];
    t.set_state(v1::TRIAL_RUNNING);
    t.set_client_id(ask->client_id);
    t.clear_worker_id();
    t.clear_slots();
    t.set_started_unix_ms(clock_->NowUnixMs());
    t.set_stop_requested(false);
    t.clear_stop_reason();
    PutTrialLocked(rec, t, &batch);
    if (rec->exp.state() == v1::EXPERIMENT_PENDING) rec->exp.set_state(v1::EXPERIMENT_RUNNING);
    held.push_back(t.index());
  }
  if (held.empty() && may_wait && rec->proposal_ticket != 0 && store_error_.ok()) {
    // Nothing to give until the model has proposed: answer then (ProposalDone or Tick).
    (void)CommitLocked(&batch);  // on failure the reload answers it
    return false;
  }
  if (batch.Count() > 0) PutExperimentLocked(rec, &batch);
  absl::Status s = store_error_.ok() ? CommitLocked(&batch, /*durable=*/true) : store_error_;
  if (!s.ok()) {
    ask->done(s);
    return true;
  }
  for (int index : held) *resp.add_trials() = rec->trials[index - 1];
  if (held.empty()) resp.set_why(why);
  resp.set_lease_timeout_ms(int64_t{rec->exp.spec().client_lease_seconds()} * 1000);
  ask->done(std::move(resp));
  return true;
}

void Controller::ServeAsksLocked(ExperimentRec* rec, bool may_wait) {
  std::vector<ExperimentRec::Ask> asks;
  asks.swap(rec->asks);
  for (ExperimentRec::Ask& a : asks) {
    if (!ServeAskLocked(rec, &a, may_wait)) rec->asks.push_back(std::move(a));
  }
}

absl::StatusOr<Trial*> Controller::ClientTrialLocked(const std::string& trial_id, const std::string& client_id,
                                                     ExperimentRec** rec) {
  RETURN_IF_ERROR(CheckClientId(client_id));
  ASSIGN_OR_RETURN(Trial * t, FindTrialLocked(trial_id, rec));
  if ((*rec)->exp.spec().execution() != "external") {
    return absl::FailedPreconditionError(absl::StrCat(
        "trial ", trial_id, " belongs to an experiment that rung workers run; its reports come from the worker"));
  }
  if (TrialActive(t->state()) && t->client_id() != client_id) {
    return absl::FailedPreconditionError(
        absl::StrCat("trial ", trial_id, " is held by client '", t->client_id(), "', not '", client_id, "'"));
  }
  clients_[client_id] = clock_->Now();
  return t;
}

absl::StatusOr<v1::ReportTrialResponse> Controller::ReportTrial(const v1::ReportTrialRequest& req) {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(store_error_);
  RETURN_IF_ERROR(CheckValues(req.values()));
  if (!std::isfinite(req.step())) return absl::InvalidArgumentError("step: not a finite number");
  if (req.seq() < 0) return absl::InvalidArgumentError("seq: must not be negative");
  ExperimentRec* rec = nullptr;
  ASSIGN_OR_RETURN(Trial * t, ClientTrialLocked(req.trial_id(), req.client_id(), &rec));
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
    Store::Batch batch;
    ApplyReportLocked(rec, t, std::move(r), &batch);
    batch.PutTrial(*t);
    RETURN_IF_ERROR(CommitLocked(&batch, /*durable=*/true));
  }
  resp.set_stop(t->stop_requested());
  resp.set_reason(t->stop_requested() ? t->stop_reason() : "");
  return resp;
}

absl::StatusOr<Trial> Controller::CompleteTrial(const v1::CompleteTrialRequest& req) {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(store_error_);
  RETURN_IF_ERROR(CheckValues(req.values()));
  ExperimentRec* rec = nullptr;
  ASSIGN_OR_RETURN(Trial * t, ClientTrialLocked(req.trial_id(), req.client_id(), &rec));
  if (!TrialActive(t->state())) {
    if (t->state() == v1::TRIAL_COMPLETED && t->client_id() == req.client_id()) return *t;  // a retry
    return absl::FailedPreconditionError(absl::StrCat(
        "trial ", t->id(), " is not held by client '", req.client_id(), "' (", v1::TrialState_Name(t->state()),
        t->message().empty() ? "" : ": ", FirstLine(t->message()), ")"));
  }
  Store::Batch batch;
  if (req.failed()) {
    RetryOrFailLocked(rec, t,
                      absl::StrCat("client '", req.client_id(), "' failed it",
                                   req.message().empty() ? "" : ": ", req.message()),
                      /*count_failure=*/true, &batch);
  } else {
    if (!req.values().empty()) {
      v1::MetricReport r;
      r.set_trial_id(t->id());
      r.set_attempt(t->attempt());
      r.set_seq(t->last_report_seq() + 1);
      r.set_step(t->last_step());
      *r.mutable_values() = req.values();
      r.set_final(true);
      Trial check = *t;  // refused whole when an objective is still missing
      for (const auto& [k, v] : req.values()) (*check.mutable_last_metrics())[k] = v;
      if (!t->stop_requested() && !MissingObjective(rec->exp.spec(), check).empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "trial ", t->id(), ": no value of objective '", MissingObjective(rec->exp.spec(), check),
            "'; complete it with that metric, or with failed"));
      }
      ApplyReportLocked(rec, t, std::move(r), &batch);
    }
    if (t->stop_requested()) {
      EndStoppedLocked(rec, t, &batch);  // a stop was out: it ends as the stop said
    } else if (std::string missing = MissingObjective(rec->exp.spec(), *t); !missing.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "trial ", t->id(), ": no value of objective '", missing, "'; complete it with that metric, or with failed"));
    } else {
      FinishTrialLocked(rec, t, &batch);
    }
  }
  PutExperimentLocked(rec, &batch);
  RETURN_IF_ERROR(CommitLocked(&batch, /*durable=*/true));
  return *t;
}

// ---------------------------------------------------------------------------------------
// Workers

absl::StatusOr<int64_t> Controller::WorkerConnected(const v1::Register& reg, WorkerSink* sink) {
  if (reg.worker_id().empty()) {
    return absl::InvalidArgumentError("register.worker_id: must not be empty");
  }
  std::set<int> slot_ids;
  for (const v1::Slot& s : reg.slots()) {
    if (!slot_ids.insert(s.id()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("register.slots: slot id ", s.id(), " appears twice"));
    }
  }
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(store_error_);
  auto& slot = workers_[reg.worker_id()];
  if (slot == nullptr) slot = std::make_unique<WorkerRec>();
  WorkerRec* w = slot.get();
  if (w->sink != nullptr) {
    // A stream we still hold for this worker is stale (the worker reconnected before we
    // noticed the old one broke); the newer one wins.
    sessions_.erase(w->session);
  }
  w->session = next_handle_++;
  w->sink = sink;
  w->last_seen = clock_->Now();
  w->offered.clear();
  v1::Worker& wk = w->worker;
  wk.set_id(reg.worker_id());
  wk.set_host(reg.host());
  *wk.mutable_slots() = reg.slots();
  *wk.mutable_labels() = reg.labels();
  wk.set_version(reg.version());
  wk.set_state(v1::WORKER_CONNECTED);
  wk.set_last_heartbeat_unix_ms(clock_->NowUnixMs());
  sessions_[w->session] = w;

  // Reconcile: what the worker still has against what we think it has.
  std::set<std::pair<std::string, int>> reported;
  for (const v1::TrialRef& r : reg.trials()) reported.insert({r.trial_id(), r.attempt()});
  v1::ControllerMessage reply;
  auto* rr = reply.mutable_registered();
  rr->set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.heartbeat_interval));
  rr->set_lease_timeout_ms(absl::ToInt64Milliseconds(options_.lease_timeout));
  std::set<std::pair<std::string, int>> wanted;
  Store::Batch batch;
  w->busy.clear();
  std::vector<Trial*> stops;
  for (ExperimentRec* rec : fifo_) {
    for (Trial& t : rec->trials) {
      if (!TrialActive(t.state()) || t.worker_id() != wk.id()) continue;
      if (reported.count({t.id(), t.attempt()})) {
        wanted.insert({t.id(), t.attempt()});
        w->busy.insert(t.slots().begin(), t.slots().end());
        if (t.stop_requested()) stops.push_back(&t);
        continue;
      }
      // We think it runs there but the worker does not know it: the worker restarted (the
      // attempt is lost) or the assignment never arrived (no fault of the trial's).
      bool never_arrived = t.state() == v1::TRIAL_ASSIGNED;
      if (t.stop_requested()) {
        EndStoppedLocked(rec, &t, &batch);
        continue;
      }
      RetryOrFailLocked(rec, &t,
                        never_arrived ? "assignment lost in a reconnect"
                                      : absl::StrCat("worker ", wk.id(), " restarted and lost it"),
                        !never_arrived, &batch);
    }
  }
  for (const v1::TrialRef& r : reg.trials()) {
    if (!wanted.count({r.trial_id(), r.attempt()})) *rr->add_kill() = r;
  }
  batch.PutWorker(wk);
  RETURN_IF_ERROR(CommitLocked(&batch));
  Log(LogLevel::kInfo, absl::StrCat("worker ", wk.id(), " connected from ", wk.host(), " with ",
                                    wk.slots_size(), " slots, ", wanted.size(), " trials running, ",
                                    rr->kill_size(), " to kill"));
  sink->Send(reply);
  for (Trial* t : stops) SendStopLocked(*t, t->stop_reason());
  DispatchLocked();
  return w->session;
}

void Controller::WorkerDisconnected(int64_t session) {
  absl::MutexLock l(&mu_);
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return;
  WorkerRec* w = it->second;
  sessions_.erase(it);
  w->sink = nullptr;
  w->offered.clear();
  w->worker.set_state(v1::WORKER_DISCONNECTED);
  Log(LogLevel::kInfo, absl::StrCat("worker ", w->worker.id(), " disconnected"));
  // Its trials keep their leases until lease_timeout passes without it coming back.
}

Trial* Controller::CurrentTrialLocked(WorkerRec* w, const v1::TrialRef& ref,
                                      ExperimentRec** rec) {
  auto t = FindTrialLocked(ref.trial_id(), rec);
  if (!t.ok()) return nullptr;
  Trial* trial = *t;
  if (trial->attempt() != ref.attempt() || trial->worker_id() != w->worker.id() ||
      !TrialActive(trial->state())) {
    return nullptr;
  }
  return trial;
}

void Controller::StopStaleLocked(WorkerRec* w, const v1::TrialRef& ref) {
  // A copy we gave up on (its lease expired while the stream stayed up, say) is still
  // running there: stop it, so two copies of one trial never both run.
  v1::ControllerMessage m;
  *m.mutable_stop()->mutable_trial() = ref;
  m.mutable_stop()->set_reason("this attempt was given up (lease expired or trial ended)");
  if (w->sink != nullptr) w->sink->Send(m);
}

absl::Status Controller::HandleStartedLocked(WorkerRec* w, const v1::TrialStarted& m,
                                             Store::Batch* batch) {
  ExperimentRec* rec = nullptr;
  Trial* t = CurrentTrialLocked(w, m.trial(), &rec);
  if (t == nullptr) {
    StopStaleLocked(w, m.trial());
    return absl::OkStatus();
  }
  if (t->state() != v1::TRIAL_ASSIGNED) return absl::OkStatus();  // a resend
  t->set_state(v1::TRIAL_RUNNING);
  t->set_started_unix_ms(clock_->NowUnixMs());
  t->set_stdout_path(m.stdout_path());
  t->set_stderr_path(m.stderr_path());
  PutTrialLocked(rec, *t, batch);
  PutExperimentLocked(rec, batch);
  return absl::OkStatus();
}

absl::Status Controller::HandleReportsLocked(WorkerRec* w, const v1::ReportBatch& m,
                                             Store::Batch* batch) {
  // Refused whole or taken whole: check every report before anything changes.
  for (const v1::MetricReport& r0 : m.reports()) {
    for (const auto& [k, v] : r0.values()) {
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "reports: trial ", r0.trial_id(), " metric '", k, "' is not a finite number"));
      }
    }
  }
  std::map<Trial*, ExperimentRec*> touched;
  std::set<std::pair<std::string, int>> stale;
  for (const v1::MetricReport& r0 : m.reports()) {
    ExperimentRec* rec = nullptr;
    v1::TrialRef ref;
    ref.set_trial_id(r0.trial_id());
    ref.set_attempt(r0.attempt());
    Trial* t = CurrentTrialLocked(w, ref, &rec);
    if (t == nullptr) {
      if (stale.insert({ref.trial_id(), ref.attempt()}).second) StopStaleLocked(w, ref);
      continue;
    }
    if (r0.seq() <= t->last_report_seq()) continue;  // a resend
    ApplyReportLocked(rec, t, r0, batch);
    touched[t] = rec;
  }
  for (auto& [t, rec] : touched) batch->PutTrial(*t);
  return absl::OkStatus();
}

void Controller::ApplyReportLocked(ExperimentRec* rec, Trial* t, v1::MetricReport r, Store::Batch* batch) {
  if (r.unix_ms() == 0) r.set_unix_ms(clock_->NowUnixMs());
  batch->PutReport(r);
  ++reports_received_;
  t->set_last_report_seq(r.seq());
  t->set_reports(t->reports() + 1);
  t->set_last_step(r.step());
  for (const auto& [k, v] : r.values()) (*t->mutable_last_metrics())[k] = v;
  if (t->state() == v1::TRIAL_ASSIGNED) t->set_state(v1::TRIAL_RUNNING);
  // Progress: the resource metric when the report names it, else its step.
  auto res_it = r.values().find(rec->exp.spec().resource().metric());
  const double resource = res_it != r.values().end() ? res_it->second : r.step();
  t->set_resource_reached(std::max(t->resource_reached(), resource));
  const auto& obj = rec->exp.spec().objective();
  auto it = r.values().find(obj.metric());
  if (it != r.values().end()) {
    if (!t->has_best_value() || Better(obj.goal(), it->second, t->best_value())) {
      t->set_has_best_value(true);
      t->set_best_value(it->second);
    }
    if (r.final()) {
      t->set_has_result(true);
      t->set_result(it->second);
    }
    if (rec->searcher->WantsReports()) {
      ApplyActionsLocked(
          rec, SearchLocked(rec, search::TrialReported{t->index() - 1, resource, it->second}, batch),
          batch);
    }
  }
  if (!rec->watchers.empty()) {
    v1::WatchEvent e;
    *e.mutable_report() = std::move(r);
    BroadcastLocked(rec, e);
  }
}

absl::Status Controller::HandleExitedLocked(WorkerRec* w, const v1::TrialExited& m,
                                            Store::Batch* batch) {
  ExperimentRec* rec = nullptr;
  Trial* t = CurrentTrialLocked(w, m.trial(), &rec);
  if (t == nullptr) return absl::OkStatus();  // stale: already handled or taken back
  t->set_exited_unix_us(m.exit_unix_us());
  if (t->stop_requested()) {
    EndStoppedLocked(rec, t, batch);
    return absl::OkStatus();
  }
  ReleaseSlotsLocked(t);
  const std::string metric = MissingObjective(rec->exp.spec(), *t);
  std::string tail = m.stderr_tail().empty() ? "" : absl::StrCat("; stderr ends:\n", m.stderr_tail());
  if (m.worker_shutdown()) {
    RetryOrFailLocked(rec, t,
                      absl::StrCat("worker ", w->worker.id(), m.message().empty() ? " shut down" : " stopped it: ",
                                   m.message()),
                      false, batch);
  } else if (m.launch_failed()) {
    RetryOrFailLocked(rec, t, absl::StrCat("could not start: ", m.message()), true, batch);
  } else if (m.signal() != 0) {
    RetryOrFailLocked(rec, t, absl::StrCat("killed by ", SignalName(m.signal()), tail), true,
                      batch);
  } else if (m.exit_code() != 0) {
    RetryOrFailLocked(rec, t, absl::StrCat("exited with code ", m.exit_code(), tail), true,
                      batch);
  } else if (!metric.empty()) {
    RetryOrFailLocked(
        rec, t,
        absl::StrCat("exited 0 without reporting the objective metric '", metric,
                     "' (report it with rung.report(", metric, "=...) or a stdout line "
                     "@rung {\"", metric, "\": ...})", tail),
        true, batch);
  } else {
    FinishTrialLocked(rec, t, batch);
  }
  return absl::OkStatus();
}

void Controller::FinishTrialLocked(ExperimentRec* rec, Trial* t, Store::Batch* batch) {
  if (rec->exp.spec().algorithm().early_stopping().mode() == "promote" &&
      t->budget() < rec->exp.spec().resource().max() * (1 - 1e-9)) {
    // Promote mode: it trained to its rung's budget; it waits to be continued or stopped.
    t->set_state(v1::TRIAL_WAITING);
    PutTrialLocked(rec, *t, batch);
    ApplyActionsLocked(rec, SearchLocked(rec, search::TrialPaused{t->index() - 1}, batch), batch);
    return;
  }
  if (!t->has_result()) {
    t->set_has_result(true);
    t->set_result(t->last_metrics().at(rec->exp.spec().objective().metric()));
  }
  t->clear_results();
  for (const v1::Objective& o : rec->exp.spec().objectives()) t->add_results(t->last_metrics().at(o.metric()));
  t->set_infeasible(BrokenConstraints(rec->exp.spec(), *t));
  t->set_state(v1::TRIAL_COMPLETED);  // message keeps why an earlier attempt failed
  CloseTrialLocked(rec, t, batch);
}

absl::Status Controller::HandleWorkerMessage(int64_t session, const v1::WorkerMessage& msg) {
  absl::MutexLock l(&mu_);
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return absl::FailedPreconditionError("stream is no longer current");
  WorkerRec* w = it->second;
  absl::Status s = HandleWorkerMessageLocked(w, msg);
  if (s.code() != absl::StatusCode::kInvalidArgument || msg.seq() <= 0 || !store_error_.ok()) return s;
  // A message the worker would resend forever after every reconnect: acknowledge it so the
  // worker drops it, and say so, instead of ending the stream.
  ++worker_messages_dropped_;
  Log(LogLevel::kWarning, absl::StrCat("worker ", w->worker.id(), " sent an invalid message (seq ", msg.seq(),
                                       "); dropped it: ", s.message()));
  pending_acks_.push_back({w->session, msg.seq(), store_->LastWrite()});
  SendAcksLocked(store_->Durable());
  return absl::OkStatus();
}

absl::Status Controller::HandleWorkerMessageLocked(WorkerRec* w, const v1::WorkerMessage& msg) {
  RETURN_IF_ERROR(CheckSizes(msg, "", /*max_string=*/64 << 10, /*max_repeated=*/10000));
  w->last_seen = clock_->Now();
  w->worker.set_last_heartbeat_unix_ms(clock_->NowUnixMs());
  if (w->worker.state() != v1::WORKER_CONNECTED) w->worker.set_state(v1::WORKER_CONNECTED);
  Store::Batch batch;
  absl::Status s;
  switch (msg.kind_case()) {
    case v1::WorkerMessage::kHeartbeat:
      return absl::OkStatus();
    case v1::WorkerMessage::kPull: {
      std::set<int> known;
      for (const v1::Slot& sl : w->worker.slots()) known.insert(sl.id());
      w->offered.clear();
      for (int sl : msg.pull().free_slots()) {
        if (!known.count(sl)) {
          return absl::InvalidArgumentError(absl::StrCat("pull.free_slots: slot ", sl,
                                                         " was not registered"));
        }
        w->offered.insert(sl);
      }
      RETURN_IF_ERROR(store_error_);
      DispatchLocked();
      return absl::OkStatus();
    }
    case v1::WorkerMessage::kStarted:
      s = HandleStartedLocked(w, msg.started(), &batch);
      break;
    case v1::WorkerMessage::kReports:
      s = HandleReportsLocked(w, msg.reports(), &batch);
      break;
    case v1::WorkerMessage::kExited:
      s = HandleExitedLocked(w, msg.exited(), &batch);
      break;
    case v1::WorkerMessage::kRegister:
      return absl::InvalidArgumentError("register: sent twice on one stream");
    default:
      return absl::InvalidArgumentError("worker message: empty or of an unknown kind");
  }
  RETURN_IF_ERROR(s);
  RETURN_IF_ERROR(store_error_);
  RETURN_IF_ERROR(CommitLocked(&batch));
  if (msg.seq() > 0) {
    // Acknowledged once on disk (a resend that changed nothing waits for what came before).
    pending_acks_.push_back({w->session, msg.seq(), store_->LastWrite()});
    SendAcksLocked(store_->Durable());
  }
  if (msg.kind_case() == v1::WorkerMessage::kExited) DispatchLocked();
  return absl::OkStatus();
}

void Controller::Tick() {
  absl::MutexLock l(&mu_);
  absl::Time now = clock_->Now();
  if (!store_error_.ok()) {
    // Leases do not run out while nothing can be written; see whether writes work again.
    if (now < next_recovery_) return;
    next_recovery_ = now + absl::Seconds(1);
    absl::Status s = store_->Recover();
    if (!s.ok()) {
      if (s.message() != last_recovery_error_) {
        Log(LogLevel::kWarning, absl::StrCat("rungd still cannot write to its data folder: ", s.message()));
      }
      last_recovery_error_ = std::string(s.message());
      return;
    }
    s = ReloadLocked();
    if (!s.ok()) {
      Log(LogLevel::kError, absl::StrCat("rungd could write again but not reload its state: ", s.message()));
      return;
    }
    store_error_ = absl::OkStatus();
    ++store_recoveries_;
    Log(LogLevel::kInfo, "writes to the data folder work again: rungd accepts changes; workers reconnect");
    return;
  }
  Store::Batch batch;
  bool changed = false;
  std::vector<ExperimentRec*> served;  // whose waiting asks may be answered now
  for (ExperimentRec* rec : fifo_) {
    if (rec->proposal_ticket == 0 || now < rec->proposal_deadline) continue;
    rec->proposal_ticket = 0;
    const auto state = rec->exp.state();
    if (state != v1::EXPERIMENT_PENDING && state != v1::EXPERIMENT_RUNNING) continue;
    ++suggestion_fallbacks_;
    changed = true;
    Log(LogLevel::kWarning,
        absl::StrCat(rec->exp.id(), ": the ", rec->exp.spec().algorithm().name(),
                     " model did not propose trial ", TrialId(rec->exp.id(), rec->exp.trials_created() + 1),
                     " within ", absl::FormatDuration(options_.suggest_deadline),
                     " (--suggest-deadline); its parameters are drawn at random"));
    ApplyActionsLocked(rec, SearchLocked(rec, search::TrialsWanted{1, std::nullopt, true}, &batch), &batch);
    served.push_back(rec);
  }
  // Ask-and-tell clients silent past their experiment's lease lose their trials.
  std::set<std::string> holding;
  for (ExperimentRec* rec : fifo_) {
    if (rec->exp.spec().execution() != "external") continue;
    const absl::Duration lease = absl::Seconds(rec->exp.spec().client_lease_seconds());
    for (Trial& t : rec->trials) {
      if (!TrialActive(t.state()) || t.client_id().empty()) continue;
      const absl::Time seen = clients_.try_emplace(t.client_id(), now).first->second;
      if (now - seen <= lease) {
        holding.insert(t.client_id());
        continue;
      }
      ++lease_expirations_;
      changed = true;
      if (t.stop_requested()) {
        EndStoppedLocked(rec, &t, &batch);
      } else {
        RetryOrFailLocked(rec, &t,
                          absl::StrFormat("lease expired: client '%s' silent for %s (client_lease_seconds is %d)",
                                          t.client_id(), absl::FormatDuration(absl::Trunc(now - seen, absl::Seconds(1))),
                                          rec->exp.spec().client_lease_seconds()),
                          true, &batch);
      }
    }
  }
  for (auto it = clients_.begin(); it != clients_.end();) {
    it = !holding.count(it->first) && now - it->second > absl::Hours(1) ? clients_.erase(it) : std::next(it);
  }
  for (auto& [id, w] : workers_) {
    if (now - w->last_seen <= options_.lease_timeout) continue;
    if (w->worker.state() != v1::WORKER_LOST) {
      Log(LogLevel::kWarning, absl::StrCat("worker ", id, " lost: silent for ",
                                           absl::FormatDuration(absl::Trunc(now - w->last_seen, absl::Seconds(1)))));
      w->worker.set_state(v1::WORKER_LOST);
      batch.PutWorker(w->worker);
    }
    for (ExperimentRec* rec : fifo_) {
      for (Trial& t : rec->trials) {
        if (!TrialActive(t.state()) || t.worker_id() != id) continue;
        ++lease_expirations_;
        changed = true;
        std::string reason = absl::StrFormat(
            "lease expired: worker %s silent for %s", id,
            absl::FormatDuration(absl::Trunc(now - w->last_seen, absl::Milliseconds(1))));
        if (t.stop_requested()) {
          EndStoppedLocked(rec, &t, &batch);
        } else {
          RetryOrFailLocked(rec, &t, reason, true, &batch);
        }
      }
    }
  }
  if (!CommitLocked(&batch).ok()) return;
  if (changed) DispatchLocked();
  for (ExperimentRec* rec : served) ServeAsksLocked(rec, /*may_wait=*/true);
}

ControllerStats Controller::Stats() {
  ControllerStats s;
  s.store_bytes = store_->SizeOnDisk();  // outside the lock: it walks the data folder
  absl::MutexLock l(&mu_);
  for (ExperimentRec* rec : fifo_) {
    ++s.experiments[rec->exp.state()];
    for (const Trial& t : rec->trials) {
      if (!t.id().empty()) ++s.trials[t.state()];
    }
  }
  for (auto& [id, w] : workers_) {
    if (w->sink == nullptr) continue;
    ++s.workers_connected;
    s.slots_busy += static_cast<int>(w->busy.size());
    s.slots_free += w->worker.slots_size() - static_cast<int>(w->busy.size());
  }
  s.reports_received = reports_received_;
  s.lease_expirations = lease_expirations_;
  s.suggestions = suggestions_;
  s.suggestion_seconds = suggestion_seconds_;
  s.suggestion_fallbacks = suggestion_fallbacks_;
  s.worker_messages_dropped = worker_messages_dropped_;
  s.trials_stopped_early = trials_stopped_early_;
  s.suggestion_seconds_by_algorithm = suggestion_hist_;
  return s;
}

}  // namespace rung
