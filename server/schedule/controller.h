// The controller: owns experiments, trials, workers and searchers; schedules trials onto
// worker slots; keeps leases; persists every change through the Store before it is visible.
//
// Thread-safety: every public method may be called from any thread; one mutex guards all
// state. Sinks are called with that mutex held, so they must not block and must not call
// back into the Controller.
#ifndef RUNG_SERVER_SCHEDULE_CONTROLLER_H_
#define RUNG_SERVER_SCHEDULE_CONTROLLER_H_

#include <atomic>
#include <cstdint>
#include <deque>
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
#include "server/schedule/job_pool.h"
#include "server/search/searcher.h"
#include "server/store/store.h"

namespace rung {

// Where the controller sends messages for one worker stream.
class WorkerSink {
 public:
  virtual ~WorkerSink() = default;
  virtual void Send(const v1::ControllerMessage& msg) = 0;
};

// Where the controller sends one watcher's events. Close() follows the last event.
class WatchSink {
 public:
  virtual ~WatchSink() = default;
  virtual void Send(const v1::WatchEvent& event) = 0;
  virtual void Close() = 0;
};

struct ControllerOptions {
  // A worker silent for this long loses its trials (they go back to the queue).
  absl::Duration lease_timeout = absl::Seconds(30);
  // How often workers are asked to send a heartbeat.
  absl::Duration heartbeat_interval = absl::Seconds(5);
  // How long a model (TPE, GP) may take to propose a trial's parameters. Past it, Tick()
  // draws them at random instead and logs why.
  absl::Duration suggest_deadline = absl::Seconds(2);
  // Runs the searchers' model jobs, off the RPC threads and the controller's lock. It must
  // not run a job inline (the controller holds its lock when it queues one), nor after the
  // controller is gone. Null: a pool of threads that the controller owns.
  std::function<void(std::function<void()>)> run_job;
};

// Figures for /metrics, read at scrape time.
struct ControllerStats {
  std::map<v1::ExperimentState, int> experiments;
  std::map<v1::TrialState, int> trials;
  int workers_connected = 0;
  int slots_busy = 0;
  int slots_free = 0;
  int64_t reports_received = 0;
  int64_t lease_expirations = 0;
  int64_t suggestions = 0;               // model proposals that trials took
  double suggestion_seconds = 0;         // their total time, queueing included
  int64_t suggestion_fallbacks = 0;      // proposals that missed the deadline
  int64_t worker_messages_dropped = 0;   // invalid worker messages acknowledged and ignored
  int64_t trials_stopped_early = 0;      // trials a stopping rule ended
  uint64_t store_bytes = 0;              // the data folder's size on disk
  // Model suggestion latency by algorithm: counts per upper bound of kSuggestionBuckets
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
  // Loads every experiment, trial, worker and searcher state from `store`. `store` and
  // `clock` must outlive the controller.
  static absl::StatusOr<std::unique_ptr<Controller>> Create(Store* store, Clock* clock,
                                                            ControllerOptions options);
  ~Controller();

  // ---- Clients ----
  // `spec` must have passed ValidateSpec. Returns the stored experiment.
  absl::StatusOr<v1::Experiment> CreateExperiment(v1::ExperimentSpec spec, const std::string& owner = "");
  absl::StatusOr<v1::Experiment> GetExperiment(const std::string& id);
  std::vector<v1::Experiment> ListExperiments();
  absl::StatusOr<v1::Experiment> CancelExperiment(const std::string& id);
  absl::StatusOr<v1::Experiment> PauseExperiment(const std::string& id);
  absl::StatusOr<v1::Experiment> ResumeExperiment(const std::string& id);
  absl::StatusOr<std::vector<v1::Trial>> ListTrials(const std::string& experiment_id);
  absl::StatusOr<v1::Trial> GetTrial(const std::string& trial_id);
  absl::StatusOr<std::vector<v1::MetricReport>> GetTrialMetrics(const std::string& trial_id);
  // Completed trials, best first (ties: lower index first).
  absl::StatusOr<std::vector<v1::Trial>> GetBestTrials(const std::string& experiment_id,
                                                       int count);
  // An ablation study's results (see AblationResults in experiment_service.proto).
  // FAILED_PRECONDITION when the experiment is a search.
  absl::StatusOr<v1::AblationResults> GetAblation(const std::string& experiment_id);
  // Replays the experiment's searcher journal through a fresh searcher (see
  // server/search/journal.h). Reads the store, not the controller's state: it does not hold
  // up scheduling however long the journal is.
  absl::StatusOr<v1::ReplaySearchResponse> ReplaySearch(const std::string& experiment_id);
  // A checkpoint of the store in `dir` (see AdminService.Backup).
  absl::StatusOr<v1::BackupResponse> Backup(const std::string& dir);

  // Sends the experiment and its trials to `sink` now, then every change until the
  // experiment has ended and none of its trials runs any more (then Close()), or until
  // Unwatch(). Returns a handle for Unwatch.
  absl::StatusOr<int64_t> Watch(const std::string& experiment_id, WatchSink* sink);
  // After it returns, `sink` is never called again.
  void Unwatch(int64_t handle);

  // The searcher configuration a (validated) spec describes, warm start aside.
  static search::Config SearchConfig(const v1::ExperimentSpec& spec);

  // ---- Ask and tell (execution: external) ----
  // Called once with the answer; with the controller's lock held, so it must not block and
  // must not call back into the Controller.
  using AskDone = std::function<void(absl::StatusOr<v1::AskTrialsResponse>)>;
  // Hands the client up to req.count trials: those it holds first, then new ones (RUNNING,
  // client_id set, durable before `done`). Answers at once, or, when the client holds
  // nothing and a model is proposing the next trial, once the model is done (or Tick() has
  // fallen back to random parameters).
  void AskTrials(const v1::AskTrialsRequest& req, AskDone done);
  // Stores the report of a trial the client holds and says whether it should stop. A trial
  // it no longer holds (ended, paused, taken back after its lease) gets stop, and nothing is
  // stored; one that another client holds is refused.
  absl::StatusOr<v1::ReportTrialResponse> ReportTrial(const v1::ReportTrialRequest& req);
  // Ends a held trial: completed (final values, else those reported), failed (retried while
  // max_restarts allows), or, when a stop is out, stopped. Repeating a completion is a no-op.
  absl::StatusOr<v1::Trial> CompleteTrial(const v1::CompleteTrialRequest& req);

  // ---- Workers ----
  // A worker's stream opened with `reg`. `sink` stays valid until WorkerDisconnected(session).
  // Returns the session handle.
  absl::StatusOr<int64_t> WorkerConnected(const v1::Register& reg, WorkerSink* sink);
  // Handles one message of the session's stream. An error means the message was refused
  // (nothing of it applied) and the stream should end with that status.
  absl::Status HandleWorkerMessage(int64_t session, const v1::WorkerMessage& msg);
  void WorkerDisconnected(int64_t session);

  // Expires leases of silent workers, and falls back to random parameters for model
  // proposals past their deadline. rungd calls it periodically; tests call it after moving a
  // FakeClock.
  void Tick();

  ControllerStats Stats();

  // Answers every ask still waiting for a model (UNAVAILABLE). rungd calls it before its
  // gRPC server shuts down, which waits for every call to be answered.
  void AnswerWaitingAsks(const absl::Status& why);

 private:
  struct ExperimentRec {
    v1::Experiment exp;
    std::unique_ptr<search::Searcher> searcher;
    std::vector<v1::Trial> trials;  // trials[i].index() == i + 1
    std::deque<int> queue;          // indexes of PENDING trials, in order
    std::map<int64_t, WatchSink*> watchers;
    // A model job in flight for the next new trial (0: none), and when it must be done.
    int64_t proposal_ticket = 0;
    absl::Time proposal_started, proposal_deadline;
    int64_t journal_next = 0;  // seq of the searcher journal's next entry
    struct Ask {
      std::string client_id;
      int count = 0;
      AskDone done;
    };
    std::vector<Ask> asks;  // waiting for the model's proposal, in arrival order
  };
  struct WorkerRec {
    v1::Worker worker;
    WorkerSink* sink = nullptr;  // null while disconnected
    int64_t session = 0;
    absl::Time last_seen;
    std::set<int> offered;  // slots the worker said are free in its latest Pull
    std::set<int> busy;     // slots that the controller's trials hold
  };

  Controller(Store* store, Clock* clock, ControllerOptions options);
  // Builds every experiment, trial and worker from the store.
  absl::Status LoadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After the store failed a write and works again: drops the in-memory state (which may be
  // ahead of the disk), ends every watch and worker stream (they reconnect), and loads again.
  absl::Status ReloadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The store's syncer: writes up to `durable` are on disk (or the fsync failed).
  void OnDurable(uint64_t durable, const absl::Status& error);
  void SendAcksLocked(uint64_t durable) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LatchStoreErrorLocked(const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  ExperimentRec* FindExperimentLocked(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<v1::Trial*> FindTrialLocked(const std::string& trial_id, ExperimentRec** rec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The experiment's searcher, with the completed trials of its warm_start experiments
  // (which must exist and share its objective) given to the model.
  absl::StatusOr<std::unique_ptr<search::Searcher>> NewSearcherLocked(const v1::ExperimentSpec& spec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // kind: ablation: copies the base from base.from_experiment's best trial and sets the
  // budget to every variant `repeats` times.
  absl::Status PrepareAblationLocked(v1::ExperimentSpec* spec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies the searcher's actions to `rec`, adding writes to `batch`.
  void ApplyActionsLocked(ExperimentRec* rec, const std::vector<search::Action>& actions,
                          Store::Batch* batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<search::Action> SearchLocked(ExperimentRec* rec, const search::Event& event,
                                           Store::Batch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands free slots work, from the queue first, then from searchers with room.
  void DispatchLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool TryAssignLocked(WorkerRec* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The next trial of `rec` to hand out, taken off its queue (asking the searcher when the
  // queue is empty): its index, or 0 with `why` none can go out now.
  int NextTrialLocked(ExperimentRec* rec, Store::Batch* batch, std::string* why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Answers `ask` unless `may_wait` and it would be empty while a model proposes (then false).
  bool ServeAskLocked(ExperimentRec* rec, ExperimentRec::Ask* ask, bool may_wait)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Answers what of rec->asks it can; `may_wait` false: all of them.
  void ServeAsksLocked(ExperimentRec* rec, bool may_wait) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The trial `trial_id` that `client_id` may report on or complete.
  absl::StatusOr<v1::Trial*> ClientTrialLocked(const std::string& trial_id, const std::string& client_id,
                                               ExperimentRec** rec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues the searcher's model job for the next trial of `rec`.
  void StartProposalLocked(ExperimentRec* rec, std::function<search::Proposal()> job)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A model job finished: the next trial takes its parameters, unless Tick() gave up on it.
  void ProposalDone(const std::string& experiment_id, int64_t ticket, search::Proposal proposal);
  bool Matches(const ExperimentRec& rec, const WorkerRec& w, std::vector<int>* slots)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::Assignment MakeAssignmentLocked(const ExperimentRec& rec, const v1::Trial& t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // A trial attempt ended without completing: relaunch it (PENDING, attempt + 1) while its
  // failures allow, else fail it for good. `count_failure` false: a relaunch that is not the
  // trial's fault (its assignment never reached the worker).
  void RetryOrFailLocked(ExperimentRec* rec, v1::Trial* t, const std::string& reason,
                         bool count_failure, Store::Batch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A trial with a stop order out has ended: PAUSED when its experiment is paused (it runs
  // again on resume), else STOPPED.
  void EndStoppedLocked(ExperimentRec* rec, v1::Trial* t, Store::Batch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The trial reached a terminal state: tell the searcher, update counts and best.
  void CloseTrialLocked(ExperimentRec* rec, v1::Trial* t, Store::Batch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseSlotsLocked(v1::Trial* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendStopLocked(const v1::Trial& t, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeFinishLocked(ExperimentRec* rec, Store::Batch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecountLocked(ExperimentRec* rec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetExperimentStateLocked(ExperimentRec* rec, v1::ExperimentState state,
                                const std::string& message, Store::Batch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PutTrialLocked(ExperimentRec* rec, const v1::Trial& t, Store::Batch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PutExperimentLocked(ExperimentRec* rec, Store::Batch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes `batch`. On failure the in-memory state is ahead of the disk; the controller
  // then stops accepting changes (see store_error_).
  // Writes `batch`; `durable`: on disk before it returns (a client's request is answered
  // right after), else under the store's group commit.
  absl::Status CommitLocked(Store::Batch* batch, bool durable = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Status HandleStartedLocked(WorkerRec* w, const v1::TrialStarted& m, Store::Batch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status HandleReportsLocked(WorkerRec* w, const v1::ReportBatch& m, Store::Batch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stores `r` (a new report of t's current attempt) and updates `t` and its searcher; the
  // caller puts `t`.
  void ApplyReportLocked(ExperimentRec* rec, v1::Trial* t, v1::MetricReport r, Store::Batch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The trial's run ended well (exit 0, or a client's completion) with every objective
  // known: COMPLETED, or WAITING at its rung in promote mode.
  void FinishTrialLocked(ExperimentRec* rec, v1::Trial* t, Store::Batch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status HandleExitedLocked(WorkerRec* w, const v1::TrialExited& m, Store::Batch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The trial the message is about, when it is the attempt that `w` currently runs.
  v1::Trial* CurrentTrialLocked(WorkerRec* w, const v1::TrialRef& ref, ExperimentRec** rec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Tells `w` to stop its copy `ref`, which is not the trial's current attempt there.
  void StopStaleLocked(WorkerRec* w, const v1::TrialRef& ref) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status HandleWorkerMessageLocked(WorkerRec* w, const v1::WorkerMessage& msg)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BroadcastLocked(ExperimentRec* rec, const v1::WatchEvent& e)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Store* const store_;
  Clock* const clock_;
  const ControllerOptions options_;

  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<ExperimentRec>> experiments_ ABSL_GUARDED_BY(mu_);
  std::vector<ExperimentRec*> fifo_ ABSL_GUARDED_BY(mu_);  // by creation order
  std::map<std::string, std::unique_ptr<WorkerRec>> workers_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, WorkerRec*> sessions_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, ExperimentRec*> watch_handles_ ABSL_GUARDED_BY(mu_);
  // Ask-and-tell clients: when each was last heard from (its lease).
  std::map<std::string, absl::Time> clients_ ABSL_GUARDED_BY(mu_);
  int64_t next_experiment_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  // Set when a write failed: memory may be ahead of disk, so no more changes are accepted
  // until Tick() finds the store writable again and reloads everything from it.
  absl::Status store_error_ ABSL_GUARDED_BY(mu_);
  absl::Time next_recovery_ ABSL_GUARDED_BY(mu_);
  std::string last_recovery_error_ ABSL_GUARDED_BY(mu_);
  int64_t store_recoveries_ ABSL_GUARDED_BY(mu_) = 0;
  // Group commit: acknowledgements to workers wait until the store has their writes on disk.
  struct PendingAck {
    int64_t session;
    int64_t seq;
    uint64_t ticket;
  };
  std::deque<PendingAck> pending_acks_ ABSL_GUARDED_BY(mu_);
  int64_t reports_received_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t lease_expirations_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_ticket_ ABSL_GUARDED_BY(mu_) = 1;
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
