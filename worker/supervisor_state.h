// What the Supervisor keeps of each trial and process: shared by supervisor.cc and
// runners.cc, and by nothing else.
#ifndef RUNG_WORKER_SUPERVISOR_STATE_H_
#define RUNG_WORKER_SUPERVISOR_STATE_H_

#include <unistd.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "worker/supervisor.h"

namespace rung {

// Reads what the non-blocking `fd` holds now: each chunk goes to `on_bytes`, each complete
// line to `on_line` (a line over 1 MiB is cut and not handed on); a partial line waits in
// `*line`. False at end of file, after the last line (newline or not) went to `on_line`.
bool ReadLines(int fd, std::string* line, const std::function<void(absl::string_view)>& on_bytes,
               const std::function<void(absl::string_view)>& on_line);

// One process of a trial: the trial itself, or one rank of a distributed trial. A trial in a
// runner has one without a process of its own (`proc` is null): its logs.
struct Supervisor::RankProc {
  int rank = 0;  // the global rank; 0 for a trial of one rank
  std::unique_ptr<Process> proc;
  std::string stdout_path, stderr_path;
  int stdout_log = -1;
  std::string line;
  bool exited = false;
  int status = 0;

  ~RankProc() {
    if (stdout_log >= 0) close(stdout_log);
  }
};

// A long-lived process of one experiment on fixed slots (trial.reuse_process): it gets each
// trial as a JSON line on its stdin and ends it with a `@rung-end` line on its stdout.
struct Supervisor::Runner {
  int id = 0;  // 1, 2, ... for the log and its stderr file
  std::string experiment_id;
  std::vector<int> slots;
  std::unique_ptr<Process> proc;
  std::string stderr_path;    // all its trials' stderr
  std::string line;           // a partial stdout line
  TrialRun* trial = nullptr;  // the trial it runs now; null while idle
  absl::Time idle_since = absl::InfiniteFuture();
  bool ending = false;  // its stdin is closed: it exits when its loop sees end of file
  absl::Time kill_at = absl::InfiniteFuture();
  bool exited = false;
  int trials = 0;  // how many it was handed
};

struct Supervisor::TrialRun {
  v1::Assignment assignment;
  std::string id;
  int attempt = 0;
  std::vector<int> slots;
  std::vector<std::unique_ptr<RankProc>> procs;  // one per local rank
  Runner* runner = nullptr;                      // the runner it runs in, while it does
  int failed = -1;                               // index of the first process that failed
  bool rank0_done = false;                       // global rank 0 (here) exited 0
  int64_t report_seq = 0;
  bool socket_reports = false;  // it reported on the report socket: it hears a stop
  bool stdout_reports = false;  // it reported with @rung lines on stdout
  bool stop_requested = false;
  absl::Time term_at = absl::InfiniteFuture();
  absl::Time kill_at = absl::InfiniteFuture();
  bool exited = false;
  int64_t exit_seq = 0;    // seq of our TrialExited message; erase once acknowledged
  bool discard = false;    // the controller no longer wants this attempt
  bool shutdown = false;   // killed because the worker is stopping
  bool orphaned = false;   // stopped because rungd was unreachable past --orphan-timeout
  bool fetching = false;   // its checkpoint is being downloaded; no process yet
  bool uploading = false;  // exited; its checkpoint is being uploaded, then pending_exit goes
  v1::WorkerMessage pending_exit;

  // Sends `sig` to every process (group) still running: a runner's trial goes with its runner.
  void Signal(int sig) {
    if (runner != nullptr && !runner->exited) runner->proc->SignalGroup(sig);
    for (auto& p : procs) {
      if (!p->exited && p->proc) p->proc->SignalGroup(sig);
    }
  }
};

}  // namespace rung

#endif  // RUNG_WORKER_SUPERVISOR_STATE_H_
