#include "server/schedule/experiment_run.h"

#include <string.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/spec.h"
#include "common/status.h"
#include "server/schedule/results.h"
#include "server/schedule/search_config.h"
#include "server/search/journal.h"

namespace rung {
namespace {

using v1::Trial;

constexpr char kPaused[] = "experiment paused";
constexpr char kCancelled[] = "experiment cancelled";

std::string FirstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

std::string SignalName(int sig) {
  const char* name = sigabbrev_np(sig);
  return name ? absl::StrCat("SIG", name) : absl::StrCat("signal ", sig);
}

v1::WatchEvent TrialEvent(const Trial& t) {
  v1::WatchEvent e;
  *e.mutable_trial() = t;
  return e;
}

}  // namespace

void Requeue(Trial* t) {
  t->set_attempt(t->attempt() + 1);
  t->set_last_report_seq(0);
  t->clear_worker_id();
  t->clear_client_id();
  t->clear_slots();
  t->clear_placements();
  t->clear_master_addr();
  t->clear_master_port();
}

namespace {

v1::Placement* ShareOn(Trial* t, const std::string& worker_id) {
  for (v1::Placement& p : *t->mutable_placements()) {
    if (p.worker_id() == worker_id) return &p;
  }
  return nullptr;
}

}  // namespace

void BeginAttempt(Trial* t, const std::string& worker_id, const std::string& client_id,
                  int64_t now_ms) {
  v1::AttemptRecord* a =
      t->attempts_size() > 0 ? t->mutable_attempts(t->attempts_size() - 1) : nullptr;
  if (a == nullptr || a->attempt() != t->attempt()) a = t->add_attempts();
  a->set_attempt(t->attempt());
  a->set_worker_id(worker_id);
  a->set_client_id(client_id);
  a->set_started_unix_ms(now_ms);
  a->clear_ended_unix_ms();
  a->clear_outcome();
  a->clear_message();
}

void EndAttempt(Trial* t, const char* outcome, const std::string& message, int64_t now_ms) {
  if (t->attempts_size() == 0) return;
  v1::AttemptRecord* a = t->mutable_attempts(t->attempts_size() - 1);
  if (a->attempt() != t->attempt() || a->ended_unix_ms() != 0) return;
  a->set_ended_unix_ms(now_ms);
  a->set_outcome(outcome);
  a->set_message(message);
}

std::vector<Hold> Holds(const Trial& t) {
  std::vector<Hold> out;
  if (t.placements_size() > 0) {
    for (const v1::Placement& p : t.placements()) {
      if (!p.exited())
        out.push_back({p.worker_id(), std::vector<int>(p.slots().begin(), p.slots().end())});
    }
  } else if (!t.worker_id().empty()) {
    out.push_back({t.worker_id(), std::vector<int>(t.slots().begin(), t.slots().end())});
  }
  return out;
}

bool RunsOn(const Trial& t, const std::string& worker_id) {
  for (const Hold& h : Holds(t)) {
    if (h.worker_id == worker_id) return true;
  }
  return false;
}

bool HeldBy(const Trial& t, const std::string& worker_id) {
  if (t.placements_size() == 0) return !worker_id.empty() && t.worker_id() == worker_id;
  for (const v1::Placement& p : t.placements()) {
    if (p.worker_id() == worker_id) return true;
  }
  return false;
}

bool TrialTerminal(v1::TrialState s) {
  return s == v1::TRIAL_COMPLETED || s == v1::TRIAL_STOPPED || s == v1::TRIAL_FAILED;
}
bool TrialActive(v1::TrialState s) { return s == v1::TRIAL_ASSIGNED || s == v1::TRIAL_RUNNING; }
bool ExperimentTerminal(v1::ExperimentState s) {
  return s == v1::EXPERIMENT_COMPLETED || s == v1::EXPERIMENT_CANCELLED ||
         s == v1::EXPERIMENT_FAILED;
}

ExperimentRun::ExperimentRun(v1::Experiment exp, std::unique_ptr<search::Searcher> searcher)
    : exp_(std::move(exp)),
      searcher_(std::move(searcher)),
      trials_(FirstObjectiveMetric(exp_.spec())) {
  if (spec().execution() == "hopper") {
    // Its own generator, from the experiment's seed: a run replays.
    hopper_ = std::make_unique<search::HopperSchedule>(
        spec().hopper().partitions(), spec().hopper().epochs(),
        spec().algorithm().seed() ^ 0x686f70706572ull);
    if (!exp_.hopper_schedule().empty() && !hopper_->Restore(exp_.hopper_schedule())) {
      Log(LogLevel::kError, absl::StrCat(id(),
                                         ": its stored hopper schedule does not fit its "
                                         "spec; the rotation starts again"));
    }
  }
}

Trial* ExperimentRun::trial(int index) {
  if (trials_.Packed(index)) ended_.push_back(index);  // to be packed again
  Trial* t = trials_.Get(index);
  return t != nullptr && !t->id().empty() ? t : nullptr;
}

void ExperimentRun::PackEnded() {
  for (int index : ended_) trials_.Pack(index);
  ended_.clear();
}

bool ExperimentRun::open() const {
  return exp_.state() == v1::EXPERIMENT_PENDING || exp_.state() == v1::EXPERIMENT_RUNNING;
}

void ExperimentRun::Count(const Trial& t) {
  if (!t.id().empty()) Count(t.index(), t.state());
}

void ExperimentRun::Count(int index, v1::TrialState state) {
  const size_t i = static_cast<size_t>(index - 1);
  if (counted_.size() <= i) counted_.resize(i + 1, v1::TRIAL_STATE_UNSPECIFIED);
  if (counted_[i] == state) return;
  if (counted_[i] != v1::TRIAL_STATE_UNSPECIFIED) --by_state_[counted_[i]];
  counted_[i] = state;
  ++by_state_[state];
  if (TrialTerminal(state)) ended_.push_back(index);
  if (TrialActive(state)) {
    active_.insert(index);
  } else {
    active_.erase(index);
  }
}

int ExperimentRun::Running() const {
  return CountOf(v1::TRIAL_ASSIGNED) + CountOf(v1::TRIAL_RUNNING);
}

int ExperimentRun::Out() const {
  return Running() + CountOf(v1::TRIAL_PENDING) + CountOf(v1::TRIAL_PAUSED);
}

bool ExperimentRun::CanHandOut() const {
  if (!open()) return false;
  if (!queue_.empty()) return hopper() || Running() < spec().budget().max_concurrent();
  if (exp_.search_done()) return false;
  return Out() < spec().budget().max_concurrent();
}

bool ExperimentRun::Settled() const { return ExperimentTerminal(exp_.state()) && Running() == 0; }

// ---------------------------------------------------------------------------------------
// Records and the searcher

void ExperimentRun::PutTrial(const Trial& t, Change* c) {
  Count(t);
  SaveTrial(t.index(), c);
  if (c->Watching(id())) c->Event(id(), TrialEvent(t));
}

void ExperimentRun::SaveTrial(int index, Change* c) {
  c->touched.insert(id());
  c->PutLater(absl::StrCat("t/", id(), "/", index), [this, index](Store::Batch* b) {
    if (const Trial* t = trial(index)) b->PutTrial(*t);
  });
}

void ExperimentRun::Recount() {
  v1::TrialCounts n;
  n.set_pending(CountOf(v1::TRIAL_PENDING) + CountOf(v1::TRIAL_PAUSED));
  n.set_running(Running());
  n.set_completed(CountOf(v1::TRIAL_COMPLETED));
  n.set_failed(CountOf(v1::TRIAL_FAILED));
  n.set_stopped(CountOf(v1::TRIAL_STOPPED));
  n.set_waiting(CountOf(v1::TRIAL_WAITING));
  *exp_.mutable_counts() = n;
}

void ExperimentRun::PutExperiment(Change* c) {
  Recount();
  exp_.set_updated_unix_ms(c->now_ms());
  c->touched.insert(id());
  c->PutLater(absl::StrCat("e/", id()), [this](Store::Batch* b) { b->PutExperiment(exp_); });
  if (c->Watching(id())) {
    v1::WatchEvent e;
    *e.mutable_experiment() = exp_;
    c->Event(id(), std::move(e));
    if (Settled()) c->effects.emplace_back(CloseWatchers{id()});
  }
}

void ExperimentRun::SetState(v1::ExperimentState state, const std::string& message, Change* c) {
  Log(LogLevel::kInfo,
      absl::StrCat("experiment ", id(), " is now ", v1::ExperimentState_Name(state),
                   message.empty() ? "" : absl::StrCat(": ", message)));
  exp_.set_state(state);
  exp_.set_message(message);
  if (ExperimentTerminal(state)) {
    exp_.clear_unschedulable();
    if (spec().trial().reuse_process()) c->runners_done.push_back(id());
  }
  PutExperiment(c);
}

void ExperimentRun::SetUnschedulable(const std::string& why, Change* c) {
  if (exp_.unschedulable() == why) return;
  if (!why.empty()) {
    Log(LogLevel::kWarning, absl::StrCat("experiment ", id(), " waits: ", why));
  } else {
    Log(LogLevel::kInfo,
        absl::StrCat("experiment ", id(), ": a connected worker can run its trials now"));
  }
  exp_.set_unschedulable(why);
  PutExperiment(c);
}

void ExperimentRun::Start(Change* c) {
  c->touched.insert(id());
  c->batch.PutExperiment(exp_);
  Checkpoint(&c->batch);
}

std::vector<search::Action> ExperimentRun::Search(const search::Event& event, Change* c) {
  std::vector<search::Action> actions = searcher_->Handle(event);
  Journal(search::EventText(event), search::ActionsText(actions), c);
  return actions;
}

// Closing a trial may stop others (promote mode) but never creates one (only TrialsWanted
// does), so trials_ does not grow under a caller that holds a Trial* across a close.
void ExperimentRun::ApplyActions(const std::vector<search::Action>& actions, Change* c) {
  for (const search::Action& a : actions) {
    if (const auto* create = std::get_if<search::Create>(&a)) {
      CreateTrial(*create, c);
    } else if (const auto* stop = std::get_if<search::Stop>(&a)) {
      StopTrial(*stop, c);
    } else if (const auto* cont = std::get_if<search::Continue>(&a)) {
      ContinueTrial(*cont, c);
    } else if (std::holds_alternative<search::Done>(a)) {
      exp_.set_search_done(true);
    }
  }
  MaybeFinish(c);
  PutExperiment(c);
}

void ExperimentRun::CreateTrial(const search::Create& create, Change* c) {
  Trial t;
  t.set_index(create.index + 1);
  t.set_experiment_id(id());
  t.set_id(TrialId(id(), t.index()));
  for (const auto& [k, v] : create.params) (*t.mutable_params())[k] = FromSearch(v);
  t.set_state(v1::TRIAL_PENDING);
  t.set_attempt(1);
  t.set_budget(create.budget);
  t.set_created_unix_ms(c->now_ms());
  if (PopulationBased(spec())) BeginSegment(&t, 0, "", 0, 0, c);
  if (spec().kind() == "ablation") {
    const std::vector<search::Variant> variants = AblationVariants(spec());
    t.set_ablation(variants[search::VariantOf(create.index, variants.size())].Json());
    t.set_seed(search::RepeatOf(create.index, variants.size()) + 1);
  }
  trials_.Put(t);
  queue_.push_back(t.index());
  exp_.set_trials_created(std::max(exp_.trials_created(), t.index()));
  PutTrial(t, c);
}

void ExperimentRun::StopTrial(const search::Stop& stop, Change* c) {
  Trial* t = trial(stop.index + 1);
  if (t == nullptr || TrialTerminal(t->state())) return;
  t->set_stop_reason(stop.reason);
  ++c->stopped_early;
  if (TrialActive(t->state())) {
    t->set_stop_requested(true);
    t->set_stop_decided_unix_us(absl::ToUnixMicros(c->now));
    PutTrial(*t, c);
    TellStop(*t, stop.reason, c);
    return;
  }
  // Not running (queued for a retry, or waiting at a rung): it ends here.
  queue_.erase(std::remove(queue_.begin(), queue_.end(), t->index()), queue_.end());
  t->set_state(v1::TRIAL_STOPPED);
  Close(t, c);
}

void ExperimentRun::MaybeFinish(Change* c) {
  if (ExperimentTerminal(exp_.state()) || !exp_.search_done()) return;
  if (Out() + CountOf(v1::TRIAL_WAITING) > 0) return;  // a trial has not ended
  Recount();
  if (exp_.counts().completed() == 0 && exp_.counts().failed() > 0) {
    SetState(v1::EXPERIMENT_FAILED,
             absl::StrCat("all ", exp_.counts().failed(), " trials failed; see `rung trials ", id(),
                          "`"),
             c);
  } else {
    SetState(v1::EXPERIMENT_COMPLETED, "", c);
  }
}

void ExperimentRun::TellStop(const Trial& t, const std::string& reason, Change* c, bool now) {
  if (!TrialActive(t.state())) return;
  std::vector<std::string> to;
  if (t.placements_size() == 0) {
    if (!t.worker_id().empty()) to.push_back(t.worker_id());
  } else {
    for (const v1::Placement& p : t.placements()) {
      if (!p.exited()) to.push_back(p.worker_id());
    }
  }
  for (const std::string& worker_id : to) {
    TellWorker tell;
    tell.worker_id = worker_id;
    tell.msg.mutable_stop()->mutable_trial()->set_trial_id(t.id());
    tell.msg.mutable_stop()->mutable_trial()->set_attempt(t.attempt());
    tell.msg.mutable_stop()->set_reason(reason);
    tell.msg.mutable_stop()->set_now(now);
    c->Tell(std::move(tell));
  }
}

// ---------------------------------------------------------------------------------------
// Callers

absl::Status ExperimentRun::Cancel(Change* c) {
  if (ExperimentTerminal(exp_.state())) {
    return absl::FailedPreconditionError(absl::StrCat("experiment ", id(), " has already ended (",
                                                      v1::ExperimentState_Name(exp_.state()), ")"));
  }
  for (int index = 1; index <= trials_.size(); ++index) {
    if (!trials_.Has(index) || trials_.Packed(index)) continue;  // packed: ended
    Trial& t = *trials_.Get(index);
    if (t.state() == v1::TRIAL_PENDING || t.state() == v1::TRIAL_PAUSED ||
        t.state() == v1::TRIAL_WAITING) {
      t.set_state(v1::TRIAL_STOPPED);
      t.set_stop_reason(kCancelled);
      t.set_ended_unix_ms(c->now_ms());
      EndSegment(&t, c->now_ms());
      PutTrial(t, c);
    } else if (TrialActive(t.state())) {
      t.set_stop_requested(true);
      t.set_stop_reason(kCancelled);
      PutTrial(t, c);
      TellStop(t, kCancelled, c);
    }
  }
  queue_.clear();
  SetState(v1::EXPERIMENT_CANCELLED, "cancelled by request", c);
  return absl::OkStatus();
}

absl::Status ExperimentRun::Pause(Change* c) {
  if (ExperimentTerminal(exp_.state()) || exp_.state() == v1::EXPERIMENT_PAUSED) {
    return absl::FailedPreconditionError(
        absl::StrCat("experiment ", id(), " is ", v1::ExperimentState_Name(exp_.state()),
                     "; only a pending or running experiment can be paused"));
  }
  // Running trials are stopped to free their slots and come back, from their checkpoint
  // folder, on resume.
  for (int index : active_) {
    Trial& t = *trials_.Get(index);
    t.set_stop_requested(true);
    t.set_stop_reason(kPaused);
    PutTrial(t, c);
    TellStop(t, kPaused, c);
  }
  SetState(v1::EXPERIMENT_PAUSED, "paused by request", c);
  return absl::OkStatus();
}

absl::Status ExperimentRun::Resume(Change* c) {
  if (exp_.state() != v1::EXPERIMENT_PAUSED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "experiment ", id(), " is ", v1::ExperimentState_Name(exp_.state()), ", not paused"));
  }
  for (int index = 1; index <= trials_.size(); ++index) {
    if (!trials_.Has(index) || trials_.Packed(index)) continue;  // packed: ended
    Trial& t = *trials_.Get(index);
    if (t.state() != v1::TRIAL_PAUSED) continue;
    t.set_state(v1::TRIAL_PENDING);
    t.set_attempt(t.attempt() + 1);
    t.set_last_report_seq(0);
    queue_.push_back(t.index());
    PutTrial(t, c);
  }
  SetState(v1::EXPERIMENT_RUNNING, "", c);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// Handing out trials

int ExperimentRun::NextTrial(Change* c, std::string* why, std::function<search::Proposal()>* job) {
  if (queue_.empty()) {
    // Ask the searcher for one trial now, so it decides with everything known so far.
    const int out = Out();  // trials that hold or want a slot
    if (exp_.search_done()) {
      *why = "the search has handed out every trial; the experiment ends when they do";
      return 0;
    }
    const int max_concurrent = spec().budget().max_concurrent();
    if (out >= max_concurrent) {
      *why = absl::StrCat("budget.max_concurrent (", max_concurrent,
                          ") trials are out; one must end first");
      return 0;
    }
    *why = "the model is proposing the next trial";
    if (proposal_ticket_ != 0) return 0;  // a model is already working it out
    if (auto propose = searcher_->Propose()) {
      // Propose() draws the job's seed from the searcher's generator: journalled and saved
      // with `c`, before the job starts, so a restart cannot hand out the same seed twice.
      Journal("propose", "", c);
      *job = std::move(propose);
      return 0;
    }
    ApplyActions(Search(search::TrialsWanted{1}, c), c);
    if (queue_.empty()) {
      *why = "the searcher has no trial to give now";
      return 0;
    }
  }
  // At most budget.max_concurrent run at once, also of the trials queued to run again (a
  // retry, a promotion, a population's members; hopper mode's rotation has its own limit).
  const int max_concurrent = spec().budget().max_concurrent();
  if (!hopper() && Running() >= max_concurrent) {
    *why = absl::StrCat("budget.max_concurrent (", max_concurrent,
                        ") trials are running; one must pause or end first");
    return 0;
  }
  const int index = queue_.front();
  queue_.pop_front();
  return index;
}

void ExperimentRun::BeginProposal(int64_t ticket, absl::Time deadline, absl::Time now) {
  proposal_ticket_ = ticket;
  proposal_started_ = now;
  proposal_deadline_ = deadline;
}

bool ExperimentRun::ProposalDone(int64_t ticket, search::Proposal proposal, Change* c,
                                 double* seconds) {
  if (proposal_ticket_ != ticket || ticket == 0) return false;  // Tick() fell back already
  proposal_ticket_ = 0;
  if (!open()) return false;  // paused or ended meanwhile: a later slot asks the model again
  *seconds = absl::ToDoubleSeconds(c->now - proposal_started_);
  ApplyActions(Search(search::TrialsWanted{1, std::move(proposal), true}, c), c);
  return true;
}

bool ExperimentRun::ProposalTimedOut(Change* c) {
  proposal_ticket_ = 0;
  if (!open()) return false;
  Log(LogLevel::kWarning,
      absl::StrCat(id(), ": the ", spec().algorithm().name(), " model did not propose trial ",
                   TrialId(id(), exp_.trials_created() + 1), " within ",
                   absl::FormatDuration(proposal_deadline_ - proposal_started_),
                   " (--suggest-deadline); its parameters are drawn at random"));
  ApplyActions(Search(search::TrialsWanted{1, std::nullopt, true}, c), c);
  return true;
}

v1::Assignment ExperimentRun::MakeAssignment(const Trial& t, const v1::Placement& where,
                                             absl::Time lease_deadline) const {
  v1::Assignment a;
  *a.mutable_trial() = t;
  a.mutable_trial()->set_worker_id(where.worker_id());
  *a.mutable_trial()->mutable_slots() = where.slots();
  if (t.placements_size() > 0) {
    v1::RankLayout* r = a.mutable_ranks();
    r->set_world_size(spec().trial().ranks());
    r->set_node_rank(where.node_rank());
    r->set_nnodes(t.placements_size());
    r->set_first_rank(where.first_rank());
    r->set_local_world_size(where.ranks());
    r->set_master_addr(t.master_addr());
    r->set_master_port(t.master_port());
    r->set_gpus_per_rank(spec().trial().gpus());
    // Every rank's own port follows MASTER_PORT (TF_CONFIG's cluster).
    for (const v1::Placement& p : t.placements()) {
      for (int i = 0; i < p.ranks(); ++i)
        r->add_rank_addrs(absl::StrCat(p.addr(), ":", t.master_port() + 1 + p.first_rank() + i));
    }
  }
  const v1::TrialTemplate& tt = spec().trial();
  // Placeholders were checked when the spec was accepted, so filling cannot fail here.
  for (const std::string& arg : tt.command())
    a.add_argv(FillPlaceholders(arg, t.params()).value_or(arg));
  a.set_workdir(tt.workdir());
  auto& env = *a.mutable_env();
  for (const auto& [k, v] : tt.env()) env[k] = FillPlaceholders(v, t.params()).value_or(v);
  env["RUNG_TRIAL_ID"] = t.id();
  env["RUNG_EXPERIMENT_ID"] = t.experiment_id();
  env["RUNG_ATTEMPT"] = absl::StrCat(t.attempt());
  env["RUNG_PARAMS"] = ParamsToJson(t.params());
  env["RUNG_OBJECTIVE"] = spec().objective().metric();
  if (!t.ablation().empty()) {
    env["RUNG_ABLATION"] = t.ablation();
    env["RUNG_SEED"] = absl::StrCat(t.seed());
  }
  if (!tt.checkpoint_root().empty()) {
    env["RUNG_CHECKPOINT_DIR"] =
        absl::StrCat(tt.checkpoint_root(), "/", t.experiment_id(), "/", t.id());
  }
  if (hopper() && t.hops_size() > 0) {
    // The unit: which partition to train on, in which epoch; the epoch's last unit validates.
    const v1::Hop& hop = t.hops(t.hops_size() - 1);
    env["RUNG_PARTITION"] = absl::StrCat(hop.partition());
    env["RUNG_PARTITIONS"] = absl::StrCat(spec().hopper().partitions());
    env["RUNG_EPOCH"] = absl::StrCat(hop.epoch());
    env["RUNG_EPOCHS"] = absl::StrCat(spec().hopper().epochs());
    env["RUNG_VALIDATE"] = hop.validated() ? "1" : "0";
  }
  if (t.budget() > 0) {
    env["RUNG_BUDGET"] = FormatDouble(t.budget());
    env["RUNG_RESOURCE"] = spec().resource().metric();
  }
  a.set_lease_deadline_unix_ms(absl::ToUnixMillis(lease_deadline));
  a.set_reuse_process(tt.reuse_process());
  if (CheckpointsTravel(spec())) {
    a.set_upload_checkpoint(true);
    if (t.checkpoint().attempt() > 0) *a.mutable_checkpoint() = t.checkpoint();
  }
  return a;
}

void ExperimentRun::Assign(int index, const std::vector<v1::Placement>& where, int master_port,
                           absl::Time lease_deadline, Change* c) {
  Trial& t = *trials_.Get(index);
  t.set_state(v1::TRIAL_ASSIGNED);
  t.set_worker_id(where.at(0).worker_id());
  *t.mutable_slots() = where[0].slots();
  t.clear_placements();
  if (spec().trial().ranks() > 1) {
    for (const v1::Placement& p : where) *t.add_placements() = p;
    t.set_master_addr(where[0].addr());
    t.set_master_port(master_port);
  }
  t.set_stop_requested(false);
  t.clear_stop_reason();
  // In hopper mode each unit is an attempt, and Trial.hops is their ledger.
  if (spec().execution() != "hopper") BeginAttempt(&t, t.worker_id(), "", c->now_ms());
  PutTrial(t, c);
  if (exp_.state() == v1::EXPERIMENT_PENDING) exp_.set_state(v1::EXPERIMENT_RUNNING);
  PutExperiment(c);
  for (const v1::Placement& p : where) {
    TellWorker tell{p.worker_id(), 0, {}};  // the session is the worker's current one
    *tell.msg.mutable_assignment() = MakeAssignment(t, p, lease_deadline);
    c->Tell(std::move(tell));
  }
}

void ExperimentRun::HandOut(int index, const std::string& client_id, Change* c) {
  Trial& t = *trials_.Get(index);
  t.set_state(v1::TRIAL_RUNNING);
  t.set_client_id(client_id);
  t.clear_worker_id();
  t.clear_slots();
  t.set_started_unix_ms(c->now_ms());
  t.set_stop_requested(false);
  t.clear_stop_reason();
  BeginAttempt(&t, "", client_id, c->now_ms());
  PutTrial(t, c);
  if (exp_.state() == v1::EXPERIMENT_PENDING) exp_.set_state(v1::EXPERIMENT_RUNNING);
}

// ---------------------------------------------------------------------------------------
// What happens to trials

void ExperimentRun::Started(Trial* t, const v1::TrialStarted& m, const std::string& worker_id,
                            Change* c) {
  // Rank 0's worker holds the logs worth showing; a trial runs once any share started.
  if (worker_id == t->worker_id()) {
    t->set_stdout_path(m.stdout_path());
    t->set_stderr_path(m.stderr_path());
    t->set_pid(m.pid());
  }
  if (t->state() != v1::TRIAL_ASSIGNED) {
    if (worker_id == t->worker_id()) PutTrial(*t, c);
    return;  // a resend, or another share of a distributed trial
  }
  t->set_state(v1::TRIAL_RUNNING);
  t->set_started_unix_ms(c->now_ms());
  PutTrial(*t, c);
  PutExperiment(c);
}

void ExperimentRun::Report(Trial* t, v1::MetricReport r, Change* c) {
  if (r.unix_ms() == 0) r.set_unix_ms(c->now_ms());
  c->touched.insert(id());
  c->batch.PutReport(r);
  ++c->reports;
  t->set_last_report_seq(r.seq());
  t->set_reports(t->reports() + 1);
  t->set_last_step(r.step());
  for (const auto& [k, v] : r.values()) (*t->mutable_last_metrics())[k] = v;
  if (t->state() == v1::TRIAL_ASSIGNED) t->set_state(v1::TRIAL_RUNNING);
  // Progress: the resource metric when the report names it, else its step.
  auto res_it = r.values().find(spec().resource().metric());
  const double resource = res_it != r.values().end() ? res_it->second : r.step();
  t->set_resource_reached(std::max(t->resource_reached(), resource));
  const v1::Objective& obj = spec().objective();
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
    SegmentReport(t, it->second);
    if (searcher_->WantsReports()) {
      ApplyActions(Search(search::TrialReported{t->index() - 1, resource, it->second}, c), c);
    }
  }
  if (c->Watching(id())) {
    v1::WatchEvent e;
    *e.mutable_report() = std::move(r);
    c->Event(id(), std::move(e));
  }
}

void ExperimentRun::Exited(Trial* t, const v1::TrialExited& m, const std::string& worker_id,
                           Change* c) {
  if (t->placements_size() > 0 && !ShareExited(t, m, worker_id, c)) return;
  t->set_exited_unix_us(m.exit_unix_us());
  if (t->stop_requested()) {
    EndStopped(t, c);
    return;
  }
  const std::string metric = MissingObjective(spec(), *t);
  const std::string tail =
      m.stderr_tail().empty() ? "" : absl::StrCat("; stderr ends:\n", m.stderr_tail());
  // A distributed trial says which rank ended it.
  const std::string who =
      t->placements_size() > 0 ? absl::StrCat("rank ", m.rank(), " (worker ", worker_id, ") ") : "";
  const bool stored = m.checkpoint().attempt() == t->attempt();
  if (stored && !hopper()) {
    // The worker stored the folder this attempt left (in rungd, before telling us): the next
    // attempt starts from it. (A hopper unit's only once the schedule has taken the unit.)
    *t->mutable_checkpoint() = m.checkpoint();
  }
  const bool clean_exit =
      !m.worker_shutdown() && !m.launch_failed() && m.signal() == 0 && m.exit_code() == 0;
  if (!m.checkpoint_error().empty()) {
    // Its own fault (too large, cannot be packed) counts; rungd's (its disk) does not.
    RetryOrFail(t,
                absl::StrCat("its checkpoint could not be stored in rungd: ", m.checkpoint_error()),
                m.checkpoint_trials_fault(), c);
  } else if (clean_exit && CheckpointsTravel(spec()) && !stored) {
    // The next attempt would start from an older checkpoint, or from nothing.
    RetryOrFail(t,
                absl::StrCat("worker ", worker_id, " ended attempt ", t->attempt(),
                             " without storing its checkpoint in rungd (a rung-worker older than "
                             "rungd?); it runs again"),
                true, c);
  } else if (m.worker_shutdown()) {
    RetryOrFail(t,
                absl::StrCat("worker ", worker_id,
                             m.message().empty() ? " shut down" : " stopped it: ", m.message()),
                false, c);
  } else if (m.launch_failed()) {
    RetryOrFail(t, absl::StrCat(who, "could not start: ", m.message()), true, c);
  } else if (m.signal() != 0) {
    RetryOrFail(t, absl::StrCat(who, "killed by ", SignalName(m.signal()), tail), true, c);
  } else if (m.exit_code() != 0) {
    RetryOrFail(t, absl::StrCat(who, "exited with code ", m.exit_code(), tail), true, c);
  } else if (hopper()) {
    HopperUnitDone(t, m, c);
  } else if (!metric.empty()) {
    RetryOrFail(t,
                absl::StrCat("exited 0 without reporting the objective metric '", metric,
                             "' (report it with rung.report(", metric,
                             "=...) or a stdout line @rung {\"", metric, "\": ...})", tail),
                true, c);
  } else {
    Release(t, c);
    Finish(t, c);
  }
}

bool ExperimentRun::ShareExited(Trial* t, const v1::TrialExited& m, const std::string& worker_id,
                                Change* c) {
  v1::Placement* share = ShareOn(t, worker_id);
  if (share == nullptr || share->exited()) return false;  // a resend
  share->set_exited(true);
  // Its processes are gone: its slots are free now, whatever happens to the other shares.
  c->released.emplace_back(worker_id,
                           std::vector<int>(share->slots().begin(), share->slots().end()));
  const bool failed =
      m.worker_shutdown() || m.launch_failed() || m.signal() != 0 || m.exit_code() != 0;
  if (t->stop_requested()) {
    // A stopped (or paused) attempt ends when every share has: a resume must not start a new
    // attempt while a rank of this one is still writing its checkpoint.
    if (!Holds(*t).empty()) {
      PutTrial(*t, c);
      return false;
    }
    return true;
  }
  if (failed) return true;  // RetryOrFail kills the other ranks
  if (share->node_rank() != 0) {
    PutTrial(*t, c);  // the attempt's outcome is rank 0's
    return false;
  }
  // Rank 0 ended well: ranks still running elsewhere are told to stop (with grace).
  TellStop(*t, "rank 0 of the trial has exited", c);
  return true;
}

void ExperimentRun::Finish(Trial* t, Change* c) {
  if (TrainsInSegments(spec()) && t->budget() < spec().resource().max() * (1 - 1e-9)) {
    // It trained to its rung's budget (promote mode) or its ready point (population-based
    // training); it waits to be continued or stopped.
    t->set_state(v1::TRIAL_WAITING);
    EndAttempt(t, "waiting", "", c->now_ms());
    EndSegment(t, c->now_ms());
    PutTrial(*t, c);
    ApplyActions(Search(search::TrialPaused{t->index() - 1}, c), c);
    return;
  }
  if (!t->has_result()) {
    t->set_has_result(true);
    t->set_result(t->last_metrics().at(spec().objective().metric()));
  }
  t->clear_results();
  for (const v1::Objective& o : spec().objectives())
    t->add_results(t->last_metrics().at(o.metric()));
  t->set_infeasible(BrokenConstraints(spec(), *t));
  t->set_state(v1::TRIAL_COMPLETED);  // message keeps why an earlier attempt failed
  Close(t, c);
}

void ExperimentRun::Release(Trial* t, Change* c) {
  for (Hold& h : Holds(*t)) {
    if (!h.slots.empty()) c->released.emplace_back(std::move(h.worker_id), std::move(h.slots));
  }
}

void ExperimentRun::Close(Trial* t, Change* c) {
  t->set_ended_unix_ms(c->now_ms());
  EndSegment(t, c->now_ms());
  switch (t->state()) {
    case v1::TRIAL_COMPLETED:
      EndAttempt(t, "completed", "", c->now_ms());
      break;
    case v1::TRIAL_STOPPED:
      EndAttempt(t, "stopped", t->stop_reason(), c->now_ms());
      break;
    default:
      EndAttempt(t, "failed", t->message(), c->now_ms());
  }
  PutTrial(*t, c);
  const auto goal = spec().objective().goal();
  // With several objectives there is no single best; `rung best` gives the Pareto set.
  // A tie goes to the lower index, as BestTrials orders them (population-based training's
  // members often tie: they may hold copies of one model).
  auto ties_lower = [&] {
    if (t->result() != exp_.best_value()) return false;
    std::string e;
    int best = 0;
    return ParseTrialId(exp_.best_trial_id(), &e, &best) && t->index() < best;
  };
  if (t->state() == v1::TRIAL_COMPLETED && t->infeasible().empty() && spec().objectives().empty() &&
      (!exp_.has_best() || Better(goal, t->result(), exp_.best_value()) || ties_lower())) {
    exp_.set_has_best(true);
    exp_.set_best_value(t->result());
    exp_.set_best_trial_id(t->id());
  }
  if (ExperimentTerminal(exp_.state())) {
    PutExperiment(c);
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
  ApplyActions(Search(closed, c), c);
}

void ExperimentRun::EndStopped(Trial* t, Change* c) {
  Release(t, c);
  if (t->stop_reason() == kPaused && !ExperimentTerminal(exp_.state())) {
    // Stopped to free its slot for a pause: it waits for the resume, or, when the resume
    // came before it exited, goes back to the queue now.
    const bool paused = exp_.state() == v1::EXPERIMENT_PAUSED;
    EndAttempt(t, "paused", t->stop_reason(), c->now_ms());
    t->set_state(paused ? v1::TRIAL_PAUSED : v1::TRIAL_PENDING);
    if (!paused) {
      t->set_attempt(t->attempt() + 1);
      t->set_last_report_seq(0);
      queue_.push_back(t->index());
    }
    t->set_stop_requested(false);
    t->clear_worker_id();
    t->clear_client_id();
    t->clear_slots();
    t->clear_placements();
    PutTrial(*t, c);
    PutExperiment(c);
    return;
  }
  t->set_state(v1::TRIAL_STOPPED);
  Close(t, c);
}

void ExperimentRun::RetryOrFail(Trial* t, const std::string& reason, bool count_failure,
                                Change* c) {
  Release(t, c);
  // Every rank of the attempt goes: the others cannot go on without the one that failed.
  if (t->placements_size() > 0) {
    TellStop(*t, absl::StrCat("another rank of the attempt ended: ", FirstLine(reason)), c,
             /*now=*/true);
  }
  if (count_failure) t->set_failures(t->failures() + 1);
  t->set_message(reason);
  const int max_restarts = spec().trial().max_restarts();
  Log(LogLevel::kInfo,
      absl::StrCat("trial ", t->id(), " attempt ", t->attempt(), ": ", FirstLine(reason)));
  if (t->failures() > max_restarts || ExperimentTerminal(exp_.state())) {
    t->set_state(v1::TRIAL_FAILED);
    if (count_failure && max_restarts > 0) {
      t->set_message(absl::StrCat(reason, " (failed ", t->failures(), " times; max_restarts is ",
                                  max_restarts, ")"));
    }
    Close(t, c);
    return;
  }
  EndAttempt(t, "retried", reason, c->now_ms());
  t->set_state(exp_.state() == v1::EXPERIMENT_PAUSED ? v1::TRIAL_PAUSED : v1::TRIAL_PENDING);
  Requeue(t);
  if (t->state() == v1::TRIAL_PENDING) queue_.push_back(t->index());
  PutTrial(*t, c);
  PutExperiment(c);
}

void ExperimentRun::Expire(Trial* t, const std::string& reason, Change* c) {
  ++c->lease_expirations;
  if (t->stop_requested()) {
    EndStopped(t, c);
  } else {
    RetryOrFail(t, reason, true, c);
  }
}

void ExperimentRun::Reconcile(const std::string& worker_id, int64_t session,
                              const std::set<std::pair<std::string, int>>& reported, Change* c,
                              std::set<std::pair<std::string, int>>* wanted, std::set<int>* busy) {
  const std::set<int> active = active_;  // the loop changes it
  for (int index : active) {
    Trial& t = *trials_.Get(index);
    if (!HeldBy(t, worker_id)) continue;
    if (reported.count({t.id(), t.attempt()})) {
      wanted->insert({t.id(), t.attempt()});
      for (const Hold& h : Holds(t)) {
        if (h.worker_id == worker_id) busy->insert(h.slots.begin(), h.slots.end());
      }
      if (t.stop_requested()) {
        TellWorker tell{worker_id, session, {}};
        tell.msg.mutable_stop()->mutable_trial()->set_trial_id(t.id());
        tell.msg.mutable_stop()->mutable_trial()->set_attempt(t.attempt());
        tell.msg.mutable_stop()->set_reason(t.stop_reason());
        c->Tell(std::move(tell));
      }
      continue;
    }
    // Its share there has exited and been acknowledged: nothing of it is lost.
    if (!RunsOn(t, worker_id)) continue;
    // We think it runs there but the worker does not know it: the worker restarted (the
    // attempt is lost) or the assignment never arrived (no fault of the trial's).
    const bool never_arrived = t.state() == v1::TRIAL_ASSIGNED;
    if (t.stop_requested()) {
      EndStopped(&t, c);
      continue;
    }
    RetryOrFail(&t,
                never_arrived ? "assignment lost in a reconnect"
                              : absl::StrCat("worker ", worker_id, " restarted and lost it"),
                !never_arrived, c);
  }
}

}  // namespace rung
