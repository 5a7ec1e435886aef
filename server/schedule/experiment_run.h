// One experiment while rungd runs it: its record, its trials, its searcher and its queue of
// trials waiting for a slot. It applies what happens to the experiment (a cancel, a trial
// handed out, a report, a trial's end, a retry, the searcher's actions) to its own state.
//
// It sends nothing and locks nothing: every change goes into the Change it is given, as
// writes (the store batch) and effects (stop orders, assignments, watch events) that the
// Controller lets out once the batch is on disk. The Controller calls it with its lock held.
// When a Change fails to commit, the Controller drops this object and loads it again from
// the store, so its memory never runs ahead of the disk.
#ifndef RUNG_SERVER_SCHEDULE_EXPERIMENT_RUN_H_
#define RUNG_SERVER_SCHEDULE_EXPERIMENT_RUN_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rung/v1/types.pb.h"
#include "rung/v1/worker_service.pb.h"
#include "server/schedule/change.h"
#include "server/schedule/trial_table.h"
#include "server/search/hopper.h"
#include "server/search/searcher.h"
#include "server/store/store.h"

namespace rung {

bool TrialTerminal(v1::TrialState s);
bool TrialActive(v1::TrialState s);  // assigned or running: it holds a slot or a client
bool ExperimentTerminal(v1::ExperimentState s);
// Its trials' checkpoint folders travel through rungd: no shared trial.checkpoint_root, and
// trials resume (promote mode, population-based training, or hopper mode's units).
bool CheckpointsTravel(const v1::ExperimentSpec& spec);
// algorithm: pbt or pb2 (experiment_population.cc).
bool PopulationBased(const v1::ExperimentSpec& spec);
// Trials train to a budget below resource.max, wait (TRIAL_WAITING) and may be continued:
// promote mode, and population-based training.
bool TrainsInSegments(const v1::ExperimentSpec& spec);

// Back to the queue for another attempt: the attempt number goes up and what the last
// attempt held is cleared.
void Requeue(v1::Trial* t);

// Where an active trial's current attempt still holds slots: one entry per worker (node 0
// first) whose share has not exited.
struct Hold {
  std::string worker_id;
  std::vector<int> slots;
};
std::vector<Hold> Holds(const v1::Trial& t);
// Whether a share of the trial's current attempt was placed on `worker_id` (exited or not):
// its messages about the attempt are current.
bool HeldBy(const v1::Trial& t, const std::string& worker_id);
// Whether a share of the current attempt still runs on `worker_id` (placed and not exited).
bool RunsOn(const v1::Trial& t, const std::string& worker_id);
// The attempt ledger (Trial.attempts): a record when the current attempt is handed out, filled
// in with its outcome when it ends. Both are idempotent for one attempt.
void BeginAttempt(v1::Trial* t, const std::string& worker_id, const std::string& client_id,
                  int64_t now_ms);
void EndAttempt(v1::Trial* t, const char* outcome, const std::string& message, int64_t now_ms);

class ExperimentRun {
 public:
  // A new experiment with its searcher; Start() writes it.
  ExperimentRun(v1::Experiment exp, std::unique_ptr<search::Searcher> searcher);
  // A stored experiment: its trials, queue, searcher state and journal position from `store`.
  static absl::StatusOr<std::unique_ptr<ExperimentRun>> Load(
      Store* store, v1::Experiment exp, std::unique_ptr<search::Searcher> searcher);

  const v1::Experiment& experiment() const { return exp_; }
  const std::string& id() const { return exp_.id(); }
  const v1::ExperimentSpec& spec() const { return exp_.spec(); }
  // Its trials by index; ended ones are packed (trial_table.h).
  const TrialTable& trials() const { return trials_; }
  // Trial `index` (1, 2, ...), or null; an ended trial is unpacked (PackEnded packs it again).
  v1::Trial* trial(int index);
  // Packs the trials that have ended since the last call. No pointer trial() gave may be used
  // after: the Controller calls it as each operation begins.
  void PackEnded();
  // Pending or running: it may hand out trials.
  bool open() const;
  // Open, with trials left to hand out (queued, or still to come from the searcher).
  bool wants_slots() const { return open() && (!queue_.empty() || !exp_.search_done()); }
  // Open, and NextTrial would hand out a trial or ask the searcher for one (the queue holds
  // one, or the search goes on below budget.max_concurrent).
  bool CanHandOut() const;
  // Clients ask for its trials (execution: external); no worker runs them.
  bool external() const { return exp_.spec().execution() == "external"; }
  // Its trials that hold slots or a client now (assigned or running), and their indexes.
  int Running() const;
  const std::set<int>& active() const { return active_; }
  // Its trials in state `s` (ASSIGNED and RUNNING together under either: a report moves a
  // trial from one to the other without a count).
  int CountOf(v1::TrialState s) const { return by_state_[s]; }
  // Nothing more will happen: it has ended and none of its trials still runs.
  bool Settled() const;

  // ---- Changes from callers ----
  void Start(Change* c);  // the new experiment's record, searcher snapshot, journal start
  absl::Status Cancel(Change* c);
  absl::Status Pause(Change* c);
  absl::Status Resume(Change* c);

  // ---- Handing out trials ----
  // The next trial to hand out, taken off the queue (asking the searcher when the queue is
  // empty): its index, or 0 with `why` none can go out now. When the searcher needs a model
  // to propose the next trial, `*job` gets the model's work: the caller runs it off its lock
  // once `c` is durable (its seed is journalled in `c`) and brings the answer to
  // ProposalDone() with the ticket it gave BeginProposal().
  int NextTrial(Change* c, std::string* why, std::function<search::Proposal()>* job);
  void BeginProposal(int64_t ticket, absl::Time deadline, absl::Time now);
  int64_t proposal_ticket() const { return proposal_ticket_; }
  absl::Time proposal_deadline() const { return proposal_deadline_; }
  // The model's answer for `ticket`: the next trial takes its parameters. False (nothing
  // changed) when the ticket is stale or the experiment no longer runs. `seconds`: how long
  // the proposal took.
  bool ProposalDone(int64_t ticket, search::Proposal proposal, Change* c, double* seconds);
  // The model missed its deadline: the next trial's parameters are drawn at random. False
  // when the experiment no longer runs.
  bool ProposalTimedOut(Change* c);

  // Trial `index` goes to workers' slots: ASSIGNED, and an assignment to each worker is an
  // effect of `c`. One placement: a trial of one rank. Several (node 0 first, each with its
  // worker's address): a distributed trial whose ranks reach rank 0 at `master_port`.
  void Assign(int index, const std::vector<v1::Placement>& where, int master_port,
              absl::Time lease_deadline, Change* c);
  // Trial `index` goes to an ask-and-tell client: RUNNING, held by it.
  void HandOut(int index, const std::string& client_id, Change* c);

  // ---- What happens to a trial ----
  void Started(v1::Trial* t, const v1::TrialStarted& m, const std::string& worker_id, Change* c);
  // Stores `r` (a new report of t's current attempt) and updates `t` and the searcher; the
  // caller puts `t` (PutTrial).
  void Report(v1::Trial* t, v1::MetricReport r, Change* c);
  // The worker says the attempt's process ended (for a distributed trial: that worker's
  // processes; rank 0's decides, and any failure ends the attempt on every worker).
  void Exited(v1::Trial* t, const v1::TrialExited& m, const std::string& worker_id, Change* c);
  // The run ended well (exit 0, or a client's completion) with every objective known.
  void Finish(v1::Trial* t, Change* c);
  // A trial with a stop order out has ended: PAUSED when the experiment is paused, else STOPPED.
  void EndStopped(v1::Trial* t, Change* c);
  // An attempt ended without completing: relaunch it while its failures allow, else fail it.
  // `count_failure` false: not the trial's fault (its assignment never reached the worker).
  void RetryOrFail(v1::Trial* t, const std::string& reason, bool count_failure, Change* c);
  // The trial's worker or client is gone (`reason`): a stopped trial ends, others are retried.
  void Expire(v1::Trial* t, const std::string& reason, Change* c);
  // The trial's record, written as it is when `c` commits (once, however often it is put), and
  // a watch event of it now. `t` is one of trials().
  void PutTrial(const v1::Trial& t, Change* c);
  // The record only: no count and no event (a report's event says what changed).
  void SaveTrial(int index, Change* c);
  // The experiment's record, written as it is when `c` commits, and a watch event of it now.
  void PutExperiment(Change* c);

  // A worker registered (again) with the attempts in `reported`: those we also think it runs
  // go into `wanted` and their slots into `busy`, and get their stop orders again; the others
  // we thought it ran are lost (retried, or ended when a stop was out).
  void Reconcile(const std::string& worker_id, int64_t session,
                 const std::set<std::pair<std::string, int>>& reported, Change* c,
                 std::set<std::pair<std::string, int>>* wanted, std::set<int>* busy);

  // ---- Hopper mode (execution: hopper; experiment_hopper.cc) ----
  // Its trials are the configurations of a HopperSchedule: each unit (a sub-epoch on one
  // partition) is an attempt of the trial; between units the trial is PENDING.
  bool hopper() const { return hopper_ != nullptr; }
  // A trial the searcher handed out joins the rotation (again: nothing happens).
  void HopperAdd(int index, Change* c);
  // Units for `free` partitions (each: a trial index as `config`, a partition, an epoch),
  // from the schedule, which is written in `c`.
  std::vector<search::HopperSchedule::Unit> HopperNext(const std::set<int>& free, Change* c);
  // The schedule follows the trials: a unit whose trial no longer runs it failed (it runs
  // again), a trial that ended leaves the rotation. The Controller calls it on each dispatch.
  void HopperSync(Change* c);
  // A unit HopperNext gave that found no slot after all: the schedule takes it back.
  void HopperUnplaced(const search::HopperSchedule::Unit& u, Change* c);
  // The unit's trial goes to `where` (its ledger gets the hop).
  void AssignUnit(const search::HopperSchedule::Unit& u, const v1::Placement& where,
                  absl::Time lease_deadline, Change* c);

  // Why no connected worker can run its trials (empty when one can); written when it changes.
  void SetUnschedulable(const std::string& why, Change* c);

  // The searcher's state now: a replay of its journal as written must end in it (`rung admin
  // replay`).
  std::string SearcherSnapshot() const { return searcher_->Snapshot(); }

 private:
  std::vector<search::Action> Search(const search::Event& event, Change* c);
  // The searcher's journal (server/store/README.md): `call` and its `answer` as the next
  // entry, then a checkpoint once the journal since the last one holds as many bytes as that
  // one's snapshot. Snapshots then cost at most what the journal does, however large the
  // searcher's state grows, and a restart replays at most that much journal.
  void Journal(const std::string& call, const std::string& answer, Change* c);
  // The searcher's snapshot as the next journal entry, which the searcher state key names;
  // entries before the previous checkpoint go.
  void Checkpoint(Store::Batch* batch);
  // The searcher as the journal leaves it: its latest checkpoint, then every later entry.
  absl::Status LoadSearcher(Store* store);
  // Hopper mode: a unit's attempt ended (`m`; exit 0, not stopped).
  void HopperUnitDone(v1::Trial* t, const v1::TrialExited& m, Change* c);
  void PutHopper(Change* c);
  void ApplyActions(const std::vector<search::Action>& actions, Change* c);
  // Population-based training (experiment_population.cc): a waiting trial continued, perhaps
  // from a donor's checkpoint with new parameters; its segments (the lineage).
  void ContinueTrial(const search::Continue& cont, Change* c);
  void BeginSegment(v1::Trial* t, double start, const std::string& parent_trial_id,
                    double parent_resource, int parent_attempt, Change* c);
  static void EndSegment(v1::Trial* t, int64_t now_ms);
  static void SegmentReport(v1::Trial* t, double value);
  void CreateTrial(const search::Create& create, Change* c);
  void StopTrial(const search::Stop& stop, Change* c);
  void MaybeFinish(Change* c);
  void Close(v1::Trial* t, Change* c);
  void Release(v1::Trial* t, Change* c);
  void SetState(v1::ExperimentState state, const std::string& message, Change* c);
  void Recount();
  // A stop order for an active trial, to its workers whose share has not exited (none for a
  // client: it hears on its next call). `now`: no stop grace (another rank failed).
  void TellStop(const v1::Trial& t, const std::string& reason, Change* c, bool now = false);
  // The assignment of trial `t` for the worker of `where` (placements().size() > 1: its
  // share of the ranks).
  v1::Assignment MakeAssignment(const v1::Trial& t, const v1::Placement& where,
                                absl::Time lease_deadline) const;
  // A distributed trial's share on `worker_id` has exited: true when the attempt ends now
  // (rank 0 exited, or a share failed), false when it waits for rank 0.
  bool ShareExited(v1::Trial* t, const v1::TrialExited& m, const std::string& worker_id, Change* c);

  // The trials by state, kept as PutTrial writes them (every change of a trial's state goes
  // through it, but ASSIGNED to RUNNING on a report, which no count tells apart), so that the
  // experiment's counts and the slots it may take cost the same at a million trials as at ten.
  void Count(const v1::Trial& t);
  void Count(int index, v1::TrialState state);
  // Trials that hold or want a slot (not ended, not waiting at a rung).
  int Out() const;

  v1::Experiment exp_;
  std::unique_ptr<search::Searcher> searcher_;
  TrialTable trials_;
  std::vector<int> ended_;               // indexes of trials that ended since PackEnded
  std::vector<v1::TrialState> counted_;  // by trial index - 1: the state Count() last saw
  int by_state_[v1::TrialState_ARRAYSIZE] = {};
  std::set<int> active_;   // indexes of the assigned and running trials
  std::deque<int> queue_;  // indexes of PENDING trials, in order
  int64_t journal_next_ = 0;
  int64_t checkpoint_ = 0;             // the journal entry of the latest checkpoint
  int64_t snapshot_bytes_ = 0;         // its size
  int64_t journal_bytes_ = 0;          // journal written since
  absl::Duration searcher_load_time_;  // how long LoadSearcher took (for the log)
  // A model job in flight for the next new trial (0: none), and when it must be done.
  int64_t proposal_ticket_ = 0;
  absl::Time proposal_started_, proposal_deadline_;
  std::unique_ptr<search::HopperSchedule> hopper_;  // execution: hopper
};

}  // namespace rung

#endif  // RUNG_SERVER_SCHEDULE_EXPERIMENT_RUN_H_
