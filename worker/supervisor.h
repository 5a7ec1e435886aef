// The worker's state machine: its slots, its trial processes and what it tells rungd.
//
// It does no waiting and owns no socket: the agent's I/O loop (worker/agent.cc) hands it
// what happened (a stream opened or was lost, a controller message, a trial's stdout is
// readable, a report line on the socket) and calls Tick() when timers may be due; it
// decides, signals processes through the injected launcher's Process objects, and queues
// the messages for rungd, which the loop takes with TakeOutgoing() and writes to the
// stream. Time is the injected clock's, so a test drives stop grace, SIGTERM, SIGKILL and
// --orphan-timeout by moving a FakeClock and calling Tick().
//
// Messages that change state (started, reports, exited) get a sequence number and stay in
// an outbox until rungd acknowledges them; each new registration resends them.
//
// Not thread-safe: one thread (the agent's loop) calls everything.
#ifndef RUNG_WORKER_SUPERVISOR_H_
#define RUNG_WORKER_SUPERVISOR_H_

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "rung/v1/worker_service.pb.h"
#include "worker/agent.h"
#include "worker/checkpoint_mover.h"
#include "worker/launcher.h"
#include "worker/report_parse.h"

namespace rung {

// Where the supervisor's trials find the worker's parts (prepared by the agent).
struct SupervisorPaths {
  std::string work_dir;     // absolute; trials live in work_dir/trials/ID/
  std::string socket_path;  // the report socket (RUNG_REPORT_SOCKET)
  std::string python_dir;   // the rung module, put on every trial's PYTHONPATH
};

// torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK, GROUP_RANK,
// MASTER_ADDR, MASTER_PORT) and TF_CONFIG for global rank `rank` of the layout.
void AddRankEnv(const v1::RankLayout& r, int rank, std::map<std::string, std::string>* env);

class Supervisor {
 public:
  // `options.work_dir` is not used (paths.work_dir is). `clock` and `launcher` must outlive
  // the supervisor. `session_id` goes into every Register.
  Supervisor(const AgentOptions& options, SupervisorPaths paths, std::string session_id,
             Clock* clock, ProcessLauncher* launcher);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Checkpoints that travel through rungd (Assignment.upload_checkpoint) move through
  // `transfers` (which must outlive the supervisor); without it they stay on this worker.
  void set_transfers(CheckpointTransfers* transfers) { transfers_ = transfers; }
  // A download or upload that `transfers` was given is done.
  void OnTransferDone(const TransferDone& d);

  // ---- the stream ----
  // A new stream is open: queues Register (not registered until rungd answers).
  void OnStreamStarted();
  // The stream is gone: nothing is sent until the next registration. Since now, trials run
  // orphaned (--orphan-timeout).
  void OnStreamLost();
  void HandleControllerMessage(const v1::ControllerMessage& m);
  // The messages to write to the current stream, in order; empties the queue.
  std::vector<v1::WorkerMessage> TakeOutgoing();

  // ---- trial processes and the report socket ----
  // The stdout pipes of running trials, for the loop to poll.
  std::vector<int> StdoutFds() const;
  // `fd` (one of StdoutFds()) is readable: reads it, handles its report lines.
  void ReadStdout(int fd);
  // One line from the report socket; returns the reply line (with its '\n').
  std::string HandleReportLine(absl::string_view line);

  // ---- time ----
  // Reaps exited trials, runs due timers (stop grace, SIGTERM, SIGKILL, orphan timeout,
  // heartbeat), sends pending reports, asks for work for free slots.
  void Tick();
  // When Tick() next has a timer due (InfiniteFuture: none).
  absl::Time NextWake() const;

  // ---- shutdown ----
  // SIGTERM to every trial, SIGKILL after kill grace. `deliver`: wait for rungd to
  // acknowledge the trials' exits (false when there is no rungd to tell).
  void BeginShutdown(bool deliver = true);
  bool shutting_down() const { return shutting_down_; }
  // Every trial has exited and (if delivering) rungd has acknowledged everything, or the
  // shutdown deadline passed.
  bool ShutdownComplete() const;

  // ---- for /metrics and tests ----
  const AgentStats& stats() const { return stats_; }
  bool registered() const { return registered_; }
  size_t outbox_size() const { return outbox_.size(); }
  size_t trials_known() const { return trials_.size(); }
  size_t runners() const { return runners_.size(); }
  const std::map<std::string, std::string>& base_env() const { return base_env_; }

 private:
  struct RankProc;
  struct Runner;
  struct TrialRun;

  void SendState(v1::WorkerMessage m);  // gives it a seq, keeps it until acknowledged
  void Queue(v1::WorkerMessage m);      // to the current stream, if registered
  void OnRegistered(const v1::RegisterReply& r);
  void OnAck(int64_t seq);
  void OnStop(const v1::StopTrial& s);
  void Launch(const v1::Assignment& a);
  // Starts the attempt's processes (or hands it to a runner).
  void StartProcesses(TrialRun* r);
  // The trial's checkpoint folder on this worker (RUNG_CHECKPOINT_DIR without a shared root).
  std::string CheckpointDir(const std::string& trial_id) const;
  // The attempt needs its checkpoint from rungd first: true when a download has begun
  // (StartProcesses follows it); false when it can start now (the folder was emptied when
  // there is none yet).
  bool FetchCheckpoint(TrialRun* r);
  // The attempt ends before any process started (stopped, replaced or shut down while its
  // checkpoint was fetched); `tell`: rungd hears of it.
  void EndWithoutProcess(TrialRun* r, bool tell);
  // Starts a process per local rank of `r` (all of them, or none: then LaunchFailed).
  void SpawnRanks(const v1::Assignment& a, TrialRun* r, const std::string& attempt_dir);
  SpawnOptions TrialSpawnOptions(const v1::Assignment& a, const RankProc& proc,
                                 const std::vector<std::string>& gpus);
  // `trials_fault` false: rungd runs it again without counting a failure.
  void LaunchFailed(TrialRun* run, const SpawnOptions& so, const absl::Status& why,
                    bool trials_fault = true);
  void Pull();
  void ReadStdout(TrialRun* run, RankProc* proc);
  void HandleStdoutLine(TrialRun* run, RankProc* proc, absl::string_view line);
  void QueueReport(TrialRun* run, const ParsedReport& r);
  void FlushReports();
  void Reap();
  // Gives the run's slots back, except those a newer run holds.
  void FreeSlots(const TrialRun* run);
  // One of the run's processes exited with `status`; the first that failed ends the others.
  void ProcExited(TrialRun* run, RankProc* proc, int status);
  // Every process of the run has exited: tells rungd (the first failure decides, else rank 0).
  void Finish(TrialRun* run);
  void RunTimers();
  void UpdateStats();
  TrialRun* Find(const std::string& id, int attempt);

  // ---- runners (trial.reuse_process; runners.cc) ----
  // Hands the trial to an idle runner of its experiment on its slots, or starts one (ending
  // idle runners of other experiments on those slots). `proc` holds the trial's logs, `so` what
  // a fresh process of it would get.
  void LaunchInRunner(const v1::Assignment& a, TrialRun* run, std::unique_ptr<RankProc> proc,
                      const SpawnOptions& so);
  // The stdin line that gives a runner trial `a`.
  std::string TrialLine(const v1::Assignment& a, const SpawnOptions& so) const;
  // Closes its stdin (its loop ends); SIGKILL after the kill grace.
  void EndRunner(Runner* runner, const std::string& why);
  void ReadRunner(Runner* runner);
  void HandleRunnerLine(Runner* runner, absl::string_view line);
  // The runner's trial ended with `status` (0: its @rung-end line); the runner is idle.
  void EndRunnerTrial(Runner* runner, int status);
  void ReapRunners();
  void RunRunnerTimers(absl::Time now);
  absl::Time RunnerWake() const;
  void OnRunnersDone(const std::string& experiment_id);
  // Free slots with an idle runner: slot -> its experiment (for Pull).
  std::map<int, std::string> WarmSlots() const;

  const AgentOptions o_;
  const SupervisorPaths paths_;
  const std::string session_id_;
  Clock* const clock_;
  ProcessLauncher* const launcher_;
  CheckpointTransfers* transfers_ = nullptr;
  std::map<std::string, std::string> base_env_;
  std::vector<v1::Slot> slots_;
  std::set<int> free_;
  std::set<int> last_pull_;
  std::map<std::string, std::unique_ptr<TrialRun>> trials_;  // by trial id
  std::vector<std::unique_ptr<Runner>> runners_;
  // Attempts replaced by a newer one of their trial, until their processes are reaped.
  std::vector<std::unique_ptr<TrialRun>> dropped_;
  // Experiments rungd said have ended (RunnersDone) while a runner of theirs had a trial: the
  // runner ends after it; forgotten once none of theirs has one.
  std::set<std::string> ended_experiments_;
  int next_runner_ = 1;
  std::map<int, std::string> last_warm_;  // the warm slots of the latest Pull
  std::deque<v1::WorkerMessage> outbox_;
  std::vector<v1::WorkerMessage> outgoing_;
  int64_t next_seq_ = 1;
  v1::ReportBatch pending_;
  bool registered_ = false;
  absl::Time unregistered_since_;  // while not registered: since when
  bool shutting_down_ = false;
  bool deliver_on_shutdown_ = true;
  absl::Time shutdown_deadline_ = absl::InfiniteFuture();
  absl::Duration heartbeat_ = absl::Seconds(5);
  absl::Time next_heartbeat_ = absl::InfiniteFuture();
  AgentStats stats_;
};

}  // namespace rung

#endif  // RUNG_WORKER_SUPERVISOR_H_
