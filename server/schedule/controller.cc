// The Controller's core: loading and recovery, the commit, and dispatch. Client calls are in
// controller_clients.cc, worker streams in controller_workers.cc.
#include "server/schedule/controller.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "common/status.h"
#include "server/schedule/search_config.h"

namespace rung {

using v1::Experiment;
using v1::Trial;

Controller::Controller(Store* store, Clock* clock, ControllerOptions options)
    : store_(store), clock_(clock), options_(options), registry_(2 * options.heartbeat_interval) {
  if (!options_.run_job) {
    const int threads =
        static_cast<int>(std::clamp(std::thread::hardware_concurrency() / 2, 1u, 4u));
    pool_ = std::make_unique<JobPool>(threads);
  }
}

Controller::~Controller() {
  store_->SetDurableCallback(nullptr);
  pool_.reset();  // its jobs finish while the rest still exists
  // Sinks may be gone by now (Shutdown is the orderly end); waiting callers are not left hanging.
  std::vector<Ask> asks;
  {
    absl::MutexLock l(&mu_);
    for (auto& [id, waiting] : asks_) {
      for (Ask& a : waiting) asks.push_back(std::move(a));
    }
    asks_.clear();
  }
  for (Ask& a : asks) a.done(absl::UnavailableError("rungd is shutting down; ask again"));
}

absl::StatusOr<std::unique_ptr<Controller>> Controller::Create(Store* store, Clock* clock,
                                                               ControllerOptions options) {
  std::unique_ptr<Controller> c(new Controller(store, clock, options));
  ASSIGN_OR_RETURN(State state, c->LoadState());
  {
    absl::MutexLock l(&c->mu_);
    c->Adopt(std::move(state));
  }
  Controller* raw = c.get();
  store->SetDurableCallback(
      [raw](uint64_t durable, const absl::Status& error) { raw->OnDurable(durable, error); });
  return c;
}

Controller::Ended Controller::Shutdown(const absl::Status& why) {
  Ended ended;
  std::vector<Ask> asks;
  {
    absl::MutexLock l(&mu_);
    shutting_down_ = true;
    if (store_error_.ok()) store_error_ = why;
    for (auto& [id, waiting] : asks_) {
      for (Ask& a : waiting) asks.push_back(std::move(a));
    }
    asks_.clear();
  }
  ended.asks = static_cast<int>(asks.size());
  for (Ask& a : asks) a.done(why);
  // What was written goes to disk, and what it decided goes out, before the streams end.
  if (store_->LastWrite() > store_->Durable() && !store_->Sync().ok()) {
    Log(LogLevel::kWarning,
        "shutting down: the last fsync failed; workers resend what was not acknowledged");
  }
  outbox_.Deliver(store_->Durable());
  outbox_.Drop(why);
  ended.watches = outbox_.CloseAllWatchers();
  ended.workers = outbox_.EndAllWorkers(why);
  return ended;
}

// ---------------------------------------------------------------------------------------
// State and recovery

absl::StatusOr<std::unique_ptr<search::Searcher>> Controller::NewSearcher(
    const v1::ExperimentSpec& spec,
    const std::map<std::string, std::unique_ptr<ExperimentRun>>& runs) {
  search::Config c = SearchConfig(spec);
  for (const std::string& id : spec.algorithm().warm_start()) {
    auto src = runs.find(id);
    if (src == runs.end())
      return absl::InvalidArgumentError(absl::StrCat("algorithm.warm_start: no experiment ", id));
    const auto& a = src->second->spec().objective();
    const auto& b = spec.objective();
    if (a.metric() != b.metric() || a.goal() != b.goal()) {
      return absl::InvalidArgumentError(
          absl::StrCat("algorithm.warm_start: ", id, " optimises ", a.metric(), " (",
                       v1::Objective::Goal_Name(a.goal()), "), this experiment ", b.metric(), " (",
                       v1::Objective::Goal_Name(b.goal()), ")"));
    }
    // A trial helps when every parameter this space gives it has a value that fits here.
    src->second->trials().ForEach([&](const Trial& t) {
      if (t.state() != v1::TRIAL_COMPLETED || !t.has_result() || !t.infeasible().empty()) return;
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
    });
  }
  return search::NewSearcher(c);
}

absl::StatusOr<std::unique_ptr<ExperimentRun>> Controller::LoadRun(
    Experiment exp, const std::map<std::string, std::unique_ptr<ExperimentRun>>& runs) {
  auto searcher = NewSearcher(exp.spec(), runs);
  if (!searcher.ok()) {
    return absl::DataLossError(absl::StrCat(
        "experiment ", exp.id(), ": cannot rebuild its searcher: ", searcher.status().message()));
  }
  return ExperimentRun::Load(store_, std::move(exp), std::move(*searcher));
}

absl::StatusOr<Controller::State> Controller::LoadState() {
  State state;
  ASSIGN_OR_RETURN(state.next_experiment, store_->GetNextExperiment());
  std::vector<Experiment> exps;
  RETURN_IF_ERROR(store_->ForEachExperiment([&](Experiment e) { exps.push_back(std::move(e)); }));
  std::sort(exps.begin(), exps.end(),
            [](const Experiment& a, const Experiment& b) { return a.seq() < b.seq(); });
  for (Experiment& e : exps) {
    const std::string id = e.id();
    ASSIGN_OR_RETURN(std::unique_ptr<ExperimentRun> run, LoadRun(std::move(e), state.runs));
    state.fifo.push_back(run.get());
    state.runs[id] = std::move(run);
  }
  RETURN_IF_ERROR(
      store_->ForEachWorker([&](v1::Worker w) { state.workers.push_back(std::move(w)); }));
  return state;
}

void Controller::Adopt(State state) {
  runs_ = std::move(state.runs);
  fifo_ = std::move(state.fifo);
  next_experiment_ = state.next_experiment;
  // Workers come back as disconnected; their leases run from now, so trials they still run
  // survive a controller restart if they reconnect in time. Clients' leases too.
  const absl::Time now = Now();
  registry_.Clear();
  registry_.Load(std::move(state.workers), now);
  for (ExperimentRun* run : fifo_) {
    for (int index : run->active()) {
      const Trial& t = *run->trial(index);
      if (!t.client_id().empty()) clients_[t.client_id()] = now;
    }
  }
  waiting_since_.clear();
  RecountBusyLocked();
  recheck_unschedulable_ = true;
}

void Controller::RecountBusyLocked() {
  std::map<std::string, std::set<int>> busy;
  for (ExperimentRun* run : fifo_) {
    for (int index : run->active()) {
      for (const Hold& h : Holds(*run->trial(index)))
        busy[h.worker_id].insert(h.slots.begin(), h.slots.end());
    }
  }
  registry_.SetBusy(busy);
}

void Controller::RollBackLocked(const std::set<std::string>& touched) {
  for (const std::string& id : touched) {
    auto it = runs_.find(id);
    if (it == runs_.end()) continue;  // created by the change that failed: never adopted
    Experiment stored;
    bool found = false;
    absl::Status s = store_->ForEachExperiment([&](Experiment e) {
      if (e.id() == id) {
        stored = std::move(e);
        found = true;
      }
    });
    absl::StatusOr<std::unique_ptr<ExperimentRun>> run =
        s.ok() && found ? LoadRun(std::move(stored), runs_) : absl::DataLossError("not readable");
    if (!run.ok()) {
      // Reads fail too: the full reload after recovery puts it right.
      Log(LogLevel::kError,
          absl::StrCat("experiment ", id,
                       ": cannot read it back after a failed write: ", run.status().message()));
      continue;
    }
    std::replace(fifo_.begin(), fifo_.end(), it->second.get(), run->get());
    it->second = std::move(*run);
  }
  RecountBusyLocked();
  recheck_unschedulable_ = true;
}

void Controller::LatchStoreErrorLocked(const absl::Status& s) {
  if (!store_error_.ok()) return;
  std::string when = "once its data folder can be written again";
  if (auto space = store_->FreeSpace(); space.ok()) {
    when = absl::StrCat("once ", Mebibytes(space->resume),
                        " are free on its data folder's volume (", Mebibytes(space->free), " now)");
  }
  store_error_ = absl::UnavailableError(absl::StrCat(
      "rungd is not accepting changes: a write to its data folder failed (", s.message(),
      "); reads still work, nothing acknowledged is lost, and rungd resumes by itself ", when));
  next_recovery_ = Now() + absl::Seconds(1);
  Log(LogLevel::kError, std::string(store_error_.message()));
}

void Controller::OnDurable(uint64_t durable, const absl::Status& error) {
  if (!error.ok()) {
    {
      absl::MutexLock l(&mu_);
      LatchStoreErrorLocked(error);
    }
    outbox_.Deliver(durable);
    outbox_.Drop(absl::UnavailableError(
        absl::StrCat("rungd could not make the change durable: ", error.message())));
    return;
  }
  outbox_.Deliver(durable);
}

void Controller::TryRecover() {
  {
    absl::MutexLock l(&mu_);
    if (store_error_.ok() || shutting_down_ || recovering_ || Now() < next_recovery_) return;
    recovering_ = true;
    next_recovery_ = Now() + absl::Seconds(1);
  }
  // Off the lock: reopening the store and reading it back may take a while, and reads and
  // refusals go on meanwhile. Nothing writes: every change is refused until this succeeds.
  absl::Status s = store_->Recover();
  absl::StatusOr<State> state = s.ok() ? LoadState() : absl::StatusOr<State>(s);
  std::vector<Ask> asks;
  {
    absl::MutexLock l(&mu_);
    recovering_ = false;
    if (!s.ok()) {
      if (s.message() != last_recovery_error_) {
        Log(LogLevel::kWarning,
            absl::StrCat("rungd still cannot write to its data folder: ", s.message()));
      }
      last_recovery_error_ = std::string(s.message());
      return;
    }
    if (!state.ok()) {
      Log(LogLevel::kError, absl::StrCat("rungd could write again but not reload its state: ",
                                         state.status().message()));
      return;
    }
    for (auto& [id, waiting] : asks_) {
      for (Ask& a : waiting) asks.push_back(std::move(a));
    }
    asks_.clear();
    // While changes are still refused (and under the lock, so that no watch starts in
    // between): what was decided before the reload never goes out, and watchers watch again.
    // Worker streams end on their next message ("stream is no longer current"); the workers
    // register again, which reconciles their trials with what is on disk.
    const absl::Status again = absl::UnavailableError("rungd reloaded its state; ask again");
    outbox_.Drop(again);
    outbox_.CloseAllWatchers();
    Adopt(std::move(*state));
    store_error_ = absl::OkStatus();
    ++store_recoveries_;
    Log(LogLevel::kInfo,
        "writes to the data folder work again: rungd accepts changes; workers reconnect");
  }
  for (Ask& a : asks) a.done(absl::UnavailableError("rungd reloaded its state; ask again"));
}

// ---------------------------------------------------------------------------------------
// Commit

std::unique_ptr<Change> Controller::NewChange() {
  // Each operation begins here, and holds no trial of an earlier one: the trials that ended
  // since are packed (trial_table.h).
  for (ExperimentRun* run : fifo_) run->PackEnded();
  auto c = std::make_unique<Change>(Now());
  c->watched = [this](const std::string& id) { return outbox_.Watched(id); };
  return c;
}

absl::Status Controller::CommitLocked(Change* c) {
  c->PutRecords();
  if (c->batch.Count() == 0 && !store_error_.ok()) {
    // Nothing to write while writes fail (a heartbeat, a refusal): answers go out at once
    // (they carry their own outcome); messages to workers wait for the reconnect.
    for (Effect& e : c->effects) {
      if (auto* call = std::get_if<Call>(&e)) {
        unanswered_.push_back([fn = std::move(call->fn)] { fn(absl::OkStatus()); });
      }
    }
    c->effects.clear();
    return absl::OkStatus();
  }
  absl::Status s = store_error_;
  if (s.ok() && c->batch.Count() > 0) s = store_->Write(&c->batch);
  if (!s.ok()) {
    LatchStoreErrorLocked(s);
    RollBackLocked(c->touched);
    // Nothing of the change goes out; those waiting for it hear why (from Flush, unlocked).
    for (Effect& e : c->effects) {
      if (auto* call = std::get_if<Call>(&e)) {
        unanswered_.push_back([fn = std::move(call->fn), err = store_error_] { fn(err); });
      }
    }
    c->effects.clear();
    drop_pending_ = true;
    c->runners_done.clear();
    return store_error_;
  }
  c->batch.Clear();  // written: a later commit of the same Change writes only what follows
  for (auto& [worker_id, slots] : c->released) registry_.Release(worker_id, slots);
  reports_received_ += c->reports;
  trials_stopped_early_ += c->stopped_early;
  lease_expirations_ += c->lease_expirations;
  for (const std::string& id : c->runners_done) {
    for (const auto& [worker_id, w] : registry_.workers()) {
      if (!w->connected()) continue;
      TellWorker tell{worker_id, w->session, {}};
      tell.msg.mutable_runners_done()->set_experiment_id(id);
      c->Tell(std::move(tell));
    }
  }
  c->runners_done.clear();
  for (Effect& e : c->effects) {
    auto* t = std::get_if<TellWorker>(&e);
    if (t == nullptr || t->session != 0) continue;
    WorkerRegistry::Worker* w = registry_.Find(t->worker_id);
    t->session = w != nullptr ? w->session : 0;
  }
  outbox_.Push(store_->LastWrite(), std::move(c->effects));
  c->effects.clear();
  c->released.clear();
  c->touched.clear();
  c->reports = c->stopped_early = c->lease_expirations = 0;
  return absl::OkStatus();
}

void Controller::Flush(bool sync) {
  std::vector<std::function<void()>> unanswered;
  bool drop = false;
  {
    absl::MutexLock l(&mu_);
    unanswered.swap(unanswered_);
    std::swap(drop, drop_pending_);
  }
  for (auto& fn : unanswered) fn();
  if (drop) {
    outbox_.Drop(
        absl::UnavailableError("rungd could not write its data folder; the change was not made"));
    return;
  }
  if ((sync || !store_->group_commit()) && store_->LastWrite() > store_->Durable()) {
    absl::Status s = store_->Sync();
    if (!s.ok()) {
      OnDurable(store_->Durable(), s);
      return;
    }
  }
  outbox_.Deliver(store_->Durable());
}

// ---------------------------------------------------------------------------------------
// Dispatch

ExperimentRun* Controller::FindRunLocked(const std::string& id) {
  auto it = runs_.find(id);
  return it == runs_.end() ? nullptr : it->second.get();
}

absl::StatusOr<Trial*> Controller::FindTrialLocked(const std::string& trial_id,
                                                   ExperimentRun** run_out) {
  std::string exp_id;
  int index;
  if (!ParseTrialId(trial_id, &exp_id, &index)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", trial_id, "' is not a trial id (expected EXPERIMENT-N, e.g. e1-3)"));
  }
  ExperimentRun* run = FindRunLocked(exp_id);
  Trial* t = run == nullptr ? nullptr : run->trial(index);
  if (t == nullptr) return absl::NotFoundError(absl::StrCat("no trial ", trial_id));
  if (run_out) *run_out = run;
  return t;
}

int Controller::NextTrialLocked(ExperimentRun* run, Change* c, std::string* why) {
  std::function<search::Proposal()> job;
  const int index = run->NextTrial(c, why, &job);
  if (job) {
    const int64_t ticket = next_ticket_++;
    run->BeginProposal(ticket, c->now + options_.suggest_deadline, c->now);
    // The job starts once its seed is on disk (journalled in `c`).
    c->Then([this, id = run->id(), ticket, job = std::move(job)](const absl::Status& s) {
      if (!s.ok()) return;
      auto work = [this, id, ticket, job] { ProposalDone(id, ticket, job()); };
      if (pool_) {
        pool_->Run(std::move(work));
      } else if (options_.run_job) {
        options_.run_job(std::move(work));
      }  // else the controller is going away: the proposal is not needed
    });
  }
  return index;
}

int Controller::RankPortLocked(const v1::Worker& master, int world_size) {
  // Workers older than --rank-ports lend torchrun's default range.
  const int first = master.ports_first() > 0 ? master.ports_first() : 29500;
  const int last = master.ports_last() > 0 ? master.ports_last() : 29999;
  std::vector<std::pair<int, int>> used;  // [from, to] of running distributed trials
  for (ExperimentRun* run : fifo_) {
    for (int index : run->active()) {
      const Trial& t = *run->trial(index);
      if (t.master_port() > 0)
        used.emplace_back(t.master_port(), t.master_port() + run->spec().trial().ranks());
    }
  }
  std::sort(used.begin(), used.end());
  // From after the last block handed out, then from the start: a retry does not get the
  // ports its previous attempt's ranks may still hold while they die.
  auto scan = [&](int p) {
    for (const auto& [from, to] : used) {
      if (to < p) continue;
      if (p + world_size < from) break;  // the block [p, p + world_size] fits before this one
      p = to + 1;
    }
    return p + world_size <= last ? p : 0;
  };
  const int hint = std::clamp(next_port_, first, last);
  const int p = scan(hint);
  return p != 0 ? p : scan(first);
}

bool Controller::PlaceTrialLocked(ExperimentRun* run, const std::set<std::string>& skip,
                                  Change* c) {
  const v1::TrialTemplate& tt = run->spec().trial();
  const bool ranks = tt.ranks() > 1;
  std::vector<WorkerRegistry::Share> where = registry_.Place(tt, run->id(), skip);
  int port = 0;
  if (!where.empty() && ranks) {
    port = RankPortLocked(where[0].worker->info, tt.ranks());
    if (port == 0) {
      // Not a wait that holding workers would end: no reservation for it.
      Log(LogLevel::kWarning,
          absl::StrCat("experiment ", run->id(), ": worker ", where[0].worker->info.id(),
                       " has no free block of ", tt.ranks() + 1, " ports (--rank-ports)"));
      return false;
    }
    next_port_ = port + tt.ranks() + 1;
  }
  if (where.empty()) {
    if (ranks && run->CanHandOut()) waiting_since_.try_emplace(run->id(), c->now);
    return false;
  }
  std::string why;
  const int index = NextTrialLocked(run, c, &why);
  if (index == 0) return false;
  waiting_since_.erase(run->id());
  std::vector<v1::Placement> placements;
  int rank = 0;
  for (WorkerRegistry::Share& share : where) {
    registry_.Take(share.worker, share.slots);
    v1::Placement& p = placements.emplace_back();
    p.set_worker_id(share.worker->info.id());
    for (int s : share.slots) p.add_slots(s);
    p.set_node_rank(static_cast<int>(placements.size()) - 1);
    p.set_first_rank(rank);
    p.set_ranks(share.ranks);
    p.set_addr(share.worker->info.addr());
    rank += share.ranks;
  }
  run->Assign(index, placements, port, c->now + options_.lease_timeout, c);
  return true;
}

std::map<std::string, std::string> Controller::ReservationsLocked(absl::Time now) {
  std::map<std::string, std::string> held;
  for (ExperimentRun* run : fifo_) {
    auto it = waiting_since_.find(run->id());
    if (it == waiting_since_.end()) continue;
    if (!run->CanHandOut()) {
      waiting_since_.erase(it);
      continue;
    }
    if (now - it->second < options_.reserve_after) continue;
    std::set<std::string> taken;
    for (const auto& [worker, exp] : held) taken.insert(worker);
    for (std::string& worker : registry_.Reserve(run->spec().trial(), taken))
      held[std::move(worker)] = run->id();
  }
  return held;
}

void Controller::DispatchLocked(Change* c) {
  if (!store_error_.ok()) return;
  // Slots that trials of this change gave back are free for the next ones at once (if the
  // change fails, RollBackLocked counts the busy slots anew).
  for (auto& [worker_id, slots] : c->released) registry_.Release(worker_id, slots);
  c->released.clear();
  // Experiments first in first out. Smaller trials use what a waiting distributed trial cannot
  // use yet, until it has waited reserve_after: then it holds the workers it needs.
  const std::map<std::string, std::string> held = ReservationsLocked(c->now);
  for (ExperimentRun* run : fifo_) {
    if (run->hopper()) run->HopperSync(c);          // its schedule sees every unit that ended
    if (!run->open() || run->external()) continue;  // clients ask for an external one's trials
    std::set<std::string> skip;
    for (const auto& [worker, exp] : held) {
      if (exp != run->id()) skip.insert(worker);
    }
    if (run->hopper()) {
      PlaceHopperLocked(run, skip, c);
      continue;
    }
    while (PlaceTrialLocked(run, skip, c)) {
    }
  }
  // Say on each experiment whether any connected worker could run its trials.
  if (!recheck_unschedulable_) return;
  recheck_unschedulable_ = false;
  for (ExperimentRun* run : fifo_) {
    if (run->external()) continue;
    std::string why;
    if (run->wants_slots() || run->hopper()) why = registry_.Unschedulable(run->spec().trial());
    if (why.empty() && run->hopper() && run->open()) why = HopperUnschedulableLocked(*run);
    run->SetUnschedulable(why, c);
  }
}

void Controller::ProposalDone(const std::string& experiment_id, int64_t ticket,
                              search::Proposal proposal) {
  {
    absl::MutexLock l(&mu_);
    ExperimentRun* run = FindRunLocked(experiment_id);
    if (run == nullptr || !store_error_.ok()) return;
    auto c = NewChange();
    double seconds = 0;
    if (!run->ProposalDone(ticket, std::move(proposal), c.get(), &seconds)) return;
    ++suggestions_;
    suggestion_seconds_ += seconds;
    ControllerStats::Histogram& h = suggestion_hist_[run->spec().algorithm().name()];
    const auto& bounds = SuggestionBuckets();
    h.counts.resize(bounds.size() + 1);
    ++h.counts[static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), seconds) -
                                   bounds.begin())];
    h.sum += seconds;
    DispatchLocked(c.get());
    ServeAsksLocked(run, /*may_wait=*/true, c.get());
    (void)CommitLocked(c.get());
  }
  Flush(/*sync=*/false);
  CollectCheckpoints();
}

void Controller::ExpireProposalsLocked(Change* c, std::vector<ExperimentRun*>* served) {
  for (ExperimentRun* run : fifo_) {
    if (run->proposal_ticket() == 0 || c->now < run->proposal_deadline()) continue;
    if (!run->ProposalTimedOut(c)) continue;
    ++suggestion_fallbacks_;
    served->push_back(run);
  }
}

void Controller::ExpireWorkersLocked(Change* c) {
  for (WorkerRegistry::Worker* w : registry_.Expired(options_.lease_timeout, c)) {
    const std::string reason = absl::StrFormat(
        "lease expired: worker %s silent for %s", w->info.id(),
        absl::FormatDuration(absl::Trunc(c->now - w->last_seen, absl::Milliseconds(1))));
    for (ExperimentRun* run : fifo_) {
      const std::set<int> active = run->active();  // Expire changes it
      for (int index : active) {
        Trial* t = run->trial(index);
        if (RunsOn(*t, w->info.id())) run->Expire(t, reason, c);
      }
    }
  }
}

void Controller::ExpireClientsLocked(Change* c) {
  std::set<std::string> holding;
  for (ExperimentRun* run : fifo_) {
    if (!run->external()) continue;
    const absl::Duration lease = absl::Seconds(run->spec().client_lease_seconds());
    const std::set<int> active = run->active();  // Expire changes it
    for (int index : active) {
      const Trial& t = *run->trial(index);
      if (t.client_id().empty()) continue;
      const absl::Time seen = clients_.try_emplace(t.client_id(), c->now).first->second;
      if (c->now - seen <= lease) {
        holding.insert(t.client_id());
        continue;
      }
      run->Expire(
          run->trial(t.index()),
          absl::StrFormat("lease expired: client '%s' silent for %s (client_lease_seconds is %d)",
                          t.client_id(),
                          absl::FormatDuration(absl::Trunc(c->now - seen, absl::Seconds(1))),
                          run->spec().client_lease_seconds()),
          c);
    }
  }
  for (auto it = clients_.begin(); it != clients_.end();) {
    it = !holding.count(it->first) && c->now - it->second > absl::Hours(1) ? clients_.erase(it)
                                                                           : std::next(it);
  }
}

void Controller::Tick() {
  TryRecover();
  {
    absl::MutexLock l(&mu_);
    // Leases do not run out while nothing can be written.
    if (!store_error_.ok()) return;
    auto c = NewChange();
    std::vector<ExperimentRun*> served;  // whose waiting asks may be answered now
    ExpireProposalsLocked(c.get(), &served);
    ExpireClientsLocked(c.get());
    ExpireWorkersLocked(c.get());
    // Dispatch when something changed, or when a worker left since (the experiments it could
    // run may now have nowhere to go, and say so).
    if (!c->Empty() || recheck_unschedulable_) DispatchLocked(c.get());
    for (ExperimentRun* run : served) ServeAsksLocked(run, /*may_wait=*/true, c.get());
    (void)CommitLocked(c.get());
  }
  Flush(/*sync=*/false);
  CollectCheckpoints();
}

ControllerStats Controller::Stats() {
  ControllerStats s;
  s.store_bytes = store_->SizeOnDisk();  // outside the lock: it walks the data folder
  if (options_.checkpoints != nullptr) {
    s.checkpoint_bytes = options_.checkpoints->bytes_stored();
    s.checkpoints = options_.checkpoints->archives();
  }
  absl::MutexLock l(&mu_);
  for (ExperimentRun* run : fifo_) {
    ++s.experiments[run->experiment().state()];
    if (run->open() && !run->experiment().unschedulable().empty()) ++s.experiments_unschedulable;
    for (int state = 0; state < v1::TrialState_ARRAYSIZE; ++state) {
      const auto st = static_cast<v1::TrialState>(state);
      if (!TrialActive(st) && run->CountOf(st) > 0) s.trials[st] += run->CountOf(st);
    }
    for (int index : run->active()) ++s.trials[run->trial(index)->state()];  // assigned or running
  }
  for (const auto& [id, w] : registry_.workers()) {
    if (!w->connected()) continue;
    ++s.workers_connected;
    s.slots_busy += static_cast<int>(w->busy.size());
    s.slots_free += w->info.slots_size() - static_cast<int>(w->busy.size());
  }
  s.reports_received = reports_received_;
  s.lease_expirations = lease_expirations_;
  s.suggestions = suggestions_;
  s.suggestion_seconds = suggestion_seconds_;
  s.suggestion_fallbacks = suggestion_fallbacks_;
  s.worker_messages_dropped = worker_messages_dropped_;
  s.trials_stopped_early = trials_stopped_early_;
  s.store_recoveries = store_recoveries_;
  s.suggestion_seconds_by_algorithm = suggestion_hist_;
  return s;
}

}  // namespace rung
