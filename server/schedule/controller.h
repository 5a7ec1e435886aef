// The controller: the lock, the commit, recovery and dispatch. It owns one ExperimentRun per
// experiment, the WorkerRegistry and the Outbox. Every change is worked out under its lock
// into a Change, written to the store, and only then do its effects (assignments, stop
// orders, acknowledgements, watch events, answers) go out, from the Outbox, once the write
// is on disk. A change whose write fails leaves nothing behind: its effects are dropped and
// the experiments it touched are read back from the store.
//
// Thread-safety: every public method may be called from any thread. Callbacks (Done) run
// without the controller's lock, from the thread that saw the change become durable; they
// must not block and must not call back into the Controller. No fsync and no store reopen
// happens with the lock held.
#ifndef RUNG_SERVER_SCHEDULE_CONTROLLER_H_
#define RUNG_SERVER_SCHEDULE_CONTROLLER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "rung/v1/admin_service.pb.h"
#include "rung/v1/experiment_service.pb.h"
#include "rung/v1/worker_service.pb.h"
#include "server/schedule/experiment_run.h"
#include "server/schedule/job_pool.h"
#include "server/schedule/outbox.h"
#include "server/schedule/worker_registry.h"
#include "server/search/searcher.h"
#include "server/store/checkpoint_files.h"
#include "server/store/store.h"

namespace rung {

struct ControllerOptions {
  // A worker silent for this long loses its trials (they go back to the queue).
  absl::Duration lease_timeout = absl::Seconds(30);
  // How often workers are asked to send a heartbeat. A connected worker heard from within two
  // intervals is alive: another process registering under its name is refused.
  absl::Duration heartbeat_interval = absl::Seconds(5);
  // How long a model (TPE, GP) may take to propose a trial's parameters. Past it, Tick()
  // draws them at random instead and logs why.
  absl::Duration suggest_deadline = absl::Seconds(2);
  // A distributed trial that has waited this long for its ranks' slots holds on to the
  // workers it needs: smaller trials no longer start there until it has started.
  absl::Duration reserve_after = absl::Seconds(60);
  // Where checkpoints that travel (trial.checkpoint_root empty, promote or hopper mode) are
  // stored; null: they do not travel (tests of other parts).
  CheckpointFiles* checkpoints = nullptr;
  // Runs the searchers' model jobs, off the RPC threads and the controller's lock. It must
  // not run a job inline, nor after the controller is gone. Null: a pool of threads that the
  // controller owns.
  std::function<void(std::function<void()>)> run_job;
};

// Figures for /metrics, read at scrape time.
struct ControllerStats {
  std::map<v1::ExperimentState, int> experiments;
  std::map<v1::TrialState, int> trials;
  int workers_connected = 0;
  int slots_busy = 0;
  int slots_free = 0;
  int experiments_unschedulable = 0;  // running experiments no connected worker can serve
  int64_t reports_received = 0;
  int64_t lease_expirations = 0;
  int64_t suggestions = 0;              // model proposals that trials took
  double suggestion_seconds = 0;        // their total time, queueing included
  int64_t suggestion_fallbacks = 0;     // proposals that missed the deadline
  int64_t worker_messages_dropped = 0;  // invalid worker messages acknowledged and ignored
  int64_t trials_stopped_early = 0;     // trials a stopping rule ended
  int64_t store_recoveries = 0;         // times writes failed and later worked again
  uint64_t store_bytes = 0;             // the data folder's size on disk
  int64_t checkpoint_bytes = 0;         // checkpoint archives stored (CheckpointFiles)
  int64_t checkpoints = 0;
  // Model suggestion latency by algorithm: counts per upper bound of SuggestionBuckets()
  // (not cumulative; the last is +Inf), and their sum in seconds.
  struct Histogram {
    std::vector<int64_t> counts;
    double sum = 0;
  };
  std::map<std::string, Histogram> suggestion_seconds_by_algorithm;
};

// Upper bounds (seconds) of the suggestion latency histogram's buckets.
inline const std::vector<double>& SuggestionBuckets() {
  static const std::vector<double> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                               0.1,   0.25,   0.5,   1,    2.5};
  return kBuckets;
}

class Controller {
 public:
  // Called once with the outcome, once it is durable (or will never be).
  template <typename T>
  using Done = std::function<void(absl::StatusOr<T>)>;

  // Loads every experiment, trial, worker and searcher state from `store`. `store` and
  // `clock` must outlive the controller.
  static absl::StatusOr<std::unique_ptr<Controller>> Create(Store* store, Clock* clock,
                                                            ControllerOptions options);
  ~Controller();

  // ---- Clients: changes, answered once durable ----
  // `spec` must have passed ValidateSpec.
  void CreateExperiment(v1::ExperimentSpec spec, const std::string& owner,
                        Done<v1::Experiment> done);
  void CancelExperiment(const std::string& id, Done<v1::Experiment> done);
  void PauseExperiment(const std::string& id, Done<v1::Experiment> done);
  void ResumeExperiment(const std::string& id, Done<v1::Experiment> done);

  // ---- Clients: reads (what rungd holds now) ----
  absl::StatusOr<v1::Experiment> GetExperiment(const std::string& id);
  std::vector<v1::Experiment> ListExperiments();
  // A page of the experiment's trials (ListTrialsRequest says which, and in what order).
  absl::StatusOr<v1::ListTrialsResponse> ListTrials(const v1::ListTrialsRequest& req);
  // Every trial, in index order.
  absl::StatusOr<std::vector<v1::Trial>> ListTrials(const std::string& experiment_id);
  absl::StatusOr<v1::Trial> GetTrial(const std::string& trial_id);
  absl::StatusOr<std::vector<v1::MetricReport>> GetTrialMetrics(const std::string& trial_id);
  // Every trial's curve of one metric, read from the store (see GetCurvesRequest).
  absl::StatusOr<v1::GetCurvesResponse> GetCurves(const v1::GetCurvesRequest& req);
  // Every worker as it is now, with the trials that hold its slots.
  std::vector<v1::WorkerStatus> ListWorkers();
  // Completed trials, best first (ties: lower index first).
  absl::StatusOr<std::vector<v1::Trial>> GetBestTrials(const std::string& experiment_id, int count);
  // An ablation study's results. FAILED_PRECONDITION when the experiment is a search.
  absl::StatusOr<v1::AblationResults> GetAblation(const std::string& experiment_id);
  // Replays the experiment's searcher journal through a fresh searcher (see
  // server/search/journal.h). Reads the store, not the controller's state.
  absl::StatusOr<v1::ReplaySearchResponse> ReplaySearch(const std::string& experiment_id);
  // A checkpoint of the store in `dir` (see AdminService.Backup).
  absl::StatusOr<v1::BackupResponse> Backup(const std::string& dir);

  // Sends the experiment and its trials to `sink`, then every change until the experiment
  // has ended and none of its trials runs any more (then Close()), or until Unwatch().
  // Returns a handle for Unwatch.
  absl::StatusOr<int64_t> Watch(const std::string& experiment_id, WatchSink* sink);
  // After it returns, `sink` is never called again.
  void Unwatch(int64_t handle);

  // ---- Ask and tell (execution: external) ----
  // Hands the client up to req.count trials: those it holds first, then new ones (RUNNING,
  // client_id set). Answers at once, or, when the client holds nothing and a model is
  // proposing the next trial, once the model is done (or Tick() has fallen back).
  void AskTrials(const v1::AskTrialsRequest& req, Done<v1::AskTrialsResponse> done);
  // Stores the report of a trial the client holds and says whether it should stop. A trial
  // it no longer holds gets stop, and nothing is stored; one another client holds is refused.
  void ReportTrial(const v1::ReportTrialRequest& req, Done<v1::ReportTrialResponse> done);
  // Ends a held trial: completed (final values, else those reported), failed (retried while
  // max_restarts allows), or, when a stop is out, stopped. Repeating a completion is a no-op.
  void CompleteTrial(const v1::CompleteTrialRequest& req, Done<v1::Trial> done);
  // Many reports, then many completions, of one experiment's trials: each as ReportTrial and
  // CompleteTrial, in one change made durable once, with one result per item.
  void TellTrials(const v1::TellTrialsRequest& req, Done<v1::TellTrialsResponse> done);

  // ---- Workers ----
  // A worker's stream opened with `reg`; `sink` stays valid until WorkerDisconnected(session).
  // Returns the session handle; ALREADY_EXISTS when another live worker has the name.
  absl::StatusOr<int64_t> WorkerConnected(const v1::Register& reg, WorkerSink* sink);
  // Handles one message of the session's stream. An error means the message was refused
  // (nothing of it applied) and the stream should end with that status.
  absl::Status HandleWorkerMessage(int64_t session, const v1::WorkerMessage& msg);
  // After it returns, the session's sink is never called again.
  void WorkerDisconnected(int64_t session);

  // ---- Checkpoints (CheckpointService) ----
  // The experiment of the trial whose `attempt` uploads its checkpoint from `worker_id`:
  // FAILED_PRECONDITION unless that attempt is current and runs there (a stale attempt's
  // model state must not become the trial's).
  absl::StatusOr<std::string> CheckpointUploadTarget(const std::string& trial_id, int attempt,
                                                     const std::string& worker_id);
  // The trial's stored checkpoint (`attempt` 0: the one its next attempt starts from) and the
  // trial's experiment; NOT_FOUND naming the trial when rungd keeps none.
  absl::StatusOr<std::pair<std::string, v1::CheckpointRef>> CheckpointOf(
      const std::string& trial_id, int attempt);
  // Removes the archives no trial can start from any more, keeping those of the
  // trial.keep_checkpoints best completed trials. Tick() calls it every few seconds.
  void CollectCheckpoints();

  // Expires leases of silent workers and clients, falls back to random parameters for model
  // proposals past their deadline, and retries a failed store. rungd calls it periodically;
  // tests call it after moving a FakeClock.
  void Tick();

  ControllerStats Stats();

  // Stops accepting changes (they are refused with `why`), makes everything written durable
  // and lets its effects out, answers every ask still waiting for a model with `why`, and ends
  // every watch and worker stream. rungd calls it before its gRPC server shuts down, which
  // waits for every call to end. Returns what it ended, for the log.
  struct Ended {
    int workers = 0, watches = 0, asks = 0;
  };
  Ended Shutdown(const absl::Status& why);

 private:
  struct Ask {
    std::string client_id;
    int count = 0;
    Done<v1::AskTrialsResponse> done;
  };
  // What LoadState builds: every experiment and worker as stored.
  struct State {
    std::map<std::string, std::unique_ptr<ExperimentRun>> runs;
    std::vector<ExperimentRun*> fifo;  // by creation order
    std::vector<v1::Worker> workers;
    int64_t next_experiment = 1;
  };

  Controller(Store* store, Clock* clock, ControllerOptions options);

  // ---- State and recovery ----
  // Reads everything from the store. Needs no lock: nothing writes while it runs (at start,
  // or while writes are refused after a failure).
  absl::StatusOr<State> LoadState();
  // Makes `state` the controller's; every worker and client lease runs from now.
  void Adopt(State state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One experiment as stored, its searcher rebuilt (warm start from `runs`).
  absl::StatusOr<std::unique_ptr<ExperimentRun>> LoadRun(
      v1::Experiment exp, const std::map<std::string, std::unique_ptr<ExperimentRun>>& runs);
  // The experiment's searcher, with the completed trials of its warm_start experiments
  // (which must exist and share its objective) given to the model.
  absl::StatusOr<std::unique_ptr<search::Searcher>> NewSearcher(
      const v1::ExperimentSpec& spec,
      const std::map<std::string, std::unique_ptr<ExperimentRun>>& runs);
  // kind: ablation: copies the base from base.from_experiment's best trial and sets the
  // budget to every variant `repeats` times.
  absl::Status PrepareAblationLocked(v1::ExperimentSpec* spec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A write failed: no change is accepted until Tick() finds the store writable again.
  void LatchStoreErrorLocked(const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads the experiments `touched` back from the store (the change that altered them was
  // not written) and recomputes which slots are busy.
  void RollBackLocked(const std::set<std::string>& touched) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecountBusyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Tick's part when writes fail: tries the store again (off the lock) and reloads.
  void TryRecover();
  // The store's syncer: writes up to `durable` are on disk (or the fsync failed).
  void OnDurable(uint64_t durable, const absl::Status& error);

  // ---- Commit ----
  absl::Time Now() { return clock_->Now(); }
  // A Change that knows who watches what.
  std::unique_ptr<Change> NewChange() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes c's batch; on success its effects go to the Outbox (TellWorker sessions resolved
  // now) and its counters and released slots apply; on failure nothing of it remains.
  absl::Status CommitLocked(Change* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Outside the lock: fsyncs now when `sync` (a caller waits) or when the store has no syncer,
  // then lets out every effect that is durable.
  void Flush(bool sync) ABSL_LOCKS_EXCLUDED(mu_);
  // Adds an answer to `c`: `done(value)` once c is durable, `done(error)` if it never is.
  template <typename T>
  static void Answer(Change* c, Done<T> done, absl::StatusOr<T> value) {
    c->Then([done = std::move(done), value = std::move(value)](const absl::Status& s) mutable {
      if (s.ok()) {
        done(std::move(value));
      } else {
        done(s);
      }
    });
  }

  // ---- Experiments ----
  ExperimentRun* FindRunLocked(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<v1::Trial*> FindTrialLocked(const std::string& trial_id, ExperimentRun** run)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<v1::Experiment> CreateLocked(v1::ExperimentSpec spec, const std::string& owner,
                                              Change* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Cancel, pause or resume through `op`.
  void ControlExperiment(const std::string& id, absl::Status (ExperimentRun::*op)(Change*),
                         Done<v1::Experiment> done);

  // ---- Dispatch ----
  // Hands free slots work, experiments first in first out, and says on each experiment
  // whether any connected worker could run it.
  void DispatchLocked(Change* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts the next trial of `run` where it fits, on workers outside `skip`; false when it
  // does not fit or has no trial to start.
  bool PlaceTrialLocked(ExperimentRun* run, const std::set<std::string>& skip, Change* c)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Workers held for distributed trials that waited past reserve_after: worker -> experiment.
  // Hopper mode: fills the experiment's rotation (up to budget.max_concurrent trials), then
  // gives free partitions (those a connected worker outside `skip` holds and has a free slot
  // for) units of the trials that still need them.
  void PlaceHopperLocked(ExperimentRun* run, const std::set<std::string>& skip, Change* c)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Why a hopper experiment cannot train every partition now ("" when it can).
  std::string HopperUnschedulableLocked(const ExperimentRun& run)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::map<std::string, std::string> ReservationsLocked(absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The first of world_size + 1 ports (MASTER_PORT, then one per rank) in `master`'s range
  // that no running distributed trial uses; 0 when none is free.
  int RankPortLocked(const v1::Worker& master, int world_size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The next trial of `run` (see ExperimentRun::NextTrial), starting its model's job when
  // it needs one.
  int NextTrialLocked(ExperimentRun* run, Change* c, std::string* why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A model job finished: the next trial takes its parameters, unless Tick() gave up on it.
  void ProposalDone(const std::string& experiment_id, int64_t ticket, search::Proposal proposal);
  void ExpireProposalsLocked(Change* c, std::vector<ExperimentRun*>* served)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireWorkersLocked(Change* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireClientsLocked(Change* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // ---- Ask and tell ----
  // Answers `ask` unless `may_wait` and it would be empty while a model proposes (then false).
  bool ServeAskLocked(ExperimentRun* run, Ask* ask, bool may_wait, Change* c)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Answers what of the experiment's waiting asks it can; `may_wait` false: all of them.
  void ServeAsksLocked(ExperimentRun* run, bool may_wait, Change* c)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The trial `trial_id` that `client_id` may report on or complete.
  absl::StatusOr<v1::Trial*> ClientTrialLocked(const std::string& trial_id,
                                               const std::string& client_id, ExperimentRun** run)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<v1::ReportTrialResponse> ReportLocked(const v1::ReportTrialRequest& req, Change* c)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<v1::Trial> CompleteLocked(const v1::CompleteTrialRequest& req, Change* c)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // ---- Workers ----
  absl::Status HandleWorkerMessageLocked(WorkerRegistry::Worker* w, const v1::WorkerMessage& msg,
                                         Change* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The trial a worker message is about, when it is the attempt that `w` currently runs.
  v1::Trial* CurrentTrialLocked(const WorkerRegistry::Worker& w, const v1::TrialRef& ref,
                                ExperimentRun** run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Tells `w` to stop its copy `ref`, which is not the trial's current attempt there.
  void StopStale(const WorkerRegistry::Worker& w, const v1::TrialRef& ref, Change* c);
  absl::Status HandleReportsLocked(const WorkerRegistry::Worker& w, const v1::ReportBatch& m,
                                   Change* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Acknowledges worker message `seq` of `session` once everything written so far is durable.
  void AckLocked(int64_t session, int64_t seq, Change* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Store* const store_;
  Clock* const clock_;
  const ControllerOptions options_;
  Outbox outbox_;

  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<ExperimentRun>> runs_ ABSL_GUARDED_BY(mu_);
  std::vector<ExperimentRun*> fifo_ ABSL_GUARDED_BY(mu_);  // by creation order
  WorkerRegistry registry_ ABSL_GUARDED_BY(mu_);
  // Asks waiting for a model's proposal, by experiment, in arrival order.
  std::map<std::string, std::vector<Ask>> asks_ ABSL_GUARDED_BY(mu_);
  // Ask-and-tell clients: when each was last heard from (its lease).
  std::map<std::string, absl::Time> clients_ ABSL_GUARDED_BY(mu_);
  // Experiments whose next distributed trial does not fit yet: since when it waits.
  std::map<std::string, absl::Time> waiting_since_ ABSL_GUARDED_BY(mu_);
  // Where RankPortLocked looks first: after the block it handed out last.
  int next_port_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_experiment_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t next_ticket_ ABSL_GUARDED_BY(mu_) = 1;
  // Set when a write failed: no more changes are accepted until Tick() finds the store
  // writable again and reloads everything from it. Also set (for good) by Shutdown().
  absl::Status store_error_ ABSL_GUARDED_BY(mu_);
  absl::Time next_recovery_ ABSL_GUARDED_BY(mu_);
  absl::Time next_collect_ ABSL_GUARDED_BY(mu_);  // CollectCheckpoints' next turn
  bool recovering_ ABSL_GUARDED_BY(mu_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::string last_recovery_error_ ABSL_GUARDED_BY(mu_);
  // After a failed commit: answers to give and the Outbox to empty, by Flush, off the lock.
  std::vector<std::function<void()>> unanswered_ ABSL_GUARDED_BY(mu_);
  bool drop_pending_ ABSL_GUARDED_BY(mu_) = false;
  // The set of connected workers changed, or an experiment came or resumed: DispatchLocked
  // says again on each experiment whether a connected worker could run it.
  bool recheck_unschedulable_ ABSL_GUARDED_BY(mu_) = true;
  int64_t store_recoveries_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t reports_received_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t lease_expirations_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t suggestions_ ABSL_GUARDED_BY(mu_) = 0;
  double suggestion_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t suggestion_fallbacks_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t worker_messages_dropped_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t trials_stopped_early_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, ControllerStats::Histogram> suggestion_hist_ ABSL_GUARDED_BY(mu_);
  // Last, so it is destroyed first: its threads finish their jobs while the rest still exists.
  std::unique_ptr<JobPool> pool_;
};

}  // namespace rung

#endif  // RUNG_SERVER_SCHEDULE_CONTROLLER_H_
